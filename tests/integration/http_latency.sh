#!/usr/bin/env bash
# Latency percentiles against a handler that sleeps a fixed time: the table's p50 of the
# server-side duration must be within 10% of the median the server itself measured, for a 5 ms and
# a 50 ms handler (with the old bucket-bound estimate they read 7.5ms and 62.5ms), and the
# Prometheus output keeps the configured explicit buckets of daemon.buckets.
set -u
. "$(dirname "$0")/lib.sh"

FAST=300 SLOW=60
here=$(cd "$(dirname "$0")" && pwd)

require_root
require_tools "apt-get install python3" "$PYTHON"

make_work

bin=$work/bin
mkdir -p "$bin"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-sleeper"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-timer"

"$bin/pstest-sleeper" "$here/http/sleeper.py" "$work/server-times" >"$work/sleeper.json" &
children+=($!)
for _ in $(seq 100); do
	[ -s "$work/sleeper.json" ] && break
	sleep 0.1
done
PORT=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' \
	"$work/sleeper.json" 2>/dev/null) || fail "the sleeping backend did not start"

textdir=$work/textfile
mkdir -p "$textdir"
cat >"$work/periscope.yaml" <<YAML
daemon:
  flush_interval: 1s
  buckets: { http_server_request_duration_seconds: [0.001, 0.004, 0.01, 0.05, 1] }
plugins:
  http: { ports: [$PORT] }
  tcpflow: { enabled: false }
services:
  - { match: { exe: $bin/pstest-sleeper }, name: pstest-sleeper }
  - { match: { exe: $bin/pstest-timer }, name: pstest-timer }
sinks:
  stdout: { format: table }
  prometheus_textfile: { directory: $textdir }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

"$bin/pstest-timer" "$here/http/timed_client.py" "$PORT" "$FAST" /sleep/5/fast >"$work/fast.out" ||
	fail "the timed client failed"
"$bin/pstest-timer" "$here/http/timed_client.py" "$PORT" "$SLOW" /sleep/50/slow >"$work/slow.out" ||
	fail "the timed client failed"
# Two more flushes (the table's percentiles cover every request so far), then the final one.
sleep 2.5
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"

# seconds_of TEXT: 2.1ms, 340µs, 1.2s -> seconds
seconds_of() {
	"$PYTHON" - "$1" <<'PY'
import sys
t = sys.argv[1]
for unit, f in (("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)):
    if t.endswith(unit):
        print("%.9f" % (float(t[: -len(unit)]) * f))
        break
else:
    sys.exit("not a duration: " + t)
PY
}

failures=0
check() { # route client-output path
	local route=$1 out=$2 path=$3 line p50 want got
	# The server's own median: what it took from the parsed request to the written response.
	want=$(awk -v p="$path" '$1 == p { print $2 }' "$work/server-times" | sort -g |
		awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }')
	[ -n "$want" ] || { echo "  no server times for $path" >&2; failures=$((failures + 1)); return; }
	line=$(grep -F "http_server_request_duration_seconds" "$DAEMON_OUT" | grep -F " $route " | tail -n 1)
	[ -n "$line" ] || { echo "  no table row for $route" >&2; failures=$((failures + 1)); return; }
	p50=$(sed -n 's/.* p50 \([^ ]*\) .*/\1/p' <<<"$line")
	got=$(seconds_of "$p50") || { failures=$((failures + 1)); return; }
	if ! "$PYTHON" -c "import sys; w, g = float(sys.argv[1]), float(sys.argv[2]); sys.exit(abs(g - w) > 0.1 * w)" "$want" "$got"; then
		echo "  $route: the table says p50 $p50, the server measured a median of ${want}s" \
			"(the client $(awk '{ print $3 }' "$out")s):" >&2
		echo "    $line" >&2
		failures=$((failures + 1))
	fi
	echo "  $route: table p50 $p50, server median ${want}s, client median $(awk '{ print $3 }' "$out")s"
}
check "/sleep/{id}/fast" "$work/fast.out" /sleep/5/fast
check "/sleep/{id}/slow" "$work/slow.out" /sleep/50/slow

# The textfile keeps the configured explicit buckets, with exact counts.
prom=$textdir/periscope.prom
sel='service_name="pstest-sleeper"'
for le in 0.001 0.004 0.01 0.05 1 +Inf; do
	grep -q "^http_server_request_duration_seconds_bucket{$sel.*le=\"$le\"" "$prom" || {
		echo "  no le=\"$le\" bucket in $prom" >&2
		failures=$((failures + 1))
	}
done
if grep "^http_server_request_duration_seconds_bucket{$sel" "$prom" | grep -q 'le="0.005"'; then
	echo "  the default buckets are exported despite daemon.buckets" >&2
	failures=$((failures + 1))
fi
got=$(series_value "$prom" http_server_request_duration_seconds_bucket "$sel" 'le="1"')
[ "$got" = $((FAST + SLOW)) ] || { echo "  le=1: $got, want $((FAST + SLOW))" >&2; failures=$((failures + 1)); }
# Handlers sleep 5 ms or 50 ms: none is done within 4 ms, no 50 ms one within 50 ms, and
# (a busy machine may hold up a few) nearly every 5 ms one.
got=$(series_value "$prom" http_server_request_duration_seconds_bucket "$sel" 'le="0.004"')
[ "$got" = 0 ] || { echo "  le=0.004: $got, want 0" >&2; failures=$((failures + 1)); }
got=$(series_value "$prom" http_server_request_duration_seconds_bucket "$sel" 'le="0.05"')
if [ "$got" -gt "$FAST" ] || [ "$got" -lt $((FAST * 9 / 10)) ]; then
	echo "  le=0.05: $got, want $((FAST * 9 / 10)) to $FAST" >&2
	failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s)" >&2
	exit 1
fi
echo "ok: p50 of a 5 ms and a 50 ms handler within 10% of the client's median; configured buckets exported"
exit 0
