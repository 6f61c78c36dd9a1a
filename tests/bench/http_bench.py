#!/usr/bin/env python3
"""make bench: what tracing costs nginx under wrk with keep-alive on loopback,
and what it costs the rest of the host.

Rounds interleave an untraced and a traced run (periscoped with every plugin
in the plugin directory, then with http alone) so that a noisy machine hurts
both alike. Each round also times dd with 1-byte blocks (a syscall-bound
process that does no networking) beside the daemon and without it: the tax
on the rest of the host. Prints the median of each figure and exits 1 when a
target is missed.

kernel.bpf_stats_enabled makes every BPF program run read the clock twice,
which is the measuring instrument's own cost: the throughput ratio and the
daemon's CPU come from a traced run without it, the BPF time per request
from a second wrk run against the same daemon with it.
"""
import json, os, resource, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

PERISCOPED = os.environ["PERISCOPED"]
BENCH_INSTANCE = "bench-http"
PLUGIN_DIR = os.environ["PLUGIN_DIR"]
FLOOR = os.environ.get("FLOOR")  # tests/bench/floor: the hooks alone, as a yardstick
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
DD_BLOCKS = int(os.environ.get("BENCH_DD_BLOCKS", "2000000"))
TARGETS = {"ratio": 0.88, "yardstick_gap": 0.03, "kernel_ns": 1000, "daemon_ns": 1000, "drops": 0,
           "rss_mib": 16, "host_tax": 1.02, "l7_growth": 1.05}
FLOOR_MODES = [(fam, mode) for fam in ("sys", "sock") for mode in ("empty", "copy", "ring")]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(work):
    port = free_port()
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {work}/body; proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi; uwsgi_temp_path {work}/uwsgi; scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "periscope bench\\n"; }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-c", conf, "-p", work, "-g", "daemon off;"])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("bench: nginx did not start")


