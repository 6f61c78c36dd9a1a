"""Workloads for tests/integration/resources.sh, each with the kernel's own account of it.

Run under a copied python3 with a unique name: the copy's base name is the service name.
Every mode prints one JSON line of ground truth on stdout, taken from the kernel
(os.times, getrusage, /proc/self/schedstat, /proc/self/status) or from what was sent.

  burn SECONDS              CPU-bound for SECONDS of CPU time -> {"cpu": user+system}
  children N MS EXE         N children (EXE -c ...), one after the other, each burning
                            MS ms of CPU -> {"cpu": RUSAGE_CHILDREN user+system delta}
  pinned SECONDS CPU        CPU-bound for SECONDS of wall time on CPU only
                            -> {"run_delay_ns": /proc/self/schedstat wait time}
  touch MIB                 touches MIB MiB, prints {"vmrss": bytes}, then waits for a
                            line on stdin before it exits
  oom MIB                   allocates and touches up to MIB MiB (to be OOM-killed)
  server                    TCP + UDP server: prints {"tcp": port, "udp": port}; for
                            one TCP connection reads until EOF and answers with as many
                            bytes as the first 8 ask for; answers each UDP datagram
                            with its first 4 bytes' worth; exits on a datagram "quit"
  client TCP UDP A B N S R  sends A bytes on TCP, wants B back; N datagrams of S
                            bytes, each answered with R bytes -> {"tx": ..., "rx": ...}
"""
import json
import os
import resource
import socket
import struct
import subprocess
import sys
import time

BURN = "import os,time\nt=time.process_time()\nwhile time.process_time()-t<%f: pass\nos._exit(0)\n"


def burn(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass


def mode_burn(seconds):
    burn(float(seconds))
    t = os.times()
    print(json.dumps({"cpu": t.user + t.system}), flush=True)


def mode_children(n, ms, exe):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(int(n)):
        subprocess.run([exe, "-S", "-c", BURN % (int(ms) / 1000.0)], check=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(json.dumps({"cpu": cpu, "children": int(n)}), flush=True)


def mode_pinned(seconds, cpu):
    os.sched_setaffinity(0, {int(cpu)})
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        pass
    with open("/proc/self/schedstat") as f:
        run_ns, wait_ns, _ = f.read().split()
    print(json.dumps({"run_delay_ns": int(wait_ns), "runtime_ns": int(run_ns)}), flush=True)
    # No interpreter teardown: it would wait for the CPU after the ground truth was read.
    os._exit(0)


def vmrss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def mode_touch(mib):
    data = bytearray(int(mib) << 20)
    for i in range(0, len(data), 4096):
        data[i] = 1
    print(json.dumps({"vmrss": vmrss(), "pid": os.getpid()}), flush=True)
    sys.stdin.readline()
    print(json.dumps({"vmrss": vmrss()}), flush=True)


def mode_oom(mib):
    chunks = []
    for _ in range(int(mib)):
        b = bytearray(1 << 20)
        for i in range(0, len(b), 4096):
            b[i] = 1
        chunks.append(b)
    print("not killed", file=sys.stderr)
    sys.exit(3)


def recv_exactly(s, n):
    got = 0
    while got < n:
        b = s.recv(min(65536, n - got))
        if not b:
            raise RuntimeError("EOF after %d of %d bytes" % (got, n))
        got += len(b)


def mode_server():
    lt = socket.socket()
    lt.bind(("127.0.0.1", 0))
    lt.listen(1)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    print(json.dumps({"tcp": lt.getsockname()[1], "udp": u.getsockname()[1]}), flush=True)
    c, _ = lt.accept()
    hdr = b""
    while len(hdr) < 8:
        b = c.recv(8 - len(hdr))
        if not b:
            raise RuntimeError("EOF in the header")
        hdr += b
    want = struct.unpack("!Q", hdr)[0]
    while c.recv(65536):
        pass
    c.sendall(b"r" * want)
    c.close()
    while True:
        d, peer = u.recvfrom(65536)
        if d == b"quit":
            break
        n = struct.unpack("!I", d[:4])[0]
        u.sendto(b"u" * n, peer)


def mode_client(tcp_port, udp_port, a, b, n, size, reply):
    a, b, n, size, reply = int(a), int(b), int(n), int(size), int(reply)
    s = socket.create_connection(("127.0.0.1", int(tcp_port)))
    s.sendall(struct.pack("!Q", b) + b"x" * (a - 8))
    s.shutdown(socket.SHUT_WR)
    recv_exactly(s, b)
    if s.recv(16):
        raise RuntimeError("more than asked for")
    s.close()
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.connect(("127.0.0.1", int(udp_port)))
    for _ in range(n):
        u.send(struct.pack("!I", reply) + b"d" * (size - 4))
        if len(u.recv(65536)) != reply:
            raise RuntimeError("short UDP answer")
    u.send(b"quit")
    print(json.dumps({"tx": a + n * size + 4, "rx": b + n * reply}), flush=True)


MODES = {
    "burn": mode_burn,
    "children": mode_children,
    "pinned": mode_pinned,
    "touch": mode_touch,
    "oom": mode_oom,
    "server": mode_server,
    "client": mode_client,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
