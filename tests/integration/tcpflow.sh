#!/usr/bin/env bash
# tcpflow against exact counts: tcp_load.py makes N IPv4 and M IPv6 connections
# that each send A and receive B bytes, and K connects that are refused;
# periscope's counters must match exactly, per direction and peer.
set -u
. "$(dirname "$0")/lib.sh"

N=25 M=15 A=7777 B=3333 K=10

require_root
if [ ! -x "$PYTHON" ]; then
	echo "SKIP: needs $PYTHON"
	exit 77
fi

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

# One flush after the load, then the final one on SIGTERM.
snap=$work/snapshot.prom
final_snapshot "$snap"
SNAPSHOT=$snap DIFF=$work/diff


v4_out=('direction="outbound"' 'peer_address="127.0.0.1"' "peer_port=\"$P4\"")
v6_out=('direction="outbound"' 'peer_address="::1"' "peer_port=\"$P6\"")
v4_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$P4\"")
v6_in=('direction="inbound"' 'peer_address=""' "peer_port=\"$P6\"")
refused=('direction="outbound"' 'peer_address="127.0.0.1"' "peer_port=\"$PC\"")

for m in opened closed; do
	expect $N "periscope_tcp_connections_${m}_total" "${v4_out[@]}"
	expect $M "periscope_tcp_connections_${m}_total" "${v6_out[@]}"
	expect $N "periscope_tcp_connections_${m}_total" "${v4_in[@]}"
	expect $M "periscope_tcp_connections_${m}_total" "${v6_in[@]}"
done
expect $K periscope_tcp_connections_failed_total "${refused[@]}"
expect $K periscope_tcp_resets_total "${refused[@]}"

# The client sends A and receives B per connection; the server the other way round.
expect $((N * A)) periscope_tcp_sent_bytes_total "${v4_out[@]}"
expect $((N * B)) periscope_tcp_received_bytes_total "${v4_out[@]}"
expect $((N * A)) periscope_tcp_received_bytes_total "${v4_in[@]}"
expect $((N * B)) periscope_tcp_sent_bytes_total "${v4_in[@]}"
expect $((M * A)) periscope_tcp_sent_bytes_total "${v6_out[@]}"
expect $((M * B)) periscope_tcp_received_bytes_total "${v6_out[@]}"
expect $((M * A)) periscope_tcp_received_bytes_total "${v6_in[@]}"
expect $((M * B)) periscope_tcp_sent_bytes_total "${v6_in[@]}"

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