def wrk(port):
    out = subprocess.run(["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         check=True).stdout
    requests = int(next(l for l in out.splitlines() if "requests in" in l).split()[0])
    rps = float(next(l for l in out.splitlines() if l.startswith("Requests/sec")).split()[1])
    return requests, rps


def bpf_prog_stats(pid):
    """run_time_ns and run_cnt of each BPF program the process holds, by program id."""
    progs = {}
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if "bpf-prog" not in os.readlink(os.path.join(fd_dir, fd)):
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(l.split(":", 1) for l in f if ":" in l)
        except OSError:
            continue
        progs[int(info["prog_id"])] = (int(info.get("run_time_ns", "0")),
                                       int(info.get("run_cnt", "0")))
    return progs


def prog_name(prog_id):
    """The program's name (bpftool), or its id when bpftool is missing."""
    try:
        out = subprocess.run(["bpftool", "prog", "show", "id", str(prog_id), "--json"],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)["name"]
    except (OSError, subprocess.CalledProcessError, ValueError, KeyError):
        return f"prog {prog_id}"


def per_request(before, after, requests):
    """{name: (ns per request, runs per request)} of the programs that ran."""
    out = {}
    for pid, (ns1, cnt1) in after.items():
        ns0, cnt0 = before.get(pid, (0, 0))
        if cnt1 > cnt0:
            out[prog_name(pid)] = ((ns1 - ns0) / requests, (cnt1 - cnt0) / requests)
    return out


def cpu_ns(pid):
    """CPU time of every thread, in ns (schedstat; /proc/PID/stat counts 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            total += int(f.read().split()[0])
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(l for l in f if l.startswith("VmRSS")).split()[1])


def last_value(text, name):
    block = text.rsplit("# periscope snapshot", 1)[-1]
    return sum(float(l.rsplit(" ", 1)[1]) for l in block.splitlines()
               if l.startswith(name + "{") or l.startswith(name + " "))


def set_bpf_stats(value):
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write(value)


def kernel_time(port, pid):
    """Per program of process pid: BPF time and runs per request, in a wrk run of its own."""
    set_bpf_stats("1")
    try:
        before = bpf_prog_stats(pid)
        requests, _ = wrk(port)
        return per_request(before, bpf_prog_stats(pid), requests)
    finally:
        set_bpf_stats("0")


def dd_seconds():
    """CPU seconds of dd copying DD_BLOCKS single bytes: two syscalls per byte, no network."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={DD_BLOCKS}"],
                   check=True, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def floor_round(port, fam, mode):
    """tests/bench/floor's programs alone: throughput and BPF time per request."""
    floor = subprocess.Popen([FLOOR, fam, mode], stdout=subprocess.PIPE, text=True)
    try:
        if floor.stdout.readline().strip() != "ready":
            raise SystemExit("bench: tests/bench/floor did not start")
        _, rps = wrk(port)
        progs = kernel_time(port, floor.pid)
    finally:
        floor.send_signal(signal.SIGTERM)
        floor.wait(timeout=30)
    return rps, sum(ns for ns, _ in progs.values())


def traced_round(port, work, plugin_dir, host_tax=False):
    conf = os.path.join(work, "periscope.yaml")
    with open(conf, "w") as f:
        f.write("daemon: { flush_interval: 1s }\nsinks: { stdout: { format: prometheus } }\n")
    out_path = os.path.join(work, "periscoped.out")
    with open(out_path, "w") as out, open(os.path.join(work, "periscoped.err"), "w") as err:
        # An instance of its own: the bench runs beside a default periscoped (one per
        # instance name) without touching it.
        daemon = subprocess.Popen([PERISCOPED, "-c", conf, "--plugin-dir", plugin_dir,
                                   "--instance", BENCH_INSTANCE],
                                  stdout=out, stderr=err)
    deadline = time.time() + 30
    while "running:" not in open(os.path.join(work, "periscoped.err")).read():
        if time.time() > deadline or daemon.poll() is not None:
            last = open(os.path.join(work, "periscoped.err")).read().strip().splitlines()[-1:]
            raise SystemExit("bench: periscoped did not start" + (": " + last[0] if last else ""))
        time.sleep(0.05)
    cpu0 = cpu_ns(daemon.pid)
    requests, rps = wrk(port)
    time.sleep(1.2)  # one more flush: the daemon's share of the work is done
    cpu1 = cpu_ns(daemon.pid)
    rss = rss_kib(daemon.pid)
    progs = kernel_time(port, daemon.pid)
    dd = dd_seconds() if host_tax else 0
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=30)
    text = open(out_path).read()
    return {
        "rps": rps,
        "kernel_ns": sum(ns for ns, _ in progs.values()),
        # The capture's programs alone: what the number of L7 plugins can change.
        "capture_ns": sum(ns for name, (ns, _) in progs.items() if name.startswith("ps_sc_")),
        "daemon_ns": (cpu1 - cpu0) / requests,
        "rss_mib": rss / 1024,
        "drops": last_value(text, "periscope_events_dropped_total"),
        "progs_runs_per_request": sum(runs for _, runs in progs.values()),
        "progs": progs,
        "dd_s": dd,
    }


