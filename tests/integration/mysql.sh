#!/usr/bin/env bash
# mysql against exact counts, client view and server view, on a MariaDB started here:
#   the mariadb client plays a script of known statements (INSERT, SELECT, UPDATE, DELETE on
#     one table, SELECTs from a missing table that fail with 1146)
#   sysbench oltp_read_write --events=N (prepared statements; its range selects' results are
#     longer than the capture copies per syscall)
#   pymysql (another client library, another syscall pattern) with its own counts
# With MYSQL_TEST_TLS=1 (mysql_tls.sh) each of them runs a second time over TLS (SSLRequest,
# then OpenSSL on the same connection), with its own tables, database and services.
# Each load has its own tables (and database for sysbench over TLS), so that the server view
# (pstest-mariadbd) separates them by db_collection_name / db_namespace. Every server and
# client runs from a copy of its binary under a `services` rule: other MySQL traffic on the
# machine cannot touch the series we count.
set -u
. "$(dirname "$0")/lib.sh"

NI=${MYSQL_TEST_N:-40} NS=30 NU=20 ND=10 NF=5 # mariadb client and pymysql, per load
SB=${MYSQL_TEST_SYSBENCH_EVENTS:-50}         # sysbench events per run
TLS=${MYSQL_TEST_TLS:-0}
here=$(cd "$(dirname "$0")" && pwd)

require_root
require_tools "apt-get install mariadb-server mariadb-client sysbench python3-pymysql openssl" \
	mariadbd mariadb-install-db mariadb sysbench openssl "$PYTHON"
"$PYTHON" -c 'import pymysql' 2>/dev/null || { echo "SKIP: needs python3-pymysql"; exit 77; }

make_work

bin=$work/bin
mkdir -p "$bin"
cp "$(command -v mariadbd)" "$bin/pstest-mariadbd"
cp "$(command -v mariadb)" "$bin/pstest-mariadb"
cp "$(command -v mariadb)" "$bin/pstest-mdb-tls"
cp "$(command -v sysbench)" "$bin/pstest-sysbench"
cp "$(command -v sysbench)" "$bin/pstest-sb-tls"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-pymysql"
cp "$(readlink -f "$PYTHON")" "$bin/pstest-pymy-tls"

# ---- MariaDB -------------------------------------------------------------------------------
PORT=$(free_port)
SOCK=$work/mysqld.sock
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
	-keyout "$work/key.pem" -out "$work/cert.pem" >/dev/null 2>&1 || fail "openssl req failed"
mariadb-install-db --no-defaults --datadir="$work/data" --user=root --skip-test-db \
	--auth-root-authentication-method=socket >"$work/install.log" 2>&1 ||
	fail "mariadb-install-db failed: $(tail -5 "$work/install.log")"
"$bin/pstest-mariadbd" --no-defaults --basedir=/usr --datadir="$work/data" --user=root \
	--port="$PORT" --bind-address=127.0.0.1 --socket="$SOCK" --pid-file="$work/mysqld.pid" \
	--log-error="$work/mysqld.err" --skip-log-bin --innodb-buffer-pool-size=32M \
	--ssl-cert="$work/cert.pem" --ssl-key="$work/key.pem" --ssl-ca="$work/cert.pem" \
	>"$work/mysqld.out" 2>&1 &
children+=($!)
wait_port "$PORT" || fail "mariadbd did not start: $(tail -5 "$work/mysqld.err")"
root_sql() { mariadb --no-defaults -S "$SOCK" -uroot "$@"; }
tables="CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(32), qty INT);
CREATE TABLE items_tls LIKE items; CREATE TABLE py_items LIKE items; CREATE TABLE py_items_tls LIKE items;"
root_sql <<SQL || fail "cannot set up the databases"
CREATE DATABASE pstest; CREATE DATABASE pstest_tls;
CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'pw';
GRANT ALL ON pstest.* TO 'app'@'127.0.0.1'; GRANT ALL ON pstest_tls.* TO 'app'@'127.0.0.1';
USE pstest; $tables
SQL
sysbench_args=(oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PORT"
	--mysql-user=app --mysql-password=pw --tables=1 --table-size=1000 --threads=1)
for db in pstest pstest_tls; do
	sysbench "${sysbench_args[@]}" --mysql-db=$db --mysql-ssl=off prepare >"$work/prepare.out" 2>&1 ||
		fail "sysbench prepare: $(tail -3 "$work/prepare.out")"
done

# The mariadb client's script: NI inserts, NS selects, NU updates, ND deletes, NF failures.
client_script() { # TABLE MISSING
	local i
	for i in $(seq "$NI"); do echo "INSERT INTO $1 (id, name, qty) VALUES ($i, 'name-$i', $i);"; done
	for i in $(seq "$NS"); do echo "SELECT name, qty FROM $1 WHERE id = $i;"; done
	for i in $(seq "$NU"); do echo "UPDATE $1 SET qty = qty + 1 WHERE id = $i;"; done
	for i in $(seq "$ND"); do echo "DELETE FROM $1 WHERE id = $i;"; done
	for i in $(seq "$NF"); do echo "SELECT * FROM $2 WHERE id = $i;"; done
}
client_script items missing_plain >"$work/plain.sql"
client_script items_tls missing_tls >"$work/tls.sql"

