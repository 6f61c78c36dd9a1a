#!/usr/bin/env bash
# mysql against exact counts, client view and server view, on a MariaDB started here:
#   the mariadb client plays a script of known statements (INSERT, SELECT, UPDATE, DELETE on
#     one table, SELECTs from a missing table that fail with 1146)
#   the mariadb client again with multi-statement queries (several statements in one
#     COM_QUERY, CALL of a procedure with two result sets among them, and an error that ends
#     its query): one exchange per statement run, none for those after the error
#   sysbench oltp_read_write --events=N (prepared statements; its range selects' results are
#     longer than the capture copies per syscall)
#   pymysql (another client library, another syscall pattern) with its own counts
# MYSQL_TEST_VIA=tls|unix|compress runs each of them a second time, with its own database,
# tables and services:
#   tls (mysql_tls.sh): SSLRequest, then OpenSSL on the same connection
#   unix (mysql_unix.sh): over the server's Unix socket (the capture's MySQL classifier)
#   compress (mysql_compress.sh): the compressed protocol (zlib): mariadb --compress, sysbench
#     --mysql-compression=on (ranges of 5 rows: see below), and MySQLdb (libmariadb) with
#     compress=True, pymysql having none
# Each load has its own tables (and database per variant), so that the server view
# (pstest-mariadbd) separates them by db_collection_name / db_namespace. Every server and
# client runs from a copy of its binary under a `services` rule: other MySQL traffic on the
# machine cannot touch the series we count.
set -u
. "$(dirname "$0")/lib.sh"

NI=${MYSQL_TEST_N:-40} NS=30 NU=20 ND=10 NF=5 # mariadb client and pymysql, per load
NM=12 NME=4                                  # multi-statement queries: whole, and failing
SB=${MYSQL_TEST_SYSBENCH_EVENTS:-50}         # sysbench events per run
VIA=${MYSQL_TEST_VIA:-}
[ "${MYSQL_TEST_TLS:-0}" = 1 ] && VIA=tls
here=$(cd "$(dirname "$0")" && pwd)

require_root
require_tools "apt-get install mariadb-server mariadb-client sysbench python3-pymysql openssl" \
	mariadbd mariadb-install-db mariadb sysbench openssl "$PYTHON"
"$PYTHON" -c 'import pymysql' 2>/dev/null || { echo "SKIP: needs python3-pymysql"; exit 77; }
if [ "$VIA" = compress ]; then
	"$PYTHON" -c 'import MySQLdb' 2>/dev/null || { echo "SKIP: needs python3-mysqldb"; exit 77; }
fi

make_work

# The variants: plain, and VIA if given. Per variant: its database, its tables' suffix, the
# services of its clients (the mariadb client, sysbench, the Python client; each name within
# the kernel's 15 characters), how each of them connects.
variants=(plain)
[ -n "$VIA" ] && variants+=("$VIA")
declare -A db mdb sb py
db[plain]=pstest mdb[plain]=pstest-mariadb sb[plain]=pstest-sysbench py[plain]=pstest-pymysql
db[tls]=pstest_tls mdb[tls]=pstest-mdb-tls sb[tls]=pstest-sb-tls py[tls]=pstest-pymy-tls
db[unix]=pstest_unix mdb[unix]=pstest-mdb-unix sb[unix]=pstest-sb-unix py[unix]=pstest-pym-unix
db[compress]=pstest_zip mdb[compress]=pstest-mdb-zip sb[compress]=pstest-sb-zip
py[compress]=pstest-mysqldb
sfx() { [ "$1" = plain ] && echo "" || echo "_$1"; }

bin=$work/bin
mkdir -p "$bin"
cp "$(command -v mariadbd)" "$bin/pstest-mariadbd"
for v in "${variants[@]}"; do
	cp "$(command -v mariadb)" "$bin/${mdb[$v]}"
	cp "$(command -v sysbench)" "$bin/${sb[$v]}"
	cp "$(readlink -f "$PYTHON")" "$bin/${py[$v]}"
done

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
setup="CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'pw'; CREATE USER 'app'@'localhost' IDENTIFIED BY 'pw';"
for v in "${variants[@]}"; do
	d=${db[$v]} x=$(sfx "$v")
	setup+="
CREATE DATABASE $d; GRANT ALL ON $d.* TO 'app'@'127.0.0.1'; GRANT ALL ON $d.* TO 'app'@'localhost';
USE $d; CREATE TABLE items$x (id INT PRIMARY KEY, name VARCHAR(32), qty INT);
CREATE TABLE py_items$x LIKE items$x; CREATE TABLE multi$x (id INT PRIMARY KEY, v INT);
DELIMITER //
CREATE PROCEDURE two_sets() BEGIN SELECT COUNT(*) FROM multi$x; SELECT 1; END //
DELIMITER ;"
done
root_sql <<<"$setup" || fail "cannot set up the databases"
sysbench_args=(oltp_read_write --db-driver=mysql --mysql-user=app --mysql-password=pw
	--tables=1 --table-size=1000 --threads=1)
