#!/usr/bin/env python3
"""HTTP/1.1 client patterns for tests/integration/http.sh, against one host:port.

  pipeline PATH N   N GET requests in a single write, then reads N responses
  pipeline-at-once PATH N
                    the same, but reads the N responses with one recv once they are all
                    there: more than capture_bytes in one read
  early PATH LATE N one keep-alive connection: a GET of PATH now; after a line on
                    stdin (periscoped started meanwhile), N GETs of LATE on the same
                    connection, one at a time
  gone PATH N C     C connections, one after another, each writing N GET requests at
                    once and closing before any response: the server answers a client
                    that has gone (on loopback, its first answer meets the reset inside
                    its write); prints nothing
Prints the statuses it got, one per line; exits 1 on anything unexpected.

Responses are read 512 bytes at a time (but in pipeline-at-once): ten pipelined responses
in one read would be larger than the default capture_bytes (1024), and the heads of those
past the captured prefix are out of sight of the client view (the server view, one write
per response, is not affected).
"""
import io
import socket
import sys
import time


class OneRecv(io.RawIOBase):
    """A socket read with recv(65536) calls, whatever the reader asks for."""

    def __init__(self, sock):
        self.sock = sock

    def readable(self):
        return True

    def readinto(self, b):
        data = self.sock.recv(65536)
        b[: len(data)] = data
        return len(data)


def read_response(f):
    status = f.readline()
    if not status.startswith(b"HTTP/1."):
        raise RuntimeError("bad status line %r" % status)
    length = None
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise RuntimeError("response without Content-Length")
    f.read(length)
    return int(status.split()[1])


def request(path, host):
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode())


def main():
    host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    hostport = "%s:%d" % (host, port)
    if mode == "gone":
        path, n, conns = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
        for _ in range(conns):
            s = socket.create_connection((host, port))
            s.sendall(request(path, hostport) * n)
            s.close()
            time.sleep(0.02)  # the server's answers go out before the next connection
        return
    s = socket.create_connection((host, port))
    f = s.makefile("rb", buffering=512)
    if mode == "pipeline-at-once":
        path, n = sys.argv[4], int(sys.argv[5])
        s.sendall(request(path, hostport) * n)
        time.sleep(0.5)  # every response in the socket's buffer: one recv takes them all
        f = io.BufferedReader(OneRecv(s), buffer_size=65536)
        statuses = [read_response(f) for _ in range(n)]
    elif mode == "pipeline":
        path, n = sys.argv[4], int(sys.argv[5])
        s.sendall(request(path, hostport) * n)
        statuses = [read_response(f) for _ in range(n)]
    elif mode == "early":
        early, late, n = sys.argv[4], sys.argv[5], int(sys.argv[6])
        s.sendall(request(early, hostport))
        statuses = [read_response(f)]
        print("ready", flush=True)
        if not sys.stdin.readline():
            return  # the test gave up
        statuses = []
        for _ in range(n):
            s.sendall(request(late, hostport))
            statuses.append(read_response(f))
    else:
        raise SystemExit("unknown mode " + mode)
    s.close()
    for st in statuses:
        print(st)


if __name__ == "__main__":
    main()
