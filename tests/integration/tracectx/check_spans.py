#!/usr/bin/env python3
"""Checks tracectx.sh's spans in periscoped's stdout (format json) against the ground truth.

  check_spans.py STDOUT N HEADERS_FILE A_PORT B_PORT C_PORT DB_PORT

Per request the chain makes eight spans: curl's client span, A's server span, A's
client span to B, B's server span, B's client span to C, C's server span, A's
SELECT on MariaDB and MariaDB's server span of it. HEADERS_FILE holds the N
traceparents sent with the second half of the requests. Exit 1 with what is wrong.
"""
import json
import re
import sys
from collections import defaultdict

out, n = sys.argv[1], int(sys.argv[2])
headers = [l.strip() for l in open(sys.argv[3]) if l.strip()]
a_port, b_port, c_port, db_port = (int(x) for x in sys.argv[4:8])
SERVICES = {"pstest-tc-curl", "pstest-tc-a", "pstest-tc-b", "pstest-tc-c", "pstest-tc-db"}
errors = []
HEX = {16: re.compile(r"^[0-9a-f]{16}$"), 32: re.compile(r"^[0-9a-f]{32}$")}


def err(msg):
    if len(errors) < 40:
        errors.append(msg)


def attrs(kv):
    got = {}
    for a in kv:
        v = a["value"]
        got[a["key"]] = v["stringValue"] if "stringValue" in v else int(v["intValue"])
        if "intValue" in v and not isinstance(v["intValue"], str):
            err("intValue not a string: %r" % a)
    return got


spans = []
for line in open(out, encoding="utf-8"):
    if not line.startswith('{"resourceSpans"'):
        continue
    doc = json.loads(line)
    for rs in doc["resourceSpans"]:
        res = attrs(rs["resource"]["attributes"])
        if res.get("service.name") not in SERVICES:
            continue
        if res.get("cluster") != "pstest-cluster":
            err("resource without the static label: %r" % res)
        for ss in rs["scopeSpans"]:
            if ss["scope"]["name"] != "periscope":
                err("scope %r" % ss["scope"])
            for s in ss["spans"]:
                s["service"] = res["service.name"]
                s["attrs"] = attrs(s["attributes"])
                spans.append(s)

for s in spans:
    if not HEX[32].match(s["traceId"]) or not HEX[16].match(s["spanId"]):
        err("ids not lowercase hex: %s %s" % (s["traceId"], s["spanId"]))
    if "parentSpanId" in s and not HEX[16].match(s["parentSpanId"]):
        err("parentSpanId %r" % s["parentSpanId"])
    for t in ("startTimeUnixNano", "endTimeUnixNano"):
        if not isinstance(s[t], str) or not s[t].isdigit():
            err("%s is not a string of digits: %r" % (t, s[t]))
    if int(s["endTimeUnixNano"]) < int(s["startTimeUnixNano"]):
        err("span ends before it starts: %r" % s["name"])
    if s.get("status", {}).get("code", 0) != 0:
        err("error status on %s %s" % (s["service"], s["name"]))

# what each of the eight spans is: (service, kind, name, a predicate on its attributes)
ROLES = {
    "curl": ("pstest-tc-curl", 3, "GET /a", {"server.port": a_port, "server.address": "127.0.0.1"}),
    "A": ("pstest-tc-a", 2, "GET /a", {"http.route": "/a", "server.port": a_port,
                                        "http.response.status_code": 200, "url.scheme": "http"}),
    "A->B": ("pstest-tc-a", 3, "GET /b", {"server.port": b_port, "server.address": "127.0.0.1"}),
    "B": ("pstest-tc-b", 2, "GET /b", {"http.route": "/b", "server.port": b_port}),
    "B->C": ("pstest-tc-b", 3, "GET /c", {"server.port": c_port}),
    "C": ("pstest-tc-c", 2, "GET /c", {"http.route": "/c", "server.port": c_port}),
    "A->db": ("pstest-tc-a", 3, "SELECT items", {"db.system.name": "mysql",
                                                "db.operation.name": "SELECT",
                                                "db.collection.name": "items",
                                                "server.port": db_port}),
    "db": ("pstest-tc-db", 2, "SELECT items", {"db.system.name": "mysql", "server.port": db_port}),
}
PARENT = {"A": "curl", "A->B": "A", "B": "A->B", "B->C": "B", "C": "B->C", "A->db": "A",
          "db": "A->db"}


def role_of(s):
    for role, (svc, kind, name, want) in ROLES.items():
        if s["service"] == svc and s["kind"] == kind and s["name"] == name:
            for k, v in want.items():
                if s["attrs"].get(k) != v:
                    err("%s: %s is %r, want %r" % (role, k, s["attrs"].get(k), v))
            return role
    err("a span nobody made: %s kind %s %r" % (s["service"], s["kind"], s["name"]))
    return None


traces = defaultdict(dict)
for s in spans:
    role = role_of(s)
    if role is None:
        continue
    if role in traces[s["traceId"]]:
        err("trace %s has two %s spans" % (s["traceId"], role))
    traces[s["traceId"]][role] = s

complete = 0
sent = {h.split("-")[1]: h.split("-")[2] for h in headers}
with_header = 0
for tid, t in traces.items():
    if set(t) != set(ROLES):
        err("trace %s has %s, not the eight spans" % (tid, sorted(t)))
        continue
    complete += 1
    for child, parent in PARENT.items():
        if t[child].get("parentSpanId") != t[parent]["spanId"]:
            err("trace %s: %s's parent is %s, not %s's %s" % (
                tid, child, t[child].get("parentSpanId"), parent, t[parent]["spanId"]))
    if tid in sent:
        with_header += 1
        # curl sent the header: its span is the header's parent id, and A's parent
        if t["curl"]["spanId"] != sent[tid]:
            err("trace %s: curl's span is %s, the header said %s" % (tid, t["curl"]["spanId"], sent[tid]))
        if "parentSpanId" in t["curl"]:
            err("trace %s: curl's span has a parent" % tid)
    elif "parentSpanId" in t["curl"]:
        err("trace %s: curl's span has a parent" % tid)

if len(spans) != 8 * 2 * n:
    err("%d spans of the chain's services, want %d" % (len(spans), 16 * n))
if complete != 2 * n:
    err("%d complete traces, want %d" % (complete, 2 * n))
if with_header != n:
    err("%d traces with the traceIds sent, want %d" % (with_header, n))
if errors:
    print("\n".join(errors))
    sys.exit(1)
print("%d spans in %d traces, %d of them with the sent traceparent: every link right"
      % (len(spans), complete, with_header))
