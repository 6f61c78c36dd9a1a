# Shared helpers for the integration tests (sourced, bash).
# Environment from `make check`: PERISCOPED, PLUGIN_DIR, top_srcdir, top_builddir.

: "${PERISCOPED:?run through make check (PERISCOPED is unset)}"
: "${PLUGIN_DIR:?run through make check (PLUGIN_DIR is unset)}"
# Test programs run as copies named pstest-* that services rules name after themselves. A
# client that exits before periscoped drains its events is named by its comm, which the
# kernel cuts at 15 characters: short-lived clients' names fit in 15 (mysql.sh's TLS
# clients missed their rules that way in CI).
# Debian's python3: the tests' clients and servers use its stdlib only.
PYTHON=${PYTHON:-/usr/bin/python3}

# Integration tests load BPF programs: root only, skip (77) otherwise.
require_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "SKIP: needs root to load BPF programs"
		exit 77
	fi
}

# test_instance: a periscoped instance name no other test (nor another engineer's suite on
# this machine) uses: one periscoped runs per instance name.
test_instance() {
	echo "test-$(basename "$0" .sh)-$$-$RANDOM"
}

# start_daemon ARGS...: periscoped in the background, as an instance of its own (ARGS may
# name another with --instance); returns once every plugin is up.
# Sets DAEMON_PID, DAEMON_INSTANCE, DAEMON_OUT (stdout file), DAEMON_ERR (stderr file).
start_daemon() {
	rm -f "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
	DAEMON_OUT=$(mktemp)
	DAEMON_ERR=$(mktemp)
	DAEMON_LOG_SEEN=0
	[ -n "${DAEMON_PID:-}" ] || forget_instance
	DAEMON_INSTANCE=$(test_instance)
	"$PERISCOPED" --instance "$DAEMON_INSTANCE" "$@" >"$DAEMON_OUT" 2>"$DAEMON_ERR" &
	DAEMON_PID=$!
	if ! wait_for_log "running:" 30; then
		echo "periscoped did not start; its log:" >&2
		cat "$DAEMON_ERR" >&2
		return 1
	fi
}

# forget_instance: removes the pid file a killed (not stopped) daemon of the last
# start_daemon left behind; a daemon that exits removes its own.
forget_instance() {
	[ -n "${DAEMON_INSTANCE:-}" ] || return 0
	rm -f "${RUNTIME_DIRECTORY:-/run/periscope}/periscoped-$DAEMON_INSTANCE.pid"
	DAEMON_INSTANCE=
}

# stop_daemon: SIGTERM (final flush) and wait; sets DAEMON_STATUS.
stop_daemon() {
	if [ -n "${DAEMON_PID:-}" ]; then
		kill -TERM "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID"
		DAEMON_STATUS=$?
		DAEMON_PID=
	fi
	forget_instance
}

