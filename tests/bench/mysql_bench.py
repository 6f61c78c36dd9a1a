#!/usr/bin/env python3
"""make bench-mysql: what the mysql plugin costs MariaDB under sysbench point selects.

A MariaDB of its own (mariadb-install-db into a temporary directory, a loopback port)
and `sysbench oltp_point_select` over BENCH_MYSQL_THREADS connections (prepared
statements: one COM_STMT_EXECUTE and its result per query). Rounds interleave an
untraced run and a traced one (periscoped with the mysql plugin alone, following the
port), so that a noisy machine hurts both alike. Per traced run: the throughput ratio
(traced / untraced queries per second), the daemon's CPU per query, its RSS, and, from
a second sysbench run against the same daemon with kernel.bpf_stats_enabled, the BPF
programs' time per query (both ends, client and server, are traced: that is the cost
of one query seen twice).

The figures are reported, not judged. What is judged: every query sysbench counted is
in periscoped's series exactly once per view (client: psbench-sysbench, server:
psbench-mariadbd), nothing was dropped, nothing failed to decode. Exits 1 otherwise.
"""
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from http_bench import (bpf_prog_stats, cpu_ns, free_port, last_value, per_request, rss_kib,
                        set_bpf_stats)

PERISCOPED = os.environ["PERISCOPED"]
PLUGIN_DIR = os.environ["PLUGIN_DIR"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
THREADS = int(os.environ.get("BENCH_MYSQL_THREADS", "16"))
TABLE_SIZE = int(os.environ.get("BENCH_MYSQL_TABLE_SIZE", "10000"))


def start_mariadb(work, bindir):
    port = free_port()
    data = os.path.join(work, "data")
    log = os.path.join(work, "install.log")
    with open(log, "w") as f:
        subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                        "--skip-test-db", "--auth-root-authentication-method=socket"],
                       stdout=f, stderr=subprocess.STDOUT, check=True)
    sock = os.path.join(work, "mysqld.sock")
    proc = subprocess.Popen([os.path.join(bindir, "psbench-mariadbd"), "--no-defaults",
                             "--basedir=/usr", f"--datadir={data}", "--user=root",
                             f"--port={port}", "--bind-address=127.0.0.1", f"--socket={sock}",
                             f"--pid-file={work}/mysqld.pid", f"--log-error={work}/mysqld.err",
                             "--skip-log-bin", "--innodb-buffer-pool-size=64M",
                             f"--max-connections={THREADS + 20}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise SystemExit("bench-mysql: mariadbd did not start")
    subprocess.run(["mariadb", "--no-defaults", "-S", sock, "-uroot", "-e",
                    "CREATE DATABASE bench; CREATE USER 'bench'@'127.0.0.1' IDENTIFIED BY 'pw';"
                    " GRANT ALL ON bench.* TO 'bench'@'127.0.0.1';"], check=True)
    return proc, port


def sysbench(bindir, port, command, seconds=0):
    argv = [os.path.join(bindir, "psbench-sysbench"), "oltp_point_select", "--db-driver=mysql",
            "--mysql-host=127.0.0.1", f"--mysql-port={port}", "--mysql-user=bench",
            "--mysql-password=pw", "--mysql-db=bench", "--mysql-ssl=off", "--tables=1",
            f"--table-size={TABLE_SIZE}", f"--threads={THREADS}"]
    if command == "run":
        argv += [f"--time={seconds}", "--events=0"]
    out = subprocess.run(argv + [command], capture_output=True, text=True, check=True).stdout
    if command != "run":
        return None
    lines = out.splitlines()
    reads = int(next(l for l in lines if l.strip().startswith("read:")).split()[1])
    qps = float(next(l for l in lines if l.strip().startswith("queries:")).split("(")[1].split()[0])
    errors = int(next(l for l in lines if "ignored errors:" in l).split()[2])
    if errors:
        raise SystemExit(f"bench-mysql: sysbench had {errors} errors")
    return reads, qps


def traced_round(work, bindir, plugins, port):
    conf = os.path.join(work, "periscope.yaml")
    with open(conf, "w") as f:
        f.write(f"""daemon: {{ flush_interval: 1s }}
plugins:
  mysql: {{ ports: [{port}] }}
services:
  - {{ match: {{ exe: {bindir}/psbench-sysbench }}, name: psbench-sysbench }}
  - {{ match: {{ exe: {bindir}/psbench-mariadbd }}, name: psbench-mariadbd }}
sinks: {{ stdout: {{ format: prometheus }} }}
""")
    out_path, err_path = os.path.join(work, "periscoped.out"), os.path.join(work, "periscoped.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        daemon = subprocess.Popen([PERISCOPED, "-c", conf, "--plugin-dir", plugins,
                                   "--instance", f"bench-mysql-{os.getpid()}"],
                                  stdout=out, stderr=err)
    deadline = time.time() + 30
    while "running:" not in open(err_path).read():
        if time.time() > deadline or daemon.poll() is not None:
            raise SystemExit("bench-mysql: periscoped did not start: " + open(err_path).read())
        time.sleep(0.05)
    time.sleep(1)  # its start-up (the processes it reads, the programs it loads) is done
    cpu0 = cpu_ns(daemon.pid)
    reads, qps = sysbench(bindir, port, "run", SECONDS)
    time.sleep(1.2)  # one more flush: the daemon's share of the work is done
    cpu1 = cpu_ns(daemon.pid)
    rss = rss_kib(daemon.pid)
    set_bpf_stats("1")
    try:
        before = bpf_prog_stats(daemon.pid)
        reads2, _ = sysbench(bindir, port, "run", max(1, SECONDS // 2))
        progs = per_request(before, bpf_prog_stats(daemon.pid), reads2)
    finally:
        set_bpf_stats("0")
    time.sleep(1.2)  # the last exchanges reach a flush before the final one
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=30)
    text = open(out_path).read()
    block = text.rsplit("# periscope snapshot", 1)[-1]

    def count(metric, service):
        return sum(float(l.rsplit(" ", 1)[1]) for l in block.splitlines()
                   if l.startswith(metric + "_count{") and f'service_name="{service}"' in l
                   and 'db_operation_name="SELECT"' in l and 'db_collection_name="sbtest1"' in l
                   and 'db_response_status_code=""' in l)

    return {
        "qps": qps,
        "kernel_ns": sum(ns for ns, _ in progs.values()),
        "daemon_ns": (cpu1 - cpu0) / reads,
        "rss_mib": rss / 1024,
        "drops": last_value(text, "periscope_events_dropped_total"),
        "decode_errors": last_value(text, "periscope_decode_errors_total"),
        "queries": reads + reads2,
        "client_seen": count("db_client_operation_duration_seconds", "psbench-sysbench"),
        "server_seen": count("db_server_operation_duration_seconds", "psbench-mariadbd"),
        "progs": progs,
    }


def main():
    if os.geteuid() != 0:
        print("bench-mysql: needs root")
        return 77
    for tool in ("mariadbd", "mariadb-install-db", "mariadb", "sysbench"):
        if not shutil.which(tool):
            print(f"bench-mysql: {tool} is missing (apt-get install mariadb-server sysbench)")
            return 77
    work = tempfile.mkdtemp(prefix="periscope-bench-mysql.")
    os.chmod(work, 0o755)
    bindir, plugins = os.path.join(work, "bin"), os.path.join(work, "plugins")
    os.mkdir(bindir)
    os.mkdir(plugins, 0o755)
    shutil.copy(shutil.which("mariadbd"), os.path.join(bindir, "psbench-mariadbd"))
    shutil.copy(shutil.which("sysbench"), os.path.join(bindir, "psbench-sysbench"))
    shutil.copy(os.path.join(PLUGIN_DIR, "mysql.so"), plugins)
    stats_before = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    server, port = start_mariadb(work, bindir)
    rows, failed = [], 0
    try:
        set_bpf_stats("0")
        sysbench(bindir, port, "prepare")
        sysbench(bindir, port, "run", 1)  # warm up: the buffer pool holds the table
        for i in range(ROUNDS):
            _, base = sysbench(bindir, port, "run", SECONDS)
            r = traced_round(work, bindir, plugins, port)
            r["ratio"] = r["qps"] / base
            rows.append(r)
            exact = r["client_seen"] == r["queries"] == r["server_seen"]
            failed += not exact or r["drops"] > 0 or r["decode_errors"] > 0
            print(f"round {i + 1}: untraced {base:.0f} q/s, traced {r['qps']:.0f} q/s "
                  f"(ratio {r['ratio']:.3f}), kernel {r['kernel_ns']:.0f} ns/query, daemon "
                  f"{r['daemon_ns']:.0f} ns/query, rss {r['rss_mib']:.1f} MiB; sysbench "
                  f"{r['queries']} selects, periscope client {r['client_seen']:.0f} server "
                  f"{r['server_seen']:.0f} ({'exact' if exact else 'NOT EXACT'}), drops "
                  f"{r['drops']:.0f}, decode errors {r['decode_errors']:.0f}", flush=True)
    finally:
        set_bpf_stats(stats_before)
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(r[k] for r in rows) for k in ("ratio", "kernel_ns", "daemon_ns",
                                                             "rss_mib")}
    print(f"\nmedian of {ROUNDS} rounds, sysbench oltp_point_select, {THREADS} connections, "
          f"{SECONDS}s, MariaDB on loopback (reported, not judged):")
    print(f"  throughput ratio (traced / untraced)  {med['ratio']:.3f}")
    print(f"  kernel BPF time per query (ns)        {med['kernel_ns']:.0f}")
    print(f"  daemon CPU per query (ns)             {med['daemon_ns']:.0f}")
    print(f"  daemon RSS (MiB)                      {med['rss_mib']:.1f}")
    print("where the kernel time goes (medians; bpf_stats' own clock reads included):")
    for name in sorted({n for r in rows for n in r["progs"]}):
        ns = statistics.median(r["progs"].get(name, (0, 0))[0] for r in rows)
        runs = statistics.median(r["progs"].get(name, (0, 0))[1] for r in rows)
        if runs >= 0.01:
            print(f"  {name:34s} {ns:8.0f} ns/query  {runs:5.2f} runs/query")
    print("every query counted once per view, nothing dropped or undecoded: "
          + ("yes" if not failed else f"NO, in {failed} round(s)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
