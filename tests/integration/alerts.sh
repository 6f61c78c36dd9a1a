#!/usr/bin/env bash
# Alerts end to end: periscoped's syslog sink sends RFC 5424 over UDP to a real
# rsyslogd that this test starts with its own config, port, pid file and work
# directory (the system's syslog and /dev/log are never touched).
#
# Scenario "tcp": a load process with a unique service name makes mostly refused
# connects (error_ratio = failed / (opened + failed) > 0.5), then only successful
# ones. Scenario "http": a private nginx (a copy of the binary under a services rule,
# so its service name is its own) answers 500 to exactly every 5th request (20%),
# then only 200s; the rule reads the http plugin's server view (error_ratio above
# 0.1, errors = status >= 500). Both: exactly one FIRING line, REPEAT lines exactly
# on the 3s schedule while it fires and no more, then exactly one RESOLVED line, and
# periscope_alerts_firing goes 1 -> 0.
#
# Without an argument both scenarios run (each in its own run of this script); a
# scenario whose tools are missing is skipped. A scenario is a scenario_<name>
# function that sets RULE_YAML, PLUGINS_YAML, SERVICES_YAML, GROUP, FIRE_RANGE, ... and
# runs its load through run_phases; the rsyslog set-up and every check of the lines
# are shared.
set -u
. "$(dirname "$0")/lib.sh"

RSYSLOGD=${RSYSLOGD:-$(command -v rsyslogd || echo /usr/sbin/rsyslogd)}
SCENARIO=${1:-all}
RULE=alert-it # the rule's name in every scenario
REPEAT_S=3
FLUSH_S=0.5

SCENARIOS="tcp http"

require_root
require_tools "apt-get install rsyslog python3" "$PYTHON" "$RSYSLOGD"

# No scenario named: each one in turn, in its own process (own rsyslogd, nginx, daemon).
# Fails if one fails; skips (77) only if every one skipped.
if [ "$SCENARIO" = all ]; then
	ran=0 child=''
	# shellcheck disable=SC2317 # called by the traps
	trap '[ -n "$child" ] && kill "$child" 2>/dev/null' EXIT
	trap 'exit 143' INT TERM
	for s in $SCENARIOS; do
		"${BASH:-bash}" "$0" "$s" &
		child=$!
		wait "$child"
		rc=$?
		child=''
		case $rc in
		0) ran=$((ran + 1)) ;;
		77) echo "(scenario $s skipped)" ;;
		*) echo "FAIL: scenario $s (exit $rc)" >&2; exit 1 ;;
		esac
	done
	[ "$ran" -gt 0 ] || exit 77
	exit 0
fi
case " $SCENARIOS " in
*" $SCENARIO "*) ;;
*)
	echo "FAIL: unknown scenario '$SCENARIO' (known: $SCENARIOS)" >&2
	exit 1
	;;
esac
if [ "$SCENARIO" = http ] && ! command -v nginx >/dev/null 2>&1; then
	echo "SKIP: the http scenario needs nginx (apt-get install nginx-light)"
	exit 77
fi

work=$(mktemp -d)
RSYSLOG_PID='' LOAD_PID='' NGINX_PID=''
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	stop_daemon
	[ -n "$LOAD_PID" ] && kill "$LOAD_PID" 2>/dev/null && wait "$LOAD_PID" 2>/dev/null
	local pid
	for pid in "$NGINX_PID" "$RSYSLOG_PID"; do
		[ -n "$pid" ] || continue
		kill "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*" >&2
	if [ -s "$work/raw.log" ]; then
		echo "what rsyslogd received:" >&2
		sed 's/^/  /' "$work/raw.log" >&2
	fi
	if [ -s "$work/nginx/error.log" ]; then
		echo "nginx's error log:" >&2
		tail -n 20 "$work/nginx/error.log" | sed 's/^/  /' >&2
	fi
	if [ -n "${DAEMON_ERR:-}" ] && [ -s "$DAEMON_ERR" ]; then
		echo "periscoped's log:" >&2
		grep -v '^debug' "$DAEMON_ERR" | tail -n 40 | sed 's/^/  /' >&2
	fi
	exit 1
}

free_port() { # free_port udp|tcp
	"$PYTHON" -c 'import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1] == "udp" else socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' "$1"
}

# ---- rsyslogd: imudp on 127.0.0.1:$SYSLOG_PORT -> raw.log and parsed.log -------------------

