#!/usr/bin/python3
"""Kafka producer for make soak: confluent-kafka (librdkafka) sends 100-byte messages to one
partition (batched: linger 5 ms), RATE a second or, with RATE 0, as fast as the broker
acknowledges them, until SECONDS have passed, then waits for every acknowledgement.

  kafka_produce.py BOOTSTRAP TOPIC SECONDS [RATE]

Prints "sent N failed F": N messages acknowledged without error (the ground truth of
messaging_client_sent_messages_total{error_type=""}), F deliveries that failed.
"""
import sys
import time

from confluent_kafka import Producer

PAYLOAD = b"s" * 100


def main(bootstrap, topic, seconds, rate):
    counts = {"ok": 0, "failed": 0}

    def delivered(err, _msg):
        counts["failed" if err is not None else "ok"] += 1

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False,
                  "queue.buffering.max.messages": 100000})
    start = time.monotonic()
    deadline = start + seconds
    queued = 0
    while time.monotonic() < deadline:
        if rate:  # paced in steps of 1000: sleep until the schedule catches up
            ahead = start + queued / rate - time.monotonic()
            if ahead > 0:
                p.poll(ahead)
                continue
        queued += 1000
        for _ in range(1000):
            try:
                p.produce(topic, value=PAYLOAD, partition=0, on_delivery=delivered)
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    if p.flush(120):
        raise SystemExit("kafka_produce: messages still unacknowledged after 120 s")
    print("sent %d failed %d" % (counts["ok"], counts["failed"]), flush=True)
    time.sleep(1)  # periscoped names a process from /proc: it must still live at the flush


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) == 5 else 0)
