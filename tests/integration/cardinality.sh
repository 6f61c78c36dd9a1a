#!/usr/bin/env bash
# A cardinality attack is held by the caps, with the daemon's memory bounded:
#   HTTP: CARD_PATHS distinct paths made of letters (never collapsed to {id}), from wrk
#     against nginx: the service's routes stay within plugins.http.max_routes, the rest in
#     /{other}, and every request is still counted
#   MySQL: CARD_TABLES distinct table names (SELECTs from tables that do not exist, error
#     1146) from the mariadb client: db_client_operation_duration_seconds stays within
#     daemon.max_series_per_metric, the rest in its _other series, counted in
#     periscope_series_dropped_total, and every statement is still counted somewhere
# The daemon's peak RSS (VmHWM) may grow at most CARD_RSS_GROWTH_KB over its RSS before
# the attack. CARD_PATHS=1000000 is the full attack (not in make check).
set -u
. "$(dirname "$0")/lib.sh"

PATHS=${CARD_PATHS:-100000} TABLES=${CARD_TABLES:-3000}
MAX_ROUTES=100 MAX_SERIES=400
RSS_GROWTH_KB=${CARD_RSS_GROWTH_KB:-65536}

require_root
require_tools "apt-get install nginx wrk mariadb-server mariadb-client" nginx wrk mariadbd \
	mariadb-install-db mariadb

make_work

bin=$work/bin
mkdir -p "$bin"
cp "$(command -v nginx)" "$bin/pstest-cd-nginx"
cp "$(command -v wrk)" "$bin/pstest-cd-wrk"
cp "$(command -v mariadbd)" "$bin/pstest-cd-mdbd"
cp "$(command -v mariadb)" "$bin/pstest-cd-mdb"

HTTP_PORT=$(free_port)
write_nginx_conf "$work/nginx" <<CONF
	server {
		listen 127.0.0.1:$HTTP_PORT;
		location / { return 200 "ok\n"; }
	}
CONF
"$bin/pstest-cd-nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" -g 'daemon off;' \
	>"$work/nginx.out" 2>&1 &
children+=($!)
wait_port "$HTTP_PORT" || fail "nginx did not start: $(cat "$work/nginx.out" "$work/nginx/error.log")"

MYSQL_PORT=$(free_port)
SOCK=$work/mysqld.sock
mariadb-install-db --no-defaults --datadir="$work/data" --user=root --skip-test-db \
	--auth-root-authentication-method=socket >"$work/install.log" 2>&1 ||
	fail "mariadb-install-db failed: $(tail -5 "$work/install.log")"
"$bin/pstest-cd-mdbd" --no-defaults --basedir=/usr --datadir="$work/data" --user=root \
	--port="$MYSQL_PORT" --bind-address=127.0.0.1 --socket="$SOCK" --pid-file="$work/mysqld.pid" \
	--log-error="$work/mysqld.err" --skip-log-bin --innodb-buffer-pool-size=16M \
	>"$work/mysqld.out" 2>&1 &
children+=($!)
wait_port "$MYSQL_PORT" || fail "mariadbd did not start: $(tail -5 "$work/mysqld.err")"
mariadb --no-defaults -S "$SOCK" -uroot <<SQL || fail "cannot set up the database"
CREATE DATABASE pstest_cd;
CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY 'pw';
GRANT ALL ON pstest_cd.* TO 'app'@'127.0.0.1';
SQL

cat >"$work/periscope.yaml" <<YAML
daemon: { flush_interval: 1s, max_series_per_metric: $MAX_SERIES }
plugins:
  http: { ports: [$HTTP_PORT], max_routes: $MAX_ROUTES }
  mysql: { ports: [$MYSQL_PORT] }
  tcpflow: { enabled: false }
  resources: { enabled: false }
  kafka: { enabled: false }
  mongodb: { enabled: false }
services:
  - { match: { exe: $bin/pstest-cd-nginx }, name: pstest-cd-nginx }
  - { match: { exe: $bin/pstest-cd-wrk }, name: pstest-cd-wrk }
  - { match: { exe: $bin/pstest-cd-mdbd }, name: pstest-cd-mdbd }
  - { match: { exe: $bin/pstest-cd-mdb }, name: pstest-cd-mdb }
sinks: { stdout: { format: prometheus } }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" ||
	fail "periscoped did not start"
wait_for_snapshots 2 || fail "no flush before the attack"
rss_before=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status")

# ---- HTTP: PATHS distinct paths, /a/<letters>/<letters>, from a counter ---------------------
cat >"$work/paths.lua" <<LUA
local n, limit, done = 0, $PATHS, 0
local letters = "bcdfghjklmnpqrstvwxz"
local function word(i)
	local s = ""
	repeat
		local d = i % 20
		s = s .. letters:sub(d + 1, d + 1) .. "a"
		i = (i - d) / 20
	until i == 0
	return s
end
request = function()
	n = n + 1
	if n > limit then return wrk.format("GET", "/a/done") end
	return wrk.format("GET", "/a/" .. word(n) .. "/" .. word(n * 7 + 3))
