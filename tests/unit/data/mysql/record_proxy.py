#!/usr/bin/env python3
"""Records MySQL conversations for the mysql decoder's unit tests.

A TCP proxy between a real client and a real MariaDB. Every recv() is written to
OUT as a record: one byte 'C' (client to server) or 'S' (server to client), a
4-byte big-endian length, the bytes. A client that asks for TLS (SSLRequest) is
served by the proxy's own certificate while the proxy talks TLS to the server:
the records after a 'T' record (length 0) are the plaintext inside TLS, as the
capture's OpenSSL probes see it.

    record_proxy.py LISTEN_PORT SERVER_PORT OUT [CERT KEY]

Serves one connection, then exits.
"""
import socket
import ssl
import struct
import sys
import threading

CLIENT_SSL = 0x800


def recv_exactly(sock, n):
    buf = b""
    while len(buf) < n:
        got = sock.recv(n - len(buf))
        if not got:
            raise EOFError
        buf += got
    return buf


def main():
    listen_port, server_port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    cert = sys.argv[4] if len(sys.argv) > 5 else None
    key = sys.argv[5] if len(sys.argv) > 5 else None
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", listen_port))
    lsock.listen(1)
    print("ready", flush=True)
    client, _ = lsock.accept()
    server = socket.create_connection(("127.0.0.1", server_port))
    lock = threading.Lock()
    f = open(out, "wb")

    def record(tag, data):
        f.write(tag + struct.pack(">I", len(data)) + data)
        f.flush()

    # The greeting and the client's first packet, whole, to see an SSLRequest.
    head = recv_exactly(server, 4)
    greeting = head + recv_exactly(server, int.from_bytes(head[:3], "little"))
    record(b"S", greeting)
    client.sendall(greeting)
    head = recv_exactly(client, 4)
    first = head + recv_exactly(client, int.from_bytes(head[:3], "little"))
    record(b"C", first)
    server.sendall(first)
    caps = int.from_bytes(first[4:8], "little")
    if len(first) == 36 and caps & CLIENT_SSL:
        if not cert:
            sys.exit("the client asked for TLS: give CERT and KEY")
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key)
        cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cctx.check_hostname = False
        cctx.verify_mode = ssl.CERT_NONE
        server = cctx.wrap_socket(server)
        client = sctx.wrap_socket(client, server_side=True)
        record(b"T", b"")

    def pump(src, dst, tag):
        try:
            while True:
                data = src.recv(65536)
                with lock:
                    if data:
                        record(tag, data)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, EOFError):
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threads = [threading.Thread(target=pump, args=(client, server, b"C")),
               threading.Thread(target=pump, args=(server, client, b"S"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.close()


if __name__ == "__main__":
    main()
