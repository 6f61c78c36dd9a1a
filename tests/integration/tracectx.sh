#!/usr/bin/env bash
# tracectx against an exact chain on this host, without any header from the services:
#   curl -> A (a python3 ThreadingHTTPServer) -> B (another) -> C (a third),
#   and A -> MariaDB (one SELECT through pymysql) in each of A's requests.
# N requests without a traceparent: each must come out as one trace of exactly eight spans
# (curl's, A's server and its two client spans, B's two, C's, MariaDB's server span) with
# every parent link right. N more with curl -H 'traceparent: 00-T-P-01': the same, in trace
# T, with curl's span P and A's parent P. And an event loop (asyncio, one thread) that calls
# E in each request: requests one at a time join whole; two at a time, the loop's calls
# cannot be told apart and stay unjoined, while curl -> loop still joins. Every process is a copy named pstest-tc-* under a
# services rule: the spans of other traffic on the machine are left out by service.
set -u
. "$(dirname "$0")/lib.sh"

N=${TRACECTX_TEST_N:-10}
here=$(cd "$(dirname "$0")" && pwd)

require_root
require_tools "apt-get install mariadb-server curl python3-pymysql" \
	mariadbd mariadb-install-db mariadb curl "$PYTHON"
"$PYTHON" -c 'import pymysql' 2>/dev/null || { echo "SKIP: needs python3-pymysql"; exit 77; }

make_work

# A propagate that is not a boolean is a configuration error, with its place.
printf 'plugins:\n  tracectx: { propagate: sometimes }\n' >"$work/propagate.yaml"
"$PERISCOPED" --plugin-dir "$PLUGIN_DIR" -c "$work/propagate.yaml" --check-config \
	>/dev/null 2>"$work/propagate.err"
rc=$?
[ "$rc" = 78 ] && grep -q "propagate.yaml:2:.*propagate" "$work/propagate.err" ||
	fail "propagate: sometimes was not refused (exit $rc): $(cat "$work/propagate.err")"

bin=$work/bin
mkdir -p "$bin"
cp "$(command -v mariadbd)" "$bin/pstest-tc-db"
cp "$(command -v curl)" "$bin/pstest-tc-curl"
cp "$(command -v curl)" "$bin/pstest-tc-curld"
for s in a b c e loop; do cp "$(readlink -f "$PYTHON")" "$bin/pstest-tc-$s"; done

# ---- MariaDB, as mysql.sh starts it -------------------------------------------------------------
DB_PORT=$(free_port)
SOCK=$work/mysqld.sock
mariadb-install-db --no-defaults --datadir="$work/data" --user=root --skip-test-db \
	--auth-root-authentication-method=socket >"$work/install.log" 2>&1 ||
	fail "mariadb-install-db failed: $(tail -5 "$work/install.log")"
"$bin/pstest-tc-db" --no-defaults --basedir=/usr --datadir="$work/data" --user=root \
	--port="$DB_PORT" --bind-address=127.0.0.1 --socket="$SOCK" --pid-file="$work/mysqld.pid" \
	--log-error="$work/mysqld.err" --skip-log-bin --innodb-buffer-pool-size=32M \
	>"$work/mysqld.out" 2>&1 &
children+=($!)
wait_port "$DB_PORT" || fail "mariadbd did not start: $(tail -5 "$work/mysqld.err")"
mariadb --no-defaults -S "$SOCK" -uroot <<SQL || fail "cannot set up the database"
CREATE DATABASE pstest; CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'pw';
GRANT ALL ON pstest.* TO 'app'@'127.0.0.1';
USE pstest; CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(32));
INSERT INTO items VALUES (1, 'one');
SQL

# ---- the chain ----------------------------------------------------------------------------------
A_PORT=$(free_port) B_PORT=$(free_port) C_PORT=$(free_port)
"$bin/pstest-tc-c" "$here/tracectx/chain.py" "$C_PORT" >"$work/c.out" 2>&1 &
children+=($!)
"$bin/pstest-tc-b" "$here/tracectx/chain.py" "$B_PORT" "$C_PORT" /c >"$work/b.out" 2>&1 &
children+=($!)
"$bin/pstest-tc-a" "$here/tracectx/chain.py" "$A_PORT" "$B_PORT" /b "$DB_PORT" \
	>"$work/a.out" 2>&1 &
children+=($!)
E_PORT=$(free_port) LOOP_PORT=$(free_port)
"$bin/pstest-tc-e" "$here/tracectx/chain.py" "$E_PORT" >"$work/e.out" 2>&1 &
children+=($!)
"$bin/pstest-tc-loop" "$here/tracectx/loop.py" "$LOOP_PORT" "$E_PORT" >"$work/loop.out" 2>&1 &
children+=($!)
# A collector: the spans also go out through the otlp sink.
OTLP_PORT=$(free_port)
"$PYTHON" "$here/otlp/receiver.py" "$OTLP_PORT" "$work/otlp-state.json" >"$work/otlp.out" 2>&1 &
children+=($!)
for p in "$A_PORT" "$B_PORT" "$C_PORT" "$E_PORT" "$LOOP_PORT" "$OTLP_PORT"; do
	wait_port "$p" || fail "a chain service did not start"
