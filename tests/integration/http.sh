#!/usr/bin/env bash
# http against exact counts, server view and client view:
#   nginx (one worker, keep-alive, sendfile) driven by `ab -k`: /ok 200, /missing 404,
#     /fail 500, /static.html 200 (a file: headers written, body sent with sendfile)
#   ten pipelined requests in one write, to nginx; again, their responses read at once: past
#     capture_bytes, the hidden ones show in periscope_decode_errors_total{plugin="http"}
#   clients that write four pipelined requests and close at once: nginx's answers that went
#     out (its access log's $bytes_sent) count, those that met the reset do not
#   a keep-alive connection opened before periscoped started, used after it did
#   python3's http.server driven by curl (recvfrom/sendto instead of recv/writev)
#   a chunked upload and a slow (200 ms) handler on a python backend
#   the same backend over a Unix-domain stream socket (curl --unix-socket)
#   routes: a configured template, ids collapsed to {id}, query strings dropped
# Every server and client runs from a copy of its binary under a `services` rule, so that
# other HTTP traffic on the machine cannot touch the series we count.
set -u
. "$(dirname "$0")/lib.sh"

N=${HTTP_TEST_N:-500} # ab requests per nginx location
PIPELINED=10 GONE=20 EARLY=5 FILES_OK=7 FILES_MISSING=3 SLOW=5 UNIX=4 UPLOAD_BYTES=3000 ROUTED=6
here=$(cd "$(dirname "$0")" && pwd)

require_root
one_at_a_time http
require_tools "apt-get install nginx-light apache2-utils curl python3" nginx ab curl "$PYTHON"

