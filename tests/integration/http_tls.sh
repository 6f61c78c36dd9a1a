#!/usr/bin/env bash
# http over TLS (OpenSSL uprobes) against exact counts, server view and client view:
#   nginx (one worker) with a self-signed certificate: /ok 200, /fail 500 over https,
#     /plain 200 on a second, plaintext port of the same nginx
#   ab -k over https (SSL_read/SSL_write), curl -k over https and over http
#   python3's ssl module (SSL_read_ex/SSL_write_ex): a keep-alive TLS connection opened
#     before periscoped started, and a client that loads its own copy of libssl after
#     periscoped started (found through its exec or its first TLS connection)
#   every HTTPS exchange counted once, with url_scheme="https"; none with "http" on the TLS
#     port (the ciphertext was not decoded as well); the plaintext port stays "http"
#   tls: off: nothing at all is counted on the TLS port
# Every server and client runs from a copy of its binary under a `services` rule, so that
# other HTTP traffic on the machine cannot touch the series we count.
set -u
. "$(dirname "$0")/lib.sh"

N=${HTTP_TEST_N:-300} # ab requests per location
CURL=5 PLAIN=4 EARLY=5 PRIVATE=6 OFF=3
here=$(cd "$(dirname "$0")" && pwd)

require_root
one_at_a_time http
require_tools "apt-get install nginx-light apache2-utils curl openssl python3" \
	nginx ab curl openssl "$PYTHON"
libssl=$(ldd "$(command -v nginx)" | awk '$1 ~ /^libssl\.so/ { print $3 }')
if [ -z "$libssl" ] || [ ! -f "$libssl" ]; then
	echo "SKIP: nginx is not linked with OpenSSL's libssl"
	exit 77
fi

work=$(mktemp -d)
chmod 755 "$work"
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
mkdir -p "$bin" "$work/lib"
cp "$(command -v nginx)" "$bin/pstest-nginx"
cp "$(command -v ab)" "$bin/pstest-ab"
cp "$(command -v curl)" "$bin/pstest-curl"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-pyclient"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-pyown"
# A libssl no process maps yet and no library directory holds: found only through the
# processes that load it.
cp "$libssl" "$work/lib/"
curl=("$bin/pstest-curl" -s -S --max-time 10)

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
	-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1 || fail "openssl req failed"

