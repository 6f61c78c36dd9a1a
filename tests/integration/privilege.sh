#!/usr/bin/env bash
# Least privilege, under attack:
#   1. plugins that are not root's alone are refused, each with its reason, and the rest
#      run: a file writable by others, a file owned by nobody, a symbolic link, and then
#      a whole directory writable by others
#   2. a directory swapped between the loader's check and its dlopen: the plugin path goes
#      through a link in a directory nobody (uid 65534) owns, which nobody flips in a tight
#      loop between root's plugin directory and nobody's own directory, whose http.so runs
#      code the moment it is loaded. periscoped --check-config loads the plugins
#      PRIV_RACE_RUNS times; nobody's code must never run
#   3. after loading, the daemon's capabilities are the reduced set (CapEff, CapPrm,
#      CapBnd; none inheritable or ambient; no_new_privs)
#   4. what it writes (the textfile, its pid file) is root's, mode 0644, with umask 000
set -u
. "$(dirname "$0")/lib.sh"

RACE_RUNS=${PRIV_RACE_RUNS:-150}
NOBODY=65534

require_root
require_tools "apt-get install util-linux gcc python3" setpriv cc "$PYTHON"

make_work
plugin_src=$PLUGIN_DIR

# Copies of the real plugins, root's and 0755 in a root-only directory.
good=$work/good
mkdir -m 0755 "$good"
for p in http kafka mongodb mysql; do
	install -m 0755 "$plugin_src/$p.so" "$good/$p.so"
done

cat >"$work/min.yaml" <<YAML
plugins:
  tcpflow: { enabled: false }
  resources: { enabled: false }
sinks: { stdout: { format: prometheus } }
YAML

# ---- 1. refusals -----------------------------------------------------------------------------
bad=$work/bad
mkdir -m 0755 "$bad"
install -m 0755 "$plugin_src/http.so" "$bad/http.so"    # the one that must run
install -m 0666 "$plugin_src/kafka.so" "$bad/kafka.so"  # writable by others
install -m 0755 "$plugin_src/mongodb.so" "$bad/mongodb.so"
chown $NOBODY:$NOBODY "$bad/mongodb.so"                 # not root's
ln -s "$good/mysql.so" "$bad/mysql.so"                  # a link, to a good file even
"$PERISCOPED" --instance "$(test_instance)" -c "$work/min.yaml" --plugin-dir "$bad" --duration 2 >"$work/bad.out" \
	2>"$work/bad.err"
failures=0
check() { # WHAT COMMAND...
	local what=$1
	shift
	"$@" || { echo "  $what" >&2; failures=$((failures + 1)); }
}
logged() { grep -q -F -- "$1" "$work/bad.err"; }
up() { grep -q -E "^periscope_plugin_up\{[^}]*plugin=\"$1\"[^}]*\} $2\$" "$work/bad.out"; }
check "a plugin writable by others is not refused with its reason" \
	logged "refusing plugin $bad/kafka.so: the file is writable by group or others (mode 0666)"
check "a plugin owned by nobody is not refused with its reason" \
	logged "refusing plugin $bad/mongodb.so: the file is owned by uid $NOBODY"
check "a symbolic link is not refused with its reason" \
	logged "refusing plugin $bad/mysql.so: not a regular file"
for p in kafka mongodb mysql; do
	check "plugin $p is not reported down" up $p 0
done
check "the good plugin does not run beside the refused ones" up http 1

chmod 0777 "$bad"
chmod 0755 "$bad/kafka.so"
chown root:root "$bad/mongodb.so"
rm "$bad/mysql.so"
"$PERISCOPED" --instance "$(test_instance)" -c "$work/min.yaml" --plugin-dir "$bad" --duration 1 >"$work/bad.out" \
	2>"$work/bad.err"
check "plugins in a directory writable by others are not refused" \
	logged "refusing plugin $bad/http.so: directory $bad is writable by group or others (mode 0777)"
check "periscoped runs with plugins from a directory writable by others" \
	grep -q "no plugin is running" "$work/bad.err"

