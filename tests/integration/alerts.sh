#!/usr/bin/env bash
# Alerts end to end: periscoped's syslog sink sends RFC 5424 over UDP to a real
# rsyslogd that this test starts with its own config, port, pid file and work
# directory (the system's syslog and /dev/log are never touched).
#
# Scenario "tcp" (the default): a load process with a unique service name makes
# mostly refused connects (error_ratio = failed / (opened + failed) > 0.5), then
# only successful ones. Exactly one FIRING line, REPEAT lines exactly on the
# 3s schedule while it fires and no more, then exactly one RESOLVED line.
#
# Another protocol is a new scenario_<name> function that sets RULE_YAML,
# PLUGINS_YAML, GROUP, VALUE_RE and runs its load through run_phases (for http:
# nginx answering 5xx to 20% of requests, error_ratio above 0.1); the rsyslog
# set-up and every check of the lines are shared.
set -u
. "$(dirname "$0")/lib.sh"

PYTHON=${PYTHON:-/usr/bin/python3}
RSYSLOGD=${RSYSLOGD:-$(command -v rsyslogd || echo /usr/sbin/rsyslogd)}
SCENARIO=${1:-tcp}
RULE=alert-it # the rule's name in every scenario
REPEAT_S=3
FLUSH_S=0.5

require_root
for tool in "$PYTHON" "$RSYSLOGD"; do
	if [ ! -x "$tool" ]; then
		echo "SKIP: needs $tool (apt-get install rsyslog python3)"
		exit 77
	fi
done

work=$(mktemp -d)
RSYSLOG_PID='' LOAD_PID=''
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	stop_daemon
	[ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
	if [ -n "$RSYSLOG_PID" ]; then
		kill "$RSYSLOG_PID" 2>/dev/null
		wait "$RSYSLOG_PID" 2>/dev/null
	fi
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	if [ -s "$work/raw.log" ]; then
		echo "what rsyslogd received:" >&2
		sed 's/^/  /' "$work/raw.log" >&2
	fi
	if [ -n "${DAEMON_ERR:-}" ] && [ -s "$DAEMON_ERR" ]; then
		echo "periscoped's log:" >&2
		grep -v '^debug' "$DAEMON_ERR" | tail -n 40 | sed 's/^/  /' >&2
	fi
	exit 1
}

free_udp_port() {
	"$PYTHON" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ---- rsyslogd: imudp on 127.0.0.1:$SYSLOG_PORT -> raw.log and parsed.log -------------------

start_rsyslog() {
	mkdir -p "$work/spool"
	SYSLOG_PORT=$(free_udp_port)
	cat >"$work/rsyslog.conf" <<EOF
global(workDirectory="$work/spool")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="$SYSLOG_PORT")
template(name="raw" type="string" string="%rawmsg%\n")
template(name="parsed" type="string"
	 string="%syslogfacility-text%.%syslogseverity-text% app=%app-name% msgid=%msgid% sd=%structured-data% msg=%msg%\n")
action(type="omfile" file="$work/raw.log" template="raw")
action(type="omfile" file="$work/parsed.log" template="parsed")
EOF
	"$RSYSLOGD" -n -f "$work/rsyslog.conf" -i "$work/rsyslogd.pid" >"$work/rsyslogd.out" 2>&1 &
	RSYSLOG_PID=$!
	# Ready when a probe makes it into the file (imudp may bind a moment after start).
	local deadline=$((SECONDS + 15))
	while ! grep -q 'alerts-it-probe' "$work/raw.log" 2>/dev/null; do
		kill -0 "$RSYSLOG_PID" 2>/dev/null || fail "rsyslogd exited: $(cat "$work/rsyslogd.out")"
		[ $SECONDS -lt $deadline ] || fail "rsyslogd did not log a probe on port $SYSLOG_PORT"
		"$PYTHON" -c 'import socket, sys; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(
b"<14>1 - - alerts-it-probe - - - ready", ("127.0.0.1", int(sys.argv[1])))' "$SYSLOG_PORT"
		sleep 0.2
	done
}

# ---- periscoped -------------------------------------------------------------------------------

start_periscope() {
	cat >"$work/periscope.yaml" <<EOF
daemon: { flush_interval: 500ms, drain_interval: 50ms }
plugins: { $PLUGINS_YAML }
services:
$SERVICES_YAML
sinks:
  stdout: { format: prometheus }
  syslog: { ident: periscope-it, facility: local3, hostname: alerts-it,
            remote: "udp://127.0.0.1:$SYSLOG_PORT" }
alerts:
$RULE_YAML
EOF
	"$PERISCOPED" -c "$work/periscope.yaml" --check-config --plugin-dir "$PLUGIN_DIR" \
		>"$work/check.out" 2>&1 || fail "--check-config rejected the config: $(cat "$work/check.out")"
	start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
}

