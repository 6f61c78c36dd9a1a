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
check "the sink rejection says why" grep -q "prometheus_textfile" "$work/err"

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

check "--duration runs and exits 0" exit_code 0 "$PERISCOPED" -c "$work/good.yaml" --plugin-dir "$plugins" --duration 2
check "a broken plugin is reported with its reason" grep -q "broken" "$work/err"
last_snapshot <"$work/out" >"$work/snap"
check "broken plugin is down" series_is "$work/snap" periscope_plugin_up 'plugin="broken"' 0
check "tcpflow is up beside it" series_is "$work/snap" periscope_plugin_up 'plugin="tcpflow"' 1

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

exit $fail
