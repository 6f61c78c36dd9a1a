#!/usr/bin/env bash
# resources against the kernel's own accounting. Each workload runs as a copy of python3 (or
# dd) under its own name, so that it is its own service:
#   burn      ~3 s of CPU                      == its os.times()                     within 2%
#   kid       60 processes of ~40 ms of CPU    == parent's RUSAGE_CHILDREN delta      within 1%
#             (the issue asks 5%; one child lost is 1.7%, which 5% let through)
#   pin       two CPU hogs on one CPU for 3 s  == sum of /proc/PID/schedstat waits    within 5%
#   pit       the same, with run_delay_source: tracepoints (a second daemon)
#   mem       touches 300 MiB                  == VmRSS while it runs                 within 2%
#   dd        64 MiB written with O_DIRECT     >= 64 MiB, <= 64 MiB + 1 MiB of metadata
#   oom       OOM-killed in a memory cgroup    == 1 kill
#   srv, cli  a TCP and a UDP exchange          == the bytes sent and received, exactly
set -u
. "$(dirname "$0")/lib.sh"

require_root
require_tools "apt-get install python3 coreutils util-linux" "$PYTHON" dd findmnt losetup

WORKLOAD=$(dirname "$0")/resources/workload.py
work=$(mktemp -d)
loopdev= mnt= cg=
cleanup() {
	stop_daemon
	[ -z "$mnt" ] || umount "$mnt" 2>/dev/null
	[ -z "$loopdev" ] || losetup -d "$loopdev" 2>/dev/null
	[ -z "$cg" ] || rmdir "$cg" 2>/dev/null
	rm -rf "$work" "${DAEMON_OUT:-}" "${DAEMON_ERR:-}"
}
trap cleanup EXIT

# Service names: unique per run, shorter than the kernel's 16-byte comm.
id=$$
for role in burn kid par pin pit mem oom srv cli; do
	cp "$PYTHON" "$work/rs$role$id"
done
cp "$(command -v dd)" "$work/rsdd$id"
svc() { echo "service_name=\"rs$1$id\""; }

# A memory cgroup: cgroup v2 if it has the memory controller, else v1's memory hierarchy.
memory_cgroup() {
	local mp fstype opts
	while read -r mp fstype opts; do
		if [ "$fstype" = cgroup2 ] && grep -qw memory "$mp/cgroup.controllers" 2>/dev/null; then
			echo "v2 $mp"
			return 0
		fi
		if [ "$fstype" = cgroup ] && [[ ",$opts," == *,memory,* ]]; then
			echo "v1 $mp"
			return 0
		fi
	done < <(awk '{ for (i = 7; $i != "-"; i++); print $5, $(i + 1), $(i + 3) }' /proc/self/mountinfo)
	return 1
}
read -r cgver cgroot < <(memory_cgroup) || fail "no cgroup hierarchy with the memory controller"
cg=$cgroot/periscope-resources-$id
mkdir "$cg" || fail "cannot create $cg"
if [ "$cgver" = v2 ]; then
	echo 64M >"$cg/memory.max" && echo 0 >"$cg/memory.swap.max" 2>/dev/null
else
	echo 64M >"$cg/memory.limit_in_bytes" && echo 0 >"$cg/memory.swappiness"
fi || fail "cannot limit the memory of $cg"

# O_DIRECT needs a block device under the file: the test directory's, or a loop device.
ddir=$work
src=$(findmnt -n -o SOURCE -T "$work")
if [ ! -b "$src" ]; then
	require_tools "apt-get install e2fsprogs" mkfs.ext4
	truncate -s 256M "$work/disk.img"
	loopdev=$(losetup -f --show "$work/disk.img") || fail "no loop device"
	mkfs.ext4 -q "$loopdev" || fail "mkfs.ext4 $loopdev"
	mnt=$work/mnt
	mkdir "$mnt" && mount "$loopdev" "$mnt" || fail "cannot mount $loopdev"
	ddir=$mnt
	echo "O_DIRECT on $loopdev (the test directory is on $src)"
fi

cat >"$work/periscope.yaml" <<'YAML'
daemon: { flush_interval: 1s }
plugins: { resources: {}, http: { enabled: false }, tcpflow: { enabled: false } }
sinks: { stdout: { format: prometheus } }
YAML
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"

