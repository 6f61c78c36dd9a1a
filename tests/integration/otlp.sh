#!/usr/bin/env bash
# The otlp sink against a real HTTP receiver (otlp/receiver.py: gunzips, checks the OTLP
# JSON structure, counts spans and catches any span delivered twice). spanprobe, a test
# plugin, publishes span batches at each flush up to a known total: the ground truth.
#
# 1. Steady export, an outage, a 503 with Retry-After and a 400. The receiver is stopped
#    for a while and started again: the spans that did not fit in the queue meanwhile are
#    dropped (queue_full), the flushes keep their schedule, export resumes by itself, and
#    at the end sent + dropped == published exactly, the receiver holds exactly the sent
#    spans, none twice, every request gzip and well-formed. A 503 with Retry-After: 2 holds
#    every request for 2 s; a 400 drops its spans as rejected, and so does a partial success
#    the spans it refuses, counted exactly.
# 2. A collector that accepts connections and never answers (and is named, not numbered:
#    the threaded resolver): requests time out and are dropped after max_retry_time, the
#    flushes keep their schedule, and the daemon exits within the `timeout` of its last
#    attempt.
# 3. Reload and shutdown: spans published by the flush of a reload (the sink is closed and
#    reopened) and by the final flush reach the receiver.
# 4. Bad settings are configuration errors with file:line:column (exit 78).
# 5. tracectx's real spans of N HTTP requests reach the receiver, as many as on stdout.
set -u
. "$(dirname "$0")/lib.sh"

require_root
require_tools "apt-get install python3 curl" "$PYTHON" curl

probe=$top_builddir/tests/integration/otlp/.libs/spanprobe.so
[ -f "$probe" ] || fail "spanprobe.so is not built ($probe)"
receiver_py=$(dirname "$0")/otlp/receiver.py
make_work
# A plugin directory of our own (root's, as the loader demands) with only spanprobe.
plugins=$work/plugins
mkdir -m 0755 "$plugins"
cp "$probe" "$plugins/"

RECEIVER_PID=''
start_receiver() {
	"$PYTHON" "$receiver_py" "$PORT" "$work/state.json" "${EXPECT_HEADER:-}" &
	RECEIVER_PID=$!
	children+=($RECEIVER_PID)
	wait_port "$PORT" || fail "the receiver did not start"
}
stop_receiver() {
	curl -sf -X POST "http://127.0.0.1:$PORT/control/stop" >/dev/null || fail "cannot stop the receiver"
	wait "$RECEIVER_PID"
	RECEIVER_PID=''
}
control() { curl -sf -X POST "http://127.0.0.1:$PORT/control/$1" >/dev/null || fail "receiver: $1"; }
# state KEY: a number from the receiver's state file.
state() { "$PYTHON" -c 'import json, sys; v = json.load(open(sys.argv[1]))[sys.argv[2]]; print(v if not isinstance(v, list) else json.dumps(v))' "$work/state.json" "$1"; }

# snapshot_value NAME MATCHERS...: the value in the daemon's last complete snapshot.
snapshot_value() {
	last_snapshot <"$DAEMON_OUT" >"$work/snap"
	series_value "$work/snap" "$@"
}
# max_flush_gap_ms FROM_MS: the longest gap between the stdout sink's snapshots since FROM_MS.
max_flush_gap_ms() {
	awk -v from="$1" '/^# periscope snapshot/ { t = $4; if (t >= from) { if (p && t - p > m) m = t - p; p = t } }
		END { print m + 0 }' "$DAEMON_OUT"
}
# flushes_since FROM_MS: the stdout sink's snapshots since FROM_MS. A loop that waited on the
# network would miss most of them (a request waits for its timeout), a busy machine only a few.
flushes_since() {
	awk -v from="$1" '/^# periscope snapshot/ && $4 >= from { n++ } END { print n + 0 }' "$DAEMON_OUT"
}
now_ms() { date +%s%3N; }

# ---- 1. steady export, an outage, Retry-After, a rejected request -------------------------

PORT=$(free_port)
TOTAL=1000
cat >"$work/p1.yaml" <<YAML
daemon: { flush_interval: 200ms }
plugins:
  spanprobe: { spans_per_batch: 10, batches_per_flush: 1, total: $TOTAL, pad: 300 }
