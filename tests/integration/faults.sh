#!/usr/bin/env bash
# Faults (issue 16), each against exact ground truth:
#   sigterm    SIGTERM at random moments -- during start-up, under load, right after a flush:
#              exit 0, a final flush with exact counts, and no BPF program, map or link of
#              periscoped left behind (bpftool against /proc/*/fdinfo), nothing in tracefs
#   sighup     200 SIGHUPs in about a second while the file flips between the running
#              configuration and broken ones: every broken one rejected, the running one
#              never changes (flush interval, output format), tcpflow counts stay exact
#   textfile   the textfile directory on a full tmpfs: the error logged once, the old .prom
#              byte-identical, writing again once space returns
#   attach     a plugin whose uprobe target does not exist: periscope_plugin_up 0, its reason
#              in the log, http beside it counts exactly
#   nolibssl   no libssl anywhere periscoped looks: http counts plaintext exactly, and the log
#              says TLS capture is off
#   overrun    a 4 KiB capture ring buffer under a burst: kernel-side events = delivered +
#              dropped exactly, no crash, exact counts again once the load is light
# FAULTS="sigterm sighup" runs a subset.
set -u
. "$(dirname "$0")/lib.sh"

require_root
require_tools "apt-get install python3 curl bpftool util-linux" "$PYTHON" curl bpftool unshare
one_at_a_time faults

here=$(cd "$(dirname "$0")" && pwd)
objects=("$PYTHON" "$here/faults/bpf_objects.py")
FAULTS=${FAULTS:-sigterm sighup textfile attach nolibssl overrun}
make_work
trap 'umount -l "$work/tf" 2>/dev/null; end_of_test' EXIT
DIFF=$work/diff
: >"$DIFF"

# check NAME: the expectations since the last check must have held.
check() {
	if [ "$failures" -gt 0 ]; then
		echo "FAIL ($1): $failures check(s):" >&2
		cat "$DIFF" >&2
		[ -n "${DAEMON_ERR:-}" ] && [ -s "$DAEMON_ERR" ] && tail -n 15 "$DAEMON_ERR" | sed 's/^/  periscoped: /' >&2
		exit 1
	fi
	echo "ok: $1"
}

# no_leaks MARK WHAT: nothing periscoped created after MARK is left in the kernel.
no_leaks() {
	local left
	if ! left=$("${objects[@]}" leaked $1); then
		fail "$2: BPF objects left behind after periscoped exited:
$left"
	fi
}

# tracefs_clean PID WHAT: no uprobe/kprobe event of that periscoped is left in tracefs.
tracefs_clean() {
	local f
	for f in /sys/kernel/tracing/uprobe_events /sys/kernel/tracing/kprobe_events \
		/sys/kernel/debug/tracing/uprobe_events; do
		[ -r "$f" ] || continue
		! grep -q "_$1_" "$f" || fail "$2: $f still has events of pid $1: $(grep "_$1_" "$f" | head -3)"
	done
}

# in_main PID: waits until periscoped runs its main(): SIGTERM is held (blocked) or handled.
in_main() {
	local blk cgt _
	for _ in $(seq 500); do
		blk=$(sed -n 's/^SigBlk:\t*//p' "/proc/$1/status" 2>/dev/null) || return 1
		cgt=$(sed -n 's/^SigCgt:\t*//p' "/proc/$1/status" 2>/dev/null)
		[ -n "$blk" ] || return 1
		[ "$(readlink "/proc/$1/exe")" = "$(readlink -f "$PERISCOPED")" ] &&
			[ $(((0x$blk | 0x$cgt) & 0x4000)) != 0 ] && return 0
		sleep 0.002
	done
	return 1
}

# tcp_load_exact SNAPSHOT PORTS_JSON: tcp_load.py's ground truth in the snapshot.
tcp_load_exact() {
	local P4 P6 PC
	read -r P4 P6 PC < <(printf '%s' "$2" | "$PYTHON" -c \
		'import json, sys; d = json.load(sys.stdin); print(d["v4_port"], d["v6_port"], d["closed_port"])')
	[ -n "${PC:-}" ] || fail "cannot read the ports from: $2"
	SNAPSHOT=$1
	tcp_load_labels "$P4" "$P6" "$PC"
	expect_tcp_load
	expect_tcp_invariant
}

