#!/usr/bin/env bash
# mongodb against exact counts, client view and server view. There is no MongoDB server
# on the test machines: tests/integration/mongodb/responder.py answers the way a mongod
# 4.4 does (cursors, duplicate keys, write concern errors, ok: 0 with codes, exhaust,
# awaitable hello). Three real drivers run the same known sequence (drive_*: inserts
# with insert_many, finds with getMore across batches, an exhaust cursor, updates,
# deletes, aggregates, failing commands, an unacknowledged write):
#   pymongo 3.11 (Debian's python3-pymongo), plain, with zlib and with snappy compression
#     (python3-snappy, in the driver and the responder)
#   libmongoc 1.23 (Debian's libmongoc-dev): drive_mongoc.c, built here
#   the Node.js driver 6.8.0 (npm, tests/integration/mongodb/node_modules)
#   pymongo again over a Unix-domain socket (see MONGODB_TEST_UNIX below)
# Each driver prints what its own command monitoring saw (command, collection,
# database, status, count); every line must be a series of
# db_client_operation_duration_seconds with exactly that count, and the responder's
# db_server_operation_duration_seconds must hold the sum of the TCP runs. hello and
# isMaster (handshake, monitoring: not in the drivers' monitoring) are excluded by
# config, which is checked too. Every client and the responder run from a copy of their
# binary under a `services` rule, so that other traffic on the machine cannot touch the
# series we count.
set -u
. "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)
drivers=$here/mongodb
N=${MONGODB_TEST_N:-20} # documents inserted one by one; 3N more with insert_many

require_root
one_at_a_time mongodb
require_tools "apt-get install python3-pymongo libmongoc-dev pkg-config gcc nodejs" \
	"$PYTHON" pkg-config cc node
"$PYTHON" -c 'import pymongo' 2>/dev/null || {
	echo "SKIP: needs pymongo (apt-get install python3-pymongo)"
	exit 77
}
pkg-config --exists libmongoc-1.0 || {
	echo "SKIP: needs libmongoc (apt-get install libmongoc-dev)"
	exit 77
}
if [ ! -d "$drivers/node_modules/mongodb" ]; then
	require_tools "apt-get install npm" npm
	(cd "$drivers" && npm ci --omit=dev --no-audit --no-fund --loglevel=error) ||
		fail "npm ci in $drivers failed: the Node.js driver is needed"
fi

make_work

# Our own copies: their exe paths name the services below.
bin=$work/bin
mkdir -p "$bin"
py=$(readlink -f "$PYTHON")
for name in mongod mgd-unix pymongo pym-zlib pym-snpy pym-unix; do
	cp "$py" "$bin/pstest-$name"
done
cp "$(readlink -f "$(command -v node)")" "$bin/pstest-node"
cc -O1 -o "$bin/pstest-mongoc" "$drivers/drive_mongoc.c" $(pkg-config --cflags --libs libmongoc-1.0) ||
	fail "cannot build drive_mongoc.c"

PORT=$(free_port)
SOCK=$work/mongodb-27017.sock

cat >"$work/periscope.yaml" <<EOF
daemon: { flush_interval: 1s, log_level: info }
capture: { hooks: $CAPTURE_HOOKS }
plugins:
  # 4 KiB per syscall: a read that holds several replies (Node reads in 64 KiB chunks)
  # must show each header for the counts to be exact.
  mongodb: { ports: [$PORT], capture_bytes: 4KiB, exclude_commands: [hello, isMaster] }
  http: { enabled: false }
  tcpflow: { enabled: false }
services:
EOF
for name in mongod mgd-unix pymongo pym-zlib pym-snpy pym-unix node mongoc; do
	echo "  - { match: { exe: $bin/pstest-$name }, name: pstest-$name }" >>"$work/periscope.yaml"
done
cat >>"$work/periscope.yaml" <<EOF
sinks:
  stdout: { format: prometheus }
EOF
"$PERISCOPED" -c "$work/periscope.yaml" --check-config --plugin-dir "$PLUGIN_DIR" >/dev/null ||
	fail "the test's configuration is rejected"

