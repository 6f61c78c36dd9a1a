#!/usr/bin/env bash
# What periscoped tells systemd, and what it keeps of root, as the shipped unit runs it.
#
# periscoped runs with the capability bounding set of etc/periscope.service (read from the
# unit, through setpriv), NOTIFY_SOCKET pointing at a datagram socket this test reads, and
# RUNTIME_DIRECTORY. Checked:
# 1. READY=1 with STATUS="<n> of <n> plugins up, <k> series" once the plugins are up.
# 2. After loading, its permitted and effective sets are exactly the five capabilities a
#    reload needs, inheritable and ambient are empty, no_new_privs is set.
# 3. The unit's ExecReload helper with a changed plugin section: exits 0, RELOADING=1 then
#    READY=1 are sent, and the restarted plugin attaches again with the reduced set.
# 4. The helper with an invalid configuration: exits 1 with the reason, the daemon keeps
#    running with every plugin up.
# 5. SIGTERM: STOPPING=1, exit 0.
set -u
. "$(dirname "$0")/lib.sh"

UNIT=$top_srcdir/etc/periscope.service
RELOAD=$top_srcdir/etc/periscope-reload

require_root
require_tools "package util-linux" setpriv

work=$(mktemp -d)
LISTENER_PID=''
cleanup() {
	[ -z "${DAEMON_PID:-}" ] || kill -KILL "$DAEMON_PID" 2>/dev/null
	[ -z "$LISTENER_PID" ] || kill "$LISTENER_PID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT

# The unit's bounding set, as setpriv spells it: "-all,+bpf,+perfmon,...".
caps=$(sed -n 's/^CapabilityBoundingSet=//p' "$UNIT")
[ -n "$caps" ] || fail "no CapabilityBoundingSet= in $UNIT"
bounding=-all
for c in $caps; do
	bounding="$bounding,+$(echo "${c#CAP_}" | tr 'A-Z' 'a-z')"
done
echo "unit bounding set: $bounding"

# The notify socket: every datagram becomes one line, its newlines as '|'.
"$PYTHON" -c "
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('$work/notify.sock')
out = open('$work/notify.log', 'a', buffering=1)
while True:
    out.write(s.recv(4096).decode().replace('\n', '|') + '\n')
" &
LISTENER_PID=$!
for _ in $(seq 50); do [ -S "$work/notify.sock" ] && break; sleep 0.1; done
[ -S "$work/notify.sock" ] || fail "the notify listener did not start"
: >"$work/notify.log"
mkdir -m 0750 "$work/run"

# wait_notify REGEX: until a notify message matches (10 s); counts lines already seen.
seen=0
wait_notify() {
	local deadline=$((SECONDS + 10)) hit
	while [ $SECONDS -lt $deadline ]; do
		hit=$(tail -n +"$((seen + 1))" "$work/notify.log" | grep -n -E -m1 "$1" | cut -d: -f1)
		if [ -n "$hit" ]; then
			seen=$((seen + hit))
			return 0
		fi
		sleep 0.1
	done
	echo "notify messages so far:" >&2
	sed 's/^/  /' "$work/notify.log" >&2
	return 1
}

cat >"$work/periscope.yaml" <<'YAML'
daemon: { flush_interval: 1s }
plugins: { tcpflow: { max_connections: 4096 }, http: { capture_bytes: 1024 } }
sinks: { stdout: { format: prometheus } }
YAML
# http and tcpflow alone: http is then the capture's only protocol, so that its reload
# unloads the capture and attaches it again, OpenSSL uprobes included, after the drop.
plugins=$work/plugins
mkdir -m 0755 "$plugins"
cp "$PLUGIN_DIR/http.so" "$PLUGIN_DIR/tcpflow.so" "$plugins/"
n_plugins=2

# ---- 1. READY=1 -------------------------------------------------------------------------------

# As systemd would start it: the unit's bounding set, its environment.
cat >"$work/as-unit" <<SH
#!/bin/sh
export NOTIFY_SOCKET=$work/notify.sock RUNTIME_DIRECTORY=$work/run
exec setpriv --bounding-set=$bounding --inh-caps=-all "$PERISCOPED" "\$@"
SH
chmod 755 "$work/as-unit"
PERISCOPED=$work/as-unit start_daemon -c "$work/periscope.yaml" --plugin-dir "$plugins" ||
	fail "periscoped did not start"
wait_notify "^READY=1\|STATUS=$n_plugins of $n_plugins plugins up, [0-9]+ series$" ||
	fail "no READY=1 with every plugin up"
echo "ok: $(sed -n "${seen}p" "$work/notify.log")"

# ---- 2. capabilities ----------------------------------------------------------------------------

want=$(printf '%016x' $(((1 << 2) | (1 << 19) | (1 << 21) | (1 << 38) | (1 << 39))))
capline() { # FIELD: the hex mask of /proc/PID/status
	sed -n "s/^$1:\t*//p" "/proc/$DAEMON_PID/status"
}
check_caps() {
	local f
	for f in CapPrm CapEff; do
		[ "$(capline $f)" = "$want" ] || fail "$f is $(capline $f), want $want (dac_read_search, sys_ptrace, sys_admin, perfmon, bpf)"
	done
	for f in CapInh CapAmb; do
		[ "$(capline $f)" = 0000000000000000 ] || fail "$f is $(capline $f), want none"
	done
	[ "$(capline NoNewPrivs)" = 1 ] || fail "no_new_privs is not set"
}
check_caps
echo "ok: permitted = effective = $want; inheritable, ambient empty; no_new_privs"

# ---- 3. a reload that restarts a plugin, through the unit's helper ------------------------------

# Both sections change: tcpflow loads and attaches again, and so does the core capture
# with its OpenSSL uretprobes (CAP_SYS_ADMIN) once http, its only protocol, is back.
sed -i 's/max_connections: 4096/max_connections: 8192/; s/capture_bytes: 1024/capture_bytes: 2048/' \
	"$work/periscope.yaml"
MAINPID=$DAEMON_PID RUNTIME_DIRECTORY=$work/run "$RELOAD" >"$work/reload.out" 2>&1 ||
	fail "the reload helper failed on a valid change:$(sed 's/^/\n  /' "$work/reload.out")"
[ "$(cat "$work/run/reload-status")" = ok ] || fail "reload-status: $(cat "$work/run/reload-status")"
wait_notify "^RELOADING=1$" || fail "no RELOADING=1"
wait_notify "^READY=1\|STATUS=$n_plugins of $n_plugins plugins up" || fail "no READY=1 after the reload"
wait_for_log "running: .*\($n_plugins of $n_plugins plugins up\)" 10 ||
	fail "not every plugin is up after the reload"
sed -n '/SIGHUP/,$p' "$DAEMON_ERR" >"$work/reload.log"
for line in "loader: plugin tcpflow started" "loader: plugin http started"; do
	grep -q "$line" "$work/reload.log" || fail "not after the reload: '$line'$(sed 's/^/\n  /' "$work/reload.log")"
done
if grep -q "TLS: OpenSSL uprobes on" "$DAEMON_ERR"; then
	# Where libssl was probed at start, it must be probed again after the reload.
	grep -q "TLS: OpenSSL uprobes on" "$work/reload.log" ||
		fail "no OpenSSL uprobes after the reload:$(sed 's/^/\n  /' "$work/reload.log")"
fi
grep -q "Permission denied\|Operation not permitted" "$work/reload.log" &&
	fail "a permission error after the reload:$(sed 's/^/\n  /' "$work/reload.log")"
check_caps
echo "ok: the reload helper exits 0; RELOADING=1, READY=1; tcpflow, http and its capture attached again with the reduced set"

# ---- 4. a rejected reload fails the helper ------------------------------------------------------

echo "bogus_key: 1" >>"$work/periscope.yaml"
if MAINPID=$DAEMON_PID RUNTIME_DIRECTORY=$work/run "$RELOAD" >"$work/reload.out" 2>&1; then
	fail "the reload helper exited 0 on an invalid configuration"
fi
grep -q "rejected" "$work/reload.out" || fail "the helper does not say why:$(cat "$work/reload.out")"
wait_for_log "reload rejected" 5 || fail "the daemon did not reject the reload"
wait_notify "^RELOADING=1$" || fail "no RELOADING=1 for the rejected reload"
wait_notify "^READY=1\|STATUS=$n_plugins of $n_plugins plugins up" ||
	fail "no READY=1 after the rejected reload"
kill -0 "$DAEMON_PID" || fail "the daemon exited after a rejected reload"
echo "ok: a rejected reload makes the helper exit 1: $(head -n1 "$work/reload.out")"

# The helper gives up on a daemon that is gone instead of waiting forever.
if MAINPID=999999999 RUNTIME_DIRECTORY=$work/run timeout 10 "$RELOAD" >/dev/null 2>&1; then
	fail "the reload helper exited 0 for a process that does not exist"
fi

# ---- 5. STOPPING=1 ------------------------------------------------------------------------------

stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
wait_notify "^STOPPING=1$" || fail "no STOPPING=1"
echo "ok: STOPPING=1 on SIGTERM, exit 0"