N=20 M=10 A=1234 B=4321 K=5
tcp_load() {
	"$PYTHON" "$here/tcp_load.py" --v4 $N --v6 $M --send $A --recv $B --refused $K
}

plain_config() { # FILE [SINK_YAML]
	local sink=${2:-"stdout: { format: prometheus }"}
	cat >"$1" <<YAML
daemon: { flush_interval: 1s }
plugins: { tcpflow: {} }
sinks: { $sink }
YAML
}

# ---- SIGTERM at random moments --------------------------------------------------------------

fault_sigterm() {
	local mark pid status i delay ports snaps

	cat >"$work/all.yaml" <<'YAML'
daemon: { flush_interval: 1s }
plugins: {}
sinks: { stdout: { format: prometheus } }
YAML
	# During start-up (about 3 s with every plugin: the capture, uprobes on libssl,
	# tracepoints), from main() on: before it, the process is still the shell or ld.so.
	for i in 1 2 3 4; do
		mark=$("${objects[@]}" mark)
		delay=$((RANDOM % 2500))
		"$PERISCOPED" --instance "$(test_instance)" -c "$work/all.yaml" --plugin-dir "$PLUGIN_DIR" \
			>"$work/start.out" 2>"$work/start.err" &
		pid=$!
		in_main "$pid" || fail "periscoped did not start"
		sleep "$(printf '%d.%03d' $((delay / 1000)) $((delay % 1000)))"
		kill -TERM "$pid"
		wait "$pid"
		status=$?
		[ "$status" = 0 ] || fail "SIGTERM ${delay} ms into start-up: exit $status; $(tail -3 "$work/start.err")"
		grep -q "SIGTERM: final flush and exit" "$work/start.err" ||
			fail "SIGTERM ${delay} ms into start-up: no final flush; $(tail -3 "$work/start.err")"
		no_leaks "$mark" "SIGTERM ${delay} ms into start-up"
		tracefs_clean "$pid" "SIGTERM ${delay} ms into start-up"
		echo "  SIGTERM ${delay} ms into start-up: exit 0, final flush, nothing left"
	done

	# Under load: connections in flight when the signal comes.
	mark=$("${objects[@]}" mark)
	start_daemon -c "$work/all.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
	pid=$DAEMON_PID
	tcp_load >/dev/null &
	children+=($!)
	sleep "$(printf '0.%03d' $((RANDOM % 300)))"
	stop_daemon
	[ "$DAEMON_STATUS" = 0 ] || fail "SIGTERM under load: exit $DAEMON_STATUS"
	grep -q "SIGTERM: final flush and exit" "$DAEMON_ERR" || fail "SIGTERM under load: no final flush"
	last_snapshot <"$DAEMON_OUT" >"$work/load.prom"
	grep -q '^periscope_build_info' "$work/load.prom" || fail "SIGTERM under load: no final snapshot"
	SNAPSHOT=$work/load.prom
	expect_tcp_invariant
	no_leaks "$mark" "SIGTERM under load"
	tracefs_clean "$pid" "SIGTERM under load"
	wait "${children[-1]}"
	echo "  SIGTERM under load: exit 0, final snapshot, nothing left"

	# Right after a flush: the final flush still has every event since, exactly.
	mark=$("${objects[@]}" mark)
	start_daemon -c "$work/all.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
	pid=$DAEMON_PID
	ports=$(tcp_load) || fail "tcp_load.py failed"
	snaps=$(grep -c '^# periscope snapshot' "$DAEMON_OUT")
	while [ "$(grep -c '^# periscope snapshot' "$DAEMON_OUT")" = "$snaps" ]; do sleep 0.01; done
	stop_daemon
	[ "$DAEMON_STATUS" = 0 ] || fail "SIGTERM after a flush: exit $DAEMON_STATUS"
	last_snapshot <"$DAEMON_OUT" >"$work/flush.prom"
	tcp_load_exact "$work/flush.prom" "$ports"
	no_leaks "$mark" "SIGTERM after a flush"
	tracefs_clean "$pid" "SIGTERM after a flush"
	check "SIGTERM during start-up, under load and after a flush: exit 0, final flush, no BPF object left"
}

# ---- SIGHUP storms and invalid reloads ------------------------------------------------------

