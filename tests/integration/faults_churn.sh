#!/usr/bin/env bash
# Churn (issue 16): traced processes SIGKILLed with a request in flight (clients and servers),
# then 10,000 short-lived processes making an HTTP request each. Afterwards, within a few
# flushes, every hash map periscoped holds in the kernel, and the core's process cache and
# capture connection table (periscope_proc_cache_entries, periscope_capture_connections), are
# back to their baseline (other traffic on the host allowed for: none may keep CHURN_SLACK
# entries more), the server (nginx) counted each of the 10,000 requests exactly, and the
# daemon's RSS did not grow past RSS_SLACK_KB.
#
# Not in the default make check (about 3 minutes, and other suites' TLS traffic beside it
# grows ps_sc_tls_fds, whose entries nothing deletes): make check TESTS=tests/integration/faults_churn.sh
set -u
. "$(dirname "$0")/lib.sh"

PROCS=${CHURN_PROCS:-10000}
CHURN_SLACK=${CHURN_SLACK:-100}
RSS_SLACK_KB=${RSS_SLACK_KB:-16384}

require_root
require_tools "apt-get install python3 bpftool nginx-light" "$PYTHON" bpftool nginx
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
import os, socket, sys

# N processes, 32 at a time, each one connection and one request, then _exit.
n, port = int(sys.argv[1]), int(sys.argv[2])
running = failed = 0
for i in range(n):
    if running == 32:
        _, status = os.wait()
        running -= 1
        failed += status != 0
    if os.fork() == 0:
        code = 1
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = s.recv(4096)
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

# nginx answers the 10,000 (fast); a python server holds the requests that get killed (slow).
PORT=$(free_port)
SLOW_PORT=$(free_port)
cp "$(command -v nginx)" "$work/bin/pstest-chngx"
write_nginx_conf "$work/nginx" <<NGINX
	server {
		listen 127.0.0.1:$PORT;
		location = /fast { return 200 "ok\n"; }
	}
NGINX
"$work/bin/pstest-chngx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
children+=($!)
"$work/bin/pstest-chsrv" "$work/server.py" "$SLOW_PORT" &
children+=($!)
wait_port "$PORT" || fail "nginx did not start"
wait_port "$SLOW_PORT" || fail "the server did not start"

cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins: {}
services:
  - { match: { exe: $work/bin/pstest-chsrv }, name: pstest-chsrv }
  - { match: { exe: $work/bin/pstest-chngx }, name: pstest-chngx }
  - { match: { exe: $work/bin/pstest-chcli }, name: pstest-chcli }
  - { match: { exe: $work/bin/pstest-chfork }, name: pstest-chfork }
sinks: { stdout: { format: prometheus } }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$DAEMON_PID/status"; }
# The core's user-space tables, from its own gauges in the last snapshot.
tables() {
	last_snapshot <"$DAEMON_OUT" >"$work/tables.prom"
	echo "proc_cache $(series_value "$work/tables.prom" periscope_proc_cache_entries)"
	echo "capture_conns $(series_value "$work/tables.prom" periscope_capture_connections)"
}
wait_for_snapshots 2 || fail "no flush"
"${objects[@]}" entries "$DAEMON_PID" >"$work/base.txt"
tables >>"$work/base.txt"
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
	port2=$(free_port)
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
"$work/bin/pstest-chfork" "$work/fork.py" "$PROCS" "$PORT" || fail "some of the $PROCS processes failed"
echo "$PROCS processes, a request each, in $((SECONDS - start)) s"
"${objects[@]}" entries "$DAEMON_PID" >"$work/peak.txt"
wait_for_snapshots 1 || fail "no flush"
tables >>"$work/peak.txt"
rss1=$(rss)

# A couple of flushes later: back to the baseline.
sleep 1
for _ in $(seq 15); do
	wait_for_snapshots 1 || fail "no flush"
	"${objects[@]}" entries "$DAEMON_PID" >"$work/after.txt"
	tables >>"$work/after.txt"
	grown=$(awk -v slack="$CHURN_SLACK" 'NR == FNR { base[$1] = $2; next }
		($1 in base) && $2 - base[$1] >= slack { print $1, base[$1], "->", $2 }' \
		"$work/base.txt" "$work/after.txt")
	[ -z "$grown" ] && break
done
rss2=$(rss)
echo "in-kernel hash maps and user-space tables (baseline, right after the churn, settled):"
join "$work/base.txt" <(join "$work/peak.txt" "$work/after.txt") | sed 's/^/  /'
echo "daemon RSS: ${rss0} kB before, ${rss1} kB right after, ${rss2} kB settled"
[ -z "$grown" ] || fail "maps or tables did not return to their baseline: $grown"
[ $((rss2 - rss0)) -le "$RSS_SLACK_KB" ] || fail "RSS grew by $((rss2 - rss0)) kB"

final_snapshot "$work/final.prom"
SNAPSHOT=$work/final.prom
expect "$PROCS" http_server_request_duration_seconds_count 'service_name="pstest-chngx"' \
	'http_route="/fast"' 'http_response_status_code="200"'
expect 1 periscope_plugin_up 'plugin="http"'
expect 1 periscope_plugin_up 'plugin="tcpflow"'
expect_tcp_invariant
if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s):" >&2
	cat "$DIFF" >&2
	exit 1
fi
echo "ok: killed mid-request and $PROCS short-lived processes: maps at baseline, counts exact"
exit 0
