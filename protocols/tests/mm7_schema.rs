//! Schema proof: every envelope kind sluice's VASP side sends (SubmitReq, DeliveryReportRsp,
//! DeliverRsp, ReadReplyRsp, CancelReq, ReplaceReq, VASPErrorRsp, Fault) and every kind the
//! MMSC side sends (SubmitRsp, DeliveryReportReq, DeliverReq, ReadReplyReq, CancelRsp,
//! ReplaceRsp, RSErrorRsp, Fault) is checked by `mm7_schema/check.py` — python's `xml.etree`
//! against the element table of TS 23.140 (names, order, occurrence, namespaces, enumerations;
//! `mm7_schema/SOURCE.md` says why it is a table and not the XSD). Broken envelopes must be
//! refused by the same checker, so the check can fail. A missing python3 is skipped, or FAILS
//! when SLUICE_INTEROP=1.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::json;
use sluice_protocols::mm7::rs::{self, CancelReq, ErrorRsp, ReadReplyReq, ReplaceReq};
use sluice_protocols::mm7::soap::{
    self, Address, DeliverReq, DeliveryReportReq, REL_5_MM7_1_0, REL_6_MM7_1_4, Status, SubmitReq,
    SubmitRsp,
};

fn python_ready() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import xml.etree.ElementTree"])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        return true;
    }
    if std::env::var_os("SLUICE_INTEROP").is_some_and(|v| v == "1") {
        panic!("python3 not installed but SLUICE_INTEROP=1");
    }
    println!("skipped: python3 not installed");
    false
}

