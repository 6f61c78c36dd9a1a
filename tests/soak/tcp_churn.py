#!/usr/bin/python3
"""TCP connection churn for make soak, with exact counts: tcp_load.py's servers and client,
over and over, until --seconds have passed.

Unlike tcp_load.py (one batch, fresh ports), the listeners on 127.0.0.1 and ::1 and the
refused port are chosen once, so that a long run keeps the same few label sets: the soak
judges the daemon's memory, which new series would grow by design. Each round serves and
makes --batch IPv4 connections, --batch IPv6 connections (each sending --send bytes and
receiving --recv, client closing first, as tcp_load.py does) and one refused connect;
with --rate, rounds start no faster than that many connections a second.
Prints the ports and the totals as JSON on stdout. Standard library only.
"""
import argparse
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import tcp_load  # noqa: E402


def listener(family, addr):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((addr, 0))
    s.listen(128)
    return s


def round_of(l, family, addr, count, send, recv, errors):
    """count connections to listener l, served by a thread of this process."""
    t = threading.Thread(target=tcp_load.serve, args=(l, count, send, recv, errors), daemon=True)
    t.start()
    tcp_load.client(family, addr, l.getsockname()[1], count, send, recv)
    t.join(10)
    if t.is_alive():
        errors.append("a server thread did not finish its round")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, required=True, help="how long to churn")
    ap.add_argument("--batch", type=int, default=50, help="connections per family per round")
    ap.add_argument("--send", type=int, default=7777, help="bytes the client sends per connection")
    ap.add_argument("--recv", type=int, default=3333, help="bytes the server answers per connection")
    ap.add_argument("--rate", type=float, default=0, help="connections a second at most (0: unpaced)")
    args = ap.parse_args()

    errors = []
    l4 = listener(socket.AF_INET, "127.0.0.1")
    l6 = listener(socket.AF_INET6, "::1")
    closed = tcp_load.closed_port()
    v4 = v6 = refused = attempts = 0
    start = time.monotonic()
    deadline = start + args.seconds
    while time.monotonic() < deadline and not errors:
        if args.rate:
            ahead = start + (v4 + v6) / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(max(0, min(ahead, deadline - time.monotonic())))
                continue
        round_of(l4, socket.AF_INET, "127.0.0.1", args.batch, args.send, args.recv, errors)
        v4 += args.batch
        round_of(l6, socket.AF_INET6, "::1", args.batch, args.send, args.recv, errors)
        v6 += args.batch
        attempts += 1
        refused += tcp_load.refuse(closed, 1)
    if refused != attempts:
        # Someone else took the port: the refused count is still what happened, but say so.
        print("tcp_churn: %d of %d connects to port %d were refused" % (refused, attempts, closed),
              file=sys.stderr)
    if errors:
        print("\n".join(errors), file=sys.stderr)
        return 1
    json.dump({"v4_port": l4.getsockname()[1], "v6_port": l6.getsockname()[1],
               "closed_port": closed, "v4": v4, "v6": v6, "refused": refused,
               "send": args.send, "recv": args.recv}, sys.stdout)
    print()
    sys.stdout.flush()
    time.sleep(1)  # periscoped names a process from /proc: it must still live at the flush
    return 0


if __name__ == "__main__":
    sys.exit(main())
