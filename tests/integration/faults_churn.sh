#!/usr/bin/env bash
# Churn (issue 16): traced processes SIGKILLed with a request in flight (clients and servers),
# then 10,000 short-lived processes making an HTTP request each, every fourth over TLS.
# Afterwards, within a few flushes, every hash map periscoped holds in the kernel, and the
# core's process cache and capture connection table (periscope_proc_cache_entries, less the
# host's processes, and periscope_capture_connections), are back to their baseline (other
# traffic on the host allowed for: none may keep CHURN_SLACK entries more), the server (nginx)
# counted each of the 10,000 requests exactly, and the daemon's RSS did not grow past
# RSS_SLACK_KB.
#
# A second periscoped watches the same churn through a capture ring of 4 KiB: it drops events
# on purpose (CLOSE and EXIT among them), and its tables and maps must come back all the same.
set -u
. "$(dirname "$0")/lib.sh"

PROCS=${CHURN_PROCS:-10000}
TLS_EVERY=4 # every fourth of them speaks TLS: OpenSSL's uprobes bind SSL objects to connections
CHURN_SLACK=${CHURN_SLACK:-100}
RSS_SLACK_KB=${RSS_SLACK_KB:-16384}

require_root
require_tools "apt-get install python3 bpftool nginx-light openssl" "$PYTHON" bpftool nginx openssl
one_at_a_time faults

here=$(cd "$(dirname "$0")" && pwd)
objects=("$PYTHON" "$here/faults/bpf_objects.py")
make_work
DIFF=$work/diff
: >"$DIFF"

mkdir -p "$work/bin"
for name in pstest-chsrv pstest-chcli pstest-chfork; do
	cp "$(readlink -f "$PYTHON")" "$work/bin/$name"
done
cat >"$work/server.py" <<'PY'
import http.server, sys, time

class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(30)  # killed long before
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
cat >"$work/fork.py" <<'PY'
import os, socket, ssl, sys

# N processes, 128 at a time (a loaded host's scheduler makes each wait: more at once go
# faster), each one connection and one request, then _exit; every TLS_EVERY-th over TLS.
n, port, tls_port, tls_every = (int(a) for a in sys.argv[1:5])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
running = failed = 0
for i in range(n):
    if running == 128:
        _, status = os.wait()
        running -= 1
        failed += status != 0
    if os.fork() == 0:
        code = 1
        try:
            tls = i % tls_every == 0
            s = socket.create_connection(("127.0.0.1", tls_port if tls else port), timeout=30)
            if tls:
                s = ctx.wrap_socket(s)
            s.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                try:
                    chunk = s.recv(4096)
                except ssl.SSLEOFError:
                    chunk = b""
                if not chunk:
                    break
                data += chunk
            code = 0 if data.startswith(b"HTTP/1.1 200") else 1
        finally:
            os._exit(code)
    running += 1
while running:
    _, status = os.wait()
    running -= 1
    failed += status != 0
sys.exit(1 if failed else 0)
PY

# nginx answers the 10,000 (fast), in plaintext and over TLS; a python server holds the
# requests that get killed (slow), then, on SLOW2_PORT, the servers that get killed.
PORT=$(free_port)
TLS_PORT=$(free_port)
SLOW_PORT=$(free_port)
SLOW2_PORT=$(free_port)
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
	-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1 || fail "openssl req failed"
cp "$(command -v nginx)" "$work/bin/pstest-chngx"
write_nginx_conf "$work/nginx" <<NGINX
	server {
		listen 127.0.0.1:$PORT;
		location = /fast { return 200 "ok\n"; }
	}
	server {
		listen 127.0.0.1:$TLS_PORT ssl;
		ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		location = /fast { return 200 "ok\n"; }
	}
NGINX
"$work/bin/pstest-chngx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
children+=($!)
"$work/bin/pstest-chsrv" "$work/server.py" "$SLOW_PORT" &
children+=($!)
wait_port "$PORT" || fail "nginx did not start"
wait_port "$TLS_PORT" || fail "nginx did not start"
wait_port "$SLOW_PORT" || fail "the server did not start"

