#!/usr/bin/env bash
# kafka against exact counts: librdkafka's mock cluster (kafka/mock_broker.c, the real wire
# protocol on loopback) driven by real clients, each under a service name of its own:
#   kafka-python: synchronous sends, one message per Produce request
#   confluent-kafka: batched sends (linger, 10 messages per request)
#   kcat: a batch from stdin, then a consumer without a group reading it back
#   confluent-kafka: Produce answered NOT_LEADER_OR_FOLLOWER twice (injected), then retried
#   kafka-python: a consumer without a group; confluent-kafka: a consumer in a group
#   confluent-kafka: a consumer in a group that stops partway through a topic: its lag, as
#     librdkafka itself reports it, then gone once it disconnects
#   large fetches: LARGE messages in batches of LARGE_BATCH over LARGE_PARTITIONS
#     partitions, read back by confluent-kafka and kcat: each Fetch response holds a batch
#     of every partition (about 100 KB), read a syscall far larger than the capture's 4 KiB
#     prefix at a time; the kernel's walker sends the batch headers past it (without it,
#     about a third were counted); and kafka-python writing every partition's batch in one
#     Produce request, sent a big send() at a time (without the walker, an eighth counted)
# and the broker's own view, and no payload anywhere in periscoped's output. An alert rule of
# protocol kafka (error_ratio, by service and topic) fires exactly once, into the syslog sink
# (RFC 5424 over UDP to a listener here), for the one producer whose Produce requests were
# refused, and for no other client or topic.
set -u
. "$(dirname "$0")/lib.sh"

SYNC=25 BATCHED=60 PER_REQUEST=10 KCAT=15 ERRORS=2 AFTER_ERRORS=3 LAG_TOTAL=40 LAG_READ=15
LARGE=12000 LARGE_BATCH=200 LARGE_PARTITIONS=8
here=$(cd "$(dirname "$0")" && pwd)

require_root
require_tools "apt-get install kcat python3-kafka python3-confluent-kafka librdkafka-dev" \
	kcat "$PYTHON"
"$PYTHON" -c 'import kafka, confluent_kafka' 2>/dev/null ||
	{ echo "SKIP: needs python3-kafka and python3-confluent-kafka"; exit 77; }
broker_bin=$top_builddir/tests/integration/kafka/kafka_mock_broker
[ -x "$broker_bin" ] || { echo "SKIP: $broker_bin is not built (librdkafka-dev)"; exit 77; }
one_at_a_time kafka

work=$(mktemp -d)
children=()
cleanup() {
	stop_daemon
	exec 3>&- 4>&-
	for pid in "${children[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT

# Our own copies: their exe paths name the services below.
bin=$work/bin
mkdir -p "$bin"
cp "$broker_bin" "$bin/pstest-kbroker"
cp "$(command -v kcat)" "$bin/pstest-kcat"
for name in kpysync rdbatch rderrors kpycons rdgroup rdlag rdlarge kpylarge; do
	cp "$(readlink -f "$PYTHON")" "$bin/pstest-$name"
done
client=$here/kafka/client.py

plugins=$work/plugins
mkdir -m 0755 "$plugins"
cp "$PLUGIN_DIR/kafka.so" "$plugins/"

PORT=$(free_port)
BS=127.0.0.1:$PORT

# The syslog sink's receiver: each datagram as one line of $work/syslog.log.
"$PYTHON" -u -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
with open(sys.argv[1], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536).replace(b"\n", b" ") + b"\n")' "$work/syslog.log" >"$work/syslog.port" &
children+=($!)
for _ in $(seq 50); do [ -s "$work/syslog.port" ] && break; sleep 0.1; done
SYSLOG_PORT=$(cat "$work/syslog.port")
[ -n "$SYSLOG_PORT" ] || fail "the syslog receiver did not start"
ALERT=kafka-errors
{
	echo "daemon: { flush_interval: 1s }"
	echo "capture: { hooks: $CAPTURE_HOOKS }"
	echo "plugins:"
	echo "  kafka: { ports: [$PORT] }"
	echo "services:"
	for name in kbroker kcat kpysync rdbatch rderrors kpycons rdgroup rdlag rdlarge kpylarge; do
		echo "  - { match: { exe: $bin/pstest-$name }, name: pstest-$name }"
	done
	echo "sinks:"
	echo "  stdout: { format: prometheus }"
	echo "  syslog: { ident: pstest-kafka, remote: \"udp://127.0.0.1:$SYSLOG_PORT\" }"
	echo "alerts:"
	echo "  - { name: $ALERT, protocol: kafka, error_ratio: { above: 0.1 }, window: 1m, for: 2s, repeat: 0s }"
} >"$work/periscope.yaml"
start_daemon -c "$work/periscope.yaml" --plugin-dir "$plugins" || fail "periscoped did not start"
expect_capture_hooks
grep -q "capture: protocol kafka" "$DAEMON_ERR" || fail "kafka did not register with the capture"

