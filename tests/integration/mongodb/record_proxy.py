#!/usr/bin/env python3
"""A recording TCP proxy, for unit-test fixtures: every recv() on either side is
appended to OUT as one record, [1 byte direction: 0 client->server, 1
server->client][4 bytes length, little endian][the bytes], which is what the
client process wrote (0) and read (1), one syscall at a time.

usage: record_proxy.py LISTEN_PORT UPSTREAM_PORT OUT   (prints "ready")
Serves connections until killed.
"""
import socket
import struct
import sys
import threading



def pump(src, dst, direction, out, lock):
    while True:
        try:
            data = src.recv(65536)
        except OSError:
            data = b""
        if not data:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            return
        with lock:
            out.write(struct.pack("<BI", direction, len(data)) + data)
            out.flush()
        dst.sendall(data)


def proxy(c, upstream, path):
    u = socket.create_connection(("127.0.0.1", upstream))
    lock = threading.Lock()
    with open(path, "wb") as out:
        a = threading.Thread(target=pump, args=(c, u, 0, out, lock))
        b = threading.Thread(target=pump, args=(u, c, 1, out, lock))
        a.start()
        b.start()
        a.join()
        b.join()
    c.close()
    u.close()


def main():
    listen, upstream, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", listen))
    ls.listen(16)
    print("ready", flush=True)
    n = 0
    while True:
        c, _ = ls.accept()
        n += 1
        threading.Thread(target=proxy, args=(c, upstream, "%s.%d" % (path, n)), daemon=True).start()


if __name__ == "__main__":
    main()
