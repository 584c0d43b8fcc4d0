"""Checks MM7 SOAP envelopes against the element table of 3GPP TS 23.140 (REL-5-MM7-1-x /
REL-6-MM7-1-4 schema): names, order, occurrence, namespaces and the enumerations we use.

Reads a JSON list of {"name": ..., "xml": ...} on stdin; prints one line per problem and exits 1
if there is any. Uses only python's standard xml.etree, so nothing of sluice's is involved in
reading the bytes. See SOURCE.md for where the table comes from and why it is not the XSD.
"""
import json
import re
import sys
import xml.etree.ElementTree as ET

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
MM7_BASE = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/"
RELEASES = {"REL-5-MM7-1-%d" % i for i in range(6)} | {"REL-6-MM7-1-%d" % i for i in range(5)}

# One entry per element: (name, minOccurs, maxOccurs, type). maxOccurs None = unbounded.
# Types: a key of TYPES (nested sequence), "address" (Number | ShortCode | RFC2822Address),
# "recipients" (To | Cc | Bcc, any number, any order), "content" (empty, href attribute),
# or a simple type checked by SIMPLE.
OPT, REQ = 0, 1
GENERIC_REQ = [("MM7Version", REQ, 1, "version"), ("SenderIdentification", REQ, 1, "SenderIdentification")]
GENERIC_RSP = [("MM7Version", REQ, 1, "version"), ("Status", REQ, 1, "Status")]
TYPES = {
    "SenderIdentification": [
        ("VASPID", OPT, 1, "string"), ("VASID", OPT, 1, "string"), ("SenderAddress", OPT, 1, "address"),
    ],
    "Status": [("StatusCode", REQ, 1, "statusCode"), ("StatusText", OPT, 1, "string"), ("Details", OPT, 1, "any")],
    "SubmitReq": GENERIC_REQ + [
        ("Recipients", REQ, 1, "recipients"), ("PreferredChannels", OPT, 1, "any"),
        ("ServiceCode", OPT, 1, "string"), ("LinkedID", OPT, 1, "string"),
        ("MessageClass", OPT, 1, "string"), ("TimeStamp", OPT, 1, "dateTime"),
        ("ReplyCharging", OPT, 1, "any"), ("EarliestDeliveryTime", OPT, 1, "string"),
        ("ExpiryDate", OPT, 1, "string"), ("DeliveryReport", OPT, 1, "boolean"),
        ("ReadReply", OPT, 1, "boolean"), ("Priority", OPT, 1, "string"), ("Subject", OPT, 1, "string"),
        ("ChargedParty", OPT, 1, "chargedParty"), ("ChargedPartyID", OPT, 1, "string"),
        ("DistributionIndicator", OPT, 1, "boolean"), ("DeliveryCondition", OPT, 1, "any"),
        ("ApplicID", OPT, 1, "string"), ("ReplyApplicID", OPT, 1, "string"),
        ("AuxApplicInfo", OPT, 1, "string"), ("ContentClass", OPT, 1, "string"),
        ("DRMContent", OPT, 1, "boolean"), ("Content", OPT, 1, "content"),
    ],
    "SubmitRsp": GENERIC_RSP + [("MessageID", OPT, 1, "string")],
    "DeliverReq": [
        ("MM7Version", REQ, 1, "version"), ("MMSRelayServerID", OPT, 1, "string"),
        ("VASPID", OPT, 1, "string"), ("VASID", OPT, 1, "string"),
        ("LinkedID", OPT, 1, "string"), ("Sender", REQ, 1, "address"),
        ("Recipients", OPT, 1, "recipients"), ("Previouslysentby", OPT, 1, "any"),
        ("Previouslysentdateandtime", OPT, 1, "any"), ("SenderSPI", OPT, 1, "string"),
        ("RecipientSPI", OPT, 1, "string"), ("TimeStamp", OPT, 1, "dateTime"),
        ("ReplyChargingID", OPT, 1, "string"), ("Priority", OPT, 1, "string"),
        ("Subject", OPT, 1, "string"), ("ApplicID", OPT, 1, "string"),
        ("ReplyApplicID", OPT, 1, "string"), ("AuxApplicInfo", OPT, 1, "string"),
        ("UACapabilities", OPT, 1, "any"), ("Content", OPT, 1, "content"),
    ],
    "DeliverRsp": GENERIC_RSP + [("ServiceCode", OPT, 1, "string")],
    "CancelReq": GENERIC_REQ + [
        ("MessageID", REQ, 1, "string"), ("ApplicID", OPT, 1, "string"),
        ("ReplyApplicID", OPT, 1, "string"), ("AuxApplicInfo", OPT, 1, "string"),
    ],
    "CancelRsp": GENERIC_RSP,
    "ReplaceReq": GENERIC_REQ + [
        ("MessageID", REQ, 1, "string"), ("ServiceCode", OPT, 1, "string"),
        ("TimeStamp", OPT, 1, "dateTime"), ("ReadReply", OPT, 1, "boolean"),
        ("EarliestDeliveryTime", OPT, 1, "string"), ("DistributionIndicator", OPT, 1, "boolean"),
        ("ContentClass", OPT, 1, "string"), ("DRMContent", OPT, 1, "boolean"),
        ("ApplicID", OPT, 1, "string"), ("ReplyApplicID", OPT, 1, "string"),
        ("AuxApplicInfo", OPT, 1, "string"), ("Content", OPT, 1, "content"),
    ],
    "ReplaceRsp": GENERIC_RSP,
    "DeliveryReportReq": [
        ("MM7Version", REQ, 1, "version"), ("MMSRelayServerID", OPT, 1, "string"),
        ("MessageID", REQ, 1, "string"), ("Recipient", REQ, 1, "address"),
        ("Sender", REQ, 1, "address"), ("Date", REQ, 1, "dateTime"),
        ("MMStatus", REQ, 1, "mmStatus"), ("MMStatusExtension", OPT, 1, "string"),
        ("StatusText", OPT, 1, "string"), ("ApplicID", OPT, 1, "string"),
        ("ReplyApplicID", OPT, 1, "string"), ("AuxApplicInfo", OPT, 1, "string"),
    ],
    "DeliveryReportRsp": GENERIC_RSP,
    "ReadReplyReq": [
        ("MM7Version", REQ, 1, "version"), ("MMSRelayServerID", OPT, 1, "string"),
        ("MessageID", REQ, 1, "string"), ("Recipient", REQ, 1, "address"),
        ("Sender", REQ, 1, "address"), ("TimeStamp", REQ, 1, "dateTime"),
        ("MMStatus", REQ, 1, "readStatus"), ("StatusText", OPT, 1, "string"),
        ("ApplicID", OPT, 1, "string"), ("ReplyApplicID", OPT, 1, "string"),
        ("AuxApplicInfo", OPT, 1, "string"),
    ],
    "ReadReplyRsp": GENERIC_RSP,
    "RSErrorRsp": GENERIC_RSP,
    "VASPErrorRsp": GENERIC_RSP,
}
ADDRESS = {"Number", "ShortCode", "RFC2822Address"}
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$")
SIMPLE = {
    "string": lambda t: True,
    "any": lambda t: True,
    "version": lambda t: re.fullmatch(r"\d+\.\d+\.\d+", t) is not None,
    "statusCode": lambda t: re.fullmatch(r"\d{4}", t) is not None,
    "boolean": lambda t: t in ("true", "false", "1", "0"),
    "dateTime": lambda t: DATETIME.match(t) is not None,
    "chargedParty": lambda t: t in ("Sender", "Recipient", "Both", "Neither", "ThirdParty"),
    "mmStatus": lambda t: t in ("Expired", "Retrieved", "Rejected", "Indeterminate", "Forwarded",
                                "Unrecognised", "Deferred", "DeliveryConditionNotMet"),
    "readStatus": lambda t: t in ("Indeterminate", "Read", "Deleted"),
}


