#!/usr/bin/env python3
"""A webhook receiver for the peer scripts: verifies each POST's X-Sluice-Signature
(HMAC-SHA256 over "<t>.<body>" with the account's webhook_secret), takes a JSON object or a
JSON array of them, counts receipts per id, and answers 200 (401 when the signature does not
verify, 400 for a body that is not JSON). HTTP/1.1 keep-alive, one thread per connection.

GET /count answers "unique duplicates posts refused last_unix_s down_refused" on one line.
GET /down makes it answer every POST 503 (counted in down_refused, nothing recorded) until
GET /up: a receiver outage that keeps the per-id counts, which killing the process would lose.

GET /dlr?id=ID (Kannel's dlr-url, which is not signed) counts a receipt for ID the same way, so
one receiver measures both gateways in kannel_faults.sh; a /dlr request without an id is
answered 400.

Usage: webhook_sink.py PORT SECRET [LOG]
With LOG, every receipt taken is appended to that file as one JSON line (a /dlr GET as
{"id": ID}), so a run can be checked per message afterwards.
"""
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = int(sys.argv[1])
SECRET = sys.argv[2].encode()
LOG = open(sys.argv[3], "a") if len(sys.argv) > 3 else None
LOCK = threading.Lock()
SEEN = set()
STATE = {"duplicates": 0, "posts": 0, "refused": 0, "last": 0.0, "down": False, "down_refused": 0}


def verified(header, body):
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    t, v1 = parts.get("t"), parts.get("v1")
    if t is None or v1 is None:
        return False
    mac = hmac.new(SECRET, t.encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, v1)


def count(ids, items):
    """Records one request carrying receipts for `ids` (a repeated id is a duplicate)."""
    with LOCK:
        if LOG is not None:
            for item in items:
                LOG.write(json.dumps(item) + "\n")
            LOG.flush()
        STATE["posts"] += 1
        for i in ids:
            if i in SEEN:
                STATE["duplicates"] += 1
            else:
                SEEN.add(i)
        STATE["last"] = time.time()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, code, text=b""):
        self.send_response(code)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with LOCK:
            down = STATE["down"]
            if down:
                STATE["down_refused"] += 1
        if down:
            return self.answer(503)
        if not verified(self.headers.get("X-Sluice-Signature"), body):
            with LOCK:
                STATE["refused"] += 1
            return self.answer(401)
        try:
            v = json.loads(body)
        except ValueError:
            return self.answer(400)
        items = v if isinstance(v, list) else [v]
        count([item.get("id") for item in items], items)
        self.answer(200)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/dlr":
            ids = parse_qs(url.query).get("id")
            if not ids:
                return self.answer(400)
            count(ids[:1], [{"id": ids[0]}])
            return self.answer(200)
        with LOCK:
            if self.path in ("/down", "/up"):
                STATE["down"] = self.path == "/down"
            line = "%d %d %d %d %.3f %d\n" % (
                len(SEEN), STATE["duplicates"], STATE["posts"], STATE["refused"], STATE["last"],
                STATE["down_refused"])
        self.answer(200, line.encode())

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