start_rsyslog() {
	mkdir -p "$work/spool"
	SYSLOG_PORT=$(free_port udp)
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
	FIRE_RANGE=(0.5 1) # the value in FIRING and REPEAT lines sent before the errors stopped
	RESOLVE_MAX=0.45
	start_rsyslog
	start_periscope
	write_tcp_load
	# A long firing phase (several repeats), then clean traffic until well past the window.
	run_phases "$work/tcp_phases.py" "$comm" fire:10.2 ok:5
}

# ---- scenario: http, nginx answering 500 to every 5th request --------------------------------

start_nginx() {
	mkdir -p "$work/bin" "$work/nginx/tmp"
	chmod 755 "$work" # nginx's worker runs as nobody
	# Our own copy: its exe path names the service below.
	cp "$(command -v nginx)" "$work/bin/pstest-alert-nginx"
	NGINX_PORT=$(free_port tcp)
	write_nginx_conf "$work/nginx" <<EOF
	server {
		listen 127.0.0.1:$NGINX_PORT;
		# /req/N: 500 when N ends in 0 or 5 (every 5th of /req/1, /req/2, ...), else 200.
		location ~ ^/req/(\d*[05])$ { return 500; }
		location /req/ { return 200 "ok\n"; }
		location = /ok { return 200 "ok\n"; }
	}
EOF
	"$work/bin/pstest-alert-nginx" -e "$work/nginx/error.log" -p "$work/nginx" \
		-c "$work/nginx/nginx.conf" -g 'daemon off;' >"$work/nginx/out" 2>&1 &
	NGINX_PID=$!
	local deadline=$((SECONDS + 10))
	until "$PYTHON" -c "import socket; socket.create_connection(('127.0.0.1', $NGINX_PORT), 1).close()" \
		2>/dev/null; do
		kill -0 "$NGINX_PID" 2>/dev/null || fail "nginx exited: $(cat "$work/nginx/out")"
		[ $SECONDS -lt $deadline ] || fail "nginx did not listen on $NGINX_PORT"
		sleep 0.1
	done
}

write_http_load() {
	cat >"$work/http_phases.py" <<'PY'
"""HTTP/1.1 requests in phases on a keep-alive connection (nginx closes it after a 500;
http.client reopens it): 'fire' = /req/1, /req/2, ... (every 5th answered 500),
'ok' = /ok (200). TICK seconds between bursts of BURST requests."""
import http.client, sys, time

TICK, BURST = 0.05, 10
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5)
counts = {}  # (phase, status) -> requests
n = 0
for spec in sys.argv[2:]:
    phase, seconds = spec.split(":")
    print(phase, "%.3f" % time.time(), flush=True)
    end = time.time() + float(seconds)
    while time.time() < end:
        for _ in range(BURST):
            if phase == "fire":
                n += 1
                path = "/req/%d" % n
            else:
                path = "/ok"
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            key = (phase, resp.status)
            counts[key] = counts.get(key, 0) + 1
        time.sleep(TICK)
conn.close()
print("done", "%.3f" % time.time(),
      " ".join("%s:%d=%d" % (p, st, c) for (p, st), c in sorted(counts.items())), flush=True)
PY
}

scenario_http() {
	SERVICE="alertnginx-$$"
	PLUGINS_YAML="http: {}, tcpflow: { enabled: false }"
	start_nginx
	SERVICES_YAML="  - { match: { exe: $work/bin/pstest-alert-nginx }, name: $SERVICE }"
	RULE_YAML="  - { name: $RULE, protocol: http, where: { service_name: $SERVICE },
      error_ratio: { above: 0.1, min_requests: 20 }, window: 2s, for: 0s, repeat: ${REPEAT_S}s }"
	GROUP="service_name=$SERVICE"
	PROTO=http
	CONDITION="error_ratio"
	THRESHOLDS=("above 0.1" "(resolves below 0.09)")
	# Any n >= 20 consecutive requests hold 20% +- 0.8/n errors: 0.16..0.24, whatever the window.
	FIRE_RANGE=(0.16 0.24)
	RESOLVE_MAX=0.09
	start_rsyslog
	start_periscope
	write_http_load
	run_phases "$work/http_phases.py" "$NGINX_PORT" fire:10.2 ok:5
}