sinks:
  stdout: { format: prometheus }
  otlp: { endpoint: "http://127.0.0.1:$PORT/v1/traces", timeout: 2s, max_queue: 48KiB,
          headers: { x-pstest-key: secret-value } }
YAML
EXPECT_HEADER=x-pstest-key=secret-value
start_receiver
start_daemon -c "$work/p1.yaml" --plugin-dir "$plugins" || fail "periscoped did not start"
grep -q "otlp: exporting spans to http://127.0.0.1:$PORT" "$DAEMON_ERR" || fail "the sink did not say where it exports"

deadline=$((SECONDS + 20))
until [ "$(state spans)" -ge 50 ]; do
	[ $SECONDS -lt $deadline ] || fail "the receiver got $(state spans) spans in 20 s"
	sleep 0.2
done
echo "ok: spans arrive ($(state spans) so far)"

# A 503 with Retry-After: 2, then a 400 for one request.
control "fail?count=1&retry_after=2"
deadline=$((SECONDS + 20))
until [ "$(state answered_503)" = 1 ] && [ "$(state gaps_after_503)" != "[]" ]; do
	[ $SECONDS -lt $deadline ] || fail "no request got through after the 503 within 20 s"
	sleep 0.2
done
control "reject?count=1"
deadline=$((SECONDS + 10))
until [ "$(state rejected_spans)" != 0 ]; do
	[ $SECONDS -lt $deadline ] || fail "no request was rejected within 10 s"
	sleep 0.2
done
rejected_400=$(state rejected_spans)
control "partial?count=1&rejected=3"
deadline=$((SECONDS + 10))
until [ "$(state rejected_spans)" = $((rejected_400 + 3)) ]; do
	[ $SECONDS -lt $deadline ] || fail "no partial success within 10 s"
	sleep 0.2
done
echo "ok: a 503 with Retry-After, a 400 and a partial success were answered"

again=$(grep -c "otlp: http://127.0.0.1:$PORT: exporting again" "$DAEMON_ERR")
stop_receiver
outage_from=$(now_ms)
sleep 5
outage_gap=$(max_flush_gap_ms "$outage_from")
outage_flushes=$(flushes_since "$outage_from")
dropped_during=$(snapshot_value periscope_export_dropped_total 'reason="queue_full"')
start_receiver
[ "$outage_flushes" -ge 15 ] ||
	fail "with the receiver down, $outage_flushes flushes in 5 s (flush_interval 200ms: 25), up to $outage_gap ms apart"
[ "${dropped_during%.*}" -gt 0 ] || fail "5 s without a receiver and a 48KiB queue, yet nothing was dropped"
echo "ok: receiver down 5 s: $outage_flushes flushes (at most $outage_gap ms apart), $dropped_during spans dropped (queue_full)"