# ---- periscoped ------------------------------------------------------------------------------
cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins:
  mysql: { ports: [$PORT] }
  http: { enabled: false }
  tcpflow: { enabled: false }
services:
  - { match: { exe: $bin/pstest-mariadbd }, name: pstest-mariadbd }
  - { match: { exe: $bin/pstest-mariadb }, name: pstest-mariadb }
  - { match: { exe: $bin/pstest-mdb-tls }, name: pstest-mdb-tls }
  - { match: { exe: $bin/pstest-sysbench }, name: pstest-sysbench }
  - { match: { exe: $bin/pstest-sb-tls }, name: pstest-sb-tls }
  - { match: { exe: $bin/pstest-pymysql }, name: pstest-pymysql }
  - { match: { exe: $bin/pstest-pymy-tls }, name: pstest-pymy-tls }
sinks: { stdout: { format: prometheus } }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

# ---- load ------------------------------------------------------------------------------------
client=(--no-defaults -h127.0.0.1 -P"$PORT" -uapp -ppw --force)
"$bin/pstest-mariadb" "${client[@]}" --skip-ssl pstest <"$work/plain.sql" >"$work/plain.out" 2>&1
[ "$(grep -c 'ERROR 1146' "$work/plain.out")" = "$NF" ] || fail "mariadb client: $(tail -3 "$work/plain.out")"
if [ "$TLS" = 1 ]; then
	"$bin/pstest-mdb-tls" "${client[@]}" --ssl pstest <"$work/tls.sql" >"$work/tls.out" 2>&1
	[ "$(grep -c 'ERROR 1146' "$work/tls.out")" = "$NF" ] ||
		fail "mariadb client (TLS): $(tail -3 "$work/tls.out")"
	"$bin/pstest-mdb-tls" "${client[@]}" --ssl -N -e "SHOW STATUS LIKE 'Ssl_cipher'" pstest |
		grep -q -E 'Ssl_cipher[[:space:]]+[A-Z]' || fail "the mariadb client did not use TLS"
fi

# sysbench's own tally must be the workload's shape: per event 14 reads, 4 writes, 2 others.
# With --mysql-ssl=on it reads client-key.pem, client-cert.pem and cacert.pem from its cwd.
mkdir -p "$work/sysbench"
cp "$work/key.pem" "$work/sysbench/client-key.pem"
cp "$work/cert.pem" "$work/sysbench/client-cert.pem"
cp "$work/cert.pem" "$work/sysbench/cacert.pem"
run_sysbench() { # BINARY OUT DB SSL
	(cd "$work/sysbench" &&
		"$1" "${sysbench_args[@]}" --mysql-db="$3" --mysql-ssl="$4" --events="$SB" --time=0 run) \
		>"$2" 2>&1 || fail "sysbench run: $(tail -3 "$2")"
	grep -q -E "read: +$((14 * SB))\$" "$2" && grep -q -E "write: +$((4 * SB))\$" "$2" &&
		grep -q -E "other: +$((2 * SB))\$" "$2" && grep -q -E "ignored errors: +0 " "$2" &&
		grep -q -E "reconnects: +0 " "$2" || fail "sysbench did not run the workload exactly: $(cat "$2")"
}
ssl_accepts() { root_sql -N -e "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'" | awk '{ print $2 }'; }
run_sysbench "$bin/pstest-sysbench" "$work/sysbench.out" pstest off
if [ "$TLS" = 1 ]; then
	accepts=$(ssl_accepts)
	run_sysbench "$bin/pstest-sb-tls" "$work/sysbench-tls.out" pstest_tls on
	[ "$(ssl_accepts)" -gt "$accepts" ] || fail "sysbench --mysql-ssl=on did not use TLS"
fi

"$bin/pstest-pymysql" "$here/mysql/pymysql_load.py" "$PORT" pstest py_items missing_py \
	"$NI" "$NS" "$NU" "$ND" "$NF" >"$work/py.out" 2>&1 || fail "pymysql: $(tail -3 "$work/py.out")"
if [ "$TLS" = 1 ]; then
	"$bin/pstest-pymy-tls" "$here/mysql/pymysql_load.py" "$PORT" pstest py_items_tls \
		missing_py_tls "$NI" "$NS" "$NU" "$ND" "$NF" "$work/cert.pem" >"$work/py-tls.out" 2>&1 ||
		fail "pymysql (TLS): $(tail -3 "$work/py-tls.out")"
fi