# A command the plugin does not know cannot be excluded: the plugin says which and stays down.
sed 's/exclude_commands: \[hello, isMaster\]/exclude_commands: [hello, bogusCommand]/' \
	"$work/periscope.yaml" >"$work/bad.yaml"
"$PERISCOPED" -c "$work/bad.yaml" --plugin-dir "$PLUGIN_DIR" --duration 1 >"$work/bad.out" \
	2>"$work/bad.err"
grep -q 'mongodb: exclude_commands: "bogusCommand" is not a command' "$work/bad.err" ||
	fail "exclude_commands: an unknown command is not named"
grep -q 'periscope_plugin_up{.*plugin="mongodb".*} 0' "$work/bad.out" ||
	fail "with a bad exclude_commands the plugin is not down"

start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
grep -q "loader: plugin mongodb started" "$DAEMON_ERR" || fail "the mongodb plugin did not start"
expect_capture_hooks

# ---- the responder, TCP and Unix ------------------------------------------------------------
"$bin/pstest-mongod" "$drivers/responder.py" --port "$PORT" >"$work/responder.out" 2>&1 &
children+=($!)
"$bin/pstest-mgd-unix" "$drivers/responder.py" --unix "$SOCK" >"$work/responder-unix.out" 2>&1 &
children+=($!)
wait_port "$PORT" || fail "the responder did not listen on $PORT"
for _ in $(seq 50); do [ -S "$SOCK" ] && break; sleep 0.1; done
[ -S "$SOCK" ] || fail "the responder did not listen on $SOCK"

# ---- the drivers: each prints its own monitoring's counts -----------------------------------
uri="mongodb://127.0.0.1:$PORT/?serverSelectionTimeoutMS=5000"
unix_uri="mongodb://$(printf '%s' "$SOCK" | sed 's|/|%2F|g')/?serverSelectionTimeoutMS=5000"
"$bin/pstest-pymongo" "$drivers/drive_pymongo.py" "$uri" --n "$N" >"$work/pymongo.truth" ||
	fail "pymongo's run failed"
"$bin/pstest-pym-zlib" "$drivers/drive_pymongo.py" "$uri" --n "$N" --compressors zlib \
	>"$work/pym-zlib.truth" || fail "pymongo's zlib run failed"
"$PYTHON" -c 'import snappy' 2>/dev/null || fail "python3-snappy is missing (apt-get install python3-snappy)"
"$bin/pstest-pym-snpy" "$drivers/drive_pymongo.py" "$uri" --n "$N" --compressors snappy \
	>"$work/pym-snpy.truth" || fail "pymongo's snappy run failed"
for c in zlib snappy; do
	grep -q ": $c\$" "$work/responder.out" || fail "no connection was compressed with $c"
done
"$bin/pstest-mongoc" "$uri" "$N" >"$work/mongoc.truth" 2>"$work/mongoc.err" ||
	fail "libmongoc's run failed: $(cat "$work/mongoc.err")"
"$bin/pstest-node" "$drivers/drive_node.js" "$uri" "$N" 1500 >"$work/node.truth" ||
	fail "the Node.js driver's run failed"
"$bin/pstest-pym-unix" "$drivers/drive_pymongo.py" "$unix_uri" --n "$N" \
	>"$work/pym-unix.truth" || fail "pymongo's Unix-socket run failed"