# ---- 2. the swap between check and load -----------------------------------------------------
attacker=$work/attacker
evil=$attacker/evil
mkdir -m 0755 "$attacker" "$evil"
mark=$work/evil-code-ran
cat >"$work/evil.c" <<C
#include <fcntl.h>
#include <unistd.h>
/* Runs inside whoever dlopen()s this file. */
__attribute__((constructor)) static void evil(void)
{
	int fd = open("$mark", O_WRONLY | O_CREAT | O_APPEND, 0644);

	if (fd >= 0) {
		write(fd, "ran\n", 4);
		close(fd);
	}
}
C
cc -shared -fPIC -o "$evil/http.so" "$work/evil.c" || fail "cannot build the attacker's plugin"
chmod 0755 "$evil/http.so"
ln -s "$good" "$attacker/plugins"
chown -h -R $NOBODY:$NOBODY "$attacker"
# nobody flips attacker/plugins between the two directories, atomically (rename over it).
setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups "$PYTHON" -c '
import os, sys
link, targets = sys.argv[1], sys.argv[2:]
tmp, i = link + ".new", 0
while True:
    os.symlink(targets[i % 2], tmp)
    os.replace(tmp, link)
    i += 1
' "$attacker/plugins" "$evil" "$good" &
children+=($!)
swapper=$!
loaded=0 refused=0
for _ in $(seq "$RACE_RUNS"); do
	"$PERISCOPED" -c "$work/min.yaml" --plugin-dir "$attacker/plugins" --check-config \
		>"$work/race.out" 2>"$work/race.err"
	if grep -q "configuration OK; plugins: .*http" "$work/race.out"; then
		loaded=$((loaded + 1))
	else
		refused=$((refused + 1))
	fi
	[ -e "$mark" ] && break
done
kill -0 $swapper 2>/dev/null || fail "the swapper died"
kill $swapper
echo "race: $RACE_RUNS loads through a link flipped by nobody: $loaded loaded root's plugins," \
	"$refused refused"
check "nobody's code ran inside periscoped (its plugin was loaded through the swapped link)" \
	test ! -e "$mark"
check "no load got through during the swaps (the test raced nothing)" test "$loaded" -gt 0

# ---- 3. capabilities after loading, 4. what it writes ----------------------------------------
textdir=$work/textfile
mkdir -m 0755 "$textdir"
export RUNTIME_DIRECTORY=$work/run
mkdir -m 0755 "$RUNTIME_DIRECTORY"
cat >"$work/run.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins:
  tcpflow: { enabled: false }
sinks:
  stdout: { format: prometheus }
  prometheus_textfile: { directory: $textdir }
YAML
# A careless umask: the daemon's files must not inherit it.
umask 000
start_daemon -c "$work/run.yaml" --plugin-dir "$good" || fail "periscoped did not start"
umask 022
pidfile=$RUNTIME_DIRECTORY/periscoped-$DAEMON_INSTANCE.pid
[ -e "$pidfile" ] || fail "no pid file $pidfile"
wait_for_log "capabilities after loading" 10 || fail "no capability drop logged"
for _ in $(seq 100); do
	[ -s "$textdir/periscope.prom" ] && break
	sleep 0.1
done
status=/proc/$DAEMON_PID/status
# bpf 39, perfmon 38, sys_admin 21, sys_ptrace 19, dac_read_search 2.
want=$(printf '%016x' $(((1 << 39) | (1 << 38) | (1 << 21) | (1 << 19) | (1 << 2))))
for f in CapEff CapPrm CapBnd; do
	got=$(awk -v f="$f:" '$1 == f { print $2 }' "$status")
	check "$f is $got, not $want" test "$got" = "$want"
done
for f in CapInh CapAmb; do
	got=$(awk -v f="$f:" '$1 == f { print $2 }' "$status")
	check "$f is $got, not 0" test "$got" = 0000000000000000
done
check "no_new_privs is not set" grep -q -E '^NoNewPrivs:[[:space:]]+1' "$status"
for f in "$textdir"/* "$pidfile"; do
	got=$(stat -c '%a %u:%g' "$f")
	check "$f is $got, not 644 0:0" test "$got" = "644 0:0"
done
echo "capabilities: CapEff $(awk '/^CapEff:/ { print $2 }' "$status");" \
	"files: $(for f in "$textdir"/* "$pidfile"; do stat -c '%n %a %U' "$f"; done | sed "s|$work/||" | tr '\n' ' ')"
stop_daemon
check "periscoped exited with $DAEMON_STATUS" test "$DAEMON_STATUS" = 0

if [ "$failures" -gt 0 ]; then
	echo "FAIL: $failures findings" >&2
	exit 1
fi
echo "PASS"
