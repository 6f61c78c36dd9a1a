#!/usr/bin/env bash
# `make check-packaging`: the packages install and run where users put them.
#
#  1. the .deb from the `make dist` tarball (cp -r packaging/debian debian; apt-get build-dep;
#     dpkg-buildpackage -us -uc -b); lintian reports no error; it carries every plugin the
#     build made, the man pages, the unit, the conffiles
#  2. a Debian 12 root from debootstrap (made while 1 builds); the .deb installed there
#     with apt, dependencies from Debian; in that root: --check-config of the shipped
#     configuration, --list-plugins (every plugin), a --duration run that records exactly
#     the N curls made inside the root
#  3. the example plugin built there against the installed periscope-dev with pkg-config,
#     installed into the plugin directory and loaded by the installed daemon
#  4. the .rpm and -devel .rpm with rpmbuild -bb (--nodeps: Fedora's build dependencies do
#     not exist on Debian); their contents, %config(noreplace), the systemd scriptlets
#  5. the unit: systemd-analyze verify clean, security exposure at most 5.0, every system
#     call periscoped makes (start, a reload that re-attaches a plugin, flushes, scrapes)
#     allowed by its SystemCallFilter
#  6. the container image (the debootstrap root with the .deb, podman import), run with
#     the DaemonSet's capabilities and mounts and its ConfigMap: /healthz 200, the exact
#     count of N curls made on the host, the node and cluster labels, /metrics passes promtool
#
# Environment (set by make): DIST_TARBALL, PACKAGE_VERSION, PLUGIN_DIR, PERISCOPED, top_srcdir.
# KEEP_WORK=1 keeps the work directory. Needs root and the Debian mirror.
set -u
. "$(dirname "$0")/lib.sh"

: "${DIST_TARBALL:?run through make check-packaging}"
: "${PACKAGE_VERSION:?run through make check-packaging}"
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
N_CURLS=7
PROMTOOL=${PROMTOOL:-/usr/bin/promtool}
IMAGE=localhost/periscope-check:$PACKAGE_VERSION-$$

require_root
for tool in dpkg-buildpackage lintian debootstrap rpmbuild rpm podman runc systemd-analyze \
	strace setpriv "$PROMTOOL" curl; do
	command -v "$tool" >/dev/null 2>&1 ||
		fail "needs $tool (./quickstart.sh test installs it: packages debhelper lintian debootstrap rpm podman runc strace prometheus curl)"
done

