#!/usr/bin/env bash
# Re-records the kafka decoder's fixtures: real clients against librdkafka's mock broker
# on loopback, captured with tcpdump (unfiltered: a port filter lost packets here), split per
# connection by pcap2conns.py.
#   record.sh MOCK_BROKER_BINARY      (as root, from anywhere; writes next to this script)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
client=$here/../../../integration/kafka/client.py
mock=$(readlink -f "$1")
py=/usr/bin/python3
port=${PORT:-39092}
bs=127.0.0.1:$port
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT

# scenario NAME COMMAND...: a fresh broker, one capture, the client command; NAME-N.bin out.
scenario() {
	local name=$1
	shift
	mkfifo "$work/in"
	"$mock" "$port" pstest-a:1 pstest-b:2 <"$work/in" >"$work/broker.out" 2>/dev/null &
	exec 3>"$work/in"
	until grep -q ready "$work/broker.out"; do sleep 0.1; done
	[ -z "${ERRORS:-}" ] || echo "errors $ERRORS" >&3
	tcpdump -i lo -s 0 -U -w "$work/cap.pcap" 2>/dev/null &
	local td=$!
	sleep 1
	"$@" >/dev/null
	sleep 0.5
	kill $td
	wait $td || true
	exec 3>&-
	wait
	rm -f "$work/in" "$here/$name"-*.bin
	"$py" "$here/pcap2conns.py" "$work/cap.pcap" "$port" "$here/$name"
}

prefill() { "$py" "$client" produce confluent "$bs" pstest-a 30 batch 10; }

scenario kcat-produce sh -c "seq 1 5 | kcat -P -b $bs -t pstest-a -p 0 -X linger.ms=0"
scenario rdkafka-batch "$py" "$client" produce confluent "$bs" pstest-a 30 batch 10
scenario kpy-sync "$py" "$client" produce kafka-python "$bs" pstest-a 3 sync
scenario kpy-consume sh -c "$(declare -f prefill); bs=$bs client=$client py=$py; prefill; \
	$py $client consume kafka-python $bs pstest-a 30"
scenario rdkafka-group sh -c "$(declare -f prefill); bs=$bs client=$client py=$py; prefill; \
	$py $client consume confluent $bs pstest-a 30 pstest-group"
scenario kpy-group sh -c "$(declare -f prefill); bs=$bs client=$client py=$py; prefill; \
	$py $client consume kafka-python $bs pstest-a 30 pstest-kgroup"
# Produce answered NOT_LEADER_OR_FOLLOWER (6) twice, then the retries succeed.
ERRORS="0 6 6" scenario rdkafka-errors "$py" "$client" produce confluent "$bs" pstest-a 2 sync
