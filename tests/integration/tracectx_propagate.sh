#!/usr/bin/env bash
# tracectx's opt-in propagation across hosts, with two network namespaces joined by a veth
# pair standing in for two hosts: curl calls A (namespace one), whose handler calls B
# (namespace two) with a client that sends no traceparent.
#  - propagate: true: every request B receives carries one traceparent naming A's client
#    span, and B's server span joins A's trace (check_propagation.py checks each link);
#    A client socket in the sockhash still answers FIONREAD right (the kernel regression
#    propagate.bpf.c guards against);
#  - propagate: false: B receives exactly the bytes A's client sent, as with no periscoped.
set -u
. "$(dirname "$0")/lib.sh"

N=20

require_root
require_tools "apt-get install python3 curl iproute2" "$PYTHON" curl ip
one_at_a_time tracectx_propagate

make_work
ns_a=pst-tpa-$$ ns_b=pst-tpb-$$
net=10.$((200 + $$ % 50)).$(($$ % 250)).0
addr_a=${net%.0}.1 addr_b=${net%.0}.2
cleanup() {
	end_of_test
	ip netns del "$ns_a" 2>/dev/null
	ip netns del "$ns_b" 2>/dev/null
}
trap cleanup EXIT

ip netns add "$ns_a" && ip netns add "$ns_b" || fail "cannot create network namespaces"
ip link add pstva$$ netns "$ns_a" type veth peer name pstvb$$ netns "$ns_b" ||
	fail "cannot create the veth pair"
ip -n "$ns_a" addr add "$addr_a/24" dev pstva$$ && ip -n "$ns_a" link set pstva$$ up &&
	ip -n "$ns_a" link set lo up && ip -n "$ns_b" addr add "$addr_b/24" dev pstvb$$ &&
	ip -n "$ns_b" link set pstvb$$ up && ip -n "$ns_b" link set lo up ||
	fail "cannot configure the veth pair"

bin=$work/bin
mkdir "$bin"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-tpa"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-tpb"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-tpf"
cp "$(command -v curl)" "$bin/pstest-tpcurl"
hop=$top_srcdir/tests/integration/tracectx/hop.py
PORT_A=18080 PORT_B=18081 PORT_F=18082 # each namespace is ours alone

ip netns exec "$ns_b" "$bin/pstest-tpb" "$hop" "$addr_b" $PORT_B "$work/heads-b" \
	>"$work/b.log" 2>&1 &
children+=($!)
ip netns exec "$ns_b" "$bin/pstest-tpf" "$hop" "$addr_b" $PORT_F "$work/heads-f" \
	>"$work/f.log" 2>&1 &
children+=($!)
ip netns exec "$ns_a" "$bin/pstest-tpa" "$hop" "$addr_a" $PORT_A "$work/heads-a" \
	"http://$addr_b:$PORT_B/b" >"$work/a.log" 2>&1 &
children+=($!)
for _ in $(seq 100); do
	ip netns exec "$ns_a" "$PYTHON" -c "import socket; socket.create_connection(('$addr_a', $PORT_A), 0.2)" \
		2>/dev/null && ip netns exec "$ns_b" "$PYTHON" -c \
		"import socket; socket.create_connection(('$addr_b', $PORT_B), 0.2)" 2>/dev/null && break
	sleep 0.1
done

requests() {
	for i in $(seq "$N"); do
		ip netns exec "$ns_a" "$bin/pstest-tpcurl" -sf "http://$addr_a:$PORT_A/a/$i" >/dev/null ||
			fail "request $i to A failed"
	done
}

config() {
	cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins:
  http: { ports: [$PORT_A, $PORT_B, $PORT_F] }
  tracectx: { propagate: $1, propagate_ports: [$PORT_B, $PORT_F] }
services:
  - { match: { exe: $bin/pstest-tpa }, name: pstest-tpa }
  - { match: { exe: $bin/pstest-tpb }, name: pstest-tpb }
  - { match: { exe: $bin/pstest-tpcurl }, name: pstest-tpcurl }
sinks: { stdout: { format: json } }
YAML
}

# What B receives from A with no periscoped at all: the reference for "unchanged".
requests
mv "$work/heads-b" "$work/heads-b.untraced"

config true
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
grep -q "tracectx: propagating traceparent" "$DAEMON_ERR" || fail "propagation is not on"
requests
# A client socket in the sockhash still answers FIONREAD right, and wakes epoll.
ip netns exec "$ns_a" "$PYTHON" "$top_srcdir/tests/integration/tracectx/fionread.py" "$addr_b" \
	$PORT_F || fail "FIONREAD on a propagating connection"
grep -q traceparent "$work/heads-f" || fail "the FIONREAD probe's connection was not propagating"
sleep 3 # the spans' hold time, then a flush
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
"$PYTHON" "$top_srcdir/tests/integration/tracectx/check_propagation.py" "$DAEMON_OUT" \
	"$work/heads-b" "$N" pstest-tpa pstest-tpb "$PORT_B" || fail "propagation"
rm -f "$work/heads-b"

config false
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
requests
stop_daemon
grep -qi traceparent "$work/heads-b" && fail "propagate: false, yet B received a traceparent"
cmp -s "$work/heads-b" "$work/heads-b.untraced" ||
	fail "propagate: false changed what B received: $(diff "$work/heads-b.untraced" "$work/heads-b" | head -5)"
echo "propagate: false: B received the same $N request heads as without periscoped"
echo "PASS"