tcp=(--mysql-host=127.0.0.1 --mysql-port="$PORT")
for v in "${variants[@]}"; do
	sysbench "${sysbench_args[@]}" "${tcp[@]}" --mysql-db="${db[$v]}" --mysql-ssl=off prepare \
		>"$work/prepare.out" 2>&1 || fail "sysbench prepare: $(tail -3 "$work/prepare.out")"
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
# Multi-statement queries (what is between the // delimiters goes as one COM_QUERY): NM of
# INSERT, SELECT, UPDATE and CALL; NME of SELECT, a SELECT that fails, a DELETE never run.
multi_script() { # TABLE MISSING
	local i
	echo "DELIMITER //"
	for i in $(seq "$NM"); do
		echo "INSERT INTO $1 VALUES ($i, $i); SELECT v FROM $1 WHERE id = $i;"
		echo "  UPDATE $1 SET v = v + 1 WHERE id = $i; CALL two_sets() //"
	done
	for i in $(seq "$NME"); do echo "SELECT v FROM $1 WHERE id = $i; SELECT v FROM $2; DELETE FROM $1 //"; done
}

# ---- periscoped ------------------------------------------------------------------------------
{
	cat <<YAML
daemon: { flush_interval: 1s }
plugins:
  mysql: { ports: [$PORT] }
  http: { enabled: false }
  tcpflow: { enabled: false }
services:
  - { match: { exe: $bin/pstest-mariadbd }, name: pstest-mariadbd }
YAML
	for v in "${variants[@]}"; do
		for s in "${mdb[$v]}" "${sb[$v]}" "${py[$v]}"; do
			echo "  - { match: { exe: $bin/$s }, name: $s }"
		done
	done
	echo "sinks: { stdout: { format: prometheus } }"
} >"$work/periscope.yaml"
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

# ---- load ------------------------------------------------------------------------------------
# sysbench's own tally must be the workload's shape: per event 14 reads, 4 writes, 2 others.
# With --mysql-ssl=on it reads client-key.pem, client-cert.pem and cacert.pem from its cwd.
mkdir -p "$work/sysbench"
cp "$work/key.pem" "$work/sysbench/client-key.pem"
cp "$work/cert.pem" "$work/sysbench/client-cert.pem"
cp "$work/cert.pem" "$work/sysbench/cacert.pem"
global_status() { root_sql -N -e "SHOW GLOBAL STATUS LIKE '$1'" | awk '{ print $2 }'; }

for v in "${variants[@]}"; do
	x=$(sfx "$v") d=${db[$v]}
	client=(--no-defaults -uapp -ppw --force)
	sbv=("${tcp[@]}" --mysql-ssl=off)
	pyv=()
	case $v in
	plain) client+=(-h127.0.0.1 -P"$PORT" --skip-ssl) ;;
	tls) client+=(-h127.0.0.1 -P"$PORT" --ssl) sbv=("${tcp[@]}" --mysql-ssl=on)
		pyv=(--ssl "$work/cert.pem") ;;
	unix) client+=(-S "$SOCK" --skip-ssl) sbv=(--mysql-socket="$SOCK" --mysql-ssl=off)
		pyv=(--unix "$SOCK") ;;
	compress) client+=(-h127.0.0.1 -P"$PORT" --skip-ssl --compress)
		# A zlib stream cannot be inflated past the bytes the capture did not copy: a
		# compressed result longer than capture_bytes loses its end (counted, never
		# guessed). Ranges of 5 rows keep sysbench's results within the 1024 bytes.
		sbv=("${tcp[@]}" --mysql-ssl=off --mysql-compression=on --range-size=5)
		pyv=(--compress) ;;
	*) fail "MYSQL_TEST_VIA=$v: plain, tls, unix or compress" ;;
	esac
	# What the variant is must show on the server: its own connections say so.
	case $v in
	tls) check="SHOW STATUS LIKE 'Ssl_cipher'" want='Ssl_cipher[[:space:]]+[A-Z]' ;;
	unix) check="SELECT CONCAT('via=', IF(HOST = 'localhost', 'socket', HOST)) FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()" want='via=socket' ;;
	compress) check="SHOW STATUS LIKE 'Compression'" want='Compression[[:space:]]+ON' ;;
	*) check="SHOW STATUS LIKE 'Compression'" want='Compression[[:space:]]+OFF' ;;
	esac
	"$bin/${mdb[$v]}" "${client[@]}" -N -e "$check" "$d" | grep -q -E "$want" ||
		fail "the mariadb client ($v) did not connect as it should ($check)"

	client_script "items$x" "missing$x" >"$work/script$x.sql"
	"$bin/${mdb[$v]}" "${client[@]}" "$d" <"$work/script$x.sql" >"$work/script$x.out" 2>&1
	[ "$(grep -c 'ERROR 1146' "$work/script$x.out")" = "$NF" ] ||
		fail "mariadb client ($v): $(tail -3 "$work/script$x.out")"
	multi_script "multi$x" "multi_missing$x" >"$work/multi$x.sql"
	"$bin/${mdb[$v]}" "${client[@]}" "$d" <"$work/multi$x.sql" >"$work/multi$x.out" 2>&1
	[ "$(grep -c 'ERROR 1146' "$work/multi$x.out")" = "$NME" ] ||
		fail "mariadb client, multi-statement ($v): $(tail -3 "$work/multi$x.out")"
	# Every multi-statement query's INSERT and UPDATE ran; the DELETEs after a failure did not.
	[ "$(root_sql -N -e "SELECT COUNT(*), SUM(v) FROM $d.multi$x")" = "$NM	$((NM * (NM + 1) / 2 + NM))" ] ||
		fail "the multi-statement queries did not run as they should ($v)"

	accepts=$(global_status Ssl_accepts)
	(cd "$work/sysbench" &&
		"$bin/${sb[$v]}" "${sysbench_args[@]}" "${sbv[@]}" --mysql-db="$d" --events="$SB" \
			--time=0 run) >"$work/sysbench$x.out" 2>&1 ||
		fail "sysbench run ($v): $(tail -3 "$work/sysbench$x.out")"
	out=$work/sysbench$x.out
	grep -q -E "read: +$((14 * SB))\$" "$out" && grep -q -E "write: +$((4 * SB))\$" "$out" &&
		grep -q -E "other: +$((2 * SB))\$" "$out" && grep -q -E "ignored errors: +0 " "$out" &&
		grep -q -E "reconnects: +0 " "$out" ||
		fail "sysbench ($v) did not run the workload exactly: $(cat "$out")"
	if [ "$v" = tls ]; then
		[ "$(global_status Ssl_accepts)" -gt "$accepts" ] || fail "sysbench --mysql-ssl=on did not use TLS"
	fi

	"$bin/${py[$v]}" "$here/mysql/pymysql_load.py" "${pyv[@]}" "$PORT" "$d" "py_items$x" \
		"missing_py$x" "$NI" "$NS" "$NU" "$ND" "$NF" >"$work/py$x.out" 2>&1 ||
		fail "${py[$v]}: $(tail -3 "$work/py$x.out")"