def local(tag):
    return tag.split("}", 1)[1] if tag.startswith("{") else tag


def ns_of(tag):
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def check_element(el, typ, ns, path, errs):
    kids = list(el)
    for k in kids:
        if ns_of(k.tag) != ns:
            errs.append("%s/%s: namespace %r, expected %r" % (path, local(k.tag), ns_of(k.tag), ns))
    if typ == "address":
        names = [local(k.tag) for k in kids]
        if len(names) != 1 or names[0] not in ADDRESS:
            errs.append("%s: expected one of %s, got %s" % (path, sorted(ADDRESS), names))
        return
    if typ == "recipients":
        if not kids:
            errs.append("%s: no recipient" % path)
        for k in kids:
            if local(k.tag) not in ("To", "Cc", "Bcc"):
                errs.append("%s: %s is not To, Cc or Bcc" % (path, local(k.tag)))
            else:
                check_element(k, "address", ns, path + "/" + local(k.tag), errs)
        return
    if typ == "content":
        if kids or not el.get("href", "").startswith("cid:"):
            errs.append("%s: Content must be empty with a cid: href" % path)
        return
    if typ in SIMPLE:
        if kids and typ != "any":
            errs.append("%s: simple element has children" % path)
        elif not SIMPLE[typ]((el.text or "").strip()):
            errs.append("%s: %r is not a valid %s" % (path, el.text, typ))
        return
    seq = TYPES[typ]
    i, count = 0, 0
    for k in kids:
        name = local(k.tag)
        while i < len(seq) and seq[i][0] != name:
            if count < seq[i][1]:
                errs.append("%s: required %s missing before %s" % (path, seq[i][0], name))
            i, count = i + 1, 0
        if i == len(seq):
            errs.append("%s: %s not allowed here (unknown or out of order)" % (path, name))
            return
        count += 1
        if seq[i][2] is not None and count > seq[i][2]:
            errs.append("%s: too many %s" % (path, name))
        check_element(k, seq[i][3], ns, path + "/" + name, errs)
    while i < len(seq):
        if count < seq[i][1]:
            errs.append("%s: required %s missing" % (path, seq[i][0]))
        i, count = i + 1, 0


