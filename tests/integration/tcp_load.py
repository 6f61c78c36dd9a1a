#!/usr/bin/python3
"""TCP load with exact, known counts for the tcpflow integration test.

A server on 127.0.0.1 and one on ::1 (free ports, threads of this process)
each read exactly --send bytes per connection, answer exactly --recv bytes in
several writes and close once the client has closed. The client makes --v4
and --v6 such connections one after the other, then --refused connects to a
port that was bound and closed without listening. Prints the ports used as
JSON on stdout. Standard library only.
"""
import argparse
import json
import socket
import sys
import threading

CHUNKS = 4  # writes per direction, so that byte counting must add up several calls


def chunks(total, parts):
    """Splits total into `parts` unequal pieces that sum to total."""
    sizes = []
    left = total
    for i in range(parts - 1):
        size = max(1, left // (parts - i) + (i * 7) % 13)
        size = min(size, left - (parts - 1 - i))
        sizes.append(size)
        left -= size
    sizes.append(left)
    return [s for s in sizes if s > 0]


def recv_exactly(conn, n):
    got = 0
    while got < n:
        data = conn.recv(min(65536, n - got))
        if not data:
            raise RuntimeError("peer closed after %d of %d bytes" % (got, n))
        got += len(data)
    return got


def serve(listener, count, want, reply, errors):
    try:
        for _ in range(count):
            conn, _ = listener.accept()
            with conn:
                recv_exactly(conn, want)
                for size in chunks(reply, CHUNKS):
                    conn.sendall(b"r" * size)
                # Wait for the client's close, so that it closes first.
                while conn.recv(4096):
                    raise RuntimeError("client sent more than expected")
    except Exception as e:  # reported by the main thread
        errors.append("server: %r" % e)


def client(family, addr, port, count, send, reply):
    for _ in range(count):
        with socket.create_connection((addr, port), timeout=10) as c:
            for size in chunks(send, CHUNKS):
                c.sendall(b"s" * size)
            recv_exactly(c, reply)


def start_server(family, addr, count, send, reply, errors):
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.bind((addr, 0))
    listener.listen(64)
    t = threading.Thread(target=serve, args=(listener, count, send, reply, errors), daemon=True)
    t.start()
    return listener, t


def closed_port():
    """A port that was free a moment ago and has no listener: connects get RST."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def refuse(port, count):
    refused = 0
    for _ in range(count):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            refused += 1
    return refused


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--v4", type=int, default=25, help="IPv4 connections")
    ap.add_argument("--v6", type=int, default=15, help="IPv6 connections")
    ap.add_argument("--send", type=int, default=7777, help="bytes the client sends per connection")
    ap.add_argument("--recv", type=int, default=3333, help="bytes the server answers per connection")
    ap.add_argument("--refused", type=int, default=10, help="connects to a closed port")
    args = ap.parse_args()

    errors = []
    l4, t4 = start_server(socket.AF_INET, "127.0.0.1", args.v4, args.send, args.recv, errors)
    l6, t6 = start_server(socket.AF_INET6, "::1", args.v6, args.send, args.recv, errors)
    p4, p6 = l4.getsockname()[1], l6.getsockname()[1]

    client(socket.AF_INET, "127.0.0.1", p4, args.v4, args.send, args.recv)
    client(socket.AF_INET6, "::1", p6, args.v6, args.send, args.recv)
    t4.join(10)
    t6.join(10)
    l4.close()
    l6.close()

    port = closed_port()
    refused = refuse(port, args.refused)
    if refused != args.refused:
        errors.append("only %d of %d connects to port %d were refused" % (refused, args.refused, port))
    if t4.is_alive() or t6.is_alive():
        errors.append("server threads did not finish")
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1

    json.dump({
        "v4_port": p4, "v6_port": p6, "closed_port": port,
        "v4": args.v4, "v6": args.v6, "refused": args.refused,
        "send": args.send, "recv": args.recv,
    }, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