done

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
			"db_namespace=\"$db\"" 'db_response_status_code="1146"' "$mysqlsys"
	done
}

# expect_multi SERVICE TABLE MISSING DB: one exchange per statement the server ran.
expect_multi() {
	local service=$1 table=$2 missing=$3 db=$4 view
	for view in "$CD service_name=\"$service\"" "$SD service_name=\"pstest-mariadbd\""; do
		set -- $view
		local m=$1 who=$2 on=("db_collection_name=\"$table\"" "db_namespace=\"$db\"" "$mysqlsys")
		expect "$NM" "$m" "$who" 'db_operation_name="INSERT"' "${on[@]}" "$ok"
		expect $((NM + NME)) "$m" "$who" 'db_operation_name="SELECT"' "${on[@]}" "$ok"
		expect "$NM" "$m" "$who" 'db_operation_name="UPDATE"' "${on[@]}" "$ok"
		expect 0 "$m" "$who" 'db_operation_name="DELETE"' "${on[@]}"
		expect "$NM" "$m" "$who" 'db_operation_name="CALL"' 'db_collection_name=""' \
			"db_namespace=\"$db\"" "$mysqlsys" "$ok"
		expect "$NME" "$m" "$who" 'db_operation_name="SELECT"' \
			"db_collection_name=\"$missing\"" "db_namespace=\"$db\"" \
			'db_response_status_code="1146"' "$mysqlsys"
	done
}

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

for v in "${variants[@]}"; do
	x=$(sfx "$v")
	expect_script "${mdb[$v]}" "items$x" "missing$x" "${db[$v]}"
	expect_multi "${mdb[$v]}" "multi$x" "multi_missing$x" "${db[$v]}"
	expect_sysbench "${sb[$v]}" "${db[$v]}"
	expect_script "${py[$v]}" "py_items$x" "missing_py$x" "${db[$v]}"
done

# The client view names the server it talked to; over the Unix socket there is no address.
expect "$NI" "$CD" 'service_name="pstest-mariadb"' 'db_operation_name="INSERT"' \
	'db_collection_name="items"' 'server_address="127.0.0.1"' "server_port=\"$PORT\""
if [ "$VIA" = unix ]; then
	expect "$NI" "$CD" 'service_name="pstest-mdb-unix"' 'db_operation_name="INSERT"' \
		'db_collection_name="items_unix"' 'server_address=""' 'server_port=""'
fi
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
clients=()
for v in "${variants[@]}"; do clients+=("${py[$v]}"); done
echo "ok (${variants[*]}): mariadb client ${NI}/${NS}/${NU}/${ND} + $NF failing with 1146;" \
	"multi-statement $NM x 4 statements + $NME failing; sysbench $SB events;" \
	"${clients[*]} the same as the mariadb client: counted exactly, client and server view"
exit 0
