#!/usr/bin/env bash
# No secret reaches anything periscoped writes. A workload full of secrets, each a marker
# made fresh for this run (SECRET + random hex, never in any source file):
#   HTTP (curl -> a python server): ?token=... in the query, Authorization: Bearer ...,
#     Cookie: ..., a POST body, and a path segment of a failing request (an alert fires and
#     names its route, so the syslog sink writes too)
#   MySQL (the mariadb client -> MariaDB): password='...' literals in INSERT, SELECT, UPDATE
#     and DELETE, and a duplicate key whose error message quotes the literal back
#   Kafka (kcat -> librdkafka's mock cluster): message keys and bodies, produced and consumed
#   MongoDB (pymongo -> the test responder): document values, filters and a duplicate-key
#     error that quotes the value back
# while two daemons run at --log-level trace with every sink on: one with the stdout table,
# the textfile, prometheus_http (scraped here) and syslog (remote, into a file), the other
# with the stdout json. Every byte they wrote is searched for every marker; the test fails on
# any hit, and also if the workload left no series (a test that could not see a leak).
set -u
. "$(dirname "$0")/lib.sh"

here=$(cd "$(dirname "$0")" && pwd)

require_root
require_tools "apt-get install curl kcat mariadb-server mariadb-client python3-pymongo" \
	curl kcat mariadbd mariadb-install-db mariadb "$PYTHON"
"$PYTHON" -c 'import pymongo' 2>/dev/null || { echo "SKIP: needs python3-pymongo"; exit 77; }
broker_bin=$top_builddir/tests/integration/kafka/kafka_mock_broker
[ -x "$broker_bin" ] || { echo "SKIP: $broker_bin is not built (librdkafka-dev)"; exit 77; }

make_work

# The markers: unique per run, so that no leftover file or other test can match them.
secret() { echo "SECRET$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"; }
declare -A S
for k in query bearer cookie body path sqlins sqlsel sqlupd sqldel sqldup kkey kbody \
	mdoc mfilter mdup; do
	S[$k]=$(secret)
done

bin=$work/bin
mkdir -p "$bin"
py=$(readlink -f "$PYTHON")
cp "$py" "$bin/pstest-pv-http"
cp "$py" "$bin/pstest-pv-mongd"
cp "$py" "$bin/pstest-pv-pym"
cp "$(command -v curl)" "$bin/pstest-pv-curl"
cp "$(command -v mariadbd)" "$bin/pstest-pv-mdbd"
cp "$(command -v mariadb)" "$bin/pstest-pv-mdb"
cp "$(command -v kcat)" "$bin/pstest-pv-kcat"
cp "$broker_bin" "$bin/pstest-pv-kbrk"

# ---- servers ---------------------------------------------------------------------------------
"$bin/pstest-pv-http" "$here/http/sleeper.py" >"$work/http.json" &
children+=($!)
for _ in $(seq 100); do
	[ -s "$work/http.json" ] && break
	sleep 0.1