fault_sighup() {
	local cfg=$work/hup.yaml i bad ports load_pid rejected reloads t0 t1 t2

	plain_config "$work/good.yaml"
	# Broken, each in its own way, and each with a change that would show if it were applied.
	printf 'daemon: { flush_interval: 5s\nsinks: [\n' >"$work/bad1.yaml"
	cat >"$work/bad2.yaml" <<'YAML'
daemon: { flush_interval: 5s, no_such_key: 1 }
plugins: { tcpflow: {} }
sinks: { stdout: { format: json } }
YAML
	cat >"$work/bad3.yaml" <<'YAML'
daemon: { flush_interval: 5s }
plugins: { tcpflow: { max_connections: 0 } }
sinks: { stdout: { format: json } }
YAML
	cat >"$work/bad4.yaml" <<'YAML'
daemon: { flush_interval: 1ms }
plugins: { tcpflow: {} }
sinks: { stdout: { format: table }, no_such_sink: {} }
YAML
	cp "$work/good.yaml" "$cfg"
	start_daemon -c "$cfg" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

	tcp_load >"$work/hup.ports" &
	load_pid=$!
	for i in $(seq 200); do
		if [ $((i % 10)) = 0 ]; then
			bad=$work/bad$(((i / 10) % 4 + 1)).yaml
			if [ $((i % 20)) = 0 ]; then cp "$work/good.yaml" "$cfg.tmp"; else cp "$bad" "$cfg.tmp"; fi
			mv "$cfg.tmp" "$cfg"
		fi
		kill -HUP "$DAEMON_PID" || fail "periscoped died in the SIGHUP storm"
		sleep 0.004
	done
	# The last word is a broken file.
	cp "$work/bad3.yaml" "$cfg"
	kill -HUP "$DAEMON_PID"
	wait "$load_pid" || fail "tcp_load.py failed during the SIGHUP storm"
	ports=$(cat "$work/hup.ports")
	wait_for_log "reload rejected" 10 || fail "the broken configuration was not rejected"
	sleep 0.5
	kill -0 "$DAEMON_PID" || fail "periscoped died in the SIGHUP storm"
	reloads=$(grep -c "SIGHUP: reloading" "$DAEMON_ERR")
	rejected=$(grep -c "reload rejected" "$DAEMON_ERR")
	echo "  200 SIGHUPs: $reloads reloads, $rejected rejected"
	[ "$rejected" -ge 1 ] || fail "no reload was rejected"
	! grep -E "plugin [a-z_]+ down|no plugin is running" "$DAEMON_ERR" ||
		fail "a plugin went down in the SIGHUP storm"

	# Still the good configuration: flushes a second apart, in prometheus format.
	wait_for_snapshots 1 || fail "no flush after the SIGHUP storm"
	t0=$(date +%s%N)
	wait_for_snapshots 2 || fail "flushes stopped after the SIGHUP storm"
	t1=$(date +%s%N)
	[ $(((t1 - t0) / 1000000)) -lt 3500 ] ||
		fail "two flushes took $(((t1 - t0) / 1000000)) ms: the flush interval changed"
	final_snapshot "$work/hup.prom"
	! grep -q '^[{[]' "$DAEMON_OUT" || fail "the stdout sink wrote JSON: a broken configuration ran"
	! grep -q '^── periscope' "$DAEMON_OUT" || fail "the stdout sink wrote a table: a broken configuration ran"
	tcp_load_exact "$work/hup.prom" "$ports"
	expect 1 periscope_plugin_up 'plugin="tcpflow"'
	check "SIGHUP storm with invalid reloads: the running configuration never changed, counts exact"
}

# ---- the textfile directory on a full tmpfs -------------------------------------------------