# run_phases SCRIPT ARGS...: runs a load script that prints "<phase> <unix time>" as each
# phase starts and "done <unix time>" at the end; phase times land in $work/phases.
run_phases() {
	"$PYTHON" "$@" >"$work/phases" 2>"$work/load.err" &
	LOAD_PID=$!
	wait "$LOAD_PID" || fail "the load failed: $(cat "$work/load.err")"
	LOAD_PID=
}

# ---- scenario: tcp, refused connects ----------------------------------------------------------

write_tcp_load() {
	cat >"$work/tcp_phases.py" <<'PY'
"""Connects in phases: 'fire' = 4 refused + 1 accepted per tick, 'ok' = 3 accepted per tick.
The process renames itself (argv[1]) so a services rule gives it a service name of its own."""
import ctypes, socket, sys, threading, time

PR_SET_NAME = 15
TICK = 0.1

ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(sys.argv[1].encode()), 0, 0, 0)
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(256)
port = listener.getsockname()[1]


def serve():
    while True:
        conn, _ = listener.accept()
        conn.close()


threading.Thread(target=serve, daemon=True).start()
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
closed_port = probe.getsockname()[1]
probe.close()

counts = {"opened": 0, "refused": 0}


def connect(p):
    try:
        socket.create_connection(("127.0.0.1", p), timeout=2).close()
        counts["opened"] += 1
    except ConnectionRefusedError:
        counts["refused"] += 1


for spec in sys.argv[2:]:
    phase, seconds = spec.split(":")
    print(phase, "%.3f" % time.time(), flush=True)
    end = time.time() + float(seconds)
    while time.time() < end:
        for _ in range(4 if phase == "fire" else 0):
            connect(closed_port)
        for _ in range(1 if phase == "fire" else 3):
            connect(port)
        time.sleep(TICK)
print("done", "%.3f" % time.time(), counts["opened"], counts["refused"], flush=True)
PY
}

scenario_tcp() {
	local comm="psal$$"
	SERVICE="alertload-$$"
	PLUGINS_YAML="tcpflow: {}"
	SERVICES_YAML="  - { match: { comm: $comm }, name: $SERVICE }"
	RULE_YAML="  - { name: $RULE, protocol: tcp, where: { service_name: $SERVICE },
      error_ratio: { above: 0.5, min_requests: 5 }, window: 2s, for: 0s, repeat: ${REPEAT_S}s }"
	GROUP="service_name=$SERVICE"
	PROTO=tcp
	CONDITION="error_ratio"
	# FIRING/REPEAT: "above 0.5"; RESOLVED: "(resolves below 0.45)" (default hysteresis)
	THRESHOLDS=("above 0.5" "(resolves below 0.45)")
	start_rsyslog
	start_periscope
	write_tcp_load
	# A long firing phase (several repeats), then clean traffic until well past the window.
	run_phases "$work/tcp_phases.py" "$comm" fire:10.2 ok:5
}

case "$SCENARIO" in
tcp) scenario_tcp ;;
*) fail "unknown scenario '$SCENARIO' (known: tcp)" ;;
esac

# Two more flushes so the last notices are out, then the final flush on SIGTERM.
wait_for_snapshots 2 || fail "periscoped stopped flushing"
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
sleep 0.3 # rsyslogd writes asynchronously

# ---- checks -----------------------------------------------------------------------------------

# rsyslogd's own parse: facility, severity, APP-NAME, MSGID and structured data as sent.
grep -q "^local3.warning app=periscope-it msgid=alert sd=\[periscope@32473 alert=\"$RULE\" state=\"firing\" protocol=\"$PROTO\" group=\"$GROUP\"" \
	"$work/parsed.log" || fail "rsyslogd did not parse a FIRING message as expected:$(sed 's/^/\n  /' "$work/parsed.log")"
grep -q "^local3.notice app=periscope-it msgid=alert sd=\[periscope@32473 alert=\"$RULE\" state=\"resolved\"" \
	"$work/parsed.log" || fail "rsyslogd did not parse a RESOLVED message as expected"