work=$(mktemp -d /var/tmp/periscope-packaging.XXXXXX)
SERVER_PID='' BOOT_PID='' CONTAINER=''
cleanup() {
	[ -z "$CONTAINER" ] || podman --runtime runc rm -f "$CONTAINER" >/dev/null 2>&1
	podman rmi -f "$IMAGE" >/dev/null 2>&1
	[ -z "$SERVER_PID" ] || kill "$SERVER_PID" 2>/dev/null
	[ -z "$BOOT_PID" ] || kill "$BOOT_PID" 2>/dev/null
	[ -z "${DAEMON_PID:-}" ] || kill -KILL "$DAEMON_PID" 2>/dev/null
	wait 2>/dev/null
	if [ -n "${KEEP_WORK:-}" ]; then
		echo "work directory kept: $work"
	else
		rm -rf "$work"
	fi
	rm -f "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT

t_start=$SECONDS
step() {
	printf '\n==== %s (%ds so far)\n' "$*" $((SECONDS - t_start))
}
# The plugins this build made: the packages must carry each of them, no list kept here.
plugins=$(cd "$PLUGIN_DIR" && ls *.so | sed 's/\.so$//' | sort | tr '\n' ' ')
[ -n "$plugins" ] || fail "no plugins in $PLUGIN_DIR"
echo "plugins of this build: $plugins"

# in_root CMD...: runs CMD chrooted into $root, with /proc, /sys (tracefs included) and
# /dev of the host bound in a private mount namespace: they vanish with it.
in_root() {
	unshare --mount --propagation private /bin/sh -c '
		root=$1; shift
		mount --rbind /proc "$root/proc" && mount --rbind /sys "$root/sys" &&
			mount --rbind /dev "$root/dev" || exit 1
		exec chroot "$root" "$@"' sh "$root" "$@"
}

# ---- 1. the .deb, while debootstrap makes the root ------------------------------------------

root=$work/root
step "debootstrap $SUITE from $MIRROR (in the background) and the .deb"
debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 &
BOOT_PID=$!

mkdir "$work/deb"
tar -C "$work/deb" -xzf "$DIST_TARBALL" || fail "cannot unpack $DIST_TARBALL"
src=$work/deb/periscope-$PACKAGE_VERSION
cp -r "$src/packaging/debian" "$src/debian"
(cd "$src" && apt-get -o DPkg::Lock::Timeout=600 build-dep -y -q ./ >"$work/build-dep.log" 2>&1) ||
	fail "apt-get build-dep failed:$(tail -n 20 "$work/build-dep.log" | sed 's/^/\n  /')"
(cd "$src" && DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -us -uc -b >"$work/deb-build.log" 2>&1) ||
	fail "dpkg-buildpackage failed:$(tail -n 30 "$work/deb-build.log" | sed 's/^/\n  /')"
deb=$work/deb/periscope_${PACKAGE_VERSION}-1_amd64.deb
devdeb=$work/deb/periscope-dev_${PACKAGE_VERSION}-1_amd64.deb
[ -f "$deb" ] && [ -f "$devdeb" ] || fail "no .deb files: $(ls "$work/deb")"
echo "built: $(cd "$work/deb" && ls *.deb | tr '\n' ' ')"

lintian --no-tag-display-limit "$work/deb/periscope_${PACKAGE_VERSION}-1_amd64.changes" \
	>"$work/lintian.log" 2>&1
grep -E '^E: ' "$work/lintian.log" && fail "lintian reports errors (above)"
echo "ok: lintian: no error; $(grep -c '^W: ' "$work/lintian.log") warning(s): $(grep '^W: ' "$work/lintian.log" | awk '{print $3}' | sort -u | tr '\n' ' ')"

dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/deb.files"
for p in $plugins; do
	grep -qx "/usr/lib/x86_64-linux-gnu/periscope/$p.so" "$work/deb.files" || fail "the .deb lacks $p.so"
done
for f in /usr/sbin/periscoped /lib/systemd/system/periscope.service \
	/usr/libexec/periscope/periscope-reload /usr/share/man/man8/periscoped.8.gz \
	/usr/share/man/man5/periscope.yaml.5.gz /etc/periscope/periscope.yaml /etc/periscope/conf.d/; do
	grep -qx "$f" "$work/deb.files" || fail "the .deb lacks $f"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/conffiles"
grep -qx /etc/periscope/periscope.yaml "$work/conffiles" || fail "periscope.yaml is not a conffile"
dpkg-deb -c "$devdeb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/dev.files"
for h in "$top_srcdir"/core/include/periscope/*.h; do
	grep -qx "/usr/include/periscope/$(basename "$h")" "$work/dev.files" ||
		fail "periscope-dev lacks $(basename "$h")"
done
grep -qx /usr/lib/x86_64-linux-gnu/pkgconfig/periscope-plugin.pc "$work/dev.files" ||
	fail "periscope-dev lacks periscope-plugin.pc"
echo "ok: the .deb carries every plugin ($plugins), the unit, the man pages, the conffiles; -dev every header and the .pc"

for page in "$src"/doc/*.[58]; do
	LC_ALL=C.UTF-8 groff -man -ww -z "$page" 2>"$work/groff.log" && [ ! -s "$work/groff.log" ] ||
		fail "groff warns about $(basename "$page"):$(sed 's/^/\n  /' "$work/groff.log")"
done
echo "ok: groff -ww: no warning in the man pages"

# ---- 2. install into the debootstrap root ----------------------------------------------------

step "install the .deb into the Debian root"
wait "$BOOT_PID"
rc=$?
BOOT_PID=''
[ $rc = 0 ] || fail "debootstrap failed:$(tail -n 20 "$work/debootstrap.log" | sed 's/^/\n  /')"
# The container image gets the root as it is now, with the daemon package only.
cp /etc/resolv.conf "$root/etc/resolv.conf"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod 755 "$root/usr/sbin/policy-rc.d"
cp "$deb" "$devdeb" "$root/tmp/"
in_root apt-get update -q >"$work/apt.log" 2>&1 || fail "apt-get update in the root failed"
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -q --no-install-recommends \
	"/tmp/$(basename "$deb")" curl >>"$work/apt.log" 2>&1 ||
	fail "apt-get install of the .deb failed:$(tail -n 20 "$work/apt.log" | sed 's/^/\n  /')"
echo "ok: apt installed $(basename "$deb") with: $(sed -n 's/^Setting up \([^ ]*\) .*/\1/p' "$work/apt.log" | tr '\n' ' ')"

# The image: this root, the daemon installed, nothing for building.
step "the container image (podman import)"
rm -f "$root/usr/sbin/policy-rc.d"
in_root apt-get clean
tar -C "$root" --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
	--exclude='./var/lib/apt/lists/*' --exclude='./tmp/*' -c . |
	podman import --change 'CMD ["/usr/sbin/periscoped"]' - "$IMAGE" >"$work/import.log" 2>&1 ||
	fail "podman import failed:$(sed 's/^/\n  /' "$work/import.log")"
echo "ok: image $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1 / 1e6}'))"
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"

step "the installed daemon in the root"
in_root periscoped --check-config >"$work/check.out" 2>&1 ||
	fail "periscoped --check-config of the shipped configuration:$(sed 's/^/\n  /' "$work/check.out")"
grep -q "^/etc/periscope/periscope.yaml: configuration OK" "$work/check.out" ||
	fail "--check-config says: $(cat "$work/check.out")"
echo "ok: $(cat "$work/check.out")"
in_root periscoped --list-plugins >"$work/list.out" 2>&1 || fail "--list-plugins failed"
for p in $plugins; do
	grep -qE "^  $p " "$work/list.out" || fail "--list-plugins lacks $p:$(sed 's/^/\n  /' "$work/list.out")"
done
echo "ok: --list-plugins lists $plugins"

# A server on the host; N curls inside the root while the installed daemon runs there.
port=$(free_port)
mkdir "$work/www" && echo hello >"$work/www/index.html"
"$PYTHON" -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >/dev/null 2>&1 &
SERVER_PID=$!
wait_port "$port" || fail "the HTTP server does not listen on $port"
cat >"$root/tmp/run.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins: { http: { ports: [$port] } }
sinks: { stdout: { format: prometheus } }
YAML
# run.sh curl: a --duration run of the installed daemon; once it runs, N curls; it exits by
# itself (final flush). The duration counts from before the plugins load, which took up to
# 8 s on this busy machine: hence 20 s.
# run.sh quiet: until it runs, two flushes, then SIGTERM (its final flush).
cat >"$root/tmp/run.sh" <<SH
#!/bin/sh
periscoped -c /tmp/run.yaml --duration 20 >/tmp/run.out 2>/tmp/run.err &
pid=\$!
i=0
until grep -q "running:" /tmp/run.err 2>/dev/null; do
	i=\$((i + 1)); [ \$i -lt 600 ] || exit 1; sleep 0.1
done
if [ "\$1" = curl ]; then
	for i in \$(seq $N_CURLS); do curl -sf -o /dev/null http://127.0.0.1:$port/ || exit 2; done
else
	sleep 2.5
	kill -TERM \$pid
fi
wait \$pid
SH
chmod 755 "$root/tmp/run.sh"
in_root /tmp/run.sh curl || fail "the run in the root failed:$(sed 's/^/\n  /' "$root/tmp/run.err")"
last_snapshot <"$root/tmp/run.out" >"$work/run.snapshot"
got=$(series_value "$work/run.snapshot" http_client_request_duration_seconds_count \
	'service_name="curl"' "server_port=\"$port\"" 'http_response_status_code="200"')
[ "$got" = "$N_CURLS" ] || fail "the installed daemon counted $got curl requests to port $port, not $N_CURLS:$(grep "$port" "$work/run.snapshot" | head | sed 's/^/\n  /')"
echo "ok: the installed daemon counted exactly the $N_CURLS curls made in the root"

# ---- 3. the example plugin against the installed -dev package --------------------------------

step "the example plugin against periscope-dev"
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -q --no-install-recommends \
	"/tmp/$(basename "$devdeb")" gcc libc6-dev make >>"$work/apt.log" 2>&1 ||
	fail "apt-get install of periscope-dev failed:$(tail -n 20 "$work/apt.log" | sed 's/^/\n  /')"
cp -r "$top_srcdir/packaging/example-plugin" "$root/tmp/example-plugin"
in_root sh -c 'cd /tmp/example-plugin && make && make install' >"$work/example.log" 2>&1 ||
	fail "the example plugin does not build or install:$(sed 's/^/\n  /' "$work/example.log")"
in_root test -f /usr/lib/x86_64-linux-gnu/periscope/loadavg.so || fail "loadavg.so is not in the plugin directory"
in_root periscoped --list-plugins | grep -q '^  loadavg ' || fail "--list-plugins does not list loadavg"
in_root /tmp/run.sh quiet || fail "the daemon with the example plugin failed:$(sed 's/^/\n  /' "$root/tmp/run.err")"
last_snapshot <"$root/tmp/run.out" >"$work/example.snapshot"
[ "$(series_value "$work/example.snapshot" periscope_plugin_up 'plugin="loadavg"')" = 1 ] ||
	fail "loadavg is not up:$(sed 's/^/\n  /' "$root/tmp/run.err")"
# It reads its file once per flush: as many reads as snapshots the stdout sink wrote.
reads=$(series_value "$work/example.snapshot" periscope_example_loadavg_reads_total)
flushes=$(grep -c '^# periscope snapshot' "$root/tmp/run.out")
[ "$flushes" -ge 2 ] || fail "only $flushes flush(es) in the run with the example plugin"
[ "$reads" = "$flushes" ] || fail "loadavg read its file $reads times in $flushes flushes"
load1=$(series_value "$work/example.snapshot" periscope_example_load_average 'period="1m"')
echo "ok: loadavg.so built with pkg-config against periscope-dev, loaded by the installed daemon: up, $reads reads in $flushes flushes, load1 $load1"

# ---- 4. the rpms --------------------------------------------------------------------------------

step "rpmbuild -bb"
mkdir -p "$work/rpm"
rpmbuild -bb --nodeps --define "_topdir $work/rpm" --define "_sourcedir $(dirname "$DIST_TARBALL")" \
	--define 'debug_package %{nil}' --define '_smp_mflags -j2' \
	"$top_srcdir/packaging/rpm/periscope.spec" >"$work/rpm.log" 2>&1 ||
	fail "rpmbuild failed:$(tail -n 30 "$work/rpm.log" | sed 's/^/\n  /')"
rpmfile=$work/rpm/RPMS/x86_64/periscope-$PACKAGE_VERSION-1.x86_64.rpm
develrpm=$work/rpm/RPMS/x86_64/periscope-devel-$PACKAGE_VERSION-1.x86_64.rpm
[ -f "$rpmfile" ] && [ -f "$develrpm" ] || fail "no rpms: $(find "$work/rpm/RPMS" -type f)"
for r in "$rpmfile" "$develrpm"; do
	echo "$(basename "$r"):"
	rpm -qlp "$r" 2>/dev/null | grep -v '/\.build-id' | sed 's/^/  /'
done
rpm -qlp "$rpmfile" 2>/dev/null >"$work/rpm.files"
for p in $plugins; do
	grep -qx "/usr/lib64/periscope/$p.so" "$work/rpm.files" || fail "the rpm lacks $p.so"
done
rpm -qp --qf '[%{FILEFLAGS:fflags} %{FILENAMES}\n]' "$rpmfile" 2>/dev/null >"$work/rpm.flags"
grep -qE '^cn /etc/periscope/periscope.yaml$' "$work/rpm.flags" ||
	fail "periscope.yaml is not %config(noreplace): $(grep periscope.yaml "$work/rpm.flags")"
rpm -qp --scripts "$rpmfile" 2>/dev/null >"$work/rpm.scripts"
for s in "preset periscope.service" "disable --now periscope.service" "try-restart periscope.service"; do
	grep -q "$s" "$work/rpm.scripts" || fail "the rpm scriptlets lack '$s'"
done
echo "ok: the rpm carries every plugin ($plugins), periscope.yaml is %config(noreplace), the systemd scriptlets are there"

# ---- 5. the unit -------------------------------------------------------------------------------

step "the systemd unit"
unit=$root/lib/systemd/system/periscope.service
# The installed unit, verified on the host against the installed files: its commands point
# into the root, man finds the installed pages there (Documentation=).
mkdir "$work/unit"
sed "s|/usr/sbin/periscoped|$root/usr/sbin/periscoped|g
     s|/usr/libexec/periscope/periscope-reload|$root/usr/libexec/periscope/periscope-reload|g" \
	"$unit" >"$work/unit/periscope.service"
MANPATH=$root/usr/share/man systemd-analyze verify "$work/unit/periscope.service" >"$work/verify.log" 2>&1 ||
	fail "systemd-analyze verify fails:$(sed 's/^/\n  /' "$work/verify.log")"
[ ! -s "$work/verify.log" ] || fail "systemd-analyze verify complains:$(sed 's/^/\n  /' "$work/verify.log")"
systemd-analyze security --offline=yes --threshold=50 "$unit" >"$work/security.log" 2>&1 ||
	fail "exposure above 5.0:$(grep -E 'Overall|✗' "$work/security.log" | sed 's/^/\n  /')"
echo "ok: systemd-analyze verify is clean; $(grep -o 'Overall exposure level.*' "$work/security.log")"

# Every system call of a run (start, flushes, scrapes, a reload re-attaching a plugin) must be
# in the unit's SystemCallFilter, or systemd would kill periscoped with SIGSYS.
allowed_calls() {
	local group
	for group in $(sed -n 's/^SystemCallFilter=//p' "$unit"); do
		systemd-analyze syscall-filter "$group" 2>/dev/null | sed 's/^ *//' | grep -v '^#' |
			grep . || echo "$group"
	done
}
expand_groups() { # the unit's groups, recursively, into plain system call names
	local todo done=' ' name out=''
	todo=$(allowed_calls)
	while [ -n "$todo" ]; do
		name=${todo%%$'\n'*}
		[ "$name" = "$todo" ] && todo='' || todo=${todo#*$'\n'}
		case "$done" in *" $name "*) continue ;; esac
		done="$done$name "
		if [ "${name#@}" != "$name" ]; then
			todo="$todo"$'\n'"$(systemd-analyze syscall-filter "$name" | sed 's/^ *//' | grep -v '^#' | grep .)"
			todo=${todo#$'\n'}
		else
			out="$out$name"$'\n'
		fi
	done
	printf '%s' "$out" | sort -u
}
expand_groups >"$work/allowed.calls"
hport=$(free_port)
cat >"$work/strace.yaml" <<YAML
daemon: { flush_interval: 1s }
plugins: { tcpflow: { max_connections: 4096 }, http: { capture_bytes: 1024 } }
sinks:
  prometheus_http: { listen: "127.0.0.1:$hport" }
  prometheus_textfile: { directory: $work }
  syslog: {}
YAML
strace -f -qq -o "$work/strace.out" "$PERISCOPED" -c "$work/strace.yaml" --plugin-dir "$PLUGIN_DIR" \
	--duration 300 >/dev/null 2>"$work/strace.err" &
spid=$!
wait_port "$hport" || fail "periscoped under strace does not listen"
deadline=$((SECONDS + 60))
until grep -q "running:" "$work/strace.err"; do
	[ $SECONDS -lt $deadline ] || fail "periscoped under strace did not start:$(sed 's/^/\n  /' "$work/strace.err")"
	sleep 0.2
done
sleep 1.5
curl -sf -o /dev/null "http://127.0.0.1:$hport/metrics" || fail "scrape under strace failed"
sed -i 's/max_connections: 4096/max_connections: 8192/; s/capture_bytes: 1024/capture_bytes: 2048/' \
	"$work/strace.yaml"
traced=$(pgrep -P "$spid" -x periscoped) || fail "cannot find periscoped under strace"
kill -HUP "$traced"
deadline=$((SECONDS + 60))
until [ "$(grep -c "running:" "$work/strace.err")" -ge 2 ]; do
	[ $SECONDS -lt $deadline ] || fail "the reload under strace did not finish:$(sed 's/^/\n  /' "$work/strace.err")"
	sleep 0.2
done
sleep 1.5
curl -sf -o /dev/null -H 'Accept-Encoding: gzip' "http://127.0.0.1:$hport/metrics" || fail "scrape after the reload failed"
kill -TERM "$traced"
wait "$spid" || fail "periscoped under strace failed:$(tail "$work/strace.err" | sed 's/^/\n  /')"
for p in tcpflow http; do
	sed -n '/SIGHUP/,$p' "$work/strace.err" | grep -q "plugin $p started" ||
		fail "the reload under strace did not re-attach $p:$(sed 's/^/\n  /' "$work/strace.err")"
done
sed -n 's/^[0-9]* *\([a-z_0-9]*\)(.*/\1/p' "$work/strace.out" | sort -u >"$work/used.calls"
comm -23 "$work/used.calls" "$work/allowed.calls" >"$work/denied.calls"
[ ! -s "$work/denied.calls" ] ||
	fail "periscoped calls what the unit's SystemCallFilter denies: $(tr '\n' ' ' <"$work/denied.calls")"
echo "ok: all $(wc -l <"$work/used.calls") system calls of a run with a reload are in the unit's SystemCallFilter"

# ---- 6. the container, as the DaemonSet runs it --------------------------------------------------

step "the container image with the DaemonSet's capabilities and mounts"
k8s=$top_srcdir/packaging/k8s
"$PYTHON" - "$k8s/daemonset.yaml" "$k8s/configmap.yaml" "$work" >"$work/podman.args" <<'PY' ||
import sys, yaml
ds = yaml.safe_load(open(sys.argv[1]))
cm = yaml.safe_load(open(sys.argv[2]))
work = sys.argv[3]
spec = ds["spec"]["template"]["spec"]
c = spec["containers"][0]
sc = c["securityContext"]
assert spec.get("hostPID") is True and not sc.get("privileged")
args = ["--pid=host"] if spec["hostPID"] else []
args += ["--cap-drop=all"] + ["--cap-add=CAP_" + cap for cap in sc["capabilities"]["add"]]
if sc.get("readOnlyRootFilesystem"):
    args.append("--read-only")
if sc.get("allowPrivilegeEscalation") is False:
    args.append("--security-opt=no-new-privileges")
vols = {v["name"]: v for v in spec["volumes"]}
open(work + "/configmap.yaml", "w").write(cm["data"]["periscope.yaml"])
for m in c["volumeMounts"]:
    v = vols[m["name"]]
    ro = ":ro" if m.get("readOnly") else ""
    if "hostPath" in v:
        src = v["hostPath"]["path"]
        if src == "/var/lib/prometheus/node-exporter":
            src = work + "/textfile"   # the node's textfile directory, here a private one
        args.append("-v=%s:%s%s" % (src, m["mountPath"], ro))
    elif "configMap" in v:
        args.append("-v=%s/configmap.yaml:%s%s" % (work, m["mountPath"], ro))
    elif "emptyDir" in v:
        args.append("-v=%s/conf.d:%s%s" % (work, m["mountPath"], ro))
print("\n".join(args))
PY
	fail "cannot read the DaemonSet"
mkdir -p "$work/textfile" "$work/conf.d"
echo "podman arguments from the DaemonSet: $(tr '\n' ' ' <"$work/podman.args")"
# The init container's command, with the node name Kubernetes would give it.
init_cmd=$("$PYTHON" -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["spec"]["template"]["spec"]["initContainers"][0]["command"][2])' "$k8s/daemonset.yaml")
podman --runtime runc run --rm --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
	-e NODE_NAME=check-node -v "$work/conf.d:/conf.d" "$IMAGE" /bin/sh -c "$init_cmd" ||
	fail "the init container failed"
# The test's only addition: one-second flushes instead of 15 s.
echo "daemon: { flush_interval: 1s }" >"$work/conf.d/50-test.yaml"

cport=$(free_port)
mapfile -t dsargs <"$work/podman.args"
CONTAINER=periscope-check-$$
podman --runtime runc run -d --name "$CONTAINER" --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
	-p "127.0.0.1:$cport:9464" "${dsargs[@]}" "$IMAGE" /usr/sbin/periscoped >/dev/null ||
	fail "podman run failed"
deadline=$((SECONDS + 40))
until [ "$(curl -s -o "$work/healthz" -w '%{http_code}' --max-time 3 "http://127.0.0.1:$cport/healthz")" = 200 ]; do
	[ $SECONDS -lt $deadline ] ||
		fail "/healthz of the container never answered 200: $(cat "$work/healthz" 2>/dev/null)$(podman logs "$CONTAINER" 2>&1 | tail -n 20 | sed 's/^/\n  /')"
	sleep 0.5
done
echo "ok: the container's /healthz: $(cat "$work/healthz")"
for i in $(seq $N_CURLS); do
	curl -sf -o /dev/null "http://127.0.0.1:$port/" || fail "curl on the host failed"
done
deadline=$((SECONDS + 20))
while :; do
	curl -sf --max-time 5 "http://127.0.0.1:$cport/metrics" >"$work/container.metrics" || fail "/metrics failed"
	got=$(series_value "$work/container.metrics" http_client_request_duration_seconds_count \
		'service_name="curl"' "server_port=\"$port\"" 'http_response_status_code="200"')
	[ "$got" = "$N_CURLS" ] && break
	[ $SECONDS -lt $deadline ] ||
		fail "the container counted $got curl requests to port $port, not $N_CURLS$(podman logs "$CONTAINER" 2>&1 | tail -n 10 | sed 's/^/\n  /')"
	sleep 0.5
done
echo "ok: the container counted exactly the $N_CURLS curls made on the host"
grep -q 'k8s_node_name="check-node"' "$work/container.metrics" || fail "no k8s_node_name label"
grep -q 'k8s_cluster_name="CHANGE-ME"' "$work/container.metrics" || fail "no k8s_cluster_name label"
"$PROMTOOL" check metrics <"$work/container.metrics" >"$work/promtool.out" 2>&1 ||
	fail "promtool rejects the container's /metrics:$(sed 's/^/\n  /' "$work/promtool.out")"
[ -s "$work/textfile/periscope.prom" ] || fail "the textfile hostPath got no periscope.prom"
echo "ok: node and cluster labels on the series; promtool accepts /metrics; the textfile hostPath is written"
podman --runtime runc stop -t 10 "$CONTAINER" >/dev/null
status=$(podman inspect --format '{{.State.ExitCode}}' "$CONTAINER")
[ "$status" = 0 ] || fail "the container exited with $status on SIGTERM"
echo "ok: SIGTERM stops the container with 0"

step "done"
echo "check-packaging passed in $((SECONDS - t_start))s"