deadline=$((SECONDS + 40))
until [ "$(grep -c "otlp: http://127.0.0.1:$PORT: exporting again" "$DAEMON_ERR")" -gt "$again" ]; do
	[ $SECONDS -lt $deadline ] || fail "export did not resume within 40 s"
	sleep 0.2
done
echo "ok: export resumed by itself"

# Until spanprobe is done and the sink has settled every span.
deadline=$((SECONDS + 60))
while :; do
	emitted=$(snapshot_value periscope_spanprobe_spans_total)
	sent=$(snapshot_value periscope_export_spans_total)
	dropped=$(snapshot_value periscope_export_dropped_total)
	queued=$(snapshot_value periscope_export_queue_bytes)
	[ "$emitted" = $TOTAL ] && [ $((sent + dropped)) = $TOTAL ] && [ "$queued" = 0 ] &&
		[ "$(state spans)" = "$sent" ] && break
	[ $SECONDS -lt $deadline ] ||
		fail "not settled in 60 s: published $emitted of $TOTAL, sent $sent, dropped $dropped, queued $queued bytes, received $(state spans)"
	sleep 0.3
done
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
last_snapshot <"$DAEMON_OUT" >"$work/snap"
SNAPSHOT=$work/snap DIFF=$work/diff
: >"$DIFF"
rejected=$(state rejected_spans)
queue_full=$(series_value "$SNAPSHOT" periscope_export_dropped_total 'reason="queue_full"')
expect $TOTAL periscope_spanprobe_spans_total
expect "$(state spans)" periscope_export_spans_total 'sink="otlp"'
expect "$rejected" periscope_export_dropped_total 'reason="rejected"'
expect $((TOTAL - $(state spans) - rejected)) periscope_export_dropped_total 'reason="queue_full"'
expect 1 periscope_export_requests_failed_total 'reason="unavailable"'
expect 1 periscope_export_requests_failed_total 'reason="rejected"'
[ "$(series_value "$SNAPSHOT" periscope_export_requests_failed_total 'reason="connection"')" != 0 ] ||
	echo "  no connection failure counted while the receiver was down" >>"$DIFF"
for key in invalid duplicates early; do
	[ "$(state $key)" = 0 ] || echo "  receiver: $key = $(state $key) (want 0): $(state problems)" >>"$DIFF"
done
[ "$(state problems)" = "[]" ] || echo "  receiver: $(state problems)" >>"$DIFF"
[ "$rejected" -gt 3 ] || echo "  the rejected request carried no spans" >>"$DIFF"
[ "$(state gzip_requests)" = "$(($(state requests) + 1))" ] ||
	echo "  receiver: $(state gzip_requests) gzip requests of $(state requests) accepted + 1 rejected" >>"$DIFF"
gap=$(state gaps_after_503)
"$PYTHON" -c 'import json, sys; g = json.loads(sys.argv[1]); sys.exit(0 if len(g) == 1 and 1.95 <= g[0] < 6 else 1)' "$gap" ||
	echo "  after a 503 with Retry-After: 2 the next request came after $gap s (want 2 s to 6 s)" >>"$DIFF"
grep -q "secret-value" "$DAEMON_ERR" && echo "  a header value reached the log" >>"$DIFF"
if [ -s "$DIFF" ]; then
	echo "FAIL: the otlp sink's accounting (want = the receiver's and spanprobe's counts):" >&2
	cat "$DIFF" >&2
	exit 1
fi
echo "ok: $TOTAL spans published = $(state spans) received once each + $queue_full queue_full + $rejected rejected;" \
	"Retry-After: 2 held the next request $gap s; every request gzip and valid"
stop_receiver

# ---- 2. a collector that never answers ---------------------------------------------------

BLACKHOLE=$(free_port)
# Accepts connections into its backlog and never reads them.
"$PYTHON" -c 'import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(64); time.sleep(120)' "$BLACKHOLE" &
children+=($!)
wait_port "$BLACKHOLE" || fail "the silent collector did not start"
cat >"$work/p2.yaml" <<YAML
daemon: { flush_interval: 200ms }
plugins:
  spanprobe: { spans_per_batch: 5 }
sinks:
  stdout: { format: prometheus }
  otlp: { endpoint: "http://localhost:$BLACKHOLE/v1/traces", timeout: 1s, compression: none,
          max_retry_time: 1s }
YAML
start_daemon -c "$work/p2.yaml" --plugin-dir "$plugins" || fail "periscoped did not start"
from=$(now_ms)
sleep 4
gap=$(max_flush_gap_ms "$from")
flushes=$(flushes_since "$from")
timeouts=$(snapshot_value periscope_export_requests_failed_total 'reason="timeout"')
exhausted=$(snapshot_value periscope_export_dropped_total 'reason="retries_exhausted"')
stop_at=$(now_ms)
stop_daemon
took=$(($(now_ms) - stop_at))
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
[ "$flushes" -ge 12 ] ||
	fail "with a silent collector, $flushes flushes in 4 s (flush_interval 200ms: 20), up to $gap ms apart"
[ "$timeouts" != 0 ] || fail "no request timed out against a silent collector"
[ "$exhausted" != 0 ] || fail "no spans dropped as retries_exhausted with max_retry_time: 1s"
# Unbounded, the last attempt would retry for max_retry_time (5m).
[ "$took" -lt 5000 ] || fail "the exit took $took ms with timeout: 1s"
grep -q "otlp: .*spans could not be sent in the last attempt: dropped" "$DAEMON_ERR" ||
	fail "the spans left at exit were not reported"
echo "ok: silent collector: $timeouts timeouts, $exhausted spans dropped after max_retry_time, $flushes flushes in 4 s (at most $gap ms apart), exit in $took ms"

# ---- 2b. a name server that never answers ------------------------------------------------
# The daemon runs in a mount namespace of its own whose /etc/resolv.conf names a server on
# 127.0.0.2 that reads queries and never answers: a lookup takes 10 s. curl's threaded
# resolver keeps it off the loop, and a transfer that times out leaves it unjoined.

"$PYTHON" -c 'import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.2", 53))
end = time.time() + 60
while time.time() < end: s.recv(512)' &
children+=($!)
printf 'nameserver 127.0.0.2\noptions timeout:10 attempts:1\n' >"$work/resolv.conf"
real_periscoped=$PERISCOPED
cat >"$work/in-ns" <<SH
#!/bin/sh
exec unshare -m sh -c 'mount --bind "$work/resolv.conf" /etc/resolv.conf && exec "\$0" "\$@"' \
	"$real_periscoped" "\$@"
SH
chmod 755 "$work/in-ns"
cat >"$work/p2b.yaml" <<YAML
daemon: { flush_interval: 200ms }
plugins:
  spanprobe: { spans_per_batch: 5 }
sinks:
  stdout: { format: prometheus }
  otlp: { endpoint: "http://collector.pstest-otlp.invalid:4318/v1/traces", timeout: 1s }
YAML
PERISCOPED=$work/in-ns
start_daemon -c "$work/p2b.yaml" --plugin-dir "$plugins" || fail "periscoped did not start in its namespace"
PERISCOPED=$real_periscoped
from=$(now_ms)
sleep 4
gap=$(max_flush_gap_ms "$from")
flushes=$(flushes_since "$from")
timeouts=$(snapshot_value periscope_export_requests_failed_total 'reason="timeout"')
stop_at=$(now_ms)
stop_daemon
took=$(($(now_ms) - stop_at))
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
[ "$flushes" -ge 12 ] ||
	fail "with a silent name server, $flushes flushes in 4 s (flush_interval 200ms: 20), up to $gap ms apart"
[ "$timeouts" != 0 ] || fail "no lookup timed out against a silent name server"
[ "$took" -lt 5000 ] || fail "the exit took $took ms with timeout: 1s and a lookup hanging"
echo "ok: silent name server: $timeouts timeouts, $flushes flushes in 4 s (at most $gap ms apart), exit in $took ms"

# ---- 3. the last attempt at exit -----------------------------------------------------------

rm -f "$work/state.json"
EXPECT_HEADER=''
start_receiver
cat >"$work/p3.yaml" <<YAML
daemon: { flush_interval: 10m }
plugins:
  spanprobe: { spans_per_batch: 7, batches_per_flush: 3 }
sinks:
  otlp: { endpoint: "http://127.0.0.1:$PORT/v1/traces" }
YAML
start_daemon -c "$work/p3.yaml" --plugin-dir "$plugins" || fail "periscoped did not start"
[ "$(state spans)" = 0 ] || fail "spans before any flush"
# A reload flushes (21 spans) and closes the sink: the closed sink still delivers them.
kill -HUP "$DAEMON_PID"
wait_for_log "running:" 20 || fail "no reload"
deadline=$((SECONDS + 15))
until [ "$(state spans)" = 21 ]; do
	[ $SECONDS -lt $deadline ] || fail "the reload's 21 spans: the receiver got $(state spans)"
	sleep 0.1
done
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
[ "$(state spans)" = 42 ] || fail "the reload's and the final flush's 42 spans: the receiver got $(state spans)"
[ "$(state duplicates)" = 0 ] && [ "$(state invalid)" = 0 ] || fail "receiver: $(state problems)"
echo "ok: the spans of a reload's flush and of the final flush (21 each) reached the receiver"
stop_receiver

# ---- 4. configuration errors ---------------------------------------------------------------

check_config() { # WANT_PATTERN YAML
	printf '%s\n' "$2" >"$work/bad.yaml"
	"$PERISCOPED" --check-config -c "$work/bad.yaml" --plugin-dir "$plugins" >"$work/out" 2>&1
	status=$?
	[ $status = 78 ] || fail "--check-config exited $status for: $2"
	grep -qE "$1" "$work/out" || fail "no '$1' for: $2; got: $(cat "$work/out")"
}
check_config "bad.yaml:1:28: sinks.otlp.endpoint: expected an http:// or https:// URL" 'sinks: { otlp: { endpoint: "ftp://collector/v1/traces" } }'
check_config "bad.yaml:1:16: sinks.otlp: endpoint is required" 'sinks: { otlp: { timeout: 5s } }'
check_config "bad.yaml:1:68: compression: expected one of gzip, none" 'sinks: { otlp: { endpoint: "http://c:4318/v1/traces", compression: zstd } }'
check_config "bad.yaml:1:80: sinks.otlp.headers: Content-Type is set by the sink" \
	'sinks: { otlp: { endpoint: "http://c:4318/v1/traces", headers: { Content-Type: text/plain } } }'
check_config "bad.yaml:1:28: sinks.otlp.endpoint: not a URL with a host" 'sinks: { otlp: { endpoint: "http:///v1/traces" } }'
"$PERISCOPED" --check-config -c "$work/p1.yaml" --plugin-dir "$plugins" >"$work/out" 2>&1 ||
	fail "a valid otlp section was rejected: $(cat "$work/out")"
echo "ok: bad endpoints, keys and headers are configuration errors with file:line:column"

# ---- 5. tracectx's own spans: the same at the receiver as on stdout --------------------------
# curl (pstest-otlp-cli) -> a python3 http.server (pstest-otlp-web), N requests, the http
# plugin on that port only: tracectx makes a client and a server span of each, and what it
# publishes when it stops (after the final flush) still gets the sink's last attempt.

for so in tracectx.so http.so; do
	[ -f "$PLUGIN_DIR/$so" ] || { echo "skipped 5: no $so"; exit 0; }
done
N=20
plugins5=$work/plugins5
mkdir -m 0755 "$plugins5"
cp "$PLUGIN_DIR/tracectx.so" "$PLUGIN_DIR/http.so" "$plugins5/"
mkdir -p "$work/bin" "$work/www"
cp "$(readlink -f "$PYTHON")" "$work/bin/pstest-otlp-web"
cp "$(command -v curl)" "$work/bin/pstest-otlp-cli"
echo hello >"$work/www/index.html"
WEB=$(free_port)
(cd "$work/www" && exec "$work/bin/pstest-otlp-web" -m http.server "$WEB" --bind 127.0.0.1) \
	>/dev/null 2>&1 &
children+=($!)
wait_port "$WEB" || fail "the web server did not start"
cat >"$work/p5.yaml" <<YAML
daemon: { flush_interval: 500ms }
capture: { hooks: $CAPTURE_HOOKS }
plugins:
  http: { ports: [$WEB] }
  tracectx: {}
services:
  - { match: { exe: $work/bin/pstest-otlp-web }, name: pstest-otlp-web }
  - { match: { exe: $work/bin/pstest-otlp-cli }, name: pstest-otlp-cli }
sinks:
  stdout: { format: json }
  otlp: { endpoint: "http://127.0.0.1:$PORT/v1/traces" }
YAML
rm -f "$work/state.json"
start_receiver
start_daemon -c "$work/p5.yaml" --plugin-dir "$plugins5" || fail "periscoped did not start"
for _ in $(seq $N); do
	"$work/bin/pstest-otlp-cli" -sf -o /dev/null "http://127.0.0.1:$WEB/index.html" || fail "curl failed"
done
sleep 1
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
on_stdout=$("$PYTHON" -c 'import json, sys
n = 0
for line in open(sys.argv[1]):
    if line.startswith("{\"resourceSpans\""):
        for rs in json.loads(line)["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                n += len(ss["spans"])
print(n)' "$DAEMON_OUT")
[ "$(state invalid)" = 0 ] && [ "$(state duplicates)" = 0 ] || fail "receiver: $(state problems)"
[ "$(state spans)" = "$on_stdout" ] ||
	fail "tracectx's spans: $on_stdout on stdout, $(state spans) at the receiver"
[ "$on_stdout" = $((2 * N)) ] || fail "tracectx's spans: $on_stdout, want $((2 * N)) ($N requests, client and server)"
grep -q "could not be sent" "$DAEMON_ERR" && fail "spans were left at exit"
echo "ok: tracectx's $on_stdout spans of $N requests: the same at the receiver as on stdout"
stop_receiver

