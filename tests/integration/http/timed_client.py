#!/usr/bin/env python3
"""Sends GET requests over one keep-alive connection and times each.

usage: timed_client.py PORT COUNT PATH...
Each PATH is requested COUNT times in turn; prints one line per PATH:
"PATH STATUS-OF-LAST MEDIAN-SECONDS", the median of the client-side times.
"""
import http.client
import socket
import statistics
import sys
import time


def main():
    port, count, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for path in paths:
        times = []
        status = 0
        for _ in range(count):
            start = time.perf_counter()
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            times.append(time.perf_counter() - start)
            status = resp.status
        print(path, status, "%.9f" % statistics.median(times), flush=True)


if __name__ == "__main__":
    main()