# The test's ports only: what other suites (or a soak) run on this host beside it neither
# fills the rings nor counts here. The other L7 plugins stay out for the same reason.
HTTP="http: { ports: [$PORT, $TLS_PORT, $SLOW_PORT, $SLOW2_PORT] }"
SERVICES="services:
  - { match: { exe: $work/bin/pstest-chsrv }, name: pstest-chsrv }
  - { match: { exe: $work/bin/pstest-chngx }, name: pstest-chngx }
  - { match: { exe: $work/bin/pstest-chcli }, name: pstest-chcli }
  - { match: { exe: $work/bin/pstest-chfork }, name: pstest-chfork }"
mkdir -m 755 "$work/plugins" "$work/plugins-lossy"
for p in http tcpflow resources tracectx; do
	[ -e "$PLUGIN_DIR/$p.so" ] && cp "$PLUGIN_DIR/$p.so" "$work/plugins/"
done
cp "$PLUGIN_DIR/http.so" "$work/plugins-lossy/"
cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
capture: { hooks: $CAPTURE_HOOKS }
plugins: { $HTTP }
$SERVICES
sinks: { stdout: { format: prometheus } }
YAML
cat >"$work/lossy.yaml" <<YAML
daemon: { flush_interval: 1s }
capture: { hooks: $CAPTURE_HOOKS, ring_size: 4KiB }
plugins: { $HTTP }
$SERVICES
sinks: { stdout: { format: prometheus } }
YAML

# The lossy one first, by hand (lib.sh's helpers follow the main one).
LOSSY_OUT=$work/lossy.out
LOSSY_ERR=$work/lossy.err
"$PERISCOPED" --instance "$(test_instance)-lossy" -c "$work/lossy.yaml" \
	--plugin-dir "$work/plugins-lossy" >"$LOSSY_OUT" 2>"$LOSSY_ERR" &
LOSSY_PID=$!
children+=($LOSSY_PID)
for _ in $(seq 300); do
	grep -qs "running:" "$LOSSY_ERR" && break
	kill -0 "$LOSSY_PID" 2>/dev/null || break
	sleep 0.1
done
grep -q "running:" "$LOSSY_ERR" || fail "the lossy periscoped did not start: $(tail -5 "$LOSSY_ERR")"
start_daemon -c "$work/periscope.yaml" --plugin-dir "$work/plugins" || fail "periscoped did not start"
expect_capture_hooks

rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$DAEMON_PID/status"; }
# tables OUT: the core's user-space tables, from its own gauges in the last snapshot of OUT.
# The process cache holds live processes the plugins saw (each flush frees the others): other
# suites' processes come and go in it, so it is judged beside the host's process count.
tables() {
	local cached live
	last_snapshot <"$1" >"$work/tables.prom"
	cached=$(series_value "$work/tables.prom" periscope_proc_cache_entries)
	live=$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)
	echo "proc_cache-host_processes $((cached - live))"
	echo "capture_conns $(series_value "$work/tables.prom" periscope_capture_connections)"
}
# measure FILE: both daemons' maps and tables, the lossy one's under "lossy/" names.
measure() {
	{
		"${objects[@]}" entries "$DAEMON_PID"
		tables "$DAEMON_OUT"
		{ "${objects[@]}" entries "$LOSSY_PID"; tables "$LOSSY_OUT"; } | sed 's|^|lossy/|'
	} | LC_ALL=C sort >"$1"
}
snapshots() { grep -c '^# periscope snapshot' "$1"; }
# Both have flushed n more times.
wait_both() {
	local want=$(($(snapshots "$LOSSY_OUT") + $1))
	wait_for_snapshots "$1" || return 1
	for _ in $(seq 300); do
		[ "$(snapshots "$LOSSY_OUT")" -ge "$want" ] && return 0
		sleep 0.1
	done
	return 1
}
wait_both 2 || fail "no flush"
measure "$work/base.txt"
rss0=$(rss)

