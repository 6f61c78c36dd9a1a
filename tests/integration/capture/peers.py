#!/usr/bin/env python3
"""Both ends of the capture test's traffic, byte n of each direction being n % 251.

peers.py PORT CONNECTIONS SEED: a server on 127.0.0.1:PORT and CONNECTIONS clients, four at
a time. Each client writes its request in pieces of random size through send, sendmsg with
several buffers, or one large sendall; the server reads it with recv, recv_into and recvmsg
of random sizes (after a MSG_PEEK now and then), answers the same ways and closes; the client
reads to the end and closes. Sizes follow from the client's port, so both ends know them.
Prints the ground truth as JSON: bytes each way, connections.
"""
import json, random, socket, sys, threading

PORT, CONNECTIONS, SEED = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
errors = []


def pattern(offset, n):
    return bytes((offset + i) % 251 for i in range(n))


def sizes(client_port):
    rng = random.Random(SEED * 65536 + client_port)
    return rng.choice([1, 10, 3000, 70000]), rng.choice([5, 4096, 100000, 300000]), rng


def send_all(sock, total, rng):
    off = 0
    while off < total:
        how = rng.random()
        if how < 0.1:  # one large write: the capture sees a prefix and a tail
            sock.sendall(pattern(off, total - off))
            return
        n = min(total - off, rng.choice([1, 2, 7, 100, 1500, 5000, 20000]))
        if how < 0.4 and n > 1:
            off += sock.sendmsg([pattern(off, n // 2), pattern(off + n // 2, n - n // 2)])
        else:
            off += sock.send(pattern(off, n))


def recv_exactly(sock, total, rng):
    off = 0
    buf = bytearray(65536)
    while off < total:
        n = min(total - off, rng.choice([1, 3, 64, 1000, 4096, 65536]))
        how = rng.random()
        if how < 0.1:
            sock.recv(n, socket.MSG_PEEK)  # counted once, by the read that follows
        if how < 0.4:
            got = sock.recv_into(memoryview(buf)[:n])
            data = bytes(buf[:got])
        elif how < 0.6:
            data = sock.recvmsg(n)[0]
        else:
            data = sock.recv(n)
        if not data:
            errors.append(f"early end of stream at {off} of {total}")
            return
        if data != pattern(off, len(data)):
            errors.append("bytes off the pattern")
        off += len(data)


def handle(conn, client_port):
    request, response, rng = sizes(client_port)
    with conn:
        recv_exactly(conn, request, rng)
        send_all(conn, response, rng)


def serve(listener):
    for _ in range(CONNECTIONS):
        conn, addr = listener.accept()
        threading.Thread(target=handle, args=(conn, addr[1])).start()


totals = {"request_bytes": 0, "response_bytes": 0, "connections": 0}
lock = threading.Lock()


def client(slots):
    with slots, socket.create_connection(("127.0.0.1", PORT)) as s:
        request, response, _ = sizes(s.getsockname()[1])
        rng = random.Random(SEED + s.getsockname()[1])
        send_all(s, request, rng)
        recv_exactly(s, response, rng)
        if s.recv(1):
            errors.append("more than the server sent")
        with lock:
            totals["request_bytes"] += request
            totals["response_bytes"] += response
            totals["connections"] += 1


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", PORT))
    listener.listen(64)
    server = threading.Thread(target=serve, args=(listener,))
    server.start()
    slots = threading.Semaphore(4)
    clients = [threading.Thread(target=client, args=(slots,)) for _ in range(CONNECTIONS)]
    for t in clients:
        t.start()
    for t in clients:
        t.join()
    server.join()
    listener.close()
    if errors:
        raise SystemExit(f"peers: {errors[:3]}")
    print(json.dumps(totals))


main()