done
HTTP_PORT=$("$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["port"])' \
	"$work/http.json" 2>/dev/null) || fail "the HTTP server did not start"

MYSQL_PORT=$(free_port)
SOCK=$work/mysqld.sock
mariadb-install-db --no-defaults --datadir="$work/data" --user=root --skip-test-db \
	--auth-root-authentication-method=socket >"$work/install.log" 2>&1 ||
	fail "mariadb-install-db failed: $(tail -5 "$work/install.log")"
"$bin/pstest-pv-mdbd" --no-defaults --basedir=/usr --datadir="$work/data" --user=root \
	--port="$MYSQL_PORT" --bind-address=127.0.0.1 --socket="$SOCK" --pid-file="$work/mysqld.pid" \
	--log-error="$work/mysqld.err" --skip-log-bin --innodb-buffer-pool-size=16M \
	>"$work/mysqld.out" 2>&1 &
children+=($!)
wait_port "$MYSQL_PORT" || fail "mariadbd did not start: $(tail -5 "$work/mysqld.err")"
mariadb --no-defaults -S "$SOCK" -uroot <<SQL || fail "cannot set up the database"
CREATE DATABASE pstest_pv;
CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'pw';
GRANT ALL ON pstest_pv.* TO 'app'@'127.0.0.1';
CREATE TABLE pstest_pv.accounts (id INT PRIMARY KEY, password VARCHAR(64) UNIQUE);
SQL

KAFKA_PORT=$(free_port)
mkfifo "$work/broker.in" "$work/broker.out"
"$bin/pstest-pv-kbrk" "$KAFKA_PORT" pstest-pv-topic:1 <"$work/broker.in" >"$work/broker.out" \
	2>"$work/broker.err" &
children+=($!)
exec 3>"$work/broker.in" 4<"$work/broker.out"
read -r -t 20 ready _ <&4 || fail "the mock broker did not start: $(cat "$work/broker.err")"
[ "$ready" = ready ] || fail "the mock broker says '$ready'"

MONGO_PORT=$(free_port)
"$bin/pstest-pv-mongd" "$here/mongodb/responder.py" --port "$MONGO_PORT" >"$work/mongod.out" \
	2>"$work/mongod.err" &
children+=($!)
wait_port "$MONGO_PORT" || fail "the mongodb responder did not start: $(cat "$work/mongod.err")"

# A syslog collector: every datagram, one per line.
SYSLOG_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PYTHON" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
with open(sys.argv[2], "ab", buffering=0) as f:
    while True:
        f.write(s.recv(65536).replace(b"\n", b" ") + b"\n")
' "$SYSLOG_PORT" "$work/syslog.txt" &
children+=($!)

# ---- the daemons -----------------------------------------------------------------------------
PROM_PORT=$(free_port)
textdir=$work/textfile
mkdir -p "$textdir"
common() {
	cat <<YAML
daemon: { flush_interval: 1s }
plugins:
  http: { ports: [$HTTP_PORT] }
  mysql: { ports: [$MYSQL_PORT] }
  kafka: { ports: [$KAFKA_PORT] }
  mongodb: { ports: [$MONGO_PORT] }
services:
YAML
	for name in http mongd pym curl mdbd mdb kcat kbrk; do
		echo "  - { match: { exe: $bin/pstest-pv-$name }, name: pstest-pv-$name }"
	done
}
{
	common
	cat <<YAML
sinks:
  stdout: { format: table }
  prometheus_textfile: { directory: $textdir }
  prometheus_http: { listen: "127.0.0.1:$PROM_PORT" }
  syslog: { remote: "udp://127.0.0.1:$SYSLOG_PORT" }
alerts:
  - name: pstest-pv-failing
    protocol: http
    where: { service_name: pstest-pv-http }
    by: [service_name, http_route]
    error_ratio: { above: 0.5, min_requests: 1 }
    window: 10s
YAML
} >"$work/all.yaml"
{
	common
	echo "sinks: { stdout: { format: json } }"
} >"$work/json.yaml"

start_daemon -c "$work/json.yaml" --plugin-dir "$PLUGIN_DIR" --log-level trace ||
	fail "the json daemon did not start"
JSON_PID=$DAEMON_PID JSON_OUT=$DAEMON_OUT JSON_ERR=$DAEMON_ERR JSON_INSTANCE=$DAEMON_INSTANCE
DAEMON_PID= DAEMON_OUT= DAEMON_ERR=
stop_json() {
	[ -n "$JSON_PID" ] || return 0
	kill -TERM "$JSON_PID" 2>/dev/null
	wait "$JSON_PID"
	JSON_STATUS=$?
	JSON_PID=
	rm -f "${RUNTIME_DIRECTORY:-/run/periscope}/periscoped-$JSON_INSTANCE.pid"
}
trap 'stop_json; end_of_test; rm -f "$JSON_OUT" "$JSON_ERR"' EXIT
start_daemon -c "$work/all.yaml" --plugin-dir "$PLUGIN_DIR" --log-level trace ||
	fail "the daemon with every sink did not start"
# The alert counts what moved after its first evaluation (the first flush).
for _ in $(seq 50); do
	grep -q '^── periscope' "$DAEMON_OUT" && break
	sleep 0.1
done

# ---- the workload ----------------------------------------------------------------------------
curl_to() { "$bin/pstest-pv-curl" -sS -o /dev/null -w '%{http_code}\n' "$@"; }
{
	curl_to "http://127.0.0.1:$HTTP_PORT/login?token=${S[query]}&user=alice"
	curl_to -H "Authorization: Bearer ${S[bearer]}" -H "Cookie: session=${S[cookie]}" \
		"http://127.0.0.1:$HTTP_PORT/account"
	# The server answers POST with 501: the body went over the wire all the same.
	curl_to -X POST --data "password=${S[body]}" "http://127.0.0.1:$HTTP_PORT/login"
	curl_to "http://127.0.0.1:$HTTP_PORT/fail/reset/${S[path]}"
} >"$work/curl.out" 2>&1
[ "$(tr '\n' ' ' <"$work/curl.out")" = "200 200 501 500 " ] ||
	fail "curl: $(cat "$work/curl.out")"

"$bin/pstest-pv-mdb" --no-defaults -h127.0.0.1 -P"$MYSQL_PORT" -uapp -ppw --skip-ssl --force \
	pstest_pv >"$work/mysql.out" 2>&1 <<SQL
INSERT INTO accounts (id, password) VALUES (1, '${S[sqlins]}');
INSERT INTO accounts (id, password) VALUES (2, '${S[sqldup]}');
INSERT INTO accounts (id, password) VALUES (3, '${S[sqldup]}');
SELECT id FROM accounts WHERE password='${S[sqlsel]}';
UPDATE accounts SET password='${S[sqlupd]}' WHERE id = 1;
DELETE FROM accounts WHERE password='${S[sqldel]}';
SQL
grep -q "ERROR 1062" "$work/mysql.out" || fail "mariadb: no duplicate key: $(cat "$work/mysql.out")"

# kcat lives a while after its last request: periscoped names a process from /proc.
{
	for i in 1 2 3; do echo "${S[kkey]}-$i:${S[kbody]}-$i"; done
	sleep 1.5
} | "$bin/pstest-pv-kcat" -P -b "127.0.0.1:$KAFKA_PORT" -t pstest-pv-topic -p 0 -K: ||
	fail "kcat could not produce"
got=$("$bin/pstest-pv-kcat" -C -b "127.0.0.1:$KAFKA_PORT" -t pstest-pv-topic -o beginning -e -q |
	grep -c "${S[kbody]}")
[ "$got" = 3 ] || fail "kcat consumed $got of the 3 messages"

PV_DOC=${S[mdoc]} PV_FILTER=${S[mfilter]} PV_DUP=${S[mdup]} \
	"$bin/pstest-pv-pym" -c '
import os, sys, pymongo
c = pymongo.MongoClient("127.0.0.1", int(sys.argv[1]), serverSelectionTimeoutMS=10000)
coll = c.pstest_pv.vault
coll.insert_one({"_id": 1, "password": os.environ["PV_DOC"], "note": os.environ["PV_DOC"]})
list(coll.find({"password": os.environ["PV_FILTER"]}))
coll.insert_one({"_id": os.environ["PV_DUP"]})
try:
    coll.insert_one({"_id": os.environ["PV_DUP"]})
    sys.exit("no duplicate key error")
except pymongo.errors.DuplicateKeyError:
    pass
print("done")
' "$MONGO_PORT" >"$work/mongo.out" 2>&1
grep -q done "$work/mongo.out" || fail "pymongo: $(cat "$work/mongo.out")"

wait_for_log "pstest-pv-failing FIRING" 15 || fail "the alert did not fire"
# Scrapes while the daemon runs: /metrics as a Prometheus server would read it.
for _ in 1 2 3; do
	curl -sS "http://127.0.0.1:$PROM_PORT/metrics" >>"$work/scrape.txt" ||
		fail "cannot scrape prometheus_http"
	sleep 1.1
done
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"
stop_json
[ "$JSON_STATUS" = 0 ] || fail "the json periscoped exited with $JSON_STATUS"
for _ in $(seq 20); do
	grep -q "pstest-pv-failing" "$work/syslog.txt" 2>/dev/null && break
	sleep 0.1
done

# ---- every output, every marker --------------------------------------------------------------
failures=0
outputs=("$DAEMON_OUT" "$DAEMON_ERR" "$JSON_OUT" "$JSON_ERR" "$textdir/periscope.prom"
	"$work/scrape.txt" "$work/syslog.txt")
names=("stdout (table)" "log (table daemon)" "stdout (json)" "log (json daemon)" textfile
	"prometheus_http /metrics" syslog)
# Anything else the daemon wrote in the textfile directory (temporary files) too.
for f in "$textdir"/*; do
	[ "$f" = "$textdir/periscope.prom" ] && continue
	outputs+=("$f")
	names+=("textfile directory: ${f##*/}")
