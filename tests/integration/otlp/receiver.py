#!/usr/bin/env python3
"""A small OTLP/HTTP JSON trace receiver for the otlp sink's test.

    receiver.py PORT STATE_FILE [HEADER=VALUE]

POST /v1/traces: gunzips (Content-Encoding: gzip), checks the OTLP JSON
structure strictly (resourceSpans -> scopeSpans -> spans; traceId 32 and
spanId 16 lowercase hex characters; startTimeUnixNano and endTimeUnixNano
strings of digits; a service.name resource attribute), the Content-Type, the
User-Agent and HEADER (when given), and counts the spans.
A request that breaks the structure is answered 400 and counted as invalid.
Span ids seen twice are counted as duplicates: the sink must never deliver a
span twice (a retry after an answer that did arrive would).

Control, on the same port:
  POST /control/fail?count=K&retry_after=S  the next K trace requests get 503 with
                                            Retry-After: S (not counted as received)
  POST /control/reject?count=K              the next K get 400 (their spans counted as rejected)
  POST /control/partial?count=K&rejected=R  the next K get 200 with an OTLP partial success that
                                            rejects R of their spans (counted as rejected, the
                                            others as received)
  POST /control/stop                        answers, then stops: no request is counted
                                            after this one returns
  GET  /control/state                       the state below, as JSON

The state is also written to STATE_FILE at every change (atomically), and
loaded from it at start, so that a receiver stopped and started again goes on
counting: spans, requests, gzip_requests, invalid, duplicates,
rejected_spans, answered_503, early (requests that came inside a Retry-After
window, later than 0.3 s after the 503 that opened it), gaps_after_503
(seconds from each 503 to the next request that got through).
"""
import gzip
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
DIGITS = re.compile(r"^[0-9]+$")
GRACE = 0.3  # a request already on its way when a 503 went out is not early
# receiver.py PORT STATE [NAME=VALUE]: a header every trace request must carry.
EXPECT_HEADER = sys.argv[3].split("=", 1) if len(sys.argv) > 3 and sys.argv[3] else None

lock = threading.Lock()
stopping = False
state_file = None
state = {
    "spans": 0, "requests": 0, "gzip_requests": 0, "invalid": 0, "duplicates": 0,
    "rejected_spans": 0, "answered_503": 0, "early": 0, "gaps_after_503": [],
    "problems": [], "span_ids": [],
}
seen = set()
fail_left = 0
fail_retry_after = 0
reject_left = 0
partial_left = partial_rejected = 0
quiet_from = quiet_until = 0.0
last_503 = None


def save():
    tmp = state_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, state_file)


