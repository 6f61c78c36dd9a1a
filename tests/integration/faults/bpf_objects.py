#!/usr/bin/python3
"""BPF programs, maps and links of the host, for faults.sh's leak checks (bpftool + /proc).

  bpf_objects.py mark           the highest prog, map and link ids now, as "P M L"
  bpf_objects.py leaked P M L   objects created after the mark that nothing holds any more:
                                no process has an fd on them, no held link or program uses
                                them. Prints them and exits 1 if there are any. Ids are never
                                reused, so other tests' objects (held by their processes)
                                never count; freeing is deferred (RCU), so it looks again for
                                up to 3 s before it reports.
  bpf_objects.py entries PID    entries of each hash map PID holds (directly or through its
                                programs), as "name:id count" lines
  bpf_objects.py drops PID PROG the kernel's drop counter (ps_drops, summed over CPUs) of the
                                BPF object whose program PROG process PID holds
"""
import glob
import json
import subprocess
import sys
import time


def show(kind):
    out = subprocess.run(["bpftool", "-j", kind, "show"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out or "[]")


def fd_refs():
    """prog_id, map_id and link_id of every BPF fd any process holds."""
    refs = {"prog": set(), "map": set(), "link": set()}
    for path in glob.glob("/proc/[0-9]*/fdinfo/*"):
        try:
            with open(path) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    kind = key.strip()[:-3] if key.strip().endswith("_id") else None
                    if kind in refs:
                        refs[kind].add(int(value))
        except (OSError, ValueError):
            continue  # gone meanwhile
    return refs


def snapshot():
    return {kind: show(kind) for kind in ("prog", "map", "link")}


def unheld(objs, marks):
    refs = fd_refs()
    held_links = [l for l in objs["link"] if l["id"] in refs["link"]]
    held_progs = refs["prog"] | {l.get("prog_id") for l in held_links}
    held_maps = set(refs["map"])
    for p in objs["prog"]:
        if p["id"] in held_progs:
            held_maps.update(p.get("map_ids", []))
    found = []
    for kind, held in (("prog", held_progs), ("map", held_maps), ("link", refs["link"])):
        for o in objs[kind]:
            if o["id"] > marks[kind] and o["id"] not in held:
                found.append("%s %d %s" % (kind, o["id"], o.get("name", o.get("type", ""))))
    return found


def drops(pid, prog_name):
    """Sum of the ps_drops map next to program prog_name, which pid holds."""
    refs = set()
    for path in glob.glob("/proc/%d/fdinfo/*" % pid):
        try:
            with open(path) as f:
                refs.update(int(l.split(":")[1]) for l in f if l.startswith("prog_id:"))
        except OSError:
            continue
    maps = {m["id"]: m for m in show("map")}
    for p in show("prog"):
        if p["id"] in refs and p.get("name") == prog_name:
            for mid in p.get("map_ids", []):
                if maps.get(mid, {}).get("name") == "ps_drops":
                    out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(mid)],
                                         capture_output=True, text=True, check=True).stdout
                    return sum(v["value"] for e in json.loads(out)
                               for v in e["formatted"]["values"])
    return None


HASHES = ("hash", "lru_hash", "percpu_hash", "lru_percpu_hash")


def entries(pid):
    """{"name:id": entries} of the hash maps pid holds, directly or through its programs."""
    progs, mapids = set(), set()
    for path in glob.glob("/proc/%d/fdinfo/*" % pid):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("prog_id:"):
                        progs.add(int(line.split(":")[1]))
                    elif line.startswith("map_id:"):
                        mapids.add(int(line.split(":")[1]))
        except OSError:
            continue
    for p in show("prog"):
        if p["id"] in progs:
            mapids.update(p.get("map_ids", []))
    counts = {}
    for m in show("map"):
        if m["id"] in mapids and m["type"] in HASHES:
            out = subprocess.run(["bpftool", "-j", "map", "dump", "id", str(m["id"])],
                                 capture_output=True, text=True).stdout
            try:
                counts["%s:%d" % (m.get("name", "?"), m["id"])] = len(json.loads(out or "[]"))
            except ValueError:
                continue
    return counts


def main():
    if sys.argv[1:2] == ["entries"] and len(sys.argv) == 3:
        for name, n in sorted(entries(int(sys.argv[2])).items()):
            print(name, n)
        return 0
    if sys.argv[1:2] == ["drops"] and len(sys.argv) == 4:
        n = drops(int(sys.argv[2]), sys.argv[3])
        if n is None:
            print("no ps_drops map beside %s in pid %s" % (sys.argv[3], sys.argv[2]),
                  file=sys.stderr)
            return 1
        print(n)
        return 0
    if sys.argv[1:2] == ["mark"]:
        objs = snapshot()
        print(" ".join(str(max([o["id"] for o in objs[k]], default=0))
                       for k in ("prog", "map", "link")))
        return 0
    if sys.argv[1:2] == ["leaked"] and len(sys.argv) == 5:
        marks = dict(zip(("prog", "map", "link"), (int(a) for a in sys.argv[2:5])))
        for _ in range(30):
            found = unheld(snapshot(), marks)
            if not found:
                return 0
            time.sleep(0.1)
        print("\n".join(found))
        return 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
