#!/usr/bin/env bash
# periscoped as a user meets it: CLI, exit codes, config errors with file:line:column,
# a broken plugin that does not stop the others, --duration, SIGHUP reload, SIGTERM.
set -u
. "$(dirname "$0")/lib.sh"

work=$(mktemp -d)
trap 'stop_daemon; rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"' EXIT
fail=0
check() { # description, then a command that must succeed
	local what=$1; shift
	if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fail=1; fi
}
exit_code() { # expected code, command...
	local want=$1; shift
	"$@" >"$work/out" 2>"$work/err"
	local got=$?
	[ "$got" = "$want" ] || { echo "  exit $got, want $want; stderr:"; sed 's/^/    /' "$work/err"; return 1; }
}

check "--version" exit_code 0 "$PERISCOPED" --version
check "--version prints the version" grep -q '^periscoped [0-9]' "$work/out"
check "unknown option is a usage error" exit_code 2 "$PERISCOPED" --bogus
check "--duration needs seconds" exit_code 2 "$PERISCOPED" --duration soon
check "missing config file" exit_code 78 "$PERISCOPED" -c "$work/none.yaml" --check-config

cat >"$work/typo.yaml" <<'YAML'
daemon:
  flush_interval: 1s
  flush_intreval: 2s
YAML
check "unknown key is a config error" exit_code 78 "$PERISCOPED" -c "$work/typo.yaml" --check-config
check "the error names file:line:column" grep -q "typo.yaml:3:3: .*flush_intreval" "$work/err"

cat >"$work/badvalue.yaml" <<'YAML'
sinks:
  stdout: { format: xml }
YAML
check "bad value is a config error" exit_code 78 "$PERISCOPED" -c "$work/badvalue.yaml" --check-config
check "bad value error names the choices" grep -q "badvalue.yaml:2:21: .*table" "$work/err"

cat >"$work/badsink.yaml" <<'YAML'
sinks:
  prometheus_textfile: { directory: /tmp, filename: periscope.txt }
YAML
check "--check-config judges sink settings too" exit_code 78 "$PERISCOPED" -c "$work/badsink.yaml" --plugin-dir "$PLUGIN_DIR" --check-config
check "the sink rejection names file:line:column and the setting" grep -q "badsink.yaml:2:53: filename 'periscope.txt'" "$work/err"

# Plugin values are checked against the plugin's own ranges by the core, where they were written.
cat >"$work/capture.yaml" <<'YAML'
plugins:
  http: { capture_bytes: 100000 }
YAML
check "--check-config rejects http.capture_bytes out of range" exit_code 78 "$PERISCOPED" -c "$work/capture.yaml" --plugin-dir "$PLUGIN_DIR" --check-config
check "the range error names file:line:column and the range" grep -q "capture.yaml:2:26: capture_bytes: '100000' is out of range (64 to 4096)" "$work/err"
cat >"$work/maxconn.yaml" <<'YAML'
plugins: { tcpflow: { max_connections: 18446744073709551615 } }
YAML
check "--check-config rejects tcpflow.max_connections out of range" exit_code 78 "$PERISCOPED" -c "$work/maxconn.yaml" --plugin-dir "$PLUGIN_DIR" --check-config
check "the range error names file:line:column" grep -q "maxconn.yaml:1:40: max_connections: '18446744073709551615' is out of range (1 to 16777216)" "$work/err"
cat >"$work/noplugin.yaml" <<'YAML'
plugins:
  htp:
    ports: [80]
YAML
check "a section for a missing plugin is a config error" exit_code 78 "$PERISCOPED" -c "$work/noplugin.yaml" --plugin-dir "$PLUGIN_DIR" --check-config
check "... reported at the section's own key" grep -q "noplugin.yaml:2:3: plugins.htp: no usable plugin" "$work/err"
check "--instance takes names only" exit_code 2 "$PERISCOPED" --instance ../etc --check-config