done

# ---- periscoped ---------------------------------------------------------------------------------
cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s, labels: { cluster: pstest-cluster } }
plugins:
  http: {}
  mysql: { ports: [$DB_PORT] }
  tracectx: { propagate: false, hold: 500ms, max_pending: 100000 }
  tcpflow: { enabled: false }
  resources: { enabled: false }
  kafka: { enabled: false }
  mongodb: { enabled: false }
services:
  - { match: { exe: $bin/pstest-tc-db }, name: pstest-tc-db }
  - { match: { exe: $bin/pstest-tc-curl }, name: pstest-tc-curl }
  - { match: { exe: $bin/pstest-tc-a }, name: pstest-tc-a }
  - { match: { exe: $bin/pstest-tc-b }, name: pstest-tc-b }
  - { match: { exe: $bin/pstest-tc-c }, name: pstest-tc-c }
  - { match: { exe: $bin/pstest-tc-e }, name: pstest-tc-e }
  - { match: { exe: $bin/pstest-tc-loop }, name: pstest-tc-loop }
  - { match: { exe: $bin/pstest-tc-curld }, name: pstest-tc-curld }
sinks:
  stdout: { format: json }
  otlp: { endpoint: "http://127.0.0.1:$OTLP_PORT/v1/traces" }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

# ---- load ---------------------------------------------------------------------------------------
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
for i in $(seq "$N"); do
	"$bin/pstest-tc-curl" -sf "http://127.0.0.1:$A_PORT/a" >/dev/null || fail "curl $i failed"
done
: >"$work/headers"
for i in $(seq "$N"); do
	tp="00-$(hex 16)-$(hex 8)-01"
	echo "$tp" >>"$work/headers"
	"$bin/pstest-tc-curl" -sf -H "traceparent: $tp" "http://127.0.0.1:$A_PORT/a" >/dev/null ||
		fail "curl $i (traceparent) failed"
done
LOOP_SERIAL=3 LOOP_PAIRS=2
for i in $(seq "$LOOP_SERIAL"); do
	"$bin/pstest-tc-curld" -sf "http://127.0.0.1:$LOOP_PORT/d" >/dev/null || fail "curl (loop) failed"
done
for i in $(seq "$LOOP_PAIRS"); do
	"$bin/pstest-tc-curld" -sf "http://127.0.0.1:$LOOP_PORT/d" >/dev/null &
	p1=$!
	"$bin/pstest-tc-curld" -sf "http://127.0.0.1:$LOOP_PORT/d" >/dev/null &
	p2=$!
	wait "$p1" && wait "$p2" || fail "curl (loop, two at once) failed"
done
# Spans wait for their root's hold (0.5 s); the daemon's exit publishes what still waits.
sleep 1.5
stop_daemon
[ "$DAEMON_STATUS" = 0 ] || fail "periscoped exited with $DAEMON_STATUS"

"$PYTHON" "$here/tracectx/check_spans.py" "$DAEMON_OUT" "$N" "$work/headers" \
	"$A_PORT" "$B_PORT" "$C_PORT" "$DB_PORT" >"$work/check.out" 2>&1 ||
	fail "spans: $(cat "$work/check.out")"
"$PYTHON" "$here/tracectx/check_loop.py" "$DAEMON_OUT" "$LOOP_SERIAL" $((2 * LOOP_PAIRS)) \
	>>"$work/check.out" 2>&1 || fail "event loop spans: $(cat "$work/check.out")"
grep -q '"periscope_spans_total"' "$DAEMON_OUT" || fail "no periscope_spans_total in the metrics"
# The same spans reached the collector through the otlp sink: as many, none twice, all valid.
"$PYTHON" - "$DAEMON_OUT" "$work/otlp-state.json" >>"$work/check.out" 2>&1 <<'PY' ||
import json, sys
stdout = sum(len(ss["spans"]) for line in open(sys.argv[1]) if line.startswith('{"resourceSpans"')
             for rs in json.loads(line)["resourceSpans"] for ss in rs["scopeSpans"])
st = json.load(open(sys.argv[2]))
if st["spans"] != stdout or st["duplicates"] or st["invalid"]:
    sys.exit(f"otlp: the receiver got {st['spans']} spans ({st['duplicates']} twice, "
             f"{st['invalid']} invalid requests), stdout has {stdout}")
print(f"otlp: {stdout} spans at the receiver, as on stdout")
PY
	fail "$(cat "$work/check.out")"
echo "PASS: tracectx: $(cat "$work/check.out")"