fault_textfile() {
	local dir=$work/tf prom i errors

	mkdir -p "$dir"
	mount -t tmpfs -o size=2m,mode=0755 pstest-faults "$dir" || fail "cannot mount a tmpfs"
	plain_config "$work/tf.yaml" "prometheus_textfile: { directory: $dir }"
	start_daemon -c "$work/tf.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
	prom=$dir/periscope.prom
	for _ in $(seq 50); do [ -s "$prom" ] && break; sleep 0.1; done
	[ -s "$prom" ] || fail "no $prom"

	# Fill it: the next flush cannot write.
	dd if=/dev/zero of="$dir/filler" bs=64k 2>/dev/null
	wait_for_log "cannot .*No space left on device" 10 || fail "no error about the full disk"
	cp "$prom" "$work/before.prom" # the last complete file before the failure
	tcp_load >/dev/null || fail "tcp_load.py failed"
	for i in 1 2 3 4; do
		sleep 1
		cmp -s "$prom" "$work/before.prom" || fail "the .prom changed while the disk was full"
	done
	errors=$(grep -c "periscope.prom: cannot" "$DAEMON_ERR")
	[ "$errors" = 1 ] || fail "the full disk was logged $errors times, not once: $(grep 'periscope.prom: cannot' "$DAEMON_ERR")"
	! ls -A "$dir" | grep -v -x -e periscope.prom -e filler >/dev/null ||
		fail "temporary files left in the full directory: $(ls -A "$dir")"

	rm -f "$dir/filler"
	wait_for_log "periscope.prom: writing again" 10 || fail "the sink did not recover once space returned"
	sleep 1.2
	cmp -s "$prom" "$work/before.prom" && fail "the .prom did not change after the disk had room again"
	grep -q '^periscope_build_info' "$prom" || fail "the rewritten .prom is incomplete"
	stop_daemon
	umount "$dir"
	echo "  full tmpfs: logged once, the old file byte-identical for 4 flushes, writing again after"
	check "textfile directory on a full tmpfs"
}

# ---- an HTTP workload with exact counts --------------------------------------------------

# http_setup: a python http.server (pstest-fhttp) and a client (pstest-fcli) under services
# rules; HTTP_RULES is their services section.
HTTP_REQUESTS=25
http_setup() {
	[ -n "${HTTP_PORT:-}" ] && return 0
	mkdir -p "$work/bin" "$work/www"
	cp "$(readlink -f "$PYTHON")" "$work/bin/pstest-fhttp"
	cp "$(readlink -f "$PYTHON")" "$work/bin/pstest-fcli"
	echo hello >"$work/www/index.html"
	HTTP_PORT=$(free_port)
	(cd "$work/www" && exec "$work/bin/pstest-fhttp" -m http.server "$HTTP_PORT" --bind 127.0.0.1) \
		>/dev/null 2>&1 &
	children+=($!)
	wait_port "$HTTP_PORT" || fail "the web server did not start"
	HTTP_RULES="services:
  - { match: { exe: $work/bin/pstest-fhttp }, name: pstest-fhttp }
  - { match: { exe: $work/bin/pstest-fcli }, name: pstest-fcli }"
}

# http_load N [GAP]: N GETs of /index.html, a connection each, GAP seconds apart; all must
# answer 200.
http_load() {
	"$work/bin/pstest-fcli" -c '
import sys, time, urllib.request
for _ in range(int(sys.argv[1])):
    with urllib.request.urlopen("http://127.0.0.1:%s/index.html" % sys.argv[2], timeout=10) as r:
        assert r.status == 200 and r.read() == b"hello\n"
    time.sleep(float(sys.argv[3]))
' "$1" "$HTTP_PORT" "${2:-0}" || fail "the HTTP client failed"
}

# expect_http N: N requests in $SNAPSHOT, server view and client view.
expect_http() {
	expect "$1" http_server_request_duration_seconds_count 'service_name="pstest-fhttp"' \
		'http_response_status_code="200"'
	expect "$1" http_client_request_duration_seconds_count 'service_name="pstest-fcli"' \
		"server_port=\"$HTTP_PORT\"" 'http_response_status_code="200"'
}

# ---- a plugin whose attach fails ------------------------------------------------------------