# wait_line FILE TEXT: until a line of FILE is TEXT (10 s).
wait_line() {
	for _ in $(seq 100); do
		grep -qx "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# ---- nginx --------------------------------------------------------------------------------
TLS_PORT=$(free_port)
PLAIN_PORT=$(free_port)
mkdir -p "$work/nginx/tmp"
write_nginx_conf "$work/nginx" <<EOF
	server {
		listen 127.0.0.1:$TLS_PORT ssl;
		ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		location = /ok { return 200 "ok\n"; }
		location = /fail { return 500; }
		location = /early { return 200 "early\n"; }
		location = /late { return 200 "late\n"; }
		location = /private { return 200 "private\n"; }
		location = /off { return 200 "off\n"; }
	}
	server {
		listen 127.0.0.1:$PLAIN_PORT;
		location = /plain { return 200 "plain\n"; }
	}
EOF
"$bin/pstest-nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
children+=($!)
wait_port "$TLS_PORT" || fail "nginx did not start: $(cat "$work/nginx/error.log")"
wait_port "$PLAIN_PORT" || fail "nginx did not start: $(cat "$work/nginx/error.log")"

# A keep-alive TLS connection that predates periscoped: one request now, EARLY later.
mkfifo "$work/early.in" "$work/private.in"
"$bin/pstest-pyclient" "$here/http/tls_client.py" 127.0.0.1 "$TLS_PORT" /early 1 /late "$EARLY" \
	<"$work/early.in" >"$work/early.out" &
early_pid=$!
children+=($early_pid)
exec 3>"$work/early.in"
wait_line "$work/early.out" ready || fail "the early TLS client did not get its first response"

# ---- periscoped ---------------------------------------------------------------------------
# The mysql plugin asks for OpenSSL plaintext too (tls: auto): it would attach the uprobes
# that tls: off must do without.
others=
[ -e "$PLUGIN_DIR/mysql.so" ] && others="  mysql: { enabled: false }"
write_config() {
	cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
capture: { hooks: $CAPTURE_HOOKS }
plugins:
  http: { tls: $1 }
  tcpflow: { enabled: false }
$others
services:
  - { match: { exe: $bin/pstest-nginx }, name: pstest-nginx }
  - { match: { exe: $bin/pstest-ab }, name: pstest-ab }
  - { match: { exe: $bin/pstest-curl }, name: pstest-curl }
  - { match: { exe: $bin/pstest-pyclient }, name: pstest-pyclient }
  - { match: { exe: $bin/pstest-pyown }, name: pstest-pyown }
sinks: { stdout: { format: prometheus } }
YAML
}
write_config auto
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
expect_capture_hooks

# ---- load ---------------------------------------------------------------------------------
echo go >&3
exec 3>&-
wait "$early_pid" || fail "the early TLS client failed: $(cat "$work/early.out")"
[ "$(grep -c '^200$' "$work/early.out")" = "$EARLY" ] || fail "early client: $(cat "$work/early.out")"

# A client that maps its own libssl after periscoped started: periscoped must find it
# (exec, or its first TLS connection) before the client's requests go out.
LD_LIBRARY_PATH=$work/lib "$bin/pstest-pyown" "$here/http/tls_client.py" 127.0.0.1 \
	"$TLS_PORT" /private 0 /private "$PRIVATE" <"$work/private.in" >"$work/private.out" &
private_pid=$!
children+=($private_pid)
exec 4>"$work/private.in"
wait_line "$work/private.out" ready || fail "the private-libssl client did not connect"
grep -q "$work/lib/libssl" "/proc/$private_pid/maps" || fail "the client does not map $work/lib's libssl"
wait_for_log "TLS: OpenSSL uprobes on $work/lib/libssl" 10 ||
	fail "periscoped did not attach to the libssl the new client loaded"
echo go >&4
exec 4>&-
wait "$private_pid" || fail "the private-libssl client failed: $(cat "$work/private.out")"
[ "$(grep -c '^200$' "$work/private.out")" = "$PRIVATE" ] ||
	fail "private-libssl client: $(cat "$work/private.out")"

for loc in ok fail; do
	"$bin/pstest-ab" -q -k -c 4 -n "$N" "https://127.0.0.1:$TLS_PORT/$loc" >"$work/ab-$loc" 2>&1 ||
		fail "ab /$loc: $(cat "$work/ab-$loc")"
	grep -q "^Complete requests: *$N\$" "$work/ab-$loc" || fail "ab /$loc: $(cat "$work/ab-$loc")"
	grep -q "^Failed requests: *0\$" "$work/ab-$loc" || fail "ab /$loc: $(cat "$work/ab-$loc")"
done

expect_status() {
	local want=$1 got
	shift
	got=$("${curl[@]}" -o /dev/null -w '%{http_code}' "$@")
	[ "$got" = "$want" ] || fail "curl $*: status $got, want $want"
}
for _ in $(seq "$CURL"); do
	expect_status 200 -k "https://127.0.0.1:$TLS_PORT/ok"
	expect_status 500 -k "https://127.0.0.1:$TLS_PORT/fail"
done
for _ in $(seq "$PLAIN"); do
	expect_status 200 "http://127.0.0.1:$PLAIN_PORT/plain"
done

snap=$work/snapshot.prom
final_snapshot "$snap"
SNAPSHOT=$snap DIFF=$work/diff

# ---- checks -------------------------------------------------------------------------------

SD=http_server_request_duration_seconds
CD=http_client_request_duration_seconds
get='http_request_method="GET"'
https='url_scheme="https"'
http='url_scheme="http"'
nginx=('service_name="pstest-nginx"' "$get")
s200='http_response_status_code="200"'
s500='http_response_status_code="500"'
to_tls=('server_address="127.0.0.1"' "server_port=\"$TLS_PORT\"")

# nginx, server view: https on the TLS port, exactly once; http only on the plaintext port.
expect $((N + CURL)) ${SD}_count "${nginx[@]}" "$s200" 'http_route="/ok"' "$https"
expect $((N + CURL)) ${SD}_count "${nginx[@]}" "$s500" 'http_route="/fail"' "$https"
expect "$EARLY" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/late"' "$https"
expect 0 ${SD}_count "${nginx[@]}" 'http_route="/early"'
expect "$PRIVATE" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/private"' "$https"
expect $((2 * (N + CURL) + EARLY + PRIVATE)) ${SD}_count "${nginx[@]}" "$https"
expect "$PLAIN" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/plain"' "$http"
expect "$PLAIN" ${SD}_count "${nginx[@]}" "$http"
expect $((3 * (N + CURL))) http_server_response_body_size_bytes_sum "${nginx[@]}" \
	'http_route="/ok"' "$https"

# The clients' view.
expect "$N" ${CD}_count 'service_name="pstest-ab"' "$get" "${to_tls[@]}" "$s200" "$https"
expect "$N" ${CD}_count 'service_name="pstest-ab"' "$get" "${to_tls[@]}" "$s500" "$https"
expect $((2 * N)) ${CD}_count 'service_name="pstest-ab"'
expect "$CURL" ${CD}_count 'service_name="pstest-curl"' "$get" "${to_tls[@]}" "$s200" "$https"
expect "$CURL" ${CD}_count 'service_name="pstest-curl"' "$get" "${to_tls[@]}" "$s500" "$https"
expect $((2 * CURL)) ${CD}_count 'service_name="pstest-curl"' "$https"
expect "$PLAIN" ${CD}_count 'service_name="pstest-curl"' "$get" "server_port=\"$PLAIN_PORT\"" \
	"$s200" "$http"
expect "$PLAIN" ${CD}_count 'service_name="pstest-curl"' "$http"
expect "$EARLY" ${CD}_count 'service_name="pstest-pyclient"' "$get" "${to_tls[@]}" "$s200" "$https"
expect "$EARLY" ${CD}_count 'service_name="pstest-pyclient"'
expect "$PRIVATE" ${CD}_count 'service_name="pstest-pyown"' "$get" "${to_tls[@]}" "$s200" \
	"$https"
expect "$PRIVATE" ${CD}_count 'service_name="pstest-pyown"'

# Ciphertext never reaches the decoder: nothing on the TLS port says http.
expect 0 ${CD}_count "server_port=\"$TLS_PORT\"" "$http"
expect 0 periscope_events_dropped_total 'plugin="capture"'
expect 1 periscope_plugin_up 'plugin="http"'

if command -v promtool >/dev/null 2>&1; then
	if ! promtool check metrics <"$snap" >"$work/promtool" 2>&1; then
		sed 's/^/  promtool: /' "$work/promtool" >>"$work/diff"
		failures=$((failures + 1))
	fi
fi

# ---- tls: off -----------------------------------------------------------------------------
# No uprobes, and the ciphertext is still not taken for HTTP: the TLS port stays silent.
write_config off
rm -f "$DAEMON_OUT" "$DAEMON_ERR" # start_daemon makes new ones
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped (tls: off) did not start"
for _ in $(seq "$OFF"); do
	expect_status 200 -k "https://127.0.0.1:$TLS_PORT/off"
	expect_status 200 "http://127.0.0.1:$PLAIN_PORT/plain"
done
wait_for_snapshots 1 || fail "no flush after the load (tls: off)"
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped (tls: off) exited with $DAEMON_STATUS"
cp "$snap" "$work/snapshot-auto.prom"
last_snapshot <"$DAEMON_OUT" >"$snap"
if grep -q "TLS: OpenSSL uprobes" "$DAEMON_ERR"; then
	echo "  tls: off attached uprobes anyway" >>"$work/diff"
	failures=$((failures + 1))
fi
expect 0 ${SD}_count "${nginx[@]}" 'http_route="/off"'
expect 0 ${CD}_count "server_port=\"$TLS_PORT\""
expect "$OFF" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/plain"' "$http"
expect "$OFF" ${CD}_count 'service_name="pstest-curl"' "server_port=\"$PLAIN_PORT\"" "$http"

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s) (want = the load generators' count, got = periscope's):" >&2
	cat "$work/diff" >&2
	for f in "$work/snapshot-auto.prom" "$snap"; do
		echo "the pstest series of the last snapshot ($(basename "$f")):" >&2
		grep -E '^http_.*_count\{service_name="pstest-' "$f" | sed 's/^/  /' >&2
	done
	exit 1
fi
echo "ok: https to nginx: ab ${N}x2 (SSL_read/SSL_write), curl ${CURL}x2, python $EARLY on a" \
	"connection older than periscoped and $PRIVATE through a libssl loaded later" \
	"(SSL_read_ex/SSL_write_ex): counted once as https, server and client view; $PLAIN" \
	"plaintext as http; tls: off counts nothing on the TLS port"
exit 0