run() { # ROLE ARGS...: the workload as service rsROLE<id>
	local role=$1
	shift
	"$work/rs$role$id" "$WORKLOAD" "$@"
}

lastcpu=$(($(nproc) - 1))
run burn burn 3 >"$work/burn.json" &
pids="$!"
run par children 60 40 "$work/rskid$id" >"$work/kid.json" &
pids="$pids $!"
run pin pinned 3 $lastcpu >"$work/pin1.json" &
pids="$pids $!"
run pin pinned 3 $lastcpu >"$work/pin2.json" &
pids="$pids $!"

# Network: a TCP request/response and UDP datagrams of known sizes, between two services.
A=1234567 B=765432 N=200 S=1000 R=300
coproc SRV { run srv server; }
srv_pid=$SRV_PID
read -r ports <&"${SRV[0]}" || fail "the server did not start"
read -r tport uport < <(echo "$ports" | "$PYTHON" -c \
	'import json, sys; d = json.load(sys.stdin); print(d["tcp"], d["udp"])')
run cli client "$tport" "$uport" $A $B $N $S $R >"$work/cli.json" || fail "the client failed"
wait "$srv_pid" || fail "the server failed"

# Disk: 64 MiB with O_DIRECT.
"$work/rsdd$id" if=/dev/zero of="$ddir/direct.bin" bs=1M count=64 oflag=direct status=none ||
	fail "dd with oflag=direct failed"

# OOM: a process that joins the limited cgroup, then allocates past its limit.
# (the braces keep bash's "Killed" report out of the test's log)
{ sh -c "echo \$\$ >'$cg/cgroup.procs' && exec '$work/rsoom$id' '$WORKLOAD' oom 512"; } 2>/dev/null
oom_status=$?
[ $oom_status = 137 ] || fail "the OOM workload exited with $oom_status, not 137 (SIGKILL)"

# Memory, while the process lives: the gauge of a snapshot taken after it touched its pages.
mkfifo "$work/mem.in"
run mem touch 300 <"$work/mem.in" >"$work/mem.json" &
mem_job=$!
exec 9>"$work/mem.in"
for _ in $(seq 100); do [ -s "$work/mem.json" ] && break; sleep 0.1; done
[ -s "$work/mem.json" ] || fail "the memory workload did not start"
mem_pid=$(head -n1 "$work/mem.json" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["pid"])')
wait_for_snapshots 3 || fail "no flush while the memory workload runs"
mem_rss=$(awk '/^VmRSS:/ { print $2 * 1024 }' /proc/$mem_pid/status)
# The last block may still be being written: take the one before it, complete.
awk '/^# periscope snapshot/ { n++ } { print n "\t" $0 }' "$DAEMON_OUT" >"$work/numbered"
blocks=$(tail -n1 "$work/numbered" | cut -f1)
awk -F '\t' -v b=$((blocks - 1)) '$1 == b && !/# periscope snapshot/' "$work/numbered" |
	cut -f2- >"$work/live.prom"
mem_gauge=$(series_value "$work/live.prom" process_memory_usage_bytes "$(svc mem)")
mem_procs=$(series_value "$work/live.prom" periscope_processes "$(svc mem)")
echo >&9
exec 9>&-
wait $mem_job || fail "the memory workload failed"

for p in $pids; do
	wait "$p" || fail "a workload failed"
done

SNAPSHOT=$work/final.prom
DIFF=$work/diff
: >"$DIFF"
final_snapshot "$SNAPSHOT"

json() { head -n1 "$1" | "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2"; }

# within NAME GOT WANT PCT: |GOT - WANT| <= PCT% of WANT
within() {
	local name=$1 got=$2 want=$3 pct=$4
	printf '  %-40s got %-14s want %-14s (within %s%%)\n' "$name" "$got" "$want" "$pct"
	awk -v g="$got" -v w="$want" -v p="$pct" 'BEGIN { d = g - w; if (d < 0) d = -d;
		exit !(w > 0 && d <= w * p / 100) }' && return
	echo "  $name: got $got, want $want within $pct%" >>"$DIFF"
	failures=$((failures + 1))
}

echo "against the kernel's accounting:"
within "cpu, 3 s burner" "$(series_value "$SNAPSHOT" process_cpu_time_seconds_total "$(svc burn)")" \
	"$(json "$work/burn.json" cpu)" 2