plugins=$work/plugins
mkdir -m 755 "$plugins"
cp "$PLUGIN_DIR/tcpflow.so" "$plugins/"
printf 'not an ELF file\n' >"$plugins/broken.so"
chmod 644 "$plugins"/*.so
cat >"$work/good.yaml" <<'YAML'
daemon: { flush_interval: 500ms }
plugins: { tcpflow: {} }
sinks: { stdout: { format: prometheus } }
YAML
check "--check-config accepts a good config" exit_code 0 "$PERISCOPED" -c "$work/good.yaml" --plugin-dir "$plugins" --check-config
check "--check-config says OK" grep -q "configuration OK" "$work/out"
check "--list-plugins lists tcpflow" exit_code 0 "$PERISCOPED" --plugin-dir "$plugins" --list-plugins
check "--list-plugins shows its keys" grep -q "max_connections" "$work/out"

require_root

check "--duration runs and exits 0" exit_code 0 "$PERISCOPED" -c "$work/good.yaml" --plugin-dir "$plugins" --duration 2 --instance "$(test_instance)"
check "the broken plugin makes it degraded" grep -q "warn  core: degraded: 1 of 2 plugins up (broken refused by the loader)" "$work/err"
check "a broken plugin is reported with its reason" grep -q "broken" "$work/err"
last_snapshot <"$work/out" >"$work/snap"
check "broken plugin is down" series_is "$work/snap" periscope_plugin_up 'plugin="broken"' 0
check "tcpflow is up beside it" series_is "$work/snap" periscope_plugin_up 'plugin="tcpflow"' 1

# --duration and the flush interval count from when the daemon is up: every plugin loading
# takes seconds here, which used to come out of --duration (it ended at the first loop turn).
cat >"$work/all.yaml" <<'YAML'
daemon: { flush_interval: 500ms }
sinks: { stdout: { format: prometheus } }
YAML
"$PERISCOPED" -c "$work/all.yaml" --plugin-dir "$PLUGIN_DIR" --duration 2 \
	--instance "$(test_instance)" >"$work/dur.out" 2>"$work/dur.err" &
dur_pid=$!
up_at='' elapsed_at=''
while kill -0 $dur_pid 2>/dev/null; do
	[ -n "$up_at" ] || ! grep -q "running:" "$work/dur.err" || up_at=$(date +%s%N)
	[ -n "$elapsed_at" ] || ! grep -q "duration elapsed" "$work/dur.err" || elapsed_at=$(date +%s%N)
	sleep 0.02
done
wait $dur_pid
check "--duration exits 0 with every plugin" [ $? = 0 ]
up_ms=$(( (${elapsed_at:-0} - ${up_at:-0}) / 1000000 ))
echo "     up $(grep -o 'in [0-9]* ms' "$work/dur.err"), then --duration 2 elapsed after $up_ms ms"
check "--duration 2 counts from when the daemon is up" test -n "$up_at" -a "$up_ms" -ge 1800
check "... four flushes at 500ms in those 2 s, the final one included" \
	[ "$(grep -c '^# periscope snapshot' "$work/dur.out")" -ge 4 ]

# SIGHUP: a bad file is rejected and the running config stays; a good one takes effect.
cp "$work/good.yaml" "$work/live.yaml"
start_daemon -c "$work/live.yaml" --plugin-dir "$plugins"
cp "$work/typo.yaml" "$work/live.yaml"
kill -HUP "$DAEMON_PID"
check "bad reload is rejected" wait_for_log "reload rejected"
check "daemon survives a bad reload" kill -0 "$DAEMON_PID"
cat >"$work/live.yaml" <<'YAML'
daemon: { flush_interval: 500ms, labels: { cluster: reloaded } }
plugins: { tcpflow: {} }
sinks: { stdout: { format: prometheus } }
YAML
kill -HUP "$DAEMON_PID"
check "good reload is applied" wait_for_log "running: tcpflow"
sleep 1.5
stop_daemon
check "SIGTERM exits 0" [ "$DAEMON_STATUS" = 0 ]
last_snapshot <"$DAEMON_OUT" >"$work/snap"
check "static label from the reloaded config" grep -q 'periscope_build_info{service_name="periscoped",version="[^"]*",cluster="reloaded"} 1' "$work/snap"

# Nothing to monitor is a failure, not a quiet success: exit 1 with the reasons.
nothing=$work/nothing
mkdir -m 755 "$nothing"
cat >"$work/good-noplugins.yaml" <<'YAML'
daemon: { flush_interval: 500ms }
sinks: { stdout: { format: prometheus } }
YAML
cp "$plugins/broken.so" "$nothing/"
fails_init=${top_builddir:-.}/tests/unit/plugins/.libs/fails_init.so
[ -f "$fails_init" ] && install -m 644 "$fails_init" "$nothing/"
check "no plugin up: exit 1" exit_code 1 "$PERISCOPED" -c "$work/good-noplugins.yaml" --plugin-dir "$nothing" --duration 2 --instance "$(test_instance)"
check "... saying why" grep -q "error core: no plugin is running: 0 of [12] plugins up (.*broken refused by the loader)" "$work/err"
if [ -f "$fails_init" ]; then
	check "... naming the plugin that failed and its reason" grep -q "fails_init down: init failed: No such device" "$work/err"
fi

# One periscoped per instance: a second one is refused and names the first; another name runs.
start_daemon -c "$work/good.yaml" --plugin-dir "$plugins"
check "a second daemon of the same instance is refused" exit_code 1 "$PERISCOPED" -c "$work/good.yaml" --plugin-dir "$plugins" --duration 1 --instance "$DAEMON_INSTANCE"
check "... naming the first one's pid" grep -q "periscoped pid $DAEMON_PID already runs instance '$DAEMON_INSTANCE'" "$work/err"
check "--instance with another name runs beside it" exit_code 0 "$PERISCOPED" -c "$work/good.yaml" --plugin-dir "$plugins" --duration 1 --instance "$DAEMON_INSTANCE-2"
check "the first one still runs" kill -0 "$DAEMON_PID"
check "it holds its pid file" grep -qx "$DAEMON_PID" "/run/periscope/periscoped-$DAEMON_INSTANCE.pid"
kill -TERM "$DAEMON_PID" && wait "$DAEMON_PID"
check "which it removes when it stops" [ ! -e "/run/periscope/periscoped-$DAEMON_INSTANCE.pid" ]
DAEMON_PID=

# A reload is transactional: a plugin value out of range, or a plugin that fails to initialise,
# rejects it, and every plugin keeps running; a good change swaps in a new instance.
reloading=$work/reloading
mkdir -m 755 "$reloading"
cp "$PLUGIN_DIR/http.so" "$PLUGIN_DIR/tcpflow.so" "$reloading/"
chmod 644 "$reloading"/*.so
live_config() { # capture_bytes
	cat >"$work/live.yaml" <<YAML
daemon: { flush_interval: 500ms }
plugins: { http: { capture_bytes: $1 }, tcpflow: {} }
sinks: { stdout: { format: prometheus } }
YAML
}
plugins_up() { # snapshot file: both plugins' periscope_plugin_up must be 1
	series_is "$1" periscope_plugin_up 'plugin="http"' 1 && series_is "$1" periscope_plugin_up 'plugin="tcpflow"' 1
}
live_config 1024
start_daemon -c "$work/live.yaml" --plugin-dir "$reloading" --log-level debug
check "http and tcpflow start" grep -q "running: http, tcpflow (2 of 2 plugins up)" "$DAEMON_ERR"
live_config 100000
kill -HUP "$DAEMON_PID"
check "a reload with capture_bytes out of range is rejected" wait_for_log "reload rejected"
check "... at file:line:column" grep -q "live.yaml:2:35: capture_bytes: '100000' is out of range" "$DAEMON_ERR"
wait_for_snapshots 2
last_snapshot <"$DAEMON_OUT" >"$work/snap"
check "... and every plugin stays up" plugins_up "$work/snap"
check "... with no plugin taken down" bash -c "! grep -E 'plugin .* down|running: .*1 of 2' '$DAEMON_ERR'"
if [ -f "$fails_init" ]; then
	live_config 1024
	install -m 644 "$fails_init" "$reloading/"
	kill -HUP "$DAEMON_PID"
	check "a reload whose new plugin fails init is rejected" wait_for_log "reload rejected \(a plugin failed to initialise\)"
	check "... naming it and why" grep -q "reload: plugin fails_init: init failed: No such device" "$DAEMON_ERR"
	wait_for_snapshots 2
	last_snapshot <"$DAEMON_OUT" >"$work/snap"
	check "... and every plugin stays up" plugins_up "$work/snap"
	rm -f "$reloading/fails_init.so"
fi
live_config 512
kill -HUP "$DAEMON_PID"
check "a good changed value is swapped in" wait_for_log "running: http, tcpflow \(2 of 2 plugins up\)"
check "... as a new http instance initialised beside the running one" grep -q "reload: http: section changed, initialising a new instance beside the running one" "$DAEMON_ERR"
check "... while tcpflow keeps its instance" grep -q "reload: tcpflow: section unchanged, the running instance stays" "$DAEMON_ERR"
check "... and starts once" [ "$(grep -c 'plugin tcpflow started' "$DAEMON_ERR")" = 1 ]
wait_for_snapshots 2
last_snapshot <"$DAEMON_OUT" >"$work/snap"
check "... with both plugins up" plugins_up "$work/snap"
# A plugin a reload disables is not a failed one: its periscope_plugin_up series goes.
cat >"$work/live.yaml" <<'YAML'
daemon: { flush_interval: 500ms }
plugins: { http: { enabled: false }, tcpflow: {} }
sinks: { stdout: { format: prometheus } }
YAML
kill -HUP "$DAEMON_PID"
check "a reload that disables http is applied" wait_for_log "running: tcpflow \(1 of 1 plugins up\)"
wait_for_snapshots 2
last_snapshot <"$DAEMON_OUT" >"$work/snap"
check "... and http's periscope_plugin_up series is gone" \
	bash -c "! grep -q 'periscope_plugin_up{.*plugin=\"http\"' '$work/snap'"
check "... while tcpflow's stays 1" series_is "$work/snap" periscope_plugin_up 'plugin="tcpflow"' 1
stop_daemon

# --log-level debug is readable: periscope's own decisions, libbpf's chatter only at trace.
"$PERISCOPED" -c "$work/live.yaml" --plugin-dir "$reloading" --log-level debug --duration 3 --instance "$(test_instance)" >/dev/null 2>"$work/debug.log"
check "debug: no libbpf lines" bash -c "! grep -q 'libbpf:' '$work/debug.log'"
check "debug: has periscope's own debug lines" grep -q "^debug " "$work/debug.log"
size=$(wc -c <"$work/debug.log")
check "debug: under 32 KiB in 3 s (got $size bytes)" [ "$size" -lt 32768 ]
"$PERISCOPED" -c "$work/live.yaml" --plugin-dir "$reloading" --log-level trace --duration 1 --instance "$(test_instance)" >/dev/null 2>"$work/trace.log"
check "trace: libbpf's log is there" grep -q "^trace libbpf: " "$work/trace.log"

exit $fail
