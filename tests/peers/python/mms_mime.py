"""Parses an MMS content sluice built with python's own `email` package (not ours).

Usage: python3 mms_mime.py FILE — FILE holds `Content-Type: …` and a blank line, then the
body. Prints one JSON object: the top-level media type and its `type` / `start` parameters,
then every part's media type, Content-ID, Content-Location and the SHA-256 of its decoded
body.
"""
import email
import email.policy
import hashlib
import json
import sys

with open(sys.argv[1], "rb") as f:
    msg = email.message_from_bytes(f.read(), policy=email.policy.compat32)

out = {
    "type": msg.get_content_type(),
    "root_type": msg.get_param("type"),
    "start": msg.get_param("start"),
    "defects": [str(d) for d in msg.defects],
    "parts": [],
}
for part in msg.get_payload():
    out["parts"].append({
        "content_type": part.get_content_type(),
        "content_id": part.get("Content-ID"),
        "content_location": part.get("Content-Location"),
        "sha256": hashlib.sha256(part.get_payload(decode=True)).hexdigest(),
        "defects": [str(d) for d in part.defects],
    })
print(json.dumps(out))
