#!/usr/bin/env bash
# The prometheus_textfile sink against a real node_exporter.
#
# 1. periscoped (tcpflow, 1s flushes) writes into a directory that
#    prometheus-node-exporter's textfile collector reads; tcp_load.py makes
#    connections with exact, known counts; node_exporter must serve them with
#    exactly those values and node_textfile_scrape_error 0, and promtool must
#    accept the file.
# 2. periscoped with 100ms flushes is killed with SIGKILL at random moments,
#    many times, while node_exporter is scraped in a loop: after every kill
#    the directory holds the .prom file (or nothing) and no temporary file,
#    the file passes promtool, and no scrape ever reports a parse error.
set -u
. "$(dirname "$0")/lib.sh"

N=20 M=10 A=5555 B=2222 K=5
KILLS=${KILLS:-30}
NODE_EXPORTER=${NODE_EXPORTER:-/usr/bin/prometheus-node-exporter}
PROMTOOL=${PROMTOOL:-/usr/bin/promtool}
FILE=periscope.prom

require_root
require_tools "packages prometheus-node-exporter, prometheus, curl" \
	"$PYTHON" "$NODE_EXPORTER" "$PROMTOOL" /usr/bin/curl

work=$(mktemp -d)
textdir=$work/textfile
mkdir "$textdir"
NE_PID='' SCRAPER_PID=''
cleanup() {
	[ -z "$SCRAPER_PID" ] || kill "$SCRAPER_PID" 2>/dev/null
	[ -z "${DAEMON_PID:-}" ] || kill -KILL "$DAEMON_PID" 2>/dev/null
	[ -z "$NE_PID" ] || kill "$NE_PID" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT
# The directory's entries, space-separated.
listing() {
	ls -A "$textdir" | tr '\n' ' ' | sed 's/ $//'
}

promtool_accepts() {
	"$PROMTOOL" check metrics <"$1" >"$work/promtool.out" 2>&1
}

# ---- node_exporter ------------------------------------------------------------------------

port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$NODE_EXPORTER" --web.listen-address="127.0.0.1:$port" --collector.disable-defaults \
	--collector.textfile --collector.textfile.directory="$textdir" >"$work/node_exporter.log" 2>&1 &
NE_PID=$!
url=http://127.0.0.1:$port/metrics
scrape() {
	curl -sf --max-time 5 "$url"
}
for _ in $(seq 100); do
	scrape >/dev/null && break
	kill -0 "$NE_PID" 2>/dev/null || fail "node_exporter exited:$(sed 's/^/\n  /' "$work/node_exporter.log")"
	sleep 0.1
done
scrape >/dev/null || fail "node_exporter does not answer on $url"
echo "node_exporter on 127.0.0.1:$port reads $textdir"

# ---- 1. exact values through node_exporter ---------------------------------------------------

cat >"$work/exact.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins: { tcpflow: {} }
sinks: { prometheus_textfile: { directory: $textdir } }
YAML
start_daemon -c "$work/exact.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

ports=$("$PYTHON" "$(dirname "$0")/tcp_load.py" --v4 $N --v6 $M --send $A --recv $B --refused $K) ||
	fail "tcp_load.py failed"
read -r P4 P6 PC < <(printf '%s' "$ports" | "$PYTHON" -c \
	'import json, sys; d = json.load(sys.stdin); print(d["v4_port"], d["v6_port"], d["closed_port"])')
[ -n "${PC:-}" ] || fail "cannot read the ports from: $ports"
echo "load done: IPv4 port $P4, IPv6 port $P6, refused port $PC"

tcp_load_labels "$P4" "$P6" "$PC"

# check_exact FILE: compares a scrape with the load's ground truth; the differences go to
# $work/diff, the count to $failures.
check_exact() {
	local snap=$1
	: >"$work/diff"
	failures=0
	SNAPSHOT=$snap DIFF=$work/diff
	expect_tcp_load
	expect $N periscope_tcp_connection_duration_seconds_count "${v4_out[@]}"
	expect $M periscope_tcp_connection_duration_seconds_count "${v6_in[@]}"
	# The +Inf bucket of a histogram is its _count.
	expect $N periscope_tcp_connection_duration_seconds_bucket "${v4_out[@]}" 'le="+Inf"'
	# Gauges of ended connections are gone (series_value reads absent as 0).
	expect 0 periscope_tcp_connections_active "${v4_out[@]}"
	expect 0 periscope_tcp_connections_active "${v6_in[@]}"
	expect 1 periscope_plugin_up 'plugin="tcpflow"'
	expect 0 node_textfile_scrape_error
	grep -q '^node_textfile_mtime_seconds{file=.*periscope\.prom' "$snap" ||
		{ echo "  node_textfile_mtime_seconds: no series for $FILE" >>"$work/diff"; failures=$((failures + 1)); }
}

# Counters settle within a flush or two after the load: poll the scrape until they match.
deadline=$((SECONDS + 20))
while :; do
	scrape >"$work/scrape.txt" || fail "scrape failed"
	check_exact "$work/scrape.txt"
	[ "$failures" = 0 ] && break
	if [ $SECONDS -ge $deadline ]; then
		echo "FAIL: $failures check(s) through node_exporter (want = the load's count):" >&2
		cat "$work/diff" >&2
		echo "node_exporter's log:" >&2
		sed 's/^/  /' "$work/node_exporter.log" >&2
		exit 1
	fi
	sleep 0.5
done
echo "ok: node_exporter serves the exact counts of $((N + M)) connections each way, scrape_error 0"

promtool_accepts "$textdir/$FILE" || fail "promtool rejects $FILE:$(sed 's/^/\n  /' "$work/promtool.out")"
[ "$(stat -c %a "$textdir/$FILE")" = 644 ] || fail "$FILE is mode $(stat -c %a "$textdir/$FILE"), not 644"
grep -Eq '^[a-z_]+(\{[^}]*\})? [^ ]+ [0-9]+$' "$textdir/$FILE" && fail "$FILE has timestamps"

# The final flush on SIGTERM leaves the file complete, with the same values.
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
[ "$(listing)" = "$FILE" ] || fail "left in $textdir after SIGTERM: $(listing)"
scrape >"$work/scrape.txt" || fail "scrape failed"
check_exact "$work/scrape.txt"
[ "$failures" = 0 ] || fail "after the final flush:$(cat "$work/diff")"
echo "ok: promtool accepts the file; after SIGTERM the final file holds the same values"

# ---- 2. SIGKILL in the middle of fast flushes -------------------------------------------------

cat >"$work/fast.yaml" <<YAML
daemon: { flush_interval: 100ms, drain_interval: 10ms }
plugins: { tcpflow: {} }
sinks: { prometheus_textfile: { directory: $textdir } }
YAML

# A killed predecessor's temporary file: gone once periscoped has started.
printf 'periscope_half' >"$textdir/.periscope.prom.Zz9Zz9"
start_daemon -c "$work/fast.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
[ ! -e "$textdir/.periscope.prom.Zz9Zz9" ] || fail "a stale temporary file survived the start"
grep -q 'removed .periscope.prom.Zz9Zz9' "$DAEMON_ERR" || fail "the stale file's removal was not logged"
kill -KILL "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null
DAEMON_PID=

# Scrapes all along (their connections also keep the tcpflow series moving).
(
	while :; do
		scrape | grep '^node_textfile_scrape_error' || echo "scrape failed"
	done
) >"$work/scrape_errors" 2>/dev/null &
SCRAPER_PID=$!

kills=0 files=0
for i in $(seq "$KILLS"); do
	start_daemon -c "$work/fast.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start (kill $i)"
	sleep "$((RANDOM % 2)).$(printf '%03d' $((RANDOM % 1000)))"
	kill -KILL "$DAEMON_PID"
	wait "$DAEMON_PID" 2>/dev/null
	DAEMON_PID=
	kills=$((kills + 1))
	left=$(listing)
	case "$left" in
	"") ;;
	"$FILE")
		files=$((files + 1))
		promtool_accepts "$textdir/$FILE" ||
			fail "after kill $i promtool rejects $FILE:$(sed 's/^/\n  /' "$work/promtool.out")"
		tail -c1 "$textdir/$FILE" | od -An -c | grep -q '\\n' ||
			fail "after kill $i $FILE does not end in a newline"
		;;
	*)
		# Possible only if the kill lands between linkat() and rename(): microseconds.
		fail "after kill $i the directory holds: $left (a temporary file survived SIGKILL)"
		;;
	esac
done
kill "$SCRAPER_PID" 2>/dev/null
wait "$SCRAPER_PID" 2>/dev/null
SCRAPER_PID=

scrapes=$(grep -c . "$work/scrape_errors")
bad=$(grep -vc '^node_textfile_scrape_error 0$' "$work/scrape_errors")
[ "$scrapes" -gt 0 ] || fail "no scrape completed during the kills"
[ "$bad" = 0 ] || fail "$bad of $scrapes scrapes failed or reported a textfile error:
$(grep -v '^node_textfile_scrape_error 0$' "$work/scrape_errors" | sort | uniq -c)"
[ "$files" -gt 0 ] || fail "no kill left a file to check"
echo "ok: $kills SIGKILLs during 100ms flushes: never a temporary or partial file" \
	"($files files checked by promtool); $scrapes scrapes, all node_textfile_scrape_error 0"
exit 0
