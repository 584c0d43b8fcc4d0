"""Drives the sluice simulator with python smpplib as an ESME (transceiver).

Usage: sim_smpplib.py PORT SYSTEM_ID PASSWORD COUNT TAG
Submits COUNT short messages plus one long (concatenated by smpplib's UDH) message, all with
registered_delivery, waits for every submit_sm_resp and delivery receipt, unbinds, and prints
one JSON object: {"resp_ids": [...], "dlr_ids": [...], "stats": [...], "long_parts": N}.
Exits 2 on timeout.
"""
import json
import socket
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.gsm

port, system_id, password, count, tag = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
resp_ids, dlr_ids, stats = [], [], []

client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)


def on_sent(pdu):
    if pdu.command == "submit_sm_resp" and pdu.status == 0:
        resp_ids.append(pdu.message_id.decode() if isinstance(pdu.message_id, bytes) else pdu.message_id)


def on_received(pdu):
    if pdu.command == "deliver_sm":
        rid = getattr(pdu, "receipted_message_id", None)
        if isinstance(rid, bytes):
            rid = rid.decode()
        dlr_ids.append(rid)
        text = pdu.short_message.decode(errors="replace") if isinstance(pdu.short_message, bytes) else str(pdu.short_message)
        stat = [f[5:] for f in text.split(" ") if f.startswith("stat:")]
        stats.append(stat[0] if stat else "?")


client.set_message_sent_handler(on_sent)
client.set_message_received_handler(on_received)
client.connect()
client.bind_transceiver(system_id=system_id, password=password)

long_parts = 0
messages = [f"{tag}:{i} hello from smpplib" for i in range(count)]
messages.append(f"{tag}:long " + "x" * 300)
for i, text in enumerate(messages):
    parts, coding, esm = smpplib.gsm.make_parts(text)
    if i == len(messages) - 1:
        long_parts = len(parts)
    for part in parts:
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_INTL,
            source_addr="10690001",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            destination_addr="8613800%06d" % i,
            short_message=part,
            data_coding=coding,
            esm_class=esm,
            registered_delivery=True,
        )

total_parts = count + long_parts
deadline = time.time() + 20
while len(resp_ids) < total_parts or len(dlr_ids) < total_parts:
    if time.time() > deadline:
        print(json.dumps({"error": "timeout", "resp": len(resp_ids), "dlr": len(dlr_ids)}))
        sys.exit(2)
    try:
        client.read_once()
    except socket.timeout:
        pass

client.unbind()
client.disconnect()
print(json.dumps({"resp_ids": resp_ids, "dlr_ids": dlr_ids, "stats": stats, "long_parts": long_parts}))
