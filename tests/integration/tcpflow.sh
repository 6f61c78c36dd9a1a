#!/usr/bin/env bash
# tcpflow against exact counts: tcp_load.py makes N IPv4 and M IPv6 connections
# that each send A and receive B bytes, and K connects that are refused;
# periscope's counters must match exactly, per direction and peer. Then edge
# cases: the bytes of a connection still open at a flush, and connections that
# end every other way (server closes first, RST, half-close, no data, data
# never read).
set -u
. "$(dirname "$0")/lib.sh"

N=25 M=15 A=7777 B=3333 K=10

require_root
require_tools "apt-get install python3" "$PYTHON"

work=$(mktemp -d)
trap 'stop_daemon; rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"' EXIT

cat >"$work/periscope.yaml" <<'YAML'
daemon: { flush_interval: 1s }
plugins: { tcpflow: {} }
sinks: { stdout: { format: prometheus } }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

ports=$("$PYTHON" "$(dirname "$0")/tcp_load.py" --v4 $N --v6 $M --send $A --recv $B --refused $K) ||
	fail "tcp_load.py failed"
read -r P4 P6 PC < <(printf '%s' "$ports" | "$PYTHON" -c \
	'import json, sys; d = json.load(sys.stdin); print(d["v4_port"], d["v6_port"], d["closed_port"])')
[ -n "${PC:-}" ] || fail "cannot read the ports from: $ports"
echo "load done: IPv4 port $P4, IPv6 port $P6, refused port $PC"

# Edge cases, one server each: "live" keeps its connection open until told to go on.
cat >"$work/edge.py" <<'PY'
import json, os, socket, struct, sys, threading

sys.path.insert(0, os.environ["TCP_LOAD_DIR"])
from tcp_load import recv_exactly

def eof(s):
    if s.recv(16):
        raise RuntimeError("data where EOF was expected")

def server(handle, errors):
    l = socket.socket()
    l.bind(("127.0.0.1", 0))
    l.listen(8)
    def run():
        try:
            handle(l)
        except Exception as e:
            errors.append("server: %r" % e)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return l.getsockname()[1], t

def live_server(l):
    s, _ = l.accept()
    recv_exactly(s, 1111); s.sendall(b"l" * 2222)
    recv_exactly(s, 33); s.sendall(b"m" * 44)
    eof(s); s.close()

def edge_server(l):
    s, _ = l.accept()  # server closes first
    recv_exactly(s, 101); s.sendall(b"a" * 202); s.close()
    s, _ = l.accept()  # the client resets
    recv_exactly(s, 303); s.sendall(b"b" * 404)
    try:
        s.recv(16)
    except ConnectionResetError:
        pass
    s.close()
    s, _ = l.accept()  # half-close by the client
    recv_exactly(s, 505); eof(s); s.sendall(b"c" * 606); s.close()
    s, _ = l.accept()  # no data
    eof(s); s.close()
    s, _ = l.accept()  # 707 bytes arrive, never read: close() resets
    s.recv(707, socket.MSG_PEEK | socket.MSG_WAITALL)  # there, peeked at, not read
    s.close()

errors = []
live_port, live_t = server(live_server, errors)
edge_port, edge_t = server(edge_server, errors)

c = socket.create_connection(("127.0.0.1", live_port), timeout=10)
c.sendall(b"L" * 1111); recv_exactly(c, 2222)
print(json.dumps({"live_port": live_port}), flush=True)
sys.stdin.readline()  # the test checked a flush taken now
c.sendall(b"M" * 33); recv_exactly(c, 44); c.close()

c = socket.create_connection(("127.0.0.1", edge_port), timeout=10)
c.sendall(b"A" * 101); recv_exactly(c, 202); eof(c); c.close()
c = socket.create_connection(("127.0.0.1", edge_port), timeout=10)
c.sendall(b"B" * 303); recv_exactly(c, 404)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
c = socket.create_connection(("127.0.0.1", edge_port), timeout=10)
c.sendall(b"C" * 505); c.shutdown(socket.SHUT_WR); recv_exactly(c, 606); eof(c); c.close()
c = socket.create_connection(("127.0.0.1", edge_port), timeout=10)
c.close()
c = socket.create_connection(("127.0.0.1", edge_port), timeout=10)
c.sendall(b"E" * 707)
try:
    c.recv(16)
except ConnectionResetError:
    pass
c.close()

