#!/usr/bin/env bash
# The core capture serves several L7 protocols at once: the http plugin and capprobe (a
# test protocol that claims its port and checks every captured byte against the pattern the
# peers send) are loaded together. They must share one set of capture programs, and
# capprobe must see exactly the bytes peers.py moved each way, in order, whatever the
# mix of send/sendmsg/recv/recv_into/recvmsg, peeks, splits and large writes; http must
# still count its requests exactly.
set -u
. "$(dirname "$0")/lib.sh"

CONNECTIONS=24 SEED=$$ REQUESTS=7

require_root
require_tools "apt-get install python3 curl bpftool" "$PYTHON" curl bpftool
one_at_a_time capture

probe=$top_builddir/tests/integration/capture/.libs/capprobe.so
[ -f "$probe" ] || fail "capprobe.so is not built ($probe)"
work=$(mktemp -d)
children=()
trap 'kill "${children[@]}" 2>/dev/null; stop_daemon; rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"' EXIT

# A plugin directory of our own: root's, not writable by others, as the loader demands.
plugins=$work/plugins
mkdir -m 0755 "$plugins"
cp "$PLUGIN_DIR/http.so" "$probe" "$plugins/"

bin=$work/bin
mkdir "$bin"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-cappeers"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-capweb"
cp "$(command -v curl)" "$bin/pstest-capcurl"
PEER_PORT=$(free_port)
WEB_PORT=$(free_port)
mkdir "$work/www" && echo hello >"$work/www/index.html"
(cd "$work/www" && exec "$bin/pstest-capweb" -m http.server "$WEB_PORT" --bind 127.0.0.1) \
	>/dev/null 2>&1 &
children+=($!)
wait_port "$WEB_PORT" || fail "the web server did not start"

cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
capture: { hooks: $CAPTURE_HOOKS }
plugins:
  capprobe: { ports: [$PEER_PORT] }
  http: { }
services:
  - { match: { exe: $bin/pstest-cappeers }, name: pstest-cappeers }
  - { match: { exe: $bin/pstest-capweb }, name: pstest-capweb }
  - { match: { exe: $bin/pstest-capcurl }, name: pstest-capcurl }
sinks: { stdout: { format: prometheus } }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$plugins" || fail "periscoped did not start"
expect_capture_hooks
grep -q "capture: protocol capprobe" "$DAEMON_ERR" || fail "capprobe did not register"
grep -q "capture: protocol http" "$DAEMON_ERR" || fail "http did not register"

# One set of programs for both protocols: every capture program is there once.
# The daemon's programs: the prog_id of each BPF fd it holds, named by bpftool.
progs=$(bpftool -j prog show | "$PYTHON" -c '
import glob, json, sys
ids = set()
for info in glob.glob(f"/proc/{sys.argv[1]}/fdinfo/*"):
    try:
        ids |= {int(l.split()[1]) for l in open(info) if l.startswith("prog_id:")}
    except OSError:
        pass
for p in json.load(sys.stdin):
    if p["id"] in ids and p.get("name", "").startswith("ps_sc_"):
        print(p["name"])' "$DAEMON_PID" | sort)
dups=$(printf '%s\n' "$progs" | uniq -d)
[ -n "$progs" ] || fail "no capture programs loaded"
[ -z "$dups" ] || fail "capture programs loaded more than once: $(echo $dups)"
echo "capture programs (each once, for two protocols): $(echo $progs)"

truth=$("$bin/pstest-cappeers" "$(dirname "$0")/capture/peers.py" "$PEER_PORT" "$CONNECTIONS" "$SEED") ||
	fail "peers.py failed"
read -r REQ RESP < <(printf '%s' "$truth" | "$PYTHON" -c \
	'import json, sys; d = json.load(sys.stdin); print(d["request_bytes"], d["response_bytes"])')
for i in $(seq "$REQUESTS"); do
	"$bin/pstest-capcurl" -s -o /dev/null "http://127.0.0.1:$WEB_PORT/" || fail "curl failed"
done

snap=$work/snapshot.prom
final_snapshot "$snap"
SNAPSHOT=$snap DIFF=$work/diff
B=periscope_capprobe_bytes_total
expect "$REQ" $B 'side="client"' 'direction="out"'
expect "$REQ" $B 'side="server"' 'direction="in"'
expect "$RESP" $B 'side="server"' 'direction="out"'
expect "$RESP" $B 'side="client"' 'direction="in"'
expect 0 periscope_capprobe_mismatches_total
expect $((2 * CONNECTIONS)) periscope_capprobe_connections_total 'event="open"'
expect $((2 * CONNECTIONS)) periscope_capprobe_connections_total 'event="close"'
expect "$REQUESTS" http_server_request_duration_seconds_count 'service_name="pstest-capweb"'
expect "$REQUESTS" http_client_request_duration_seconds_count 'service_name="pstest-capcurl"'
expect 0 periscope_events_dropped_total 'plugin="capture"'
# The probe's port is its own: http saw none of those connections.
expect 0 http_server_request_duration_seconds_count 'service_name="pstest-cappeers"'

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s) (want = what peers.py and curl did, got = periscope's):" >&2
	cat "$work/diff" >&2
	grep -E '^periscope_capprobe|^periscope_capture' "$snap" | sed 's/^/  /' >&2
	exit 1
fi
echo "ok: $CONNECTIONS connections, $REQ bytes up and $RESP down, every captured byte in" \
	"order, beside $REQUESTS HTTP requests, on one set of capture programs ($CAPTURE_HOOKS)"