/// Runs the checker; returns (passed, its output).
fn check(cases: &[(String, String)]) -> (bool, String) {
    let script = format!("{}/tests/mm7_schema/check.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input: Vec<_> = cases
        .iter()
        .map(|(name, xml)| json!({"name": name, "xml": xml}))
        .collect();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(serde_json::to_string(&input).unwrap().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn status(code: u16) -> Status {
    Status {
        code,
        text: Some("text".into()),
    }
}

/// Every kind, in one namespace.
fn every_kind(ns: &str) -> Vec<(String, String)> {
    let submit = SubmitReq {
        transaction_id: "t".into(),
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: Some(Address::ShortCode("10658888".into())),
        recipients: vec![
            Address::Number("8613800138000".into()),
            Address::Email("a@example.net".into()),
        ],
        service_code: Some("MMS_PROMO".into()),
        linked_id: Some("l".into()),
        delivery_report: Some(true),
        subject: Some("s".into()),
        charged_party: Some("Sender".into()),
        content_id: "c".into(),
    };
    let minimal = SubmitReq {
        sender_address: None,
        recipients: vec![Address::Number("1".into())],
        service_code: None,
        linked_id: None,
        delivery_report: None,
        subject: None,
        charged_party: None,
        ..submit.clone()
    };
    let report = DeliveryReportReq {
        message_id: "m".into(),
        recipient: Some(Address::Number("8613800138000".into())),
        sender: Some(Address::ShortCode("10658888".into())),
        date: Some("2026-12-05T18:20:11Z".into()),
        mm_status: "Retrieved".into(),
        status_text: Some("ok".into()),
    };
    let mo = DeliverReq {
        linked_id: Some("l".into()),
        sender: Some(Address::Number("8613900000001".into())),
        recipients: vec![Address::ShortCode("10658888".into())],
        subject: Some("Re".into()),
        content_id: Some("mo".into()),
    };
    let read = ReadReplyReq {
        message_id: "m".into(),
        recipient: Address::Number("8613800138000".into()),
        sender: Address::ShortCode("10658888".into()),
        time_stamp: "2026-12-05T19:00:00+08:00".into(),
        mm_status: "Read".into(),
        status_text: None,
    };
    let cancel = CancelReq {
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: None,
        message_id: "m".into(),
    };
    let replace = ReplaceReq {
        vaspid: "901234".into(),
        vasid: "10658888".into(),
        sender_address: Some(Address::ShortCode("10658888".into())),
        message_id: "m".into(),
        service_code: Some("MMS_PROMO".into()),
        content_id: Some("c2".into()),
    };
    let ok = status(1000);
    vec![
        // VASP side.
        ("SubmitReq", soap::encode_submit_req(ns, &submit)),
        ("SubmitReq minimal", soap::encode_submit_req(ns, &minimal)),
        (
            "DeliveryReportRsp",
            soap::encode_delivery_report_rsp(ns, "t", &ok),
        ),
        (
            "DeliverRsp",
            soap::encode_deliver_rsp(ns, "t", &ok, Some("MMS_REPLY")),
        ),
        ("ReadReplyRsp", rs::encode_read_reply_rsp(ns, "t", &ok)),
        ("CancelReq", rs::encode_cancel_req(ns, "t", &cancel)),
        ("ReplaceReq", rs::encode_replace_req(ns, "t", &replace)),
        (
            "VASPErrorRsp",
            rs::encode_error_rsp(ErrorRsp::Vasp, ns, "t", &status(4004)),
        ),
        (
            "Fault VASPErrorRsp",
            rs::encode_fault(
                ns,
                "t",
                rs::FAULT_CLIENT,
                "Client",
                ErrorRsp::Vasp,
                &status(4004),
            ),
        ),
        // MMSC side.
        (
            "SubmitRsp",
            rs::encode_submit_rsp(
                ns,
                "t",
                &SubmitRsp {
                    status: ok.clone(),
                    message_id: Some("m".into()),
                },
            ),
        ),
        (
            "SubmitRsp error",
            rs::encode_submit_rsp(
                ns,
                "t",
                &SubmitRsp {
                    status: status(4006),
                    message_id: None,
                },
            ),
        ),
        (
            "DeliveryReportReq",
            rs::encode_delivery_report_req(ns, "t", &report),
        ),
        ("DeliverReq", rs::encode_deliver_req(ns, "t", &mo)),
        ("ReadReplyReq", rs::encode_read_reply_req(ns, "t", &read)),
        ("CancelRsp", rs::encode_cancel_rsp(ns, "t", &ok)),
        ("ReplaceRsp", rs::encode_replace_rsp(ns, "t", &ok)),
        (
            "RSErrorRsp",
            rs::encode_error_rsp(ErrorRsp::Rs, ns, "t", &status(3001)),
        ),
        (
            "Fault RSErrorRsp",
            rs::encode_fault(
                ns,
                "t",
                rs::FAULT_SERVER,
                "Server",
                ErrorRsp::Rs,
                &status(3000),
            ),
        ),
    ]
    .into_iter()
    .map(|(n, x)| (format!("{n} ({ns})"), x))
    .collect()
}

#[test]
fn every_envelope_kind_follows_the_schema_table() {
    if !python_ready() {
        return;
    }
    let mut cases = every_kind(REL_6_MM7_1_4);
    cases.extend(every_kind(REL_5_MM7_1_0));
    for name in [
        "submit_rsp.xml",
        "submit_rsp_rel5_prefixed.xml",
        "delivery_report_req.xml",
        "deliver_req.xml",
        "rs_error_rsp.xml",
        "fault.xml",
        "submit_req_cc_bcc.xml",
        "cancel_req.xml",
    ] {
        let path = format!("{}/tests/mm7_fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        cases.push((name.to_owned(), std::fs::read_to_string(path).unwrap()));
    }
    let (ok, out) = check(&cases);
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("checked {} envelopes, 0 invalid", cases.len())),
        "{out}"
    );
}

#[test]
fn the_checker_refuses_broken_envelopes() {
    if !python_ready() {
        return;
    }
    let good = every_kind(REL_6_MM7_1_4);
    let find = |name: &str| {
        good.iter()
            .find(|(n, _)| n.starts_with(name))
            .map(|(_, x)| x.clone())
            .unwrap()
    };
    let submit = find("SubmitReq (");
    let report = find("DeliveryReportReq");
    let broken = [
        // Subject moved before ServiceCode: out of order.
        submit
            .replace("<Subject>s</Subject>", "")
            .replace("<ServiceCode>", "<Subject>s</Subject><ServiceCode>"),
        // Required Recipients missing.
        submit.replace(
            "<Recipients><To><Number>8613800138000</Number></To><To><RFC2822Address>a@example.net</RFC2822Address></To></Recipients>",
            "",
        ),
        // An element the schema does not have.
        report.replace("<MMStatus>", "<Colour>red</Colour><MMStatus>"),
        // A status outside the enumeration.
        report.replace(">Retrieved<", ">Delivered<"),
        // Body element in a namespace that is not an MM7 release.
        report.replace("REL-6-MM7-1-4\"><MM7Version>", "REL-7-MM7-1-0\"><MM7Version>"),
        // Two addresses in one Recipient.
        report.replace(
            "<Recipient><Number>8613800138000</Number>",
            "<Recipient><Number>8613800138000</Number><ShortCode>1</ShortCode>",
        ),
    ];
    for (i, xml) in broken.iter().enumerate() {
        let (ok, out) = check(&[(format!("broken {i}"), xml.clone())]);
        assert!(!ok, "broken case {i} passed the checker: {xml}\n{out}");
    }
}
