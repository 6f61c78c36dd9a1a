#!/usr/bin/env python3
"""Checks the event-loop part of tracectx.sh: pstest-tc-loop (asyncio, one thread).

  check_loop.py STDOUT SERIAL CONCURRENT

SERIAL requests came one at a time: each is one trace, curl -> loop server -> loop's
client call -> the backend's server span. CONCURRENT requests came two at a time: the
loop's server spans overlap on its one thread, so its client calls have no parent (and
start their own trace with the backend's span); curl -> loop server still joins.
"""
import json
import sys
from collections import defaultdict

out, serial, concurrent = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
SERVICES = {"pstest-tc-curld": "curl", "pstest-tc-loop": None, "pstest-tc-e": "e"}
errors = []
spans = []
for line in open(out, encoding="utf-8"):
    if not line.startswith('{"resourceSpans"'):
        continue
    for rs in json.loads(line)["resourceSpans"]:
        svc = {a["key"]: a["value"].get("stringValue") for a in rs["resource"]["attributes"]}
        if svc.get("service.name") not in SERVICES:
            continue
        for ss in rs["scopeSpans"]:
            for s in ss["spans"]:
                s["service"] = svc["service.name"]
                spans.append(s)


def role(s):
    if s["service"] == "pstest-tc-loop":
        return "loop" if s["kind"] == 2 else "loop->e"
    return SERVICES[s["service"]]


traces = defaultdict(dict)
for s in spans:
    traces[s["traceId"]].setdefault(role(s), []).append(s)

shapes = defaultdict(int)
for tid, t in traces.items():
    shape = tuple(sorted((r, len(v)) for r, v in t.items()))
    shapes[shape] += 1
    one = {r: v[0] for r, v in t.items()}
    links = {"loop": "curl", "loop->e": "loop", "e": "loop->e"}
    for child, parent in links.items():
        if child in one and parent in one and one[child].get("parentSpanId") != one[parent]["spanId"]:
            err = "trace %s: %s is not %s's child" % (tid, child, parent)
            errors.append(err)
    root = [r for r in one if "parentSpanId" not in one[r]]
    if len(root) != 1:
        errors.append("trace %s: roots %s" % (tid, root))

full = (("curl", 1), ("e", 1), ("loop", 1), ("loop->e", 1))
front = (("curl", 1), ("loop", 1))
back = (("e", 1), ("loop->e", 1))
want = {full: serial, front: concurrent, back: concurrent}
if dict(shapes) != want:
    errors.append("traces by shape %s, want %s" % (dict(shapes), want))
if errors:
    print("\n".join(errors[:20]))
    sys.exit(1)
print("event loop: %d serial requests joined whole, %d concurrent ones left unjoined at the loop"
      % (serial, concurrent))