live_t.join(10); edge_t.join(10)
if live_t.is_alive() or edge_t.is_alive():
    errors.append("server threads did not finish")
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"edge_port": edge_port}), flush=True)
PY
mkfifo "$work/go"
PYTHONDONTWRITEBYTECODE=1 TCP_LOAD_DIR="$top_srcdir/tests/integration" "$PYTHON" "$work/edge.py" <"$work/go" >"$work/edge.out" &
edge_pid=$!
exec 3>"$work/go"
for _ in $(seq 100); do
	grep -q live_port "$work/edge.out" && break
	sleep 0.1
done
PL=$(sed -n 's/.*"live_port": \([0-9]*\).*/\1/p' "$work/edge.out")
[ -n "$PL" ] || fail "edge.py did not open its live connection"
wait_for_snapshots 2 || fail "no flush while the live connection was open"
last_snapshot <"$DAEMON_OUT" >"$work/live.prom"
echo >&3
exec 3>&-
wait "$edge_pid" || fail "edge.py failed"
PE=$(sed -n 's/.*"edge_port": \([0-9]*\).*/\1/p' "$work/edge.out")
[ -n "$PE" ] || fail "cannot read the edge port from: $(cat "$work/edge.out")"
echo "edge cases done: live port $PL, edge port $PE"

# Issue 16's scenario: sequential connections where the server replies and closes first and
# the client reads to EOF, then closes (the client's socket goes CLOSE_WAIT -> LAST_ACK).
cat >"$work/server_first.py" <<'PY'
import json, os, socket, sys, threading

sys.path.insert(0, os.environ["TCP_LOAD_DIR"])
from tcp_load import recv_exactly

def run(family, addr, count, send, reply, errors):
    l = socket.socket(family)
    l.bind((addr, 0))
    l.listen(64)
    def serve():
        try:
            for _ in range(count):
                s, _ = l.accept()
                recv_exactly(s, send); s.sendall(b"r" * reply); s.close()
        except Exception as e:
            errors.append("server: %r" % e)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    for _ in range(count):
        c = socket.create_connection((addr, l.getsockname()[1]), timeout=10)
        c.sendall(b"s" * send)
        recv_exactly(c, reply)
        if c.recv(16):
            raise RuntimeError("data where EOF was expected")
        c.close()
    t.join(10)
    if t.is_alive():
        errors.append("server thread did not finish")
    port = l.getsockname()[1]
    l.close()
    return port

errors = []
count4, count6, send, reply = (int(a) for a in sys.argv[1:5])
p4 = run(socket.AF_INET, "127.0.0.1", count4, send, reply, errors)
p6 = run(socket.AF_INET6, "::1", count6, send, reply, errors)
if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(json.dumps({"v4_port": p4, "v6_port": p6}))
PY
SF4=60 SF6=40 SFA=321 SFB=654
sf=$(PYTHONDONTWRITEBYTECODE=1 TCP_LOAD_DIR="$top_srcdir/tests/integration" \
	"$PYTHON" "$work/server_first.py" $SF4 $SF6 $SFA $SFB) || fail "server_first.py failed"
read -r SP4 SP6 < <(printf '%s' "$sf" | "$PYTHON" -c \
	'import json, sys; d = json.load(sys.stdin); print(d["v4_port"], d["v6_port"])')
[ -n "${SP6:-}" ] || fail "cannot read the ports from: $sf"
echo "server closes first: IPv4 port $SP4, IPv6 port $SP6"

# One flush after the load, then the final one on SIGTERM.
snap=$work/snapshot.prom
final_snapshot "$snap"
DIFF=$work/diff

# The live connection, at a flush while it was open: what it moved so far, exactly.
SNAPSHOT=$work/live.prom
live_out=('direction="outbound"' 'peer_address="127.0.0.1"' "peer_port=\"$PL\"")
live_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$PL\"")
expect 1111 periscope_tcp_sent_bytes_total "${live_out[@]}"
expect 2222 periscope_tcp_received_bytes_total "${live_out[@]}"
expect 1111 periscope_tcp_received_bytes_total "${live_in[@]}"
expect 2222 periscope_tcp_sent_bytes_total "${live_in[@]}"
expect 1 periscope_tcp_connections_active "${live_out[@]}"
expect 1 periscope_tcp_connections_active "${live_in[@]}"
expect 0 periscope_tcp_connections_closed_total "${live_out[@]}"

# opened = closed + active, per direction and peer, at a flush mid-run and at the end.
expect_tcp_invariant

SNAPSHOT=$snap
expect_tcp_invariant

tcp_load_labels "$P4" "$P6" "$PC"
expect_tcp_load
expect $K periscope_tcp_resets_total "${refused[@]}"