# ---- what periscope saw --------------------------------------------------------------------
snap=$work/snapshot
final_snapshot "$snap"
SNAPSHOT=$snap DIFF=$work/diff
CD=db_client_operation_duration_seconds_count
SD=db_server_operation_duration_seconds_count
mysqlsys='db_system_name="mysql"'
ok='db_response_status_code=""'

# expect_script SERVICE TABLE MISSING DB: the client script's (or pymysql's) counts, both views.
expect_script() {
	local service=$1 table=$2 missing=$3 db=$4 view
	for view in "$CD service_name=\"$service\"" "$SD service_name=\"pstest-mariadbd\""; do
		set -- $view
		local m=$1 who=$2 on=("db_collection_name=\"$table\"" "db_namespace=\"$db\"" "$mysqlsys")
		expect "$NI" "$m" "$who" 'db_operation_name="INSERT"' "${on[@]}" "$ok"
		expect "$NS" "$m" "$who" 'db_operation_name="SELECT"' "${on[@]}" "$ok"
		expect "$NU" "$m" "$who" 'db_operation_name="UPDATE"' "${on[@]}" "$ok"
		expect "$ND" "$m" "$who" 'db_operation_name="DELETE"' "${on[@]}" "$ok"
		expect 0 "$m" "$who" "${on[@]}" 'db_response_status_code="1'
		expect "$NF" "$m" "$who" 'db_operation_name="SELECT"' "db_collection_name=\"$missing\"" \
			'db_response_status_code="1146"' "$mysqlsys"
	done
}
expect_script pstest-mariadb items missing_plain pstest
expect_script pstest-pymysql py_items missing_py pstest
if [ "$TLS" = 1 ]; then
	expect_script pstest-mdb-tls items_tls missing_tls pstest
	expect_script pstest-pymy-tls py_items_tls missing_py_tls pstest
fi

# expect_sysbench SERVICE DB: per event BEGIN, 14 SELECT, 2 UPDATE, DELETE, INSERT, COMMIT.
expect_sysbench() {
	local service=$1 db=$2 view
	for view in "$CD service_name=\"$service\"" "$SD service_name=\"pstest-mariadbd\""; do
		set -- $view
		local m=$1 who=$2 on=('db_collection_name="sbtest1"' "db_namespace=\"$db\"" "$mysqlsys" "$ok")
		expect $((14 * SB)) "$m" "$who" 'db_operation_name="SELECT"' "${on[@]}"
		expect $((2 * SB)) "$m" "$who" 'db_operation_name="UPDATE"' "${on[@]}"
		expect "$SB" "$m" "$who" 'db_operation_name="DELETE"' "${on[@]}"
		expect "$SB" "$m" "$who" 'db_operation_name="INSERT"' "${on[@]}"
		expect "$SB" "$m" "$who" 'db_operation_name="BEGIN"' "db_namespace=\"$db\"" "$ok"
		expect "$SB" "$m" "$who" 'db_operation_name="COMMIT"' "db_namespace=\"$db\"" "$ok"
		# Its nine statements on sbtest1 are prepared once, on its one connection.
		expect 9 "$m" "$who" 'db_operation_name="PREPARE"' "${on[@]}"
	done
}
expect_sysbench pstest-sysbench pstest
[ "$TLS" = 1 ] && expect_sysbench pstest-sb-tls pstest_tls

# The client view names the server it talked to.
expect "$NI" "$CD" 'service_name="pstest-mariadb"' 'db_operation_name="INSERT"' \
	'server_address="127.0.0.1"' "server_port=\"$PORT\""
expect 0 periscope_decode_errors_total 'plugin="mysql"'
expect 1 periscope_plugin_up 'plugin="mysql"'
if grep -E '^db_' "$snap" | grep -q -E "name-[0-9]|'"; then
	echo "  a literal reached a label:" >>"$work/diff"
	grep -E '^db_' "$snap" | grep -E "name-[0-9]|'" | head -3 | sed 's/^/    /' >>"$work/diff"
	failures=$((failures + 1))
fi
if command -v promtool >/dev/null 2>&1; then
	if ! promtool check metrics <"$snap" >"$work/promtool" 2>&1; then
		sed 's/^/  promtool: /' "$work/promtool" >>"$work/diff"
		failures=$((failures + 1))
	fi
fi

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures check(s) (want = the clients' count, got = periscope's):" >&2
	cat "$work/diff" >&2
	echo "the pstest series of the last snapshot:" >&2
	grep -E '^db_.*_count\{service_name="pstest-' "$snap" | sed 's/^/  /' >&2
	exit 1
fi
over=plain
[ "$TLS" = 1 ] && over="plain and TLS"
echo "ok ($over): mariadb client ${NI}/${NS}/${NU}/${ND} + $NF failing with 1146; sysbench $SB" \
	"events; pymysql the same as the mariadb client: counted exactly, client and server view"
exit 0
