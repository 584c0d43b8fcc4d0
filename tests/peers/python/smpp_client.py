#!/usr/bin/env python3
"""ESME client driven by python smpplib, for sluice's SMPP interop test.

Usage: smpp_client.py PORT
Binds as transceiver to 127.0.0.1:PORT, submits a short GSM text and a long UCS-2 text split
by smpplib.gsm.make_parts, waits for one delivery receipt, sends enquire_link and unbinds.
Prints one JSON object per line describing what smpplib parsed, for the test to assert.
"""
import json
import sys

import smpplib.client
import smpplib.consts
import smpplib.gsm
import smpplib.smpp

LONG_TEXT = "Sluice 长短信测试: " + "你好世界，这是一条很长的消息。" * 8


def text(v):
    if isinstance(v, bytes):
        return v.decode("latin-1")
    return v


def emit(**kw):
    print(json.dumps(kw, ensure_ascii=False), flush=True)


def main():
    port = int(sys.argv[1])
    client = smpplib.client.Client("127.0.0.1", port, timeout=20)
    client.set_message_sent_handler(
        lambda pdu: emit(event="submit_sm_resp", sequence=pdu.sequence,
                         message_id=text(pdu.message_id), status=pdu.status))
    received = []

    def on_deliver(pdu):
        received.append(pdu)
        emit(event="deliver_sm", sequence=pdu.sequence, esm_class=pdu.esm_class,
             source_addr=text(pdu.source_addr),
             receipted_message_id=text(pdu.receipted_message_id),
             message_state=pdu.message_state,
             short_message=text(pdu.short_message))
        return 0

    client.set_message_received_handler(on_deliver)
    client.connect()
    resp = client.bind_transceiver(system_id="esme1", password="secret", system_type="interop")
    emit(event="bound", system_id=text(resp.system_id), status=resp.status)

    client.send_message(
        source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="sluice",
        dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
        destination_addr="8613800138000", short_message=b"hello from smpplib",
        registered_delivery=True)
    client.read_once()

    parts, encoding, esm_class = smpplib.gsm.make_parts(LONG_TEXT)
    emit(event="parts", count=len(parts), data_coding=encoding, esm_class=esm_class)
    for part in parts:
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM, source_addr="sluice",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL, dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
            destination_addr="8613800138000", short_message=part, data_coding=encoding,
            esm_class=esm_class, registered_delivery=True)
        client.read_once()

    while not received:
        client.read_once()

    client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
    client.read_once()
    emit(event="enquire_link_resp")

    resp = client.unbind()
    emit(event="unbound", command=resp.command, status=resp.status)
    client.disconnect()


if __name__ == "__main__":
    main()