work=$(mktemp -d)
chmod 755 "$work" # nginx's worker runs as nobody and reads the static file
children=()
cleanup() {
	stop_daemon
	exec 3>&-
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
cp "$(command -v nginx)" "$bin/pstest-nginx"
cp "$(command -v ab)" "$bin/pstest-ab"
cp "$(command -v curl)" "$bin/pstest-curl"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-python"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-pyclient"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-atonce"
py=$bin/pstest-python
pyclient=$bin/pstest-pyclient
curl=("$bin/pstest-curl" -s -S --max-time 10)

# ---- servers ----------------------------------------------------------------------------
NGINX_PORT=$(free_port)
FILES_PORT=$(free_port)
mkdir -p "$work/nginx/www" "$work/nginx/tmp" "$work/files"
printf 'hello static\n' >"$work/nginx/www/static.html"
printf 'hello files\n' >"$work/files/index.txt"
write_nginx_conf "$work/nginx" <<EOF
	log_format sent '\$bytes_sent';
	server {
		listen 127.0.0.1:$NGINX_PORT;
		root $work/nginx/www;
		location = /ok { return 200 "ok\n"; }
		location = /fail { return 500; }
		location = /pipe { return 200 "pipelined\n"; }
		location = /gone { access_log $work/nginx/gone.log sent; return 200 "gone\n"; }
		location = /early { return 200 "early\n"; }
		location = /late { return 200 "late\n"; }
		location /users/ { return 200 "user\n"; }
		location /items/ { return 200 "item\n"; }
	}
EOF
"$bin/pstest-nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' &
children+=($!)
"$py" -m http.server "$FILES_PORT" --bind 127.0.0.1 --directory "$work/files" >/dev/null 2>&1 &
children+=($!)
"$py" "$here/http/backend.py" "$work/http.sock" >"$work/backend.json" &
children+=($!)
wait_port "$NGINX_PORT" || fail "nginx did not start: $(cat "$work/nginx/error.log")"
wait_port "$FILES_PORT" || fail "python3 -m http.server did not start"
for _ in $(seq 100); do
	[ -s "$work/backend.json" ] && break
	sleep 0.1
done
BACKEND_PORT=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' \
	"$work/backend.json" 2>/dev/null) || fail "the python backend did not start"

# A keep-alive connection (both ends) that predates periscoped: one request now, EARLY later.
mkfifo "$work/early.in"
"$pyclient" "$here/http/client.py" 127.0.0.1 "$NGINX_PORT" early /early /late "$EARLY" \
	<"$work/early.in" >"$work/early.out" &
early_pid=$!
children+=($early_pid)
exec 3>"$work/early.in"
for _ in $(seq 100); do
	grep -q ready "$work/early.out" 2>/dev/null && break
	sleep 0.1
done
grep -q ready "$work/early.out" || fail "the early client did not get its first response"

# ---- periscoped ---------------------------------------------------------------------------
cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
capture: { hooks: $CAPTURE_HOOKS }
plugins:
  http: { routes: ["/users/{user}/orders"] }
  tcpflow: { enabled: false }
services:
  - { match: { exe: $bin/pstest-nginx }, name: pstest-nginx }
  - { match: { exe: $bin/pstest-ab }, name: pstest-ab }
  - { match: { exe: $bin/pstest-curl }, name: pstest-curl }
  - { match: { exe: $bin/pstest-python }, name: pstest-python }
  - { match: { exe: $bin/pstest-pyclient }, name: pstest-pyclient }
  - { match: { exe: $bin/pstest-atonce }, name: pstest-atonce }
sinks: { stdout: { format: prometheus } }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
expect_capture_hooks

# ---- load ---------------------------------------------------------------------------------
echo go >&3
exec 3>&-
wait "$early_pid" || fail "the early client failed: $(cat "$work/early.out")"
[ "$(grep -c '^200$' "$work/early.out")" = "$EARLY" ] || fail "early client: $(cat "$work/early.out")"

for loc in ok missing fail static.html; do
	"$bin/pstest-ab" -q -k -c 4 -n "$N" "http://127.0.0.1:$NGINX_PORT/$loc" >"$work/ab-$loc" 2>&1 ||
		fail "ab /$loc: $(cat "$work/ab-$loc")"
	grep -q "^Complete requests: *$N\$" "$work/ab-$loc" || fail "ab /$loc: $(cat "$work/ab-$loc")"
	grep -q "^Failed requests: *0\$" "$work/ab-$loc" || fail "ab /$loc: $(cat "$work/ab-$loc")"
done

"$pyclient" "$here/http/client.py" 127.0.0.1 "$NGINX_PORT" pipeline /pipe "$PIPELINED" \
	>"$work/pipeline.out" || fail "pipelined client failed"
[ "$(grep -c '^200$' "$work/pipeline.out")" = "$PIPELINED" ] ||
	fail "pipelined client: $(cat "$work/pipeline.out")"
"$bin/pstest-atonce" "$here/http/client.py" 127.0.0.1 "$NGINX_PORT" pipeline-at-once /pipe \
	"$PIPELINED" >"$work/atonce.out" || fail "pipelined client (responses at once) failed"
[ "$(grep -c '^200$' "$work/atonce.out")" = "$PIPELINED" ] ||
	fail "pipelined client (responses at once): $(cat "$work/atonce.out")"

"$pyclient" "$here/http/client.py" 127.0.0.1 "$NGINX_PORT" gone /gone 4 "$GONE" ||
	fail "the client that goes failed"

# curl status code of one request; args: curl options and URL.
curl_status() {
	"${curl[@]}" -o /dev/null -w '%{http_code}' "$@"
}
expect_status() {
	local want=$1 got
	shift
	got=$(curl_status "$@")
	[ "$got" = "$want" ] || fail "curl $*: status $got, want $want"
}
for _ in $(seq "$FILES_OK"); do
	expect_status 200 "http://127.0.0.1:$FILES_PORT/index.txt"
done
for _ in $(seq "$FILES_MISSING"); do
	expect_status 404 "http://127.0.0.1:$FILES_PORT/nope"
done
for _ in $(seq "$SLOW"); do
	expect_status 200 "http://127.0.0.1:$BACKEND_PORT/slow"
done
for _ in $(seq "$UNIX"); do
	expect_status 200 --unix-socket "$work/http.sock" http://localhost/unix
done
for i in $(seq "$ROUTED"); do
	expect_status 200 "http://127.0.0.1:$NGINX_PORT/users/$((i * 7))/orders?page=$i&token=secret$i"
	expect_status 200 "http://127.0.0.1:$NGINX_PORT/items/$((9000 + i))?sort=asc"
	expect_status 200 "http://127.0.0.1:$NGINX_PORT/items/0123456789abcdef0123/$i"
done
head -c "$UPLOAD_BYTES" /dev/zero | tr '\0' 'x' >"$work/upload.bin"
got=$("${curl[@]}" -H 'Transfer-Encoding: chunked' --data-binary @"$work/upload.bin" \
	"http://127.0.0.1:$BACKEND_PORT/upload") || fail "chunked upload failed"
[ "$got" = "got $UPLOAD_BYTES" ] || fail "chunked upload: the backend says '$got'"

# One flush after the load, then the final one on SIGTERM.
snap=$work/snapshot.prom
final_snapshot "$snap"
SNAPSHOT=$snap DIFF=$work/diff

# ---- checks -------------------------------------------------------------------------------

SD=http_server_request_duration_seconds
CD=http_client_request_duration_seconds
get='http_request_method="GET"'
nginx=('service_name="pstest-nginx"' "$get")
ab=('service_name="pstest-ab"' "$get" 'server_address="127.0.0.1"' "server_port=\"$NGINX_PORT\"")
pyclient=('service_name="pstest-pyclient"' "$get" 'server_address="127.0.0.1"'
	"server_port=\"$NGINX_PORT\"")
python=('service_name="pstest-python"')
s200='http_response_status_code="200"'
s404='http_response_status_code="404"'
s500='http_response_status_code="500"'

# nginx, server view: ab per location, the pipelined ten, the connection that predates us.
expect "$N" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/ok"'
expect "$N" ${SD}_count "${nginx[@]}" "$s404" 'http_route="/missing"'
expect "$N" ${SD}_count "${nginx[@]}" "$s500" 'http_route="/fail"'
expect "$N" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/static.html"'
expect $((2 * PIPELINED)) ${SD}_count "${nginx[@]}" "$s200" 'http_route="/pipe"'
expect "$EARLY" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/late"'
expect 0 ${SD}_count "${nginx[@]}" 'http_route="/early"'
# The clients that went: nginx's answers that went out count; those that met the reset
# (bytes_sent 0) do not.
gone_all=$(wc -l <"$work/nginx/gone.log")
gone_sent=$(awk '$1 > 0' "$work/nginx/gone.log" | wc -l)
echo "clients that went: nginx answered $gone_all requests, $gone_sent of the answers went out"
[ "$gone_sent" -gt 0 ] || fail "no answer to the clients that went left nginx: $(cat "$work/nginx/gone.log")"
expect "$gone_sent" ${SD}_count "${nginx[@]}" "$s200" 'http_route="/gone"'
expect $((4 * N + 2 * PIPELINED + EARLY + 3 * ROUTED + gone_sent)) ${SD}_count "${nginx[@]}"
# Body sizes: "ok\n" from return, "hello static\n" through sendfile.
expect $((3 * N)) http_server_response_body_size_bytes_sum "${nginx[@]}" 'http_route="/ok"'
expect $((13 * N)) http_server_response_body_size_bytes_sum "${nginx[@]}" 'http_route="/static.html"'
expect 0 http_server_request_body_size_bytes_sum "${nginx[@]}"

# nginx's clients: ab's view per status, the python clients'.
expect $((2 * N)) ${CD}_count "${ab[@]}" "$s200"
expect "$N" ${CD}_count "${ab[@]}" "$s404"
expect "$N" ${CD}_count "${ab[@]}" "$s500"
expect $((4 * N)) ${CD}_count 'service_name="pstest-ab"'
expect $((PIPELINED + EARLY)) ${CD}_count "${pyclient[@]}" "$s200"
# Ten responses in one read, 1024 bytes of it copied: those whose heads were past the cut
# cannot be paired. The client view misses them, and counts each one it missed (nothing
# else in this load is undecodable: every other request is answered or unanswered).
atonce=$(series_value "$SNAPSHOT" ${CD}_count 'service_name="pstest-atonce"')
http_errors=$(series_value "$SNAPSHOT" periscope_decode_errors_total 'plugin="http"')
echo "responses read at once: $atonce of $PIPELINED paired; http decode errors: $http_errors"
[ "${atonce:-0}" -lt "$PIPELINED" ] || fail "the read at once was not cut: $atonce of $PIPELINED paired"
[ $((atonce + http_errors)) = "$PIPELINED" ] ||
	fail "$atonce paired + $http_errors decode errors, not the $PIPELINED requests sent"

# python3 -m http.server and curl.
expect "$FILES_OK" ${SD}_count "${python[@]}" "$get" "$s200" 'http_route="/index.txt"'
expect "$FILES_MISSING" ${SD}_count "${python[@]}" "$get" "$s404" 'http_route="/nope"'
files=('service_name="pstest-curl"' "$get" 'server_address="127.0.0.1"' "server_port=\"$FILES_PORT\"")
expect "$FILES_OK" ${CD}_count "${files[@]}" "$s200"
expect "$FILES_MISSING" ${CD}_count "${files[@]}" "$s404"

# The backend: chunked upload counted once with its body size, slow handler's buckets.
upload=("${python[@]}" 'http_request_method="POST"' "$s200" 'http_route="/upload"')
expect 1 ${SD}_count "${upload[@]}"
expect "$UPLOAD_BYTES" http_server_request_body_size_bytes_sum "${upload[@]}"
expect 1 ${CD}_count 'service_name="pstest-curl"' 'http_request_method="POST"' "$s200" \
	"server_port=\"$BACKEND_PORT\""
slow=("${python[@]}" "$get" "$s200" 'http_route="/slow"')
expect "$SLOW" ${SD}_count "${slow[@]}"
expect "$SLOW" ${SD}_bucket "${slow[@]}" 'le="0.25"'
expect 0 ${SD}_bucket "${slow[@]}" 'le="0.1"'
expect "$SLOW" ${CD}_bucket 'service_name="pstest-curl"' "server_port=\"$BACKEND_PORT\"" "$get" \
	'le="0.25"'
expect 0 ${CD}_bucket 'service_name="pstest-curl"' "server_port=\"$BACKEND_PORT\"" "$get" \
	'le="0.1"'

# Unix-domain stream socket: the server's view, and curl's (Host: localhost, no port).
expect "$UNIX" ${SD}_count "${python[@]}" "$get" "$s200" 'http_route="/unix"'
expect "$UNIX" ${CD}_count 'service_name="pstest-curl"' "$get" "$s200" 'server_address="localhost"'

# Routes: the configured template, {id} for numbers and long hex; no query string, ever.
expect "$ROUTED" ${SD}_count "${nginx[@]}" 'http_route="/users/{user}/orders"'
expect "$ROUTED" ${SD}_count "${nginx[@]}" 'http_route="/items/{id}"'
expect "$ROUTED" ${SD}_count "${nginx[@]}" "http_route=\"/items/{id}/{id}\""
if grep -E '^http_' "$snap" | grep -q -E 'page=|token=|secret|sort=|\?'; then
	echo "  a query string reached a label:" >>"$work/diff"
	grep -E '^http_' "$snap" | grep -E 'page=|token=|secret|sort=|\?' | head -3 | sed 's/^/    /' \
		>>"$work/diff"
	failures=$((failures + 1))
fi

expect 0 periscope_events_dropped_total 'plugin="capture"'
expect 1 periscope_plugin_up 'plugin="http"'

if command -v promtool >/dev/null 2>&1; then
	if ! promtool check metrics <"$snap" >"$work/promtool" 2>&1; then
		sed 's/^/  promtool: /' "$work/promtool" >>"$work/diff"
		failures=$((failures + 1))
	fi
fi

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s) (want = the load generators' count, got = periscope's):" >&2
	cat "$work/diff" >&2
	echo "the pstest series of the last snapshot:" >&2
	grep -E '^http_.*_count\{service_name="pstest-' "$snap" | sed 's/^/  /' >&2
	exit 1
fi
echo "ok: nginx ${N}x4 via ab, $PIPELINED pipelined, $EARLY on a connection older than" \
	"periscoped; http.server $FILES_OK+$FILES_MISSING, chunked upload, $SLOW slow, $UNIX over" \
	"a Unix socket, $((3 * ROUTED)) routed: counted exactly, server and client view" \
	"(decode errors: $(series_value "$snap" periscope_decode_errors_total 'plugin="http"'))"
exit 0
