#!/usr/bin/env python3
"""make bench-host-tax: what periscoped costs a process that does no networking.

dd with 1-byte blocks (two syscalls per byte, no socket) is timed (its CPU time)
without periscoped and beside it, in interleaved rounds, once with the capture
on the socket tracepoints and once on the syscall tracepoints
(capture.hooks), every plugin of the plugin directory loaded. Prints the
median ratio of each and exits 1 when the socket path's is above 1.02.
"""
import os, resource, statistics, subprocess, sys, tempfile, time

PERISCOPED = os.environ["PERISCOPED"]
PLUGIN_DIR = os.environ["PLUGIN_DIR"]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
BLOCKS = int(os.environ.get("BENCH_DD_BLOCKS", "3000000"))
TARGET = 1.02


def dd_seconds():
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={BLOCKS}"],
                   check=True, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def start_daemon(work, hooks):
    conf = os.path.join(work, f"{hooks}.yaml")
    with open(conf, "w") as f:
        f.write(f"capture: {{ hooks: {hooks} }}\nsinks: {{ stdout: {{ format: prometheus }} }}\n")
    err_path = os.path.join(work, f"{hooks}.err")
    with open(err_path, "w") as err:
        daemon = subprocess.Popen([PERISCOPED, "-c", conf, "--plugin-dir", PLUGIN_DIR,
                                   "--instance", "bench-host-tax"],
                                  stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.time() + 60
    while "running:" not in open(err_path).read():
        if time.time() > deadline or daemon.poll() is not None:
            raise SystemExit(f"bench: periscoped ({hooks}) did not start")
        time.sleep(0.05)
    return daemon


def main():
    if os.geteuid() != 0:
        print("bench: needs root"); return 77
    work = tempfile.mkdtemp(prefix="periscope-host-tax.")
    ratios = {"socket": [], "syscalls": []}
    for i in range(ROUNDS):
        for hooks in ratios:
            base = dd_seconds()
            daemon = start_daemon(work, hooks)
            try:
                traced = dd_seconds()
            finally:
                daemon.terminate()
                daemon.wait(timeout=30)
            ratios[hooks].append(traced / base)
        print(f"round {i + 1}: dd beside periscoped / alone: socket hooks "
              f"{ratios['socket'][-1]:.3f}, syscall hooks {ratios['syscalls'][-1]:.3f}", flush=True)
    med = {k: statistics.median(v) for k, v in ratios.items()}
    ok = med["socket"] <= TARGET
    print(f"\nhost tax, dd bs=1 count={BLOCKS} CPU time beside periscoped / alone, median of {ROUNDS}:")
    print(f"  capture on socket tracepoints   {med['socket']:.3f}   target <= {TARGET}   "
          f"{'ok' if ok else 'MISSED'}")
    print(f"  capture on syscall tracepoints  {med['syscalls']:.3f}   (older kernels' path)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