# ---- the broker: commands on fd 3, its answers on fd 4 -----------------------------------
mkfifo "$work/broker.in" "$work/broker.out"
"$bin/pstest-kbroker" "$PORT" pstest-sync:1 pstest-batch:1 pstest-kcat:1 pstest-errors:1 \
	pstest-lag:1 pstest-large:$LARGE_PARTITIONS pstest-plarge:$LARGE_PARTITIONS <"$work/broker.in" >"$work/broker.out" 2>"$work/broker.err" &
children+=($!)
exec 3>"$work/broker.in" 4<"$work/broker.out"
read -r -t 20 ready addr <&4 || fail "the mock broker did not start: $(cat "$work/broker.err")"
[ "$ready $addr" = "ready $BS" ] || fail "the mock broker says '$ready $addr', not ready $BS"
broker() {
	local answer
	echo "$*" >&3
	read -r -t 10 answer <&4 || fail "the mock broker did not answer '$*'"
	[ "$answer" = ok ] || fail "the mock broker answered '$*' with: $answer"
}

# run NAME ARGS... WANT: client.py as pstest-NAME; its output must start with WANT (the last
# argument), the rest (what librdkafka says it did) is left in OUT.
run() {
	local name=$1 want=${*: -1}
	shift
	OUT=$("$bin/pstest-$name" "$client" "${@:1:$(($# - 1))}") || fail "pstest-$name failed"
	[[ "$OUT" == "$want"* ]] || fail "pstest-$name said '$OUT', not '$want'"
	OUT=${OUT#"$want"}
}

# ---- producers ----------------------------------------------------------------------------
run kpysync produce kafka-python "$BS" pstest-sync $SYNC sync "sent $SYNC"
run rdbatch produce confluent "$BS" pstest-batch $BATCHED batch $PER_REQUEST "sent $BATCHED"
read -r _ BATCH_REQUESTS <<<"$OUT" # librdkafka's Produce requests: about BATCHED / PER_REQUEST
# Several messages per request, as the linger promised.
[ "$BATCH_REQUESTS" -lt "$BATCHED" ] || fail "$BATCHED batched messages took $BATCH_REQUESTS requests"
# kcat lives on a while after its last request (its stdin stays open): periscoped names a
# process from /proc, which it can only read while the process lives.
{
	for i in $(seq $KCAT); do echo "pstest-secret-payload-kcat-$i"; done
	sleep 1.5
} | "$bin/pstest-kcat" -P -b "$BS" -t pstest-kcat -p 0 -X linger.ms=100 ||
	fail "kcat could not produce"
broker errors 0 6 6 # the next two Produce requests: NOT_LEADER_OR_FOLLOWER
run rderrors produce confluent "$BS" pstest-errors $AFTER_ERRORS sync "sent $AFTER_ERRORS"
read -r _ got <<<"$OUT"
[ "$got" = $((ERRORS + AFTER_ERRORS)) ] ||
	fail "librdkafka sent $got Produce requests, not $ERRORS refused + $AFTER_ERRORS"

# ---- consumers ----------------------------------------------------------------------------
run kpycons consume kafka-python "$BS" pstest-batch $BATCHED "consumed $BATCHED"
run rdgroup consume confluent "$BS" pstest-sync $SYNC pstest-cgroup "consumed $SYNC"
got=$("$bin/pstest-kcat" -C -b "$BS" -t pstest-kcat -o beginning -e -q | wc -l)
[ "$got" = $KCAT ] || fail "kcat consumed $got messages, not $KCAT"

# ---- large fetches: megabyte responses, read a big recvmsg at a time ----------------------
run rdbatch produce confluent "$BS" pstest-large $LARGE spread $LARGE_BATCH "sent $LARGE"
run rdlarge consume confluent "$BS" pstest-large $LARGE "consumed $LARGE"
got=$("$bin/pstest-kcat" -C -b "$BS" -t pstest-large -o beginning -e -q | wc -l)
[ "$got" = $LARGE ] || fail "kcat consumed $got messages of pstest-large, not $LARGE"
run kpylarge produce kafka-python "$BS" pstest-plarge $LARGE spread $LARGE_BATCH "sent $LARGE"

# ---- lag: a consumer that stops partway, holding its connections ----------------------------
run rdbatch produce confluent "$BS" pstest-lag $LAG_TOTAL batch $PER_REQUEST "sent $LAG_TOTAL"
mkfifo "$work/lag.in"
"$bin/pstest-rdlag" "$client" stall "$BS" pstest-lag 0 $LAG_READ pstest-lgroup \
	<"$work/lag.in" >"$work/lag.out" 2>"$work/lag.err" &
children+=($!)
lag_pid=$!
exec 5>"$work/lag.in"
deadline=$((SECONDS + 60))
until grep -qs '^lag ' "$work/lag.out"; do
	kill -0 $lag_pid 2>/dev/null || fail "the stalled consumer exited: $(cat "$work/lag.err")"
	[ $SECONDS -lt $deadline ] || fail "the stalled consumer did not report its lag"
	sleep 0.2
done
read -r _ LAG _ DELIVERED <"$work/lag.out"
wait_for_snapshots 2 || fail "no flush while the consumer stalls"
last_snapshot <"$DAEMON_OUT" >"$work/stalled.prom"
exec 5>&- # the consumer closes its connections and exits
wait $lag_pid || fail "the stalled consumer failed: $(cat "$work/lag.err")"

SNAPSHOT=$work/snapshot.prom
final_snapshot "$SNAPSHOT"
DIFF=$work/diff
K='messaging_system="kafka"'
none='error_type=""'
notleader='error_type="NOT_LEADER_OR_FOLLOWER"'
dest() { echo "messaging_destination_name=\"$1\""; }
svc() { echo "service_name=\"pstest-$1\""; }
group() { echo "messaging_consumer_group_name=\"$1\""; }
SENT=messaging_client_sent_messages_total
CONSUMED=messaging_client_consumed_messages_total
DUR=messaging_client_operation_duration_seconds_count
SDUR=periscope_kafka_server_operation_duration_seconds_count
send='messaging_operation_name="send"'

# Messages sent, per topic: synchronous, batched, kcat, and errors then retries.
expect $SYNC $SENT $K "$(svc kpysync)" "$(dest pstest-sync)" "$none"
expect $SYNC $DUR $K "$(svc kpysync)" "$send" "$(dest pstest-sync)" "$none"
expect $BATCHED $SENT $K "$(svc rdbatch)" "$(dest pstest-batch)" "$none"
expect "$BATCH_REQUESTS" $DUR $K "$(svc rdbatch)" "$send" "$(dest pstest-batch)"
expect $KCAT $SENT $K "$(svc kcat)" "$(dest pstest-kcat)" "$none"
# The first message's request failed twice; its retries carried it (sync: one per request).
expect $ERRORS $SENT $K "$(svc rderrors)" "$(dest pstest-errors)" "$notleader"
expect $AFTER_ERRORS $SENT $K "$(svc rderrors)" "$(dest pstest-errors)" "$none"
expect $ERRORS $DUR $K "$(svc rderrors)" "$send" "$(dest pstest-errors)" "$notleader"
expect $AFTER_ERRORS $DUR $K "$(svc rderrors)" "$send" "$(dest pstest-errors)" "$none"
expect $AFTER_ERRORS $DUR "$(svc rderrors)" "$send" "server_port=\"$PORT\"" \
	'server_address="127.0.0.1"' "$(dest pstest-errors)" "$none"
# Messages consumed: without a group (kafka-python, kcat), in a group (confluent-kafka).
expect $BATCHED $CONSUMED $K "$(svc kpycons)" "$(dest pstest-batch)" "$(group '')"
expect $SYNC $CONSUMED $K "$(svc rdgroup)" "$(dest pstest-sync)" "$(group pstest-cgroup)"
expect $KCAT $CONSUMED $K "$(svc kcat)" "$(dest pstest-kcat)" "$(group '')"
expect $LARGE $SENT $K "$(svc rdbatch)" "$(dest pstest-large)" "$none"
expect $LARGE $SENT $K "$(svc kpylarge)" "$(dest pstest-plarge)" "$none"
expect $LARGE $CONSUMED $K "$(svc rdlarge)" "$(dest pstest-large)" "$(group pstest-unused)"
expect $LARGE $CONSUMED $K "$(svc kcat)" "$(dest pstest-large)" "$(group '')"
# The stalled consumer: what its fetches delivered (librdkafka's rxmsgs).
expect "$DELIVERED" $CONSUMED $K "$(svc rdlag)" "$(dest pstest-lag)" \
	"$(group pstest-lgroup)"
# The broker's view of the same requests.
expect $((SYNC)) $SDUR $K "$(svc kbroker)" "$send" "$(dest pstest-sync)" "$none"
expect $ERRORS $SDUR $K "$(svc kbroker)" "$send" "$(dest pstest-errors)" "$notleader"
expect 0 periscope_kafka_uncounted_batches_total
# Nothing the broker did shows as a client, nothing the clients did as a broker.
expect 0 $DUR "$(svc kbroker)"
expect 0 $SDUR "$(svc kpysync)"

# Lag while the consumer stalled: librdkafka's high watermark - the messages it fetched from
# offset 0 (its next fetch offset on the wire).
lagsel=("$(svc rdlag)" "$(dest pstest-lag)" 'messaging_destination_partition_id="0"'
	"$(group pstest-lgroup)")
got=$(series_value "$work/stalled.prom" periscope_kafka_consumer_lag_messages "${lagsel[@]}")
[ "$got" = "$LAG" ] || echo "  lag while stalled: want $LAG (librdkafka's) got $got" >>"$DIFF"
[ "$got" = "$LAG" ] || failures=$((failures + 1))
grep -q "^periscope_kafka_consumer_lag_messages{.*pstest-rdlag" "$SNAPSHOT" &&
	{ echo "  the lag series outlived its consumer's connection" >>"$DIFF"; failures=$((failures + 1)); }

# The alert: one FIRING notice, for the refused producer's topic only; its value is the
# error ratio of that group's operations in the window (for: 2s, so that the producer is done).
alert_group="service_name=pstest-rderrors messaging_destination_name=pstest-errors"
firing=$(grep -c "alert=\"$ALERT\" state=\"firing\"" "$work/syslog.log" 2>/dev/null)
mine=$(grep "alert=\"$ALERT\" state=\"firing\"" "$work/syslog.log" 2>/dev/null |
	grep -c "protocol=\"kafka\" group=\"$alert_group\"")
if [ "$firing" != 1 ] || [ "$mine" != 1 ]; then
	echo "  alert $ALERT: $firing FIRING notices, $mine for $alert_group; want 1 and 1:" >>"$DIFF"
	sed 's/^/    /' "$work/syslog.log" >>"$DIFF" 2>/dev/null
	failures=$((failures + 1))
fi
# What the window held for that group: its failed and all its operations (the snapshot's).
group_sel=("$(svc rderrors)" "$(dest pstest-errors)")
all_ops=$(series_value "$SNAPSHOT" $DUR "${group_sel[@]}")
ok_ops=$(series_value "$SNAPSHOT" $DUR "${group_sel[@]}" "$none")
want_ratio=$(awk -v a="$all_ops" -v o="$ok_ops" 'BEGIN { printf "%.6f", a ? (a - o) / a : 0 }')
got_ratio=$(grep "alert=\"$ALERT\" state=\"firing\"" "$work/syslog.log" 2>/dev/null |
	sed -n 's/.* value="\([^"]*\)".*/\1/p' | head -n1)
awk -v g="${got_ratio:-x}" -v w="$want_ratio" 'BEGIN { d = g - w; exit !(g != "x" && d < 1e-6 && d > -1e-6) }' || {
	echo "  alert $ALERT: value '$got_ratio', not the group's error ratio $want_ratio ($((all_ops - ok_ops)) of $all_ops)" >>"$DIFF"
	failures=$((failures + 1))
}
expect 1 periscope_alerts_firing "alert=\"$ALERT\""

# No payload, no key: not in a label, not in a log line.
if grep -q "pstest-secret" "$DAEMON_OUT" "$DAEMON_ERR"; then
	echo "  a message payload or key reached periscoped's output" >>"$DIFF"
	failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s) (want = what the clients did, got = periscope's):" >&2
	cat "$DIFF" >&2
	grep -E '^(messaging|periscope_kafka)' "$SNAPSHOT" | grep -v _bucket | sed 's/^/  /' >&2
	exit 1
fi
echo "ok: sent $SYNC sync + $BATCHED batched in $BATCH_REQUESTS requests + $KCAT (kcat) + $ERRORS refused and" \
	"$AFTER_ERRORS retried; consumed $BATCHED + $SYNC (group) + $KCAT; $LARGE in large fetches" \
	"by librdkafka and kcat, $LARGE sent by kafka-python in 8-partition requests; lag $LAG while" \
	"stalled, gone after; alert $ALERT fired once, ratio $want_ratio ($CAPTURE_HOOKS)"