def check_spans(doc):
    """The number of spans, or raises ValueError naming what is wrong."""
    if not isinstance(doc, dict) or set(doc) != {"resourceSpans"}:
        raise ValueError("top level must be exactly {resourceSpans: [...]}")
    rss = doc["resourceSpans"]
    if not isinstance(rss, list) or not rss:
        raise ValueError("resourceSpans must be a non-empty list")
    ids = []
    for rs in rss:
        attrs = rs.get("resource", {}).get("attributes", [])
        names = [a["value"].get("stringValue") for a in attrs if a.get("key") == "service.name"]
        if len(names) != 1 or not names[0]:
            raise ValueError("resource without one service.name")
        sss = rs.get("scopeSpans")
        if not isinstance(sss, list) or not sss:
            raise ValueError("resourceSpans entry without scopeSpans")
        for ss in sss:
            spans = ss.get("spans")
            if not isinstance(spans, list) or not spans:
                raise ValueError("scopeSpans entry without spans")
            for sp in spans:
                if not HEX32.match(str(sp.get("traceId", ""))):
                    raise ValueError("traceId is not 32 lowercase hex characters")
                if not HEX16.match(str(sp.get("spanId", ""))):
                    raise ValueError("spanId is not 16 lowercase hex characters")
                parent = sp.get("parentSpanId", "")
                if parent and not HEX16.match(parent):
                    raise ValueError("parentSpanId is not 16 lowercase hex characters")
                for key in ("startTimeUnixNano", "endTimeUnixNano"):
                    if not isinstance(sp.get(key), str) or not DIGITS.match(sp[key]):
                        raise ValueError(key + " is not a string of digits")
                if int(sp["endTimeUnixNano"]) < int(sp["startTimeUnixNano"]):
                    raise ValueError("span ends before it starts")
                if not isinstance(sp.get("name"), str) or not sp["name"]:
                    raise ValueError("span without a name")
                ids.append(sp["traceId"] + sp["spanId"])
    return ids


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a collector does

    def log_message(self, *args):
        pass

    def answer(self, code, body=b"{}", headers=()):
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def read_body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_GET(self):
        if urlparse(self.path).path != "/control/state":
            return self.answer(404)
        with lock:
            body = json.dumps({k: v for k, v in state.items() if k != "span_ids"}).encode()
        self.answer(200, body)

    def do_POST(self):
        global stopping, fail_left, fail_retry_after, reject_left, partial_left, partial_rejected
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        raw = self.read_body()
        if url.path.startswith("/control/"):
            with lock:
                if url.path == "/control/fail":
                    fail_left = int(query.get("count", "1"))
                    fail_retry_after = int(query.get("retry_after", "1"))
                elif url.path == "/control/reject":
                    reject_left = int(query.get("count", "1"))
                elif url.path == "/control/partial":
                    partial_left = int(query.get("count", "1"))
                    partial_rejected = int(query.get("rejected", "1"))
                elif url.path == "/control/stop":
                    stopping = True
                    save()
                else:
                    return self.answer(404)
            self.answer(200)
            if url.path == "/control/stop":
                threading.Thread(target=self.server.shutdown).start()
            return
        if url.path != "/v1/traces":
            return self.answer(404)
        self.trace_request(raw)

    def trace_request(self, raw):
        global fail_left, reject_left, partial_left, quiet_from, quiet_until, last_503
        with lock:
            now = time.monotonic()
            if stopping:
                # Not counted and not answered: the sink must send it again.
                self.close_connection = True
                return
            if quiet_from < now < quiet_until:
                state["early"] += 1
            if fail_left > 0:
                fail_left -= 1
                state["answered_503"] += 1
                quiet_from, quiet_until = now + GRACE, now + fail_retry_after - 0.05
                last_503 = now
                save()
                return self.answer(503, b'{"message":"try later"}',
                                   [("Retry-After", str(fail_retry_after))])
            if self.headers.get("Content-Type") != "application/json":
                state["problems"].append("Content-Type " + str(self.headers.get("Content-Type")))
            if not str(self.headers.get("User-Agent")).startswith("periscope/"):
                state["problems"].append("User-Agent " + str(self.headers.get("User-Agent")))
            if EXPECT_HEADER and self.headers.get(EXPECT_HEADER[0]) != EXPECT_HEADER[1]:
                state["problems"].append("no %s header with the configured value" % EXPECT_HEADER[0])
            try:
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                    state["gzip_requests"] += 1
                ids = check_spans(json.loads(raw))
            except (ValueError, OSError, KeyError, AttributeError, TypeError) as e:
                state["invalid"] += 1
                state["problems"].append(str(e)[:200])
                save()
                return self.answer(400, b'{"message":"invalid"}')
            if reject_left > 0:
                reject_left -= 1
                state["rejected_spans"] += len(ids)
                save()
                return self.answer(400, b'{"message":"rejected on purpose"}')
            answer = b"{}"
            if partial_left > 0 and len(ids) > partial_rejected:
                partial_left -= 1
                # The last R spans of the request are the ones refused.
                ids, refused = ids[:-partial_rejected], ids[-partial_rejected:]
                state["rejected_spans"] += len(refused)
                state["partial_successes"] = state.get("partial_successes", 0) + 1
                answer = json.dumps({"partialSuccess": {"rejectedSpans": str(len(refused)),
                                     "errorMessage": "refused on purpose"}}).encode()
            for i in ids:
                if i in seen:
                    state["duplicates"] += 1
                seen.add(i)
            state["span_ids"].extend(ids)
            state["spans"] += len(ids)
            state["requests"] += 1
            if last_503 is not None and now - last_503 > GRACE:
                state["gaps_after_503"].append(round(now - last_503, 3))
                last_503 = None
            save()
            self.answer(200, answer)


def main():
    global state_file, state, seen
    port, state_file = int(sys.argv[1]), sys.argv[2]
    if os.path.exists(state_file):
        with open(state_file) as f:
            state = json.load(f)
        seen = set(state["span_ids"])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    save()
    server.serve_forever()
    # Answers already written reach their clients before the sockets go.
    time.sleep(0.3)


if __name__ == "__main__":
    main()