def main():
    if os.geteuid() != 0:
        print("bench: needs root"); return 77
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            print(f"bench: {tool} is missing (apt-get install nginx-light wrk)"); return 77
    work = tempfile.mkdtemp(prefix="periscope-bench.")
    http_only = os.path.join(work, "http-only")  # the L7 row: http alone against every plugin
    os.mkdir(http_only, 0o755)
    shutil.copy(os.path.join(PLUGIN_DIR, "http.so"), http_only)
    stats_before = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    nginx, port = start_nginx(work)
    rows = []
    try:
        set_bpf_stats("0")
        wrk(port)  # warm up
        for i in range(ROUNDS):
            dd_base = dd_seconds()
            _, base = wrk(port)
            traced = traced_round(port, work, PLUGIN_DIR, host_tax=True)
            traced["ratio"] = traced["rps"] / base
            traced["base_rps"] = base
            traced["host_tax"] = traced["dd_s"] / dd_base
            alone = traced_round(port, work, http_only)
            traced["http_alone_capture_ns"] = alone["capture_ns"]
            traced["l7_growth"] = traced["capture_ns"] / alone["capture_ns"]
            if FLOOR:
                for fam, mode in FLOOR_MODES:
                    rps, ns = floor_round(port, fam, mode)
                    traced[f"floor_{fam}_{mode}_ratio"] = rps / base
                    traced[f"floor_{fam}_{mode}_ns"] = ns
            rows.append(traced)
            print(f"round {i + 1}: untraced {base:.0f} req/s, traced {traced['rps']:.0f} req/s "
                  f"(ratio {traced['ratio']:.3f}), kernel {traced['kernel_ns']:.0f} ns/req "
                  f"(capture {traced['capture_ns']:.0f}, with http alone {alone['capture_ns']:.0f}), daemon {traced['daemon_ns']:.0f} "
                  f"ns/req, rss {traced['rss_mib']:.1f} MiB, drops {traced['drops']:.0f}, "
                  f"dd {traced['host_tax']:.3f}x", flush=True)
    finally:
        set_bpf_stats(stats_before)
        nginx.terminate(); nginx.wait()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k != "progs"}
    checks = [("host tax (dd bs=1, traced/untraced)", med["host_tax"], "<=", TARGETS["host_tax"], "{:.3f}"),
              ("throughput ratio", med["ratio"], ">=", TARGETS["ratio"], "{:.3f}"),
              ("kernel BPF time per request (ns)", med["kernel_ns"], "<=", TARGETS["kernel_ns"], "{:.0f}"),
              ("daemon CPU per request (ns)", med["daemon_ns"], "<=", TARGETS["daemon_ns"], "{:.0f}"),
              ("daemon RSS (MiB)", med["rss_mib"], "<=", TARGETS["rss_mib"], "{:.1f}"),
              ("capture kernel time, every L7 plugin / http alone", med["l7_growth"], "<=", TARGETS["l7_growth"], "{:.3f}"),
              ("dropped events", max(r["drops"] for r in rows), "<=", TARGETS["drops"], "{:.0f}")]
    if FLOOR:
        gap = med["floor_sock_copy_ratio"] - med["ratio"]
        checks.insert(2, ("ratio below the copy-only yardstick", gap, "<=", TARGETS["yardstick_gap"], "{:.3f}"))
    print(f"\nmedian of {ROUNDS} rounds, wrk -t1 -c{CONNECTIONS} -d{SECONDS}s against nginx (1 worker):")
    missed = 0
    for name, value, op, target, fmt in checks:
        ok = value >= target if op == ">=" else value <= target
        missed += not ok
        print(f"  {name:34s} {fmt.format(value):>8s}   target {op} {target}   {'ok' if ok else 'MISSED'}")
    print(f"  (BPF program runs per request: {med['progs_runs_per_request']:.1f})")
    print(f"  (capture kernel time: {med['capture_ns']:.0f} ns/request with every plugin, "
          f"{med['http_alone_capture_ns']:.0f} with http alone)")
    if FLOOR:
        print("the yardstick, tests/bench/floor's programs alone on each hook family (no daemon):")
        for fam, where in (("sys", "syscall exits"), ("sock", "socket tracepoints")):
            for mode, what in (("empty", "return at once"), ("copy", "read 64 bytes, no record"),
                               ("ring", "read 64 bytes + one ring record")):
                print(f"  {where + ': ' + what:52s} ratio {med[f'floor_{fam}_{mode}_ratio']:.3f}, "
                      f"{med[f'floor_{fam}_{mode}_ns']:.0f} ns/request")
    print("where the kernel time goes (medians; bpf_stats' own clock reads included):")
    names = sorted({n for r in rows for n in r["progs"]})
    for name in names:
        ns = statistics.median(r["progs"].get(name, (0, 0))[0] for r in rows)
        runs = statistics.median(r["progs"].get(name, (0, 0))[1] for r in rows)
        if runs >= 0.01:
            print(f"  {name:34s} {ns:8.0f} ns/request  {runs:5.2f} runs/request  "
                  f"{ns / runs:6.0f} ns/run")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
