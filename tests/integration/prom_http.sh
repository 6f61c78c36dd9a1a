#!/usr/bin/env bash
# The prometheus_http sink, scraped with curl and checked with promtool.
#
# 1. tcp_load.py makes connections with exact, known counts; /metrics must serve them with
#    exactly those values, be byte for byte the textfile sink's file of the same flush, pass
#    promtool, and come gzip-compressed (the same bytes once unpacked) when asked.
# 2. /healthz answers 200 while every plugin is up; a client that connects and sends nothing
#    does not hold up other scrapes (nothing blocks the loop); unknown paths, other methods
#    and oversized requests get 404, 405 and 431.
# 3. With a plugin that fails to start, /healthz answers 503 and names it.
# 4. A listen address that is not ADDRESS:PORT is a configuration error (78); a port in use
#    makes the daemon fail (1) with the reason.
set -u
. "$(dirname "$0")/lib.sh"

N=12 M=6 A=3333 B=1111 K=3
PROMTOOL=${PROMTOOL:-/usr/bin/promtool}

require_root
require_tools "packages prometheus, curl" "$PYTHON" "$PROMTOOL" /usr/bin/curl

work=$(mktemp -d)
HOLDER_PID=''
cleanup() {
	[ -z "$HOLDER_PID" ] || kill "$HOLDER_PID" 2>/dev/null
	[ -z "${DAEMON_PID:-}" ] || kill -KILL "$DAEMON_PID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT

port=$(free_port)
base=http://127.0.0.1:$port
mkdir "$work/textfile"
cat >"$work/http.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins: { tcpflow: {} }
sinks:
  prometheus_http: { listen: "127.0.0.1:$port" }
  prometheus_textfile: { directory: $work/textfile }
YAML

# ---- 1. exact values, same bytes as the textfile, promtool, gzip ----------------------------

start_daemon -c "$work/http.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
wait_port "$port" || fail "nothing listens on $port"

ports=$("$PYTHON" "$(dirname "$0")/tcp_load.py" --v4 $N --v6 $M --send $A --recv $B --refused $K) ||
	fail "tcp_load.py failed"
read -r P4 P6 PC < <(printf '%s' "$ports" | "$PYTHON" -c \
	'import json, sys; d = json.load(sys.stdin); print(d["v4_port"], d["v6_port"], d["closed_port"])')
[ -n "${PC:-}" ] || fail "cannot read the ports from: $ports"
tcp_load_labels "$P4" "$P6" "$PC"

# Before the first flush /metrics answers 503 (there is no snapshot yet).
deadline=$((SECONDS + 20))
while :; do
	: >"$work/metrics.txt"
	curl -sf --max-time 5 "$base/metrics" >"$work/metrics.txt" ||
		[ $SECONDS -lt $((deadline - 15)) ] || fail "GET /metrics failed"
	: >"$work/diff"
	failures=0
	SNAPSHOT=$work/metrics.txt DIFF=$work/diff
	expect_tcp_load
	expect 1 periscope_plugin_up 'plugin="tcpflow"'
	[ "$failures" = 0 ] && break
	if [ $SECONDS -ge $deadline ]; then
		echo "FAIL: $failures check(s) of /metrics (want = the load's count):" >&2
		cat "$work/diff" >&2
		exit 1
	fi
	sleep 0.5
done
echo "ok: /metrics serves the exact counts of $((N + M)) connections each way"

# The same flush gives the same bytes; a flush between the two reads gives a retry.
same=''
for _ in $(seq 20); do
	cp "$work/textfile/periscope.prom" "$work/before.prom"
	curl -sf --max-time 5 "$base/metrics" >"$work/metrics.txt" || fail "GET /metrics failed"
	cmp -s "$work/before.prom" "$work/textfile/periscope.prom" || continue
	cmp -s "$work/metrics.txt" "$work/before.prom" && { same=1; break; }
	diff "$work/before.prom" "$work/metrics.txt" | head -20 >&2
	fail "/metrics differs from the textfile of the same flush"
done
[ -n "$same" ] || fail "the textfile changed during every one of 20 scrapes"
"$PROMTOOL" check metrics <"$work/metrics.txt" >"$work/promtool.out" 2>&1 ||
	fail "promtool rejects /metrics:$(sed 's/^/\n  /' "$work/promtool.out")"
echo "ok: /metrics is the textfile's content byte for byte ($(wc -c <"$work/metrics.txt") bytes); promtool accepts it"

headers() { # ARGS...: the response headers of a request, CRs stripped
	curl -s --max-time 5 -o "$work/body" -D - "$@" | tr -d '\r'
}
for _ in $(seq 20); do
	headers -H 'Accept-Encoding: gzip' "$base/metrics" >"$work/gz.headers"
	curl -sf --max-time 5 "$base/metrics" >"$work/plain.txt"
	grep -qi '^Content-Encoding: gzip$' "$work/gz.headers" ||
		fail "no Content-Encoding: gzip with Accept-Encoding: gzip:$(sed 's/^/\n  /' "$work/gz.headers")"
	mv "$work/body" "$work/gz.body"
	gunzip <"$work/gz.body" >"$work/unpacked.txt" || fail "the gzip body does not unpack"
	cmp -s "$work/unpacked.txt" "$work/plain.txt" && break
done
cmp -s "$work/unpacked.txt" "$work/plain.txt" || fail "gzip and plain bodies differ in 20 tries"
[ "$(stat -c %s "$work/gz.body")" -lt "$(stat -c %s "$work/plain.txt")" ] ||
	fail "the gzip body is not smaller than the plain one"
headers -H 'Accept-Encoding: gzip;q=0, identity' "$base/metrics" >"$work/h"
grep -qi '^Content-Encoding' "$work/h" && fail "gzip sent although refused with q=0"
grep -q '^Content-Type: text/plain; version=0.0.4' "$work/h" || fail "wrong Content-Type:$(cat "$work/h")"
echo "ok: gzip when accepted ($(stat -c %s "$work/gz.body") of $(stat -c %s "$work/plain.txt") bytes), not when refused"

# ---- 2. /healthz, a silent client, errors ---------------------------------------------------

status_of() { # ARGS...: the HTTP status code
	curl -s --max-time 5 -o "$work/body" -w '%{http_code}' "$@"
}
[ "$(status_of "$base/healthz")" = 200 ] || fail "/healthz: $(cat "$work/body")"
grep -q '^ok: [0-9]* of [0-9]* plugins up' "$work/body" || fail "/healthz says: $(cat "$work/body")"
echo "ok: /healthz 200: $(cat "$work/body")"

# A client that connects and never sends: other scrapes go on meanwhile.
"$PYTHON" -c "
import socket, time
s = socket.create_connection(('127.0.0.1', $port))
time.sleep(30)" &
HOLDER_PID=$!
sleep 0.3
t0=$(date +%s%N)
[ "$(status_of "$base/healthz")" = 200 ] || fail "/healthz with a silent client connected: $(cat "$work/body")"
ms=$((($(date +%s%N) - t0) / 1000000))
[ "$ms" -lt 1000 ] || fail "/healthz took ${ms} ms while a silent client was connected"
kill "$HOLDER_PID" 2>/dev/null
wait "$HOLDER_PID" 2>/dev/null
HOLDER_PID=''
echo "ok: a silent client does not hold up /healthz (${ms} ms)"

[ "$(status_of "$base/nowhere")" = 404 ] || fail "unknown path: not 404"
[ "$(status_of -X POST "$base/metrics")" = 405 ] || fail "POST: not 405"
# HEAD: the headers of GET (Content-Length included), no body.
"$PYTHON" -c "
import socket
s = socket.create_connection(('127.0.0.1', $port))
s.sendall(b'HEAD /metrics HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
data = b''
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
head, sep, body = data.partition(b'\\r\\n\\r\\n')
assert head.startswith(b'HTTP/1.1 200 '), head
assert b'Content-Length: ' in head and int(head.split(b'Content-Length: ')[1].split(b'\\r')[0]) > 0, head
assert sep and not body, 'HEAD answered %d body bytes' % len(body)
" || fail "HEAD /metrics"
[ "$(status_of -H "X-Padding: $(head -c 9000 /dev/zero | tr '\0' a)" "$base/metrics")" = 431 ] ||
	fail "a 9000-byte header: not 431"
# The query string is not part of the path.
[ "$(status_of "$base/metrics?x=1")" = 200 ] || fail "/metrics?x=1: not 200"
echo "ok: 404, 405, HEAD, 431 and a query string"

# The request paths never reach the log.
grep -q nowhere "$DAEMON_ERR" && fail "a request path reached the log"
kill -HUP "$DAEMON_PID"
wait_for_log "running:" 20 || fail "no reload"
[ "$(status_of "$base/healthz")" = 200 ] || fail "/healthz after a reload: $(cat "$work/body")"
echo "ok: still serving after a reload"
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"

# ---- 3. a plugin down ------------------------------------------------------------------------

failing=$top_builddir/tests/unit/plugins/.libs/fails_init.so
[ -f "$failing" ] || fail "$failing is missing (built by make check)"
mkdir "$work/plugins"
cp "$PLUGIN_DIR/tcpflow.so" "$failing" "$work/plugins/"
cat >"$work/down.yaml" <<YAML
daemon: { flush_interval: 1s }
sinks: { prometheus_http: { listen: "127.0.0.1:$port" } }
YAML
start_daemon -c "$work/down.yaml" --plugin-dir "$work/plugins" || fail "periscoped did not start"
wait_port "$port" || fail "nothing listens on $port"
sleep 1.5
[ "$(status_of "$base/healthz")" = 503 ] || fail "/healthz with fails_init down: $(cat "$work/body")"
grep -q 'plugins down: fails_init (1 of 2 up)' "$work/body" || fail "/healthz says: $(cat "$work/body")"
echo "ok: /healthz 503: $(cat "$work/body")"
stop_daemon

# ---- 4. bad addresses -------------------------------------------------------------------------

for bad in "127.0.0.1" "127.0.0.1:0" "127.0.0.1:70000" "example.com:80" "[::1]9464" "1.2.3:80"; do
	printf 'sinks: { prometheus_http: { listen: "%s" } }\n' "$bad" >"$work/bad.yaml"
	"$PERISCOPED" -c "$work/bad.yaml" --plugin-dir "$PLUGIN_DIR" --check-config \
		>"$work/out" 2>"$work/err"
	rc=$?
	[ $rc = 78 ] || fail "listen '$bad': --check-config exited $rc, not 78"
	grep -qF "listen: '$bad' is not ADDRESS:PORT" "$work/err" ||
		fail "listen '$bad': no clear error:$(sed 's/^/\n  /' "$work/err")"
done
echo "ok: 6 malformed addresses rejected by --check-config (78)"

"$PYTHON" -c "
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', $port)); s.listen()
time.sleep(30)" &
HOLDER_PID=$!
wait_port "$port" || fail "the port holder does not listen"
printf 'sinks: { prometheus_http: { listen: "127.0.0.1:%s" } }\n' "$port" >"$work/busy.yaml"
"$PERISCOPED" -c "$work/busy.yaml" --plugin-dir "$PLUGIN_DIR" --check-config >/dev/null 2>&1 ||
	fail "--check-config must not bind: it failed while the port is in use"
timeout 30 "$PERISCOPED" -c "$work/busy.yaml" --plugin-dir "$PLUGIN_DIR" --duration 5 \
	--instance "$(test_instance)" \
	>"$work/out" 2>"$work/err"
rc=$?
[ $rc = 1 ] || fail "a port in use: exit $rc, not 1"
grep -q "cannot listen on 127.0.0.1:$port: address already in use" "$work/err" ||
	fail "a port in use: no clear error:$(sed 's/^/\n  /' "$work/err")"
echo "ok: a port in use fails the start (1) with the reason; --check-config does not bind"
