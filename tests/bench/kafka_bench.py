#!/usr/bin/env python3
"""make bench-kafka: what the kafka plugin costs a producer and a consumer.

librdkafka's mock cluster (tests/integration/kafka/kafka_mock_broker: the real wire
protocol on loopback) and confluent-kafka (librdkafka) clients: a producer sends
BENCH_KAFKA_MESSAGES messages of 100 bytes as fast as it can (batched: linger 5 ms),
then a consumer reads them back (what the mock's bounded log still holds of them). Rounds interleave an untraced run and a traced one
(periscoped with the kafka plugin alone, following the broker's port), each on topics of
its own. Per traced run: messages per second produced and consumed against the untraced
run (the ratios), the daemon's CPU per message, its RSS, and, from a second run against
the same daemon with kernel.bpf_stats_enabled, the BPF programs' time per message (sent
once and consumed once, client and broker both traced).

The figures are reported, not judged. What is judged: periscoped counted every message
sent and consumed exactly (messaging_client_sent_messages_total and
messaging_client_consumed_messages_total of the two clients), nothing was dropped. Exits
1 otherwise.

  kafka_bench.py load produce|consume BOOTSTRAP TOPIC COUNT   (the clients, run as copies)
"""
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

PAYLOAD = b"b" * 100


def load(what, bootstrap, topic, count):
    """One client: prints "COUNT SECONDS" once every message is acknowledged or read."""
    if what == "produce":
        from confluent_kafka import Producer

        failed = []
        p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False,
                      "queue.buffering.max.messages": 1000000})
        t0 = time.monotonic()
        for i in range(count):
            while True:
                try:
                    p.produce(topic, value=PAYLOAD, partition=0,
                              on_delivery=lambda err, _: err and failed.append(err))
                    break
                except BufferError:
                    p.poll(0.01)
        if p.flush(60) or failed:
            raise SystemExit(f"produce: {len(failed)} failed or not acknowledged")
        print(count, time.monotonic() - t0, flush=True)
    else:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "psbench-unused",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest",
                      "max.partition.fetch.bytes": 65536})
        # The mock cluster keeps a bounded log: what is left of the topic is what is read.
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        if high != count:
            raise SystemExit(f"consume: the topic holds offsets up to {high}, not {count}")
        count = high - low
        t0 = time.monotonic()
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        # Timed from the assignment to the last message: the fetches (64 KiB each, so
        # that there are many) are what the consumer waits for, whatever it prefetches.
        got, deadline = 0, time.monotonic() + 120
        while got < count and time.monotonic() < deadline:
            for m in c.consume(10000, timeout=0.5):
                if m.error() is None:
                    got += 1
        elapsed = time.monotonic() - t0
        c.close()
        if got != count:
            raise SystemExit(f"consume: {got} of {count} messages")
        print(got, elapsed, flush=True)
    time.sleep(1)  # periscoped names a process from /proc: it must still live at the flush


