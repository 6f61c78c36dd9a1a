#!/usr/bin/python3
"""Kafka clients for the kafka plugin's tests, each printing its own exact counts.

  client.py produce LIB BOOTSTRAP TOPIC COUNT MODE [PER_REQUEST]
      LIB: kafka-python | confluent. MODE sync: one message per request, each send
      waits for its acknowledgement; batch: PER_REQUEST messages per request (linger,
      then flush); spread: batches of PER_REQUEST messages, to partitions in turn
      (confluent: many requests in flight; kafka-python: every partition's batch in
      one request). Prints "sent N"; confluent adds "requests R", the Produce requests
      librdkafka's statistics say it sent.
  client.py consume LIB BOOTSTRAP TOPIC COUNT [GROUP]
      Reads COUNT messages of every partition of TOPIC from the beginning, in GROUP
      (a consumer group: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, commits)
      or without one (assigned partitions). Prints "consumed N".
  client.py stall BOOTSTRAP TOPIC PARTITION STOP_AFTER GROUP
      confluent-kafka in GROUP, from offset 0: reads STOP_AFTER messages of one partition,
      pauses it, prints "lag L delivered D" from librdkafka's own statistics (D: rxmsgs,
      the messages fetched from the broker; L: hi_offset - D, the high watermark minus the
      next offset a fetch asked for on the wire), then holds its connections open until
      stdin closes. librdkafka rewinds next_offset to the application's position when
      paused, which no fetch on the wire ever shows: hence rxmsgs.

Every command lingers a second before it exits: periscoped names a process from /proc,
which it can only read while the process lives.

Payloads carry a marker (PAYLOAD_MARK) that must never show in periscoped's output.
"""
import json
import sys
import time

PAYLOAD_MARK = "pstest-secret-payload"


def payload(i):
    return ("%s-%06d" % (PAYLOAD_MARK, i)).encode()


def key(i):
    return ("pstest-secret-key-%d" % i).encode()


def produce_kafka_python(bootstrap, topic, count, mode, per_request):
    from kafka import KafkaProducer

    if mode == "sync":
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0, retries=10,
                          retry_backoff_ms=50, api_version_auto_timeout_ms=10000)
        for i in range(count):
            p.send(topic, value=payload(i), key=key(i), partition=0).get(timeout=30)
    elif mode == "spread":
        # Every partition's batch in one Produce request, written a big send() at a time.
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=200, retries=10,
                          batch_size=1 << 20, api_version_auto_timeout_ms=10000)
        parts = sorted(p.partitions_for(topic))
        for start in range(0, count, per_request * len(parts)):
            futs = [p.send(topic, value=payload(i), key=key(i),
                           partition=parts[(i // per_request) % len(parts)])
                    for i in range(start, min(count, start + per_request * len(parts)))]
            p.flush(timeout=30)
            for f in futs:
                f.get(timeout=30)
    else:
        p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=60000, retries=10,
                          batch_size=1 << 20, api_version_auto_timeout_ms=10000)
        for start in range(0, count, per_request):
            futs = [p.send(topic, value=payload(i), key=key(i), partition=0)
                    for i in range(start, min(count, start + per_request))]
            p.flush(timeout=30)
            for f in futs:
                f.get(timeout=30)
    p.close(timeout=10)


def produce_confluent(bootstrap, topic, count, mode, per_request):
    from confluent_kafka import Producer

    failed = []
    stats = []

    def report(err, msg):
        if err is not None:
            failed.append(err)

    conf = {"bootstrap.servers": bootstrap, "retry.backoff.ms": 50,
            "message.send.max.retries": 10, "enable.idempotence": False,
            "statistics.interval.ms": 100, "stats_cb": stats.append}
    if mode == "sync":
        conf["linger.ms"] = 0
    elif mode == "spread":
        conf.update({"linger.ms": 5, "batch.num.messages": per_request})
    else:
        conf.update({"linger.ms": 60000, "batch.num.messages": per_request})
    p = Producer(conf)
    if mode == "spread":
        parts = partitions_of(bootstrap, topic)
        for i in range(count):
            while True:
                try:
                    p.produce(topic, value=payload(i), key=key(i),
                              partition=parts[(i // per_request) % len(parts)],
                              on_delivery=report)
                    break
                except BufferError:
                    p.poll(0.05)
        if p.flush(60):
            raise SystemExit("produce: not acknowledged")
    elif mode == "sync":
        for i in range(count):
            p.produce(topic, value=payload(i), key=key(i), partition=0, on_delivery=report)
            if p.flush(30):
                raise SystemExit("produce: not acknowledged")
    else:
        for start in range(0, count, per_request):
            for i in range(start, min(count, start + per_request)):
                p.produce(topic, value=payload(i), key=key(i), partition=0,
                          on_delivery=report)
            if p.flush(30):
                raise SystemExit("produce: not acknowledged")
    if failed:
        raise SystemExit("produce: %d deliveries failed: %s" % (len(failed), failed[0]))
    # Statistics emitted after the last acknowledgement: every request is in them.
    stats.clear()
    deadline = time.time() + 10
    while len(stats) < 2 and time.time() < deadline:
        p.poll(0.1)
    if len(stats) < 2:
        raise SystemExit("produce: no statistics from librdkafka")
    return sum(b.get("req", {}).get("Produce", 0)
               for b in json.loads(stats[-1])["brokers"].values())


def partitions_of(bootstrap, topic):
    from confluent_kafka.admin import AdminClient

    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return sorted(md.topics[topic].partitions)


def consume_kafka_python(bootstrap, topic, count, group):
    from kafka import KafkaConsumer, TopicPartition

    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                      auto_offset_reset="earliest", enable_auto_commit=False,
                      api_version_auto_timeout_ms=10000)
    if group:
        c.subscribe([topic])
    else:
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
        c.assign(tps)
        c.seek_to_beginning(*tps)
    got = 0
    deadline = time.time() + 60
    while got < count and time.time() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            got += len(recs)
    if group:
        c.commit()
    c.close()
    return got


def consume_confluent(bootstrap, topic, count, group):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    conf = {"bootstrap.servers": bootstrap, "auto.offset.reset": "earliest",
            "enable.auto.commit": False, "group.id": group or "pstest-unused"}
    c = Consumer(conf)
    if group:
        c.subscribe([topic])
    else:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING)
                  for p in partitions_of(bootstrap, topic)])
    got = 0
    deadline = time.time() + 60
    while got < count and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    if group:
        c.commit(asynchronous=False)
    c.close()
    return got