# The load's own count of statuses, and the http plugin's server view of the nginx copy.
check_http() {
	local done_line fire200 fire500 ok200 total errors
	done_line=$(grep '^done ' "$work/phases")
	fire200=$(sed -n 's/.* fire:200=\([0-9]*\).*/\1/p' <<<"$done_line")
	fire500=$(sed -n 's/.* fire:500=\([0-9]*\).*/\1/p' <<<"$done_line")
	ok200=$(sed -n 's/.* ok:200=\([0-9]*\).*/\1/p' <<<"$done_line")
	if [ -z "$fire200" ] || [ -z "$fire500" ] || [ -z "$ok200" ]; then
		fail "the load's counts: $done_line"
	fi
	[ "$(grep -o ' [a-z]*:[0-9]*=' <<<"$done_line" | wc -l)" = 3 ] ||
		fail "the load saw other statuses: $done_line"
	# /req/1 ... /req/N: floor(N / 5) of them end in 0 or 5.
	[ "$fire500" = $(((fire200 + fire500) / 5)) ] ||
		fail "nginx answered 500 to $fire500 of $((fire200 + fire500)) requests, want every 5th"
	total=$(series_value "$work/last.prom" http_server_request_duration_seconds_count \
		"service_name=\"$SERVICE\"")
	errors=$(series_value "$work/last.prom" http_server_request_duration_seconds_count \
		"service_name=\"$SERVICE\"" 'http_response_status_code="500"')
	if [ "$total" != $((fire200 + fire500 + ok200)) ] || [ "$errors" != "$fire500" ]; then
		fail "periscope counted $errors errors in $total requests to $SERVICE;" \
			"the load made $fire500 in $((fire200 + fire500 + ok200))"
	fi
	SUMMARY="nginx answered 500 to $fire500 of $((fire200 + fire500)) requests, then $ok200 200s;"
	SUMMARY+=" periscope counted them exactly;"
}

SUMMARY=''
case "$SCENARIO" in
tcp) scenario_tcp ;;
http) scenario_http ;;
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
	"${THRESHOLDS[0]}" "${THRESHOLDS[1]}" "$REPEAT_S" "$FLUSH_S" "${FIRE_RANGE[@]}" "$RESOLVE_MAX" \
	<<'PY' || fail "the alert lines are not right"
import datetime, re, sys

raw, phases, rule, group, proto, cond, fire_thr, resolve_thr = sys.argv[1:9]
repeat_s, flush_s = float(sys.argv[9]), float(sys.argv[10])
fire_lo, fire_hi, resolve_max = (float(a) for a in sys.argv[11:14])
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
    # The measured value: in range while only the errors are in the window, past the
    # resolve threshold when resolved.
    v = re.search(r": %s (\S+) " % cond, msg)
    value = float(v.group(1)) if v else float("nan")
    if state == "RESOLVED":
        expect(value <= resolve_max, "%r: resolved at %g, want <= %g" % (msg, value, resolve_max))
    elif when < times["ok"]:
        expect(fire_lo <= value <= fire_hi,
               "%r: value %g, want %g..%g" % (msg, value, fire_lo, fire_hi))
if errors:
    print("\n".join("  " + e for e in errors), file=sys.stderr)
    sys.exit(1)
PY

# periscope_alerts_firing{alert} over the snapshots: 1 while firing, 0 at the end, and
# one 0 -> 1 -> 0 only (runs of equal values collapsed, snapshots without it left out).
grep -q "^periscope_alerts_firing{service_name=\"periscoped\",alert=\"$RULE\"} 1" "$DAEMON_OUT" ||
	fail "periscope_alerts_firing never showed 1"
last_snapshot <"$DAEMON_OUT" >"$work/last.prom"
series_is "$work/last.prom" periscope_alerts_firing "alert=\"$RULE\"" 0 ||
	fail "periscope_alerts_firing is not 0 at the end"
firing_seq=$(awk -v series="periscope_alerts_firing{service_name=\"periscoped\",alert=\"$RULE\"}" '
	/^# periscope snapshot/ { if (n++ && v != "") print v; v = ""; next }
	index($0, series " ") == 1 { v = $NF }
	END { if (v != "") print v }' "$DAEMON_OUT" | uniq | tr '\n' ' ')
case "$firing_seq" in
"1 0 " | "0 1 0 ") ;;
*) fail "periscope_alerts_firing over the snapshots: $firing_seq(want 0 1 0)" ;;
esac

[ "$SCENARIO" = http ] && check_http
echo "ok: $SCENARIO: ${SUMMARY:+$SUMMARY }one FIRING, REPEATs every ${REPEAT_S}s while firing," \
	"one RESOLVED, through rsyslogd; periscope_alerts_firing 1 -> 0"
exit 0