# The lines themselves: states, counts and the repeat schedule, from the RFC 5424 timestamps.
"$PYTHON" - "$work/raw.log" "$work/phases" "$RULE" "$GROUP" "$PROTO" "$CONDITION" \
	"${THRESHOLDS[0]}" "${THRESHOLDS[1]}" "$REPEAT_S" "$FLUSH_S" <<'PY' || fail "the alert lines are not right"
import datetime, re, sys

raw, phases, rule, group, proto, cond, fire_thr, resolve_thr = sys.argv[1:9]
repeat_s, flush_s = float(sys.argv[9]), float(sys.argv[10])
line_re = re.compile(r"^<(\d+)>1 (\S+) alerts-it periscope-it \d+ alert \[periscope@32473 [^]]*\] (.*)$")
times = {p.split()[0]: float(p.split()[1]) for p in open(phases)}
notices = []
for text in open(raw):
    m = line_re.match(text.rstrip("\n"))
    if not m:
        continue
    pri, stamp, msg = int(m.group(1)), m.group(2), m.group(3)
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    head = "alert %s " % rule
    if not msg.startswith(head):
        continue
    state = msg[len(head):].split(":", 1)[0]
    notices.append((when, state, pri, msg))
    print("  %+7.3fs  %s" % (when - times["fire"], msg))

errors = []
def expect(ok, what):
    if not ok:
        errors.append(what)

states = [n[1] for n in notices]
expect(states.count("FIRING") == 1, "want exactly one FIRING, got %d" % states.count("FIRING"))
expect(states.count("RESOLVED") == 1, "want exactly one RESOLVED, got %d" % states.count("RESOLVED"))
expect(states and states[0] == "FIRING" and states[-1] == "RESOLVED",
       "want FIRING first and RESOLVED last: %s" % states)
if not errors:
    fired = notices[0][0]
    resolved = notices[-1][0]
    expect(times["fire"] <= fired <= times["ok"], "FIRING outside the failing phase")
    expect(times["ok"] < resolved <= times["ok"] + 2 + 3 * flush_s,
           "RESOLVED %.2fs after the errors stopped (window 2s)" % (resolved - times["ok"]))
    # Due at fired + k * repeat; sent at the first flush from then on.
    repeats = [n[0] for n in notices if n[1] == "REPEAT"]
    for k, when in enumerate(repeats, 1):
        due = fired + k * repeat_s
        expect(due - 0.05 <= when <= due + flush_s + 0.25,
               "REPEAT %d at +%.2fs, due at +%.0fs" % (k, when - fired, k * repeat_s))
    # Every slot before the resolution had its repeat; a slot within a flush of it may go either way.
    want_min = sum(1 for k in range(1, 100) if fired + k * repeat_s + flush_s + 0.25 < resolved)
    want_max = sum(1 for k in range(1, 100) if fired + k * repeat_s - 0.05 <= resolved)
    expect(want_min <= len(repeats) <= want_max,
           "%d REPEAT lines over %.1fs of firing, want %d..%d" % (len(repeats), resolved - fired,
                                                                 want_min, want_max))
    expect(len(repeats) >= 2, "the firing phase was meant to be long enough for 2+ repeats")
for when, state, pri, msg in notices:
    sev = 5 if state == "RESOLVED" else 4
    expect(pri == 19 * 8 + sev, "%s: PRI %d, want local3 %d" % (state, pri, 19 * 8 + sev))
    body = "alert %s %s: %s %s: %s " % (rule, state, group, proto, cond)
    expect(msg.startswith(body), "%r does not start with %r" % (msg, body))
    thr = resolve_thr if state == "RESOLVED" else fire_thr
    expect((" %s over 2s" % thr) in msg, "%r lacks %r" % (msg, thr))
    if state == "REPEAT":
        expect(re.search(r", firing for \d+s$", msg) is not None, "%r lacks 'firing for'" % msg)
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY

# periscope_alerts_firing{alert} went to 1 while firing and is 0 at the end.
grep -q "^periscope_alerts_firing{service_name=\"periscoped\",alert=\"$RULE\"} 1" "$DAEMON_OUT" ||
	fail "periscope_alerts_firing never showed 1"
last_snapshot <"$DAEMON_OUT" >"$work/last.prom"
series_is "$work/last.prom" periscope_alerts_firing "alert=\"$RULE\"" 0 ||
	fail "periscope_alerts_firing is not 0 at the end"

echo "ok: $SCENARIO: one FIRING, REPEATs every ${REPEAT_S}s while firing, one RESOLVED, through rsyslogd"
exit 0