# ---- killed mid-request: clients, then servers ------------------------------------------------
for _ in 1 2 3 4 5; do
	"$work/bin/pstest-chcli" -c 'import sys, urllib.request
urllib.request.urlopen("http://127.0.0.1:%s/slow" % sys.argv[1], timeout=60)' "$SLOW_PORT" &
	pid=$!
	sleep 0.3
	kill -KILL "$pid"
	wait "$pid" 2>/dev/null
done
for _ in 1 2 3; do
	port2=$SLOW2_PORT # the same each time: the killed one's listener is gone (SO_REUSEADDR)
	"$work/bin/pstest-chsrv" "$work/server.py" "$port2" &
	srv=$!
	wait_port "$port2" || fail "the second server did not start"
	"$work/bin/pstest-chcli" -c 'import sys, urllib.request
try:
    urllib.request.urlopen("http://127.0.0.1:%s/slow" % sys.argv[1], timeout=60)
except Exception:
    pass' "$port2" &
	cli=$!
	sleep 0.3
	kill -KILL "$srv"
	wait "$srv" 2>/dev/null
	wait "$cli"
done
echo "killed mid-request: 5 clients, 3 servers"

# ---- 10,000 short-lived processes ------------------------------------------------------------
start=$SECONDS
"$work/bin/pstest-chfork" "$work/fork.py" "$PROCS" "$PORT" "$TLS_PORT" "$TLS_EVERY" ||
	fail "some of the $PROCS processes failed"
echo "$PROCS processes, a request each ($((PROCS / TLS_EVERY)) over TLS), in $((SECONDS - start)) s"
wait_both 1 || fail "no flush"
measure "$work/peak.txt"
rss1=$(rss)

# A few flushes later (a CLOSE or EXIT the ring dropped is applied after a second): back to
# the baseline.
for _ in $(seq 15); do
	wait_both 1 || fail "no flush"
	measure "$work/after.txt"
	grown=$(awk -v slack="$CHURN_SLACK" 'NR == FNR { base[$1] = $2; next }
		($1 in base) && $2 - base[$1] >= slack { print $1, base[$1], "->", $2 }' \
		"$work/base.txt" "$work/after.txt")
	[ -z "$grown" ] && break
done
rss2=$(rss)
echo "in-kernel hash maps and user-space tables (baseline, right after the churn, settled):"
LC_ALL=C join "$work/base.txt" <(LC_ALL=C join "$work/peak.txt" "$work/after.txt") | sed 's/^/  /'
echo "daemon RSS: ${rss0} kB before, ${rss1} kB right after, ${rss2} kB settled"
[ -z "$grown" ] || fail "maps or tables did not return to their baseline: $grown"
[ $((rss2 - rss0)) -le "$RSS_SLACK_KB" ] || fail "RSS grew by $((rss2 - rss0)) kB"
last_snapshot <"$LOSSY_OUT" >"$work/lossy.prom"
lossy_drops=$(series_value "$work/lossy.prom" periscope_events_dropped_total)
echo "the lossy periscoped dropped $lossy_drops events"
[ "$lossy_drops" != 0 ] || fail "the 4 KiB ring dropped nothing: dropped CLOSE and EXIT events went untested"

final_snapshot "$work/final.prom"
SNAPSHOT=$work/final.prom
expect "$PROCS" http_server_request_duration_seconds_count 'service_name="pstest-chngx"' \
	'http_route="/fast"' 'http_response_status_code="200"'
expect 1 periscope_plugin_up 'plugin="http"'
expect 1 periscope_plugin_up 'plugin="tcpflow"'
# On the test's own ports: other suites' connections are not this test's to judge.
grep -E "peer_port=\"($PORT|$TLS_PORT|$SLOW_PORT|$SLOW2_PORT)\"" "$SNAPSHOT" >"$work/own.prom"
[ -s "$work/own.prom" ] || fail "tcpflow saw none of the test's connections"
expect_tcp_invariant "$work/own.prom"
if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s):" >&2
	cat "$DIFF" >&2
	exit 1
fi
echo "ok: killed mid-request and $PROCS short-lived processes: maps at baseline, counts exact"
exit 0