# wait_for_log PATTERN [SECONDS]: waits until the daemon's stderr matches (extended regex),
# counting only lines after the previous successful wait.
wait_for_log() {
	local pattern=$1 deadline=$((SECONDS + ${2:-15}))
	: "${DAEMON_LOG_SEEN:=0}"
	while [ $SECONDS -lt $deadline ]; do
		local hit
		hit=$(tail -n +"$((DAEMON_LOG_SEEN + 1))" "$DAEMON_ERR" | grep -n -E -m1 "$pattern" | cut -d: -f1)
		if [ -n "$hit" ]; then
			DAEMON_LOG_SEEN=$((DAEMON_LOG_SEEN + hit))
			return 0
		fi
		if [ -n "${DAEMON_PID:-}" ] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# wait_for_snapshots N: waits until the daemon has written N more prometheus snapshots.
wait_for_snapshots() {
	local want=$(( $(grep -c '^# periscope snapshot' "$DAEMON_OUT") + $1 )) deadline=$((SECONDS + 30))
	while [ "$(grep -c '^# periscope snapshot' "$DAEMON_OUT")" -lt "$want" ]; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

# last_snapshot < stdout: the last complete prometheus block of the stdout sink.
last_snapshot() {
	awk '/^# periscope snapshot/ { n++; delete lines; c = 0; next } { lines[c++] = $0 }
	     END { for (i = 0; i < c; i++) print lines[i] }'
}

# series_value FILE NAME MATCHER...: the summed value of the series of NAME whose label
# set contains every MATCHER (e.g. 'direction="outbound"'); prints 0 when none match.
series_value() {
	local file=$1 name=$2; shift 2
	awk -v name="$name" -v matchers="$*" '
		BEGIN { n = split(matchers, m, " ") }
		$0 ~ "^" name "({| )" {
			ok = 1
			for (i = 1; i <= n; i++) if (index($0, m[i]) == 0) ok = 0
			if (ok) { sum += $NF; found = 1 }
		}
		END { printf "%.17g\n", found ? sum : 0 }' "$file"
}

# series_is FILE NAME MATCHERS VALUE: series_value equals VALUE (reports a mismatch).
series_is() {
	local file=$1 name=$2 matchers=$3 want=$4 got
	got=$(series_value "$file" "$name" $matchers)
	if [ "$got" != "$want" ]; then
		echo "  $name{$matchers}: got $got, want $want" >&2
		return 1
	fi
}

# fail MESSAGE: the test failed; says why, with the daemon's last log lines, and exits 1.
fail() {
	echo "FAIL: $*" >&2
	if [ -n "${DAEMON_ERR:-}" ] && [ -s "$DAEMON_ERR" ]; then
		tail -n 20 "$DAEMON_ERR" | sed 's/^/  periscoped: /' >&2
	fi
	exit 1
}

# final_snapshot FILE: one more flush after the load, SIGTERM (the final flush), and the
# last snapshot of the stdout sink into FILE.
final_snapshot() {
	wait_for_snapshots 1 || fail "no flush after the load"
	stop_daemon
	[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
	last_snapshot <"$DAEMON_OUT" >"$1"
	[ -s "$1" ] || fail "no snapshot in the daemon's output"
}

# expect WANT NAME MATCHER...: series_value of $SNAPSHOT (0 when absent) must equal WANT,
# the ground truth; a mismatch is appended to the file $DIFF and counted in $failures.
failures=0
expect() {
	local want=$1 name=$2 got
	shift 2
	got=$(series_value "$SNAPSHOT" "$name" "$@")
	[ "$got" = "$want" ] && return
	printf '  %-44s %-90s want %-8s got %s\n' "$name" "{$(IFS=,; echo "$*")}" "$want" "$got" \
		>>"$DIFF"
	failures=$((failures + 1))
}

# tcp_load_labels P4 P6 PC: the label sets of tcp_load.py's connections, in v4_out, v6_out,
# v4_in, v6_in (IPv4 and IPv6 ports) and refused (the port nobody listens on).
tcp_load_labels() {
	v4_out=('direction="outbound"' 'peer_address="127.0.0.1"' "peer_port=\"$1\"")
	v6_out=('direction="outbound"' 'peer_address="::1"' "peer_port=\"$2\"")
	v4_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$1\"")
	v6_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$2\"")
	refused=('direction="outbound"' 'peer_address="127.0.0.1"' "peer_port=\"$3\"")
}

# expect_tcp_load: the ground truth of tcp_load.py's run -- N IPv4 and M IPv6 connections, each
# sending A bytes and receiving B, and K refused connects -- against $SNAPSHOT (see expect).
expect_tcp_load() {
	for m in opened closed; do
		expect $N "periscope_tcp_connections_${m}_total" "${v4_out[@]}"
		expect $M "periscope_tcp_connections_${m}_total" "${v6_out[@]}"
		expect $N "periscope_tcp_connections_${m}_total" "${v4_in[@]}"
		expect $M "periscope_tcp_connections_${m}_total" "${v6_in[@]}"
	done
	expect $K periscope_tcp_connections_failed_total "${refused[@]}"
	# The client sends A and receives B per connection; the server the other way round.
	expect $((N * A)) periscope_tcp_sent_bytes_total "${v4_out[@]}"
	expect $((N * B)) periscope_tcp_received_bytes_total "${v4_out[@]}"
	expect $((N * A)) periscope_tcp_received_bytes_total "${v4_in[@]}"
	expect $((N * B)) periscope_tcp_sent_bytes_total "${v4_in[@]}"
	expect $((M * A)) periscope_tcp_sent_bytes_total "${v6_out[@]}"
	expect $((M * B)) periscope_tcp_received_bytes_total "${v6_out[@]}"
	expect $((M * A)) periscope_tcp_received_bytes_total "${v6_in[@]}"
	expect $((M * B)) periscope_tcp_sent_bytes_total "${v6_in[@]}"
}

# require_tools HINT TOOL...: skip the test (exit 77) unless every TOOL is a command or an
# executable path; HINT tells how to get them.
require_tools() {
	local hint=$1 tool
	shift
	for tool; do
		command -v "$tool" >/dev/null 2>&1 && continue
		echo "SKIP: needs $tool ($hint)"
		exit 77
	done
}

# free_port: a TCP port on 127.0.0.1 that nobody listens on right now.
free_port() {
	"$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT: until something accepts connections on 127.0.0.1:PORT (10 s).
wait_port() {
	local deadline=$((SECONDS + 10))
	until "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.1
	done
}

# write_nginx_conf DIR < SERVERS: DIR/nginx.conf for a private nginx (one worker, keep-alive,
# its logs, pid and temp files under DIR) serving the server blocks read from stdin.
# Start it with: nginx -c DIR/nginx.conf -p DIR -g 'daemon off;'
write_nginx_conf() {
	local dir=$1
	mkdir -p "$dir/tmp"
	{
		cat <<CONF
worker_processes 1;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $dir/tmp;
	proxy_temp_path $dir/tmp;
	fastcgi_temp_path $dir/tmp;
	uwsgi_temp_path $dir/tmp;
	scgi_temp_path $dir/tmp;
	sendfile on;
	keepalive_requests 1000000;
	keepalive_timeout 60s;
CONF
		cat
		echo "}"
	} >"$dir/nginx.conf"
}

# The capture's hooks for this run: CAPTURE_HOOKS=socket|syscalls (the http suites run under
# both; auto picks socket on this kernel).
CAPTURE_HOOKS=${CAPTURE_HOOKS:-auto}

# expect_capture_hooks: the daemon's log says the capture runs on the hooks asked for.
expect_capture_hooks() {
	local want
	case "$CAPTURE_HOOKS" in
	syscalls) want="capture: on syscall tracepoints" ;;
	*) want="capture: on socket tracepoints" ;;
	esac
	grep -q "$want" "$DAEMON_ERR" || fail "the capture is not where CAPTURE_HOOKS=$CAPTURE_HOOKS puts it: $(grep 'capture:' "$DAEMON_ERR" | head -3)"
}