# After the live connection closed: the rest of its bytes, each counted once.
expect 1144 periscope_tcp_sent_bytes_total "${live_out[@]}"
expect 2266 periscope_tcp_received_bytes_total "${live_out[@]}"
expect 1144 periscope_tcp_received_bytes_total "${live_in[@]}"
expect 2266 periscope_tcp_sent_bytes_total "${live_in[@]}"
expect 0 periscope_tcp_connections_active "${live_out[@]}"
expect 0 periscope_tcp_connections_active "${live_in[@]}"

# Edge closes: what each application wrote and read (707 bytes were never read).
edge_out=('direction="outbound"' 'peer_address="127.0.0.1"' "peer_port=\"$PE\"")
edge_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$PE\"")
for m in opened closed; do
	expect 5 "periscope_tcp_connections_${m}_total" "${edge_out[@]}"
	expect 5 "periscope_tcp_connections_${m}_total" "${edge_in[@]}"
done
expect $((101 + 303 + 505 + 707)) periscope_tcp_sent_bytes_total "${edge_out[@]}"
expect $((202 + 404 + 606)) periscope_tcp_received_bytes_total "${edge_out[@]}"
expect $((101 + 303 + 505)) periscope_tcp_received_bytes_total "${edge_in[@]}"
expect $((202 + 404 + 606)) periscope_tcp_sent_bytes_total "${edge_in[@]}"

# Server closes first: each connection opened and closed once, none left active, bytes exact.
sf4_out=('direction="outbound"' 'peer_address="127.0.0.1"' "peer_port=\"$SP4\"")
sf6_out=('direction="outbound"' 'peer_address="::1"' "peer_port=\"$SP6\"")
sf4_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$SP4\"")
sf6_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$SP6\"")
for m in opened closed; do
	expect $SF4 "periscope_tcp_connections_${m}_total" "${sf4_out[@]}"
	expect $SF4 "periscope_tcp_connections_${m}_total" "${sf4_in[@]}"
	expect $SF6 "periscope_tcp_connections_${m}_total" "${sf6_out[@]}"
	expect $SF6 "periscope_tcp_connections_${m}_total" "${sf6_in[@]}"
done
expect 0 periscope_tcp_connections_active "${sf4_out[@]}"
expect 0 periscope_tcp_connections_active "${sf4_in[@]}"
expect 0 periscope_tcp_connections_active "${sf6_out[@]}"
expect 0 periscope_tcp_connections_active "${sf6_in[@]}"
expect $((SF4 * SFA)) periscope_tcp_sent_bytes_total "${sf4_out[@]}"
expect $((SF4 * SFB)) periscope_tcp_received_bytes_total "${sf4_out[@]}"
expect $((SF4 * SFB)) periscope_tcp_sent_bytes_total "${sf4_in[@]}"
expect $((SF4 * SFA)) periscope_tcp_received_bytes_total "${sf4_in[@]}"
expect $((SF6 * SFA)) periscope_tcp_sent_bytes_total "${sf6_out[@]}"
expect $((SF6 * SFB)) periscope_tcp_received_bytes_total "${sf6_out[@]}"
expect $((SF6 * SFB)) periscope_tcp_sent_bytes_total "${sf6_in[@]}"
expect $((SF6 * SFA)) periscope_tcp_received_bytes_total "${sf6_in[@]}"

for h in periscope_tcp_rtt_seconds_count periscope_tcp_connection_duration_seconds_count; do
	expect $N $h "${v4_out[@]}"
	expect $M $h "${v6_out[@]}"
	expect $N $h "${v4_in[@]}"
	expect $M $h "${v6_in[@]}"
done

# Gauges of ended connections go away (series_value reads absent as 0).
expect 0 periscope_tcp_connections_active "${v4_out[@]}"
expect 0 periscope_tcp_connections_active "${v6_out[@]}"
expect 0 periscope_tcp_connections_active "${v4_in[@]}"
expect 0 periscope_tcp_connections_active "${v6_in[@]}"
expect 0 periscope_events_dropped_total 'plugin="tcpflow"'
expect 1 periscope_plugin_up 'plugin="tcpflow"'

if command -v promtool >/dev/null 2>&1; then
	if ! promtool check metrics <"$snap" >"$work/promtool" 2>&1; then
		sed 's/^/  promtool: /' "$work/promtool" >>"$work/diff"
		failures=$((failures + 1))
	fi
else
	echo "promtool not found: exposition format not checked"
fi

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s) (want = the load generator's count, got = periscope's):" >&2
	cat "$work/diff" >&2
	echo "the tcp series of the last snapshot:" >&2
	grep '^periscope_tcp_' "$snap" | grep -v _bucket | sed 's/^/  /' >&2
	exit 1
fi
echo "ok: $((N + M)) connections each way and $K refused, counted exactly"
exit 0