def stall(bootstrap, topic, partition, stop_after, group):
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    stats = []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "enable.auto.commit": False, "statistics.interval.ms": 200,
                  "stats_cb": stats.append, "queued.min.messages": 1,
                  "fetch.wait.max.ms": 100})
    tp = TopicPartition(topic, partition, OFFSET_BEGINNING)
    c.assign([tp])
    got = 0
    deadline = time.time() + 60
    while got < stop_after and time.time() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got += 1
    c.pause([tp])
    # The fetches in flight when it paused settle; then librdkafka's view is the wire's.
    lag = None
    settle = time.time() + 3
    while time.time() < settle:
        c.poll(0.2)
        for s in stats:
            p = json.loads(s)["topics"][topic]["partitions"][str(partition)]
            lag = (p["hi_offset"], p["rxmsgs"])
        stats.clear()
    if lag is None or got != stop_after:
        raise SystemExit("stall: read %d, stats %s" % (got, lag))
    print("lag %d delivered %d" % (lag[0] - lag[1], lag[1]), flush=True)
    sys.stdin.read()
    c.close()


def main(argv):
    cmd = argv[1]
    if cmd == "produce":
        lib, bootstrap, topic, count, mode = argv[2], argv[3], argv[4], int(argv[5]), argv[6]
        per_request = int(argv[7]) if len(argv) > 7 else 1
        if lib == "kafka-python":
            produce_kafka_python(bootstrap, topic, count, mode, per_request)
            print("sent %d" % count)
        else:
            requests = produce_confluent(bootstrap, topic, count, mode, per_request)
            print("sent %d requests %d" % (count, requests))
    elif cmd == "consume":
        lib, bootstrap, topic, count = argv[2], argv[3], argv[4], int(argv[5])
        group = argv[6] if len(argv) > 6 else None
        fn = consume_kafka_python if lib == "kafka-python" else consume_confluent
        print("consumed %d" % fn(bootstrap, topic, count, group))
    elif cmd == "stall":
        stall(argv[2], argv[3], int(argv[4]), int(argv[5]), argv[6])
    else:
        raise SystemExit("unknown command " + cmd)
    sys.stdout.flush()
    time.sleep(1)


if __name__ == "__main__":
    main(sys.argv)