# one_at_a_time NAME: runs the calling script again under a lock, so that no other test that
# takes NAME runs beside it. periscoped sees every process of the host, and two suites that
# run the same servers under the same names (make check -j runs tests side by side) would
# count each other's traffic. The lock is not inherited by the servers the script starts.
one_at_a_time() {
	[ -n "${PS_ONE_AT_A_TIME:-}" ] && return 0
	PS_ONE_AT_A_TIME=1 exec flock -o "/tmp/periscope-test-$1.lock" bash "$0"
}

# make_work: $work, a temporary directory others may read (servers that drop privileges),
# and, at exit, the end of what the test started: its daemon, the processes in children,
# the directory and the daemon's logs.
children=()
make_work() {
	work=$(mktemp -d)
	chmod 755 "$work"
	trap end_of_test EXIT
}

end_of_test() {
	stop_daemon
	for pid in "${children[@]}"; do
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}

# expect_tcp_invariant [FILE]: in FILE ($SNAPSHOT by default), for every direction and peer
# (peer_address, peer_port; summed over services), opened = closed + active -- whatever the
# traffic, so that it holds beside other tests' connections too. A label set that breaks it
# is appended to $DIFF and counted in $failures (see expect).
expect_tcp_invariant() {
	local file=${1:-$SNAPSHOT} bad
	bad=$(awk '
		/^periscope_tcp_connections_(opened_total|closed_total|active)\{/ {
			k = $1
			sub(/^[^{]*\{/, "", k); sub(/\}$/, "", k)
			gsub(/(^|,)service_name="([^"\\]|\\.)*"/, "", k); sub(/^,/, "", k)
			if ($1 ~ /^periscope_tcp_connections_opened_total/) o[k] += $NF
			else if ($1 ~ /^periscope_tcp_connections_closed_total/) c[k] += $NF
			else a[k] += $NF
			seen[k] = 1
		}
		END {
			for (k in seen)
				if (o[k] != c[k] + a[k])
					printf "  opened = closed + active broken for {%s}: %d != %d + %d\n", k, o[k], c[k], a[k]
		}' "$file")
	[ -z "$bad" ] && return 0
	printf '%s\n' "$bad" >>"$DIFF"
	failures=$((failures + $(printf '%s\n' "$bad" | wc -l)))
}