within "cpu, 60 short-lived processes" \
	"$(series_value "$SNAPSHOT" process_cpu_time_seconds_total "$(svc kid)")" \
	"$(json "$work/kid.json" cpu)" 1
pin_want=$(awk -v a="$(json "$work/pin1.json" run_delay_ns)" -v b="$(json "$work/pin2.json" run_delay_ns)" \
	'BEGIN { printf "%.9f\n", (a + b) / 1e9 }')
within "run-queue delay, two pinned hogs" \
	"$(series_value "$SNAPSHOT" periscope_process_cpu_delay_seconds_total "$(svc pin)")" "$pin_want" 5
within "memory while it runs" "$mem_gauge" "$mem_rss" 2
[ "$mem_procs" = 1 ] || { echo "  periscope_processes{$(svc mem)}: $mem_procs, want 1" >>"$DIFF"
	failures=$((failures + 1)); }

dd_w=$(series_value "$SNAPSHOT" process_disk_io_bytes_total "$(svc dd)" 'disk_io_direction="write"')
echo "  disk write bytes of dd: $dd_w (64 MiB = 67108864 .. + 1 MiB of metadata)"
awk -v g="$dd_w" 'BEGIN { exit !(g >= 67108864 && g <= 67108864 + 1048576) }' ||
	{ echo "  dd's disk write bytes: $dd_w" >>"$DIFF"; failures=$((failures + 1)); }
dd_n=$(series_value "$SNAPSHOT" periscope_process_disk_io_duration_seconds_count "$(svc dd)")
dd_sum=$(series_value "$SNAPSHOT" periscope_process_disk_io_duration_seconds_sum "$(svc dd)")
echo "  dd's block requests: $dd_n, latency sum ${dd_sum}s"
awk -v n="$dd_n" -v s="$dd_sum" 'BEGIN { exit !(n >= 1 && s > 0) }' ||
	{ echo "  dd's block latency: $dd_n requests, sum $dd_sum" >>"$DIFF"; failures=$((failures + 1)); }

expect 1 periscope_process_oom_kills_total "$(svc oom)"
expect "$(json "$work/cli.json" tx)" process_network_io_bytes_total "$(svc cli)" \
	'network_io_direction="transmit"'
expect "$(json "$work/cli.json" rx)" process_network_io_bytes_total "$(svc cli)" \
	'network_io_direction="receive"'
expect "$(json "$work/cli.json" rx)" process_network_io_bytes_total "$(svc srv)" \
	'network_io_direction="transmit"'
expect "$(json "$work/cli.json" tx)" process_network_io_bytes_total "$(svc srv)" \
	'network_io_direction="receive"'
# Every workload exited: no live process is left in the gauges.
expect 0 periscope_processes "$(svc burn)"

# Run-queue delay measured by our own sched_wakeup/sched_switch programs instead.
sed -i 's/resources: {}/resources: { run_delay_source: tracepoints }/' "$work/periscope.yaml"
start_daemon -c "$work/periscope.yaml" --plugin-dir "$PLUGIN_DIR" || fail "periscoped did not start"
grep -q "run-queue delay from sched_wakeup/sched_switch" "$DAEMON_ERR" ||
	fail "run_delay_source: tracepoints was not taken"
run pit pinned 3 $lastcpu >"$work/pit1.json" &
pids="$!"
run pit pinned 3 $lastcpu >"$work/pit2.json" &
pids="$pids $!"
for p in $pids; do
	wait "$p" || fail "a workload failed"
done
final_snapshot "$work/final2.prom"
pit_want=$(awk -v a="$(json "$work/pit1.json" run_delay_ns)" -v b="$(json "$work/pit2.json" run_delay_ns)" \
	'BEGIN { printf "%.9f\n", (a + b) / 1e9 }')
within "run-queue delay, tracepoints" \
	"$(series_value "$work/final2.prom" periscope_process_cpu_delay_seconds_total "$(svc pit)")" \
	"$pit_want" 5

if [ $failures -gt 0 ]; then
	echo "the last snapshot, histogram buckets left out:" >&2
	grep -v -E '_bucket|^#' "$SNAPSHOT" >&2
	cat "$DIFF" >&2
	fail "$failures mismatches"
fi
echo "PASS"