for f in "$work"/*.truth; do
	[ -s "$f" ] || fail "$(basename "$f"): the driver reported nothing"
done

SNAPSHOT=$work/snapshot
DIFF=$work/diff
: >"$DIFF"
final_snapshot "$SNAPSHOT"

# Commands outside the plugin's table are counted as _OTHER: a label never takes a
# name a client made up.
label_of() {
	case $1 in
	noSuchCommand) echo _OTHER ;;
	*) echo "$1" ;;
	esac
}

# expect_truth FILE METRIC SERVICE ADDRESS PORT: every line of FILE is a series.
expect_truth() {
	local file=$1 metric=$2 service=$3 addr=$4 port=$5 op coll db status count total=0
	# Tabs would be IFS whitespace, which folds the empty fields: read them as '|'.
	while IFS='|' read -r op coll db status count; do
		expect "$count" "${metric}_count" "service_name=\"$service\"" 'db_system_name="mongodb"' \
			"db_operation_name=\"$(label_of "$op")\"" "db_collection_name=\"$coll\"" \
			"db_namespace=\"$db\"" "db_response_status_code=\"$status\"" \
			"server_address=\"$addr\"" "server_port=\"$port\""
		total=$((total + count))
	done < <(tr '\t' '|' <"$file")
	# Nothing else: no other command, collection or status for this service.
	expect "$total" "${metric}_count" "service_name=\"$service\""
}

for run in pymongo pym-zlib pym-snpy mongoc node; do
	expect_truth "$work/$run.truth" db_client_operation_duration_seconds "pstest-$run" \
		127.0.0.1 "$PORT"
done

# Over a Unix socket there is no port to claim the connection by: the capture's MongoDB
# classifier claims it by its message header. The Unix run's counts are exact too.
check_unix=1
if [ $check_unix = 1 ]; then
	expect_truth "$work/pym-unix.truth" db_client_operation_duration_seconds \
		pstest-pym-unix "" ""
fi

# The responder's view: the TCP runs together, as the server answered them. Node's close()
# sends endSessions and closes the socket without reading the reply: whether the responder's
# reply still went out (the server view has it) or met the closed socket is a race, so that
# one operation may or may not be there.
sort "$work/pymongo.truth" "$work/pym-zlib.truth" "$work/pym-snpy.truth" "$work/mongoc.truth" \
	"$work/node.truth" |
	awk -F'\t' -v OFS='\t' '{ k = $1 OFS $2 OFS $3 OFS $4; n[k] += $5 }
		END { for (k in n) print k, n[k] }' >"$work/server.truth"
ends=$(series_value "$SNAPSHOT" db_server_operation_duration_seconds_count \
	'service_name="pstest-mongod"' 'db_operation_name="endSessions"')
want_ends=$(awk -F'\t' '$1 == "endSessions" { n += $5 } END { print n + 0 }' "$work/server.truth")
if [ "$ends" = $((want_ends + 1)) ]; then
	awk -F'\t' -v OFS='\t' '$1 == "endSessions" { $5++ } { print }' "$work/server.truth" \
		>"$work/server.truth.new" && mv "$work/server.truth.new" "$work/server.truth"
fi
expect_truth "$work/server.truth" db_server_operation_duration_seconds pstest-mongod 127.0.0.1 "$PORT"
if [ $check_unix = 1 ]; then
	expect_truth "$work/pym-unix.truth" db_server_operation_duration_seconds \
		pstest-mgd-unix "" ""
fi

# The drivers' handshakes and monitors said hello / isMaster: decoded, excluded.
for op in hello isMaster; do
	expect 0 db_client_operation_duration_seconds_count "db_operation_name=\"$op\""
done
# Well-formed traffic: nothing the decoder could not read.
expect 0 periscope_decode_errors_total 'plugin="mongodb"'
# A sanity floor under the truth files: the sequence's own numbers.
expect $((N + 2)) db_client_operation_duration_seconds_count 'service_name="pstest-pymongo"' \
	'db_operation_name="insert"' 'db_response_status_code=""'
expect 2 db_client_operation_duration_seconds_count 'service_name="pstest-pymongo"' \
	'db_operation_name="insert"' 'db_response_status_code="11000"'

if [ "$failures" -gt 0 ]; then
	echo "mongodb: $failures series differ from the drivers' own counts:" >&2
	cat "$DIFF" >&2
	fail "mongodb counts are not exact"
fi
echo "mongodb: exact for pymongo (plain, zlib, snappy$([ $check_unix = 1 ] && echo ", Unix socket")), libmongoc" \
	"and Node.js; client and server views"