fault_attach() {
	local probe=$top_builddir/tests/integration/faults/.libs/badprobe.so mark
	[ -f "$probe" ] || fail "badprobe.so is not built ($probe)"
	http_setup
	mkdir -m 0755 -p "$work/plugins"
	cp "$PLUGIN_DIR/http.so" "$probe" "$work/plugins/"
	cat >"$work/attach.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins:
  http: {}
  badprobe: { binary: $work/no-such-binary, function: pstest_nothing }
$HTTP_RULES
sinks: { stdout: { format: prometheus } }
YAML
	mark=$("${objects[@]}" mark)
	start_daemon -c "$work/attach.yaml" --plugin-dir "$work/plugins" || fail "periscoped did not start"
	grep -q "badprobe: cannot attach a uprobe to pstest_nothing in $work/no-such-binary: No such file or directory" \
		"$DAEMON_ERR" || fail "the attach failure's reason is not in the log"
	grep -q "plugin badprobe down: start failed: No such file or directory" "$DAEMON_ERR" ||
		fail "badprobe is not marked down with its reason"
	grep -q "running: http (1 of 2 plugins up)" "$DAEMON_ERR" ||
		fail "not running with http alone: $(grep 'running:' "$DAEMON_ERR")"
	http_load $HTTP_REQUESTS
	final_snapshot "$work/attach.prom"
	SNAPSHOT=$work/attach.prom
	expect 0 periscope_plugin_up 'plugin="badprobe"'
	expect 1 periscope_plugin_up 'plugin="http"'
	grep -q '^periscope_plugin_up{[^}]*plugin="badprobe"} 0$' "$work/attach.prom" ||
		{ echo "  periscope_plugin_up{plugin=\"badprobe\"}: absent, not 0" >>"$DIFF"; failures=$((failures + 1)); }
	expect_http $HTTP_REQUESTS
	no_leaks "$mark" "a plugin whose attach failed"
	check "a plugin whose attach fails is down with its reason; http beside it counts exactly"
}

# ---- no libssl ----------------------------------------------------------------------------

