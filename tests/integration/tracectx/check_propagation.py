#!/usr/bin/env python3
"""`check_propagation.py SPANS HEADS_B N A_SERVICE B_SERVICE B_PORT`: with propagation
on, B received N requests, each with exactly one traceparent, and periscope's spans
(OTLP/JSON lines from the stdout sink) join them: per request, A's server span, A's
client span to B and B's server span share one traceId; A's client span is the child
of A's server span, B's server span the child of A's client span, and the traceparent
B received carries A's client span's ids."""
import json, re, sys

spans_path, heads_path, n, svc_a, svc_b, b_port = sys.argv[1:7]
n = int(n)
TP = re.compile(r"^traceparent: 00-([0-9a-f]{32})-([0-9a-f]{16})-01\r$", re.M | re.I)


def fail(msg):
    sys.exit(f"FAIL: {msg}")


spans = []
with open(spans_path) as f:
    for line in f:
        if not line.startswith('{"resourceSpans"'):
            continue
        for rs in json.loads(line)["resourceSpans"]:
            svc = next(a["value"]["stringValue"] for a in rs["resource"]["attributes"]
                       if a["key"] == "service.name")
            for ss in rs["scopeSpans"]:
                for s in ss["spans"]:
                    s["service"] = svc
                    s["attrs"] = {a["key"]: list(a["value"].values())[0]
                                  for a in s.get("attributes", [])}
                    spans.append(s)

received = []
with open(heads_path) as f:
    for line in f:
        head = json.loads(line)
        found = TP.findall(head)
        if len(found) != 1:
            fail(f"B received {len(found)} traceparent headers in {head!r}")
        received.append(found[0])
if len(received) != n:
    fail(f"B received {len(received)} requests, not {n}")

a_server = [s for s in spans if s["service"] == svc_a and s["kind"] == 2]
a_client = [s for s in spans if s["service"] == svc_a and s["kind"] == 3
            and str(s["attrs"].get("server.port")) == b_port]
b_server = [s for s in spans if s["service"] == svc_b and s["kind"] == 2]
for name, got in (("A server", a_server), ("A client", a_client), ("B server", b_server)):
    if len(got) != n:
        fail(f"{len(got)} {name} spans, not {n}")

by_id = {s["spanId"]: s for s in spans}
for trace_id, parent_id in received:
    client = by_id.get(parent_id)
    if not client or client not in a_client:
        fail(f"the traceparent B received names span {parent_id}, not one of A's client spans")
    if client["traceId"] != trace_id:
        fail(f"A's client span {parent_id} is in trace {client['traceId']}, B was told {trace_id}")
    server_a = by_id.get(client.get("parentSpanId", ""))
    if not server_a or server_a not in a_server or server_a["traceId"] != trace_id:
        fail(f"A's client span {parent_id} is not the child of an A server span of its trace")
    server_b = [s for s in b_server if s.get("parentSpanId") == parent_id]
    if len(server_b) != 1 or server_b[0]["traceId"] != trace_id:
        fail(f"B's server span for {parent_id} is missing or not in trace {trace_id}")
print(f"propagation: {n} requests, each A server -> A client -> B server in one trace, "
      f"B saw the injected ids")
