#!/usr/bin/env python3
"""HTTPS keep-alive client for tests/integration/http_tls.sh (certificate not verified).

  tls_client.py HOST PORT EARLY_PATH N_EARLY LATE_PATH N_LATE

One TLS connection: N_EARLY GETs of EARLY_PATH, then "ready" on stdout; after a line on
stdin, N_LATE GETs of LATE_PATH on the same connection, one at a time. Prints the statuses
of the late requests, one per line; exits 1 on anything unexpected. CPython's ssl module
calls SSL_read_ex/SSL_write_ex.
"""
import socket
import ssl
import sys

from client import read_response, request  # the plaintext client's, same directory


def get(s, f, path, hostport):
    s.sendall(request(path, hostport))
    return read_response(f)


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    early, n_early, late, n_late = sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
    hostport = "%s:%d" % (host, port)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    s = ctx.wrap_socket(socket.create_connection((host, port)), server_hostname=host)
    f = s.makefile("rb")
    for _ in range(n_early):
        if get(s, f, early, hostport) != 200:
            raise SystemExit("early request failed")
    print("ready", flush=True)
    if not sys.stdin.readline():
        return  # the test gave up
    statuses = [get(s, f, late, hostport) for _ in range(n_late)]
    s.close()
    for st in statuses:
        print(st)


if __name__ == "__main__":
    main()