# Every libssl file where periscoped looks is whited out by an overlay, in a mount namespace
# of periscoped's own; the client and server outside are plaintext anyway.
fault_nolibssl() {
	local dirs d i=0 mounts=""
	http_setup
	dirs=$(for f in /usr/lib/libssl* /usr/lib/*/libssl* /usr/lib64/libssl* /usr/local/lib/libssl* \
		/usr/local/lib64/libssl*; do [ -e "$f" ] || [ -L "$f" ] && dirname "$f"; done | sort -u)
	for d in $dirs; do
		i=$((i + 1))
		mounts+="mkdir -p \$ovl/u$i \$ovl/w$i"
		for f in "$d"/libssl*; do mounts+=" && mknod \$ovl/u$i/${f##*/} c 0 0"; done
		mounts+=" && mount -t overlay pstest-nossl -o lowerdir=$d,upperdir=\$ovl/u$i,workdir=\$ovl/w$i $d && "
	done
	cat >"$work/nossl.sh" <<SH
set -e
ovl=$work/ovl
mkdir -p \$ovl
mount -t tmpfs pstest-nossl \$ovl
$mounts true
! ls /usr/lib/libssl* /usr/lib/*/libssl* /usr/lib64/libssl* /usr/local/lib/libssl* /usr/local/lib64/libssl* 2>/dev/null
exec "\$@"
SH
	cat >"$work/nossl.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins: { http: {} }
$HTTP_RULES
sinks: { stdout: { format: prometheus } }
YAML
	PERISCOPED_REAL=$PERISCOPED
	PERISCOPED="$work/nossl-periscoped"
	printf '#!/bin/sh\nexec unshare -m --propagation private sh %s %s "$@"\n' "$work/nossl.sh" \
		"$PERISCOPED_REAL" >"$PERISCOPED"
	chmod 755 "$PERISCOPED"
	start_daemon -c "$work/nossl.yaml" --plugin-dir "$PLUGIN_DIR" ||
		{ PERISCOPED=$PERISCOPED_REAL; fail "periscoped did not start without libssl"; }
	PERISCOPED=$PERISCOPED_REAL
	grep -q "TLS: no libssl in the library directories: TLS capture is off" "$DAEMON_ERR" ||
		fail "no log line says TLS capture is off: $(grep 'TLS' "$DAEMON_ERR" | head -3)"
	# (Other processes on the host may map one of their own: "mapped by pid", through their root.)
	! grep -E "TLS: OpenSSL uprobes on /" "$DAEMON_ERR" | grep -v "mapped by pid" ||
		fail "a libssl was found in a library directory that has none"
	http_load $HTTP_REQUESTS
	final_snapshot "$work/nossl.prom"
	SNAPSHOT=$work/nossl.prom
	expect 1 periscope_plugin_up 'plugin="http"'
	expect_http $HTTP_REQUESTS
	check "no libssl: http counts plaintext exactly, the log says TLS capture is off"
}

# ---- the capture's ring buffer overrun on purpose ---------------------------------------------

fault_overrun() {
	local d1 d2 k before_s before_c after_s after_c snaps
	require_tools "apt-get install apache2-utils" ab
	http_setup
	cp "$(command -v ab)" "$work/bin/pstest-fab"
	# http alone, on our port only: the rest of the host's traffic stays out of the ring.
	mkdir -m 0755 -p "$work/plugins-http"
	cp "$PLUGIN_DIR/http.so" "$work/plugins-http/"
	cat >"$work/overrun.yaml" <<YAML
daemon: { flush_interval: 1s }
capture: { ring_size: 64KiB }
plugins: { http: { ports: [$HTTP_PORT], tls: off, capture_bytes: 64 } }
$HTTP_RULES
  - { match: { exe: $work/bin/pstest-fab }, name: pstest-fab }
sinks: { stdout: { format: prometheus } }
YAML
	start_daemon -c "$work/overrun.yaml" --plugin-dir "$work/plugins-http" || fail "periscoped did not start"

	# Heavy: 50 clients at once, far more per drain interval than 64 KiB holds.
	"$work/bin/pstest-fab" -q -n 1500 -c 50 "http://127.0.0.1:$HTTP_PORT/index.html" >"$work/ab.out" 2>&1 ||
		fail "ab failed: $(tail -3 "$work/ab.out")"
	kill -0 "$DAEMON_PID" || fail "periscoped died under the burst"
	wait_for_snapshots 1 || fail "no flush after the burst"
	last_snapshot <"$DAEMON_OUT" >"$work/burst.prom"
	d1=$(series_value "$work/burst.prom" periscope_events_dropped_total 'plugin="capture"')
	k=$("${objects[@]}" drops "$DAEMON_PID" ps_sc_sock_send) || fail "cannot read the capture's drop counter"
	wait_for_snapshots 1 || fail "no flush after the burst"
	last_snapshot <"$DAEMON_OUT" >"$work/burst2.prom"
	d2=$(series_value "$work/burst2.prom" periscope_events_dropped_total 'plugin="capture"')
	echo "  burst of 1500 requests through a 64 KiB ring: $d1 events dropped at a flush, the kernel's count $k a moment later, $d2 at the next flush"
	[ "$d1" -gt 0 ] 2>/dev/null || fail "nothing was dropped: the ring buffer was not overrun"
	# Every drop the kernel counted is reported, and nothing more: between two flushes.
	[ "$d1" -le "$k" ] && [ "$k" -le "$d2" ] ||
		fail "drops reported ($d1, then $d2) do not bracket the kernel's count ($k)"
	grep -q "capture: [0-9]* events dropped (ring buffer full)" "$DAEMON_ERR" ||
		fail "the drops are not in the log"

	# Light: one request at a time, 50 ms apart, each counted exactly again.
	before_s=$(series_value "$work/burst2.prom" http_server_request_duration_seconds_count 'service_name="pstest-fhttp"')
	before_c=$(series_value "$work/burst2.prom" http_client_request_duration_seconds_count 'service_name="pstest-fcli"')
	http_load $HTTP_REQUESTS 0.05
	final_snapshot "$work/light.prom"
	after_s=$(series_value "$work/light.prom" http_server_request_duration_seconds_count 'service_name="pstest-fhttp"')
	after_c=$(series_value "$work/light.prom" http_client_request_duration_seconds_count 'service_name="pstest-fcli"')
	SNAPSHOT=$work/light.prom
	expect 1 periscope_plugin_up 'plugin="http"'
	[ $((after_s - before_s)) = $HTTP_REQUESTS ] ||
		{ echo "  after the burst, server view: $((after_s - before_s)) of $HTTP_REQUESTS requests" >>"$DIFF"; failures=$((failures + 1)); }
	[ $((after_c - before_c)) = $HTTP_REQUESTS ] ||
		{ echo "  after the burst, client view: $((after_c - before_c)) of $HTTP_REQUESTS requests" >>"$DIFF"; failures=$((failures + 1)); }
	check "ring buffer overrun: drops counted as the kernel counts them, exact again once the load is light"
}

for f in $FAULTS; do
	echo "---- $f"
	"fault_$f"
done
echo "ok: all faults ($FAULTS)"
exit 0