done
for i in "${!outputs[@]}"; do
	[ -s "${outputs[$i]}" ] || { echo "  ${names[$i]}: empty" >&2; failures=$((failures + 1)); }
	for k in "${!S[@]}"; do
		if grep -q -a -F -- "${S[$k]}" "${outputs[$i]}"; then
			echo "  the $k secret is in the ${names[$i]} output:" >&2
			grep -a -F -- "${S[$k]}" "${outputs[$i]}" | head -2 | cut -c1-300 | sed 's/^/    /' >&2
			failures=$((failures + 1))
		fi
	done
done
echo "searched $(cat "${outputs[@]}" | wc -c) bytes in ${#outputs[@]} outputs for ${#S[@]} secrets"

# Not vacuous: each protocol's exchanges are in the outputs, under their services.
prom=$textdir/periscope.prom
need() { # WHAT PATTERN FILE
	grep -q -E "$2" "$3" || { echo "  no $1 in $3" >&2; failures=$((failures + 1)); }
}
need "HTTP server series" 'http_server_request_duration_seconds_count\{[^}]*service_name="pstest-pv-http"' "$prom"
need "HTTP client series" 'http_client_request_duration_seconds_count\{[^}]*service_name="pstest-pv-curl"' "$prom"
need "MySQL client series" 'db_client_operation_duration_seconds_count\{[^}]*service_name="pstest-pv-mdb"' "$prom"
# A short-lived kcat's requests may be named by a thread's comm (rdk:broker-1): the topic says
# whose they are.
need "Kafka series" 'messaging_client_operation_duration_seconds_count\{[^}]*messaging_operation_name="send",messaging_destination_name="pstest-pv-topic"' "$prom"
need "MongoDB client series" 'db_client_operation_duration_seconds_count\{[^}]*service_name="pstest-pv-pym"' "$prom"
need "the alert" 'pstest-pv-failing' "$work/syslog.txt"
need "series in the json output" 'pstest-pv-mdb' "$JSON_OUT"
need "trace lines" 'trace|TRACE' "$DAEMON_ERR"

if [ "$failures" -gt 0 ]; then
	echo "  the test's series in the textfile:" >&2
	grep 'pstest-pv' "$prom" | sed 's/[{].*//' | sort | uniq -c | sed 's/^/    /' >&2
	echo "FAIL: $failures findings" >&2
	exit 1
fi
echo "PASS: no secret in any output"
