#!/usr/bin/env bash
# Secrets in URL paths never reach an output: requests for paths with tokens, emails and
# JWTs, one of them failing so that an alert names its route, then every output is searched
# for the secrets: the stdout table, the textfile, the daemon's log (at debug level) and the
# alert as a remote syslog collector received it. Then random paths from one client: the
# service's distinct routes stay within plugins.http.max_routes, the excess in /{other}, and
# the table shows its busiest max_rows rows and says how many it left out.
set -u
. "$(dirname "$0")/lib.sh"

MAX_ROUTES=20 RANDOM_PATHS=300
here=$(cd "$(dirname "$0")" && pwd)
secrets=(SECRET789abc SECRET456def alice@example.com alice bob%40example.org example.org
	eyJhbGciOiJIUzI1NiJ9 dozjgNryP4J3jVmNHl0w5N Zm9vYmFyYmF6cXV4 7f3a9c2e81b4d605)

require_root
require_tools "apt-get install python3" "$PYTHON"

make_work

bin=$work/bin
mkdir -p "$bin"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-secrets"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-asker"

"$bin/pstest-secrets" "$here/http/sleeper.py" >"$work/server.json" &
children+=($!)
for _ in $(seq 100); do
	[ -s "$work/server.json" ] && break
	sleep 0.1
done
PORT=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' \
	"$work/server.json" 2>/dev/null) || fail "the backend did not start"

# A syslog collector: every datagram, one per line.
SYSLOG_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PYTHON" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).replace(b"\n", b" ") + b"\n")
' "$SYSLOG_PORT" "$work/syslog.txt" &
children+=($!)

textdir=$work/textfile
mkdir -p "$textdir"
cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins:
  http: { ports: [$PORT], max_routes: $MAX_ROUTES }
  tcpflow: { enabled: false }
services:
  - { match: { exe: $bin/pstest-secrets }, name: pstest-secrets }
  - { match: { exe: $bin/pstest-asker }, name: pstest-asker }
sinks:
  stdout: { format: table }
  prometheus_textfile: { directory: $textdir }
  syslog: { remote: "udp://127.0.0.1:$SYSLOG_PORT" }
alerts:
  - name: failing-route
    protocol: http
    where: { service_name: pstest-secrets }
    by: [service_name, http_route]
    error_ratio: { above: 0.5, min_requests: 1 }
    window: 10s
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" --log-level debug ||
	fail "periscoped did not start"
# Alert rules count what moved after their first evaluation (the first flush): the failing
# request must come after it, however long the plugins took to start.
for _ in $(seq 50); do
	grep -q '^── periscope' "$DAEMON_OUT" && break
	sleep 0.1
done

jwt=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U
"$bin/pstest-asker" "$here/http/timed_client.py" "$PORT" 2 \
	/reset/SECRET789abc /users/alice@example.com/settings /users/bob%40example.org \
	"/confirm/$jwt" /share/Zm9vYmFyYmF6cXV4 /blobs/7f3a9c2e81b4d605/raw \
	/fail/reset/SECRET456def >"$work/secrets.out" || fail "the client failed"
[ "$(grep -c ' 200 ' "$work/secrets.out")" = 6 ] || fail "client: $(cat "$work/secrets.out")"
wait_for_log "failing-route FIRING" 10 || fail "the alert did not fire"

# Random paths: /r/<8 random letters>, one request each.
"$PYTHON" -c '
import random, string, sys
random.seed(9)
print(" ".join("/r/" + "".join(random.choice(string.ascii_lowercase) for _ in range(8))
               for _ in range(int(sys.argv[1]))))' "$RANDOM_PATHS" >"$work/random.txt"
# shellcheck disable=SC2046
"$bin/pstest-asker" "$here/http/timed_client.py" "$PORT" 1 $(cat "$work/random.txt") \
	>"$work/random.out" || fail "the random-path client failed"
sleep 2.5
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
for _ in $(seq 20); do
	grep -q "failing-route" "$work/syslog.txt" 2>/dev/null && break
	sleep 0.1
done

failures=0
prom=$textdir/periscope.prom
outputs=("$DAEMON_OUT" "$prom" "$DAEMON_ERR" "$work/syslog.txt")
names=(stdout textfile log syslog)
for i in "${!outputs[@]}"; do
	for s in "${secrets[@]}"; do
		if grep -q -F -- "$s" "${outputs[$i]}"; then
			echo "  '$s' is in the ${names[$i]} output:" >&2
			grep -F -- "$s" "${outputs[$i]}" | head -2 | sed 's/^/    /' >&2
			failures=$((failures + 1))
		fi
	done
done

# Not vacuous: the exchanges are there, under their templates, in every output.
sel='service_name="pstest-secrets"'
SD=http_server_request_duration_seconds
for route in /reset/{id} /users/{id}/settings /users/{id} /confirm/{id} /share/{id} \
	/blobs/{id}/raw /fail/reset/{id}; do
	want=2
	got=$(series_value "$prom" ${SD}_count "$sel" "http_route=\"$route\"")
	[ "$got" = "$want" ] || { echo "  $route: $got requests in the textfile, want $want" >&2; failures=$((failures + 1)); }
done
grep -q -F '/fail/reset/{id}' "$work/syslog.txt" ||
	{ echo "  the collector got no alert for /fail/reset/{id}: $(cat "$work/syslog.txt")" >&2; failures=$((failures + 1)); }
grep -q -F '/fail/reset/{id}' "$DAEMON_ERR" ||
	{ echo "  the log has no alert for /fail/reset/{id}" >&2; failures=$((failures + 1)); }
grep -q -F '/reset/{id}' "$DAEMON_OUT" ||
	{ echo "  the table has no /reset/{id} row" >&2; failures=$((failures + 1)); }

# Random paths: at most MAX_ROUTES distinct routes, every request counted.
routes=$(grep "^${SD}_count{$sel" "$prom" | sed 's/.*http_route="\([^"]*\)".*/\1/' | sort -u | wc -l)
other=$(series_value "$prom" ${SD}_count "$sel" 'http_route="/{other}"')
total=$(series_value "$prom" ${SD}_count "$sel")
if [ "$routes" -gt $((MAX_ROUTES + 1)) ]; then
	echo "  $routes distinct routes, want at most $MAX_ROUTES + /{other}" >&2
	failures=$((failures + 1))
fi
[ "$other" -gt 0 ] || { echo "  nothing folded into /{other}" >&2; failures=$((failures + 1)); }
[ "$total" = $((7 * 2 + RANDOM_PATHS)) ] ||
	{ echo "  $total requests counted, want $((7 * 2 + RANDOM_PATHS))" >&2; failures=$((failures + 1)); }
grep -q -E '^  \.\.\. [0-9]+ more rows \(the 20 busiest are shown: max_rows\)$' "$DAEMON_OUT" ||
	{ echo "  the table never said it left rows out" >&2; failures=$((failures + 1)); }
grep -q "^  periscope_series_dropped_total" "$DAEMON_OUT" &&
	{ echo "  series were dropped at the series cap" >&2; failures=$((failures + 1)); }

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s)" >&2
	exit 1
fi
echo "ok: no secret in stdout, textfile, log or syslog; $RANDOM_PATHS random paths in" \
	"$routes routes ($other requests under /{other})"
exit 0