end
-- One connection, one request at a time: nothing is in flight after the last response,
-- so wrk's count is the ground truth. The thread stops at once; wrk's main thread sleeps out
-- -d unless interrupted, and its SIGINT handler ends the run with the summary (sent from
-- the background: system() ignores SIGINT in wrk until the shell it ran returns).
response = function(status, headers, body)
	done = done + 1
	if done == limit then
		wrk.thread:stop()
		os.execute("(sleep 0.2; kill -INT \$PPID) &")
	end
end
LUA
start=$SECONDS
"$bin/pstest-cd-wrk" -t1 -c1 -d600s -s "$work/paths.lua" "http://127.0.0.1:$HTTP_PORT" \
	>"$work/wrk.out" 2>&1 || fail "wrk failed: $(cat "$work/wrk.out")"
http_secs=$((SECONDS - start))
REQUESTS=$(awk '/requests in/ { print $1 }' "$work/wrk.out")
[ -n "$REQUESTS" ] && [ "$REQUESTS" -ge "$PATHS" ] || fail "wrk: $(cat "$work/wrk.out")"
grep -q "Non-2xx" "$work/wrk.out" && fail "wrk saw errors: $(cat "$work/wrk.out")"

# ---- MySQL: TABLES distinct missing tables ------------------------------------------------
for i in $(seq "$TABLES"); do echo "SELECT * FROM t_$(printf '%x' "$i" | tr 0-9 g-p) WHERE id = 1;"; done \
	>"$work/tables.sql"
"$bin/pstest-cd-mdb" --no-defaults -h127.0.0.1 -P"$MYSQL_PORT" -uapp -ppw --skip-ssl --force \
	pstest_cd <"$work/tables.sql" >"$work/mysql.out" 2>&1
got=$(grep -c 'ERROR 1146' "$work/mysql.out")
[ "$got" = "$TABLES" ] || fail "mariadb: $got of $TABLES statements failed as expected: $(tail -2 "$work/mysql.out")"

SNAPSHOT=$work/snapshot.prom
wait_for_snapshots 2 || fail "no flush after the attack"
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$DAEMON_PID/status")
rss_after=$(awk '/^VmRSS:/ { print $2 }' "/proc/$DAEMON_PID/status")
final_snapshot "$SNAPSHOT"
DIFF=$work/diff
: >"$DIFF"

# HTTP: every request counted, in at most MAX_ROUTES routes and /{other}.
nginx='service_name="pstest-cd-nginx"'
SD=http_server_request_duration_seconds_count
expect "$REQUESTS" $SD "$nginx"
routes=$(grep "^$SD{.*$nginx" "$SNAPSHOT" | grep -o 'http_route="[^"]*"' | sort -u | wc -l)
other=$(series_value "$SNAPSHOT" $SD "$nginx" 'http_route="/{other}"')
if [ "$routes" -gt $((MAX_ROUTES + 1)) ] || [ "$other" = 0 ]; then
	echo "  $routes routes (max_routes $MAX_ROUTES), $other requests in /{other}" >>"$DIFF"
	failures=$((failures + 1))
fi
# MySQL: at most MAX_SERIES series, the rest in _other, each fold counted as dropped. The
# mysql plugin also follows Unix-socket connections of any MySQL on the host (other tests'),
# so _other may hold more than ours: each of our tables that kept a series of its own holds
# its one statement, and the rest of our statements are in _other.
CD=db_client_operation_duration_seconds_count
mdb='service_name="pstest-cd-mdb"'
series=$(grep -c "^$CD{" "$SNAPSHOT")
own=$(grep -c "^$CD{.*$mdb" "$SNAPSHOT")
expect "$own" $CD "$mdb"
folded=$(series_value "$SNAPSHOT" $CD 'db_collection_name="_other"')
dropped=$(series_value "$SNAPSHOT" periscope_series_dropped_total \
	'metric="db_client_operation_duration_seconds"')
if [ "$series" -gt $((MAX_SERIES + 1)) ] || [ "$folded" -lt $((TABLES - own)) ] ||
	[ "$dropped" != "$folded" ]; then
	echo "  db_client: $series series (cap $MAX_SERIES), $own of ours with a series of their own," \
		"$folded in _other (want >= $((TABLES - own))), $dropped dropped" >>"$DIFF"
	failures=$((failures + 1))
fi
total_series=$(grep -c -v '^#' "$SNAPSHOT")
# Not a cap at work but the load: events the ring buffers lost (a count short by these is
# the machine's limit, not the cap's).
lost=$(series_value "$SNAPSHOT" periscope_events_dropped_total)

echo "http: $REQUESTS requests ($PATHS distinct paths) in ${http_secs}s -> $routes routes, $other in /{other}"
echo "mysql: $TABLES tables -> $series series ($own ours), $folded in _other, periscope_series_dropped_total $dropped"
echo "snapshot: $total_series lines, periscope_events_dropped_total $lost; daemon RSS ${rss_before} kB before, ${rss_after} kB after, peak (VmHWM) ${hwm} kB"
if [ $((hwm - rss_before)) -gt "$RSS_GROWTH_KB" ]; then
	echo "  peak RSS grew $((hwm - rss_before)) kB, more than $RSS_GROWTH_KB kB" >>"$DIFF"
	failures=$((failures + 1))
fi

if [ "$failures" -gt 0 ]; then
	echo "FAIL: the caps did not hold:" >&2
	cat "$DIFF" >&2
	exit 1
fi
echo "PASS"