if len(sys.argv) > 1 and sys.argv[1] == "load":
    load(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    sys.exit(0)

from http_bench import (bpf_prog_stats, cpu_ns, free_port, last_value, per_request, rss_kib,
                        set_bpf_stats)

PERISCOPED = os.environ["PERISCOPED"]
PLUGIN_DIR = os.environ["PLUGIN_DIR"]
BROKER = os.environ.get("KAFKA_BROKER", "")
PYTHON = os.environ.get("BENCH_PYTHON", "/usr/bin/python3")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
MESSAGES = int(os.environ.get("BENCH_KAFKA_MESSAGES", "200000"))


def client(bindir, name, what, bootstrap, topic, count):
    out = subprocess.run([os.path.join(bindir, name), os.path.abspath(__file__), "load", what,
                          bootstrap, topic, str(count)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"bench-kafka: {name} failed: {out.stderr.strip()[-300:]}")
    got, seconds = out.stdout.split()
    return int(got), int(got) / float(seconds)


def run(bindir, bootstrap, topic, count):
    """Produce count messages, consume them back (what the mock's log still holds of them):
    messages per second of each, and the messages consumed."""
    _, produced = client(bindir, "psbench-rdprod", "produce", bootstrap, topic, count)
    got, consumed = client(bindir, "psbench-rdcons", "consume", bootstrap, topic, count)
    return produced, consumed, got


def traced_round(work, bindir, plugins, port, bootstrap, topics):
    conf = os.path.join(work, "periscope.yaml")
    with open(conf, "w") as f:
        f.write(f"""daemon: {{ flush_interval: 1s }}
plugins:
  kafka: {{ ports: [{port}] }}
services:
  - {{ match: {{ exe: {bindir}/psbench-rdprod }}, name: psbench-rdprod }}
  - {{ match: {{ exe: {bindir}/psbench-rdcons }}, name: psbench-rdcons }}
  - {{ match: {{ exe: {bindir}/psbench-kbroker }}, name: psbench-kbroker }}
sinks: {{ stdout: {{ format: prometheus }} }}
""")
    out_path, err_path = os.path.join(work, "periscoped.out"), os.path.join(work, "periscoped.err")
    with open(out_path, "w") as out, open(err_path, "w") as err:
        daemon = subprocess.Popen([PERISCOPED, "-c", conf, "--plugin-dir", plugins,
                                   "--instance", f"bench-kafka-{os.getpid()}"],
                                  stdout=out, stderr=err)
    deadline = time.time() + 30
    while "running:" not in open(err_path).read():
        if time.time() > deadline or daemon.poll() is not None:
            raise SystemExit("bench-kafka: periscoped did not start: " + open(err_path).read())
        time.sleep(0.05)
    time.sleep(1)  # its start-up (the processes it reads, the programs it loads) is done
    cpu0 = cpu_ns(daemon.pid)
    produced, consumed, got = run(bindir, bootstrap, topics[0], MESSAGES)
    time.sleep(1.2)  # one more flush: the daemon's share of the work is done
    cpu1 = cpu_ns(daemon.pid)
    rss = rss_kib(daemon.pid)
    second = max(1, MESSAGES // 2)
    set_bpf_stats("1")
    try:
        before = bpf_prog_stats(daemon.pid)
        _, _, got2 = run(bindir, bootstrap, topics[1], second)
        progs = per_request(before, bpf_prog_stats(daemon.pid), second)
    finally:
        set_bpf_stats("0")
    time.sleep(1.2)
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=30)
    text = open(out_path).read()
    block = text.rsplit("# periscope snapshot", 1)[-1]

    def count(metric, service, *labels):
        return sum(float(l.rsplit(" ", 1)[1]) for l in block.splitlines()
                   if l.startswith(metric + "{") and f'service_name="{service}"' in l
                   and all(x in l for x in labels))

    return {
        "produced": produced,
        "consumed": consumed,
        "kernel_ns": sum(ns for ns, _ in progs.values()),
        "daemon_ns": (cpu1 - cpu0) / MESSAGES,
        "rss_mib": rss / 1024,
        "drops": last_value(text, "periscope_events_dropped_total"),
        "messages": MESSAGES + second,
        "got": got + got2,
        "sent_seen": count("messaging_client_sent_messages_total", "psbench-rdprod",
                           'error_type=""'),
        "consumed_seen": count("messaging_client_consumed_messages_total", "psbench-rdcons"),
        "progs": progs,
    }


def main():
    if os.geteuid() != 0:
        print("bench-kafka: needs root")
        return 77
    if not (os.path.isfile(BROKER) and os.access(BROKER, os.X_OK)):
        print(f"bench-kafka: no mock broker ({BROKER or 'KAFKA_BROKER unset'}; librdkafka-dev)")
        return 77
    if subprocess.run([PYTHON, "-c", "import confluent_kafka"]).returncode:
        print("bench-kafka: needs python3-confluent-kafka")
        return 77
    work = tempfile.mkdtemp(prefix="periscope-bench-kafka.")
    os.chmod(work, 0o755)
    bindir, plugins = os.path.join(work, "bin"), os.path.join(work, "plugins")
    os.mkdir(bindir)
    os.mkdir(plugins, 0o755)
    shutil.copy(BROKER, os.path.join(bindir, "psbench-kbroker"))
    for name in ("psbench-rdprod", "psbench-rdcons"):
        shutil.copy(os.path.realpath(PYTHON), os.path.join(bindir, name))
    shutil.copy(os.path.join(PLUGIN_DIR, "kafka.so"), plugins)
    port = free_port()
    topics = [f"psbench-{i}" for i in range(3 * ROUNDS + 1)]
    broker = subprocess.Popen([os.path.join(bindir, "psbench-kbroker"), str(port)] +
                              [f"{t}:1" for t in topics], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stats_before = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    rows, failed = [], 0
    try:
        ready = broker.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise SystemExit("bench-kafka: the mock broker did not start")
        bootstrap = ready[1]
        set_bpf_stats("0")
        run(bindir, bootstrap, topics[-1], max(1, MESSAGES // 10))  # warm up
        for i in range(ROUNDS):
            base_p, base_c, _ = run(bindir, bootstrap, topics[3 * i], MESSAGES)
            r = traced_round(work, bindir, plugins, port, bootstrap, topics[3 * i + 1:3 * i + 3])
            r["produce_ratio"], r["consume_ratio"] = r["produced"] / base_p, r["consumed"] / base_c
            rows.append(r)
            exact = r["sent_seen"] == r["messages"] and r["consumed_seen"] == r["got"]
            failed += not exact or r["drops"] > 0
            print(f"round {i + 1}: produce {base_p:.0f} -> {r['produced']:.0f} msg/s (ratio "
                  f"{r['produce_ratio']:.3f}), consume {base_c:.0f} -> {r['consumed']:.0f} msg/s "
                  f"(ratio {r['consume_ratio']:.3f}), kernel {r['kernel_ns']:.0f} ns/message, "
                  f"daemon {r['daemon_ns']:.0f} ns/message, rss {r['rss_mib']:.1f} MiB; "
                  f"{r['messages']} sent, {r['got']} consumed; periscope sent {r['sent_seen']:.0f} consumed "
                  f"{r['consumed_seen']:.0f} ({'exact' if exact else 'NOT EXACT'}), drops "
                  f"{r['drops']:.0f}", flush=True)
    finally:
        set_bpf_stats(stats_before)
        broker.stdin.close()
        broker.terminate()
        broker.wait()
        shutil.rmtree(work, ignore_errors=True)

    med = {k: statistics.median(r[k] for r in rows)
           for k in ("produce_ratio", "consume_ratio", "kernel_ns", "daemon_ns", "rss_mib")}
    print(f"\nmedian of {ROUNDS} rounds, confluent-kafka producing then consuming {MESSAGES} "
          "messages of 100 bytes, librdkafka's mock cluster on loopback (reported, not judged):")
    print(f"  produce throughput ratio (traced / untraced)  {med['produce_ratio']:.3f}")
    print(f"  consume throughput ratio (traced / untraced)  {med['consume_ratio']:.3f}")
    print(f"  kernel BPF time per message (ns)              {med['kernel_ns']:.0f}")
    print(f"  daemon CPU per message (ns)                   {med['daemon_ns']:.0f}")
    print(f"  daemon RSS (MiB)                              {med['rss_mib']:.1f}")
    print("where the kernel time goes (medians; bpf_stats' own clock reads included):")
    for name in sorted({n for r in rows for n in r["progs"]}):
        ns = statistics.median(r["progs"].get(name, (0, 0))[0] for r in rows)
        runs = statistics.median(r["progs"].get(name, (0, 0))[1] for r in rows)
        if runs >= 0.001:
            print(f"  {name:34s} {ns:8.0f} ns/message  {runs:6.3f} runs/message")
    print("every message counted once sent and once consumed, nothing dropped: "
          + ("yes" if not failed else f"NO, in {failed} round(s)"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