def check(xml):
    errs = []
    root = ET.fromstring(xml)
    if root.tag != "{%s}Envelope" % SOAP:
        return ["root is %s, not a SOAP 1.1 Envelope" % root.tag]
    parts = [local(k.tag) for k in root]
    if parts not in (["Header", "Body"], ["Body"]) or any(ns_of(k.tag) != SOAP for k in root):
        return ["Envelope children %s" % parts]
    header = root.find("{%s}Header" % SOAP)
    body = root.find("{%s}Body" % SOAP)
    mm7 = None
    if header is not None:
        tids = [k for k in header if local(k.tag) == "TransactionID"]
        if len(tids) != 1:
            errs.append("Header: expected one TransactionID")
        else:
            mm7 = ns_of(tids[0].tag)
            if tids[0].get("{%s}mustUnderstand" % SOAP) not in ("1", "true"):
                errs.append("TransactionID: mustUnderstand is not set")
            if not (tids[0].text or "").strip():
                errs.append("TransactionID is empty")
    kids = list(body)
    if len(kids) != 1:
        return errs + ["Body has %d children" % len(kids)]
    msg = kids[0]
    if msg.tag == "{%s}Fault" % SOAP:
        names = [k.tag for k in msg]
        if names[:2] != ["faultcode", "faultstring"]:
            errs.append("Fault: children %s (faultcode, faultstring unqualified first)" % names)
        detail = msg.find("detail")
        if detail is not None:
            for d in detail:
                errs += check_body(d, mm7, "Fault/detail")
        return errs
    return errs + check_body(msg, mm7, "Body")


def check_body(msg, header_ns, path):
    ns, name = ns_of(msg.tag), local(msg.tag)
    if ns is None or not ns.startswith(MM7_BASE) or ns[len(MM7_BASE):] not in RELEASES:
        return ["%s/%s: namespace %r is not an MM7 schema namespace" % (path, name, ns)]
    errs = []
    if header_ns is not None and header_ns != ns:
        errs.append("TransactionID namespace %r differs from the body's %r" % (header_ns, ns))
    if name not in TYPES or name in ("SenderIdentification", "Status"):
        return errs + ["%s: %s is not an MM7 message" % (path, name)]
    check_element(msg, name, ns, path + "/" + name, errs)
    return errs


def main():
    cases = json.load(sys.stdin)
    bad = 0
    for case in cases:
        try:
            errs = check(case["xml"])
        except ET.ParseError as e:
            errs = ["not well-formed: %s" % e]
        for e in errs:
            print("%s: %s" % (case["name"], e))
        bad += bool(errs)
    print("checked %d envelopes, %d invalid" % (len(cases), bad))
    sys.exit(1 if bad else 0)


main()
