#!/usr/bin/env python3
"""`fionread.py HOST PORT`: one request, then what FIONREAD says once the answer is
there must be what recv then reads. A socket in a sockhash without a verdict program
answers 0 on kernels from 6.6.128, 6.12.75 and 6.18.14 on (propagate.bpf.c's tc_pass)."""
import fcntl, select, socket, struct, sys, termios, time

s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(f"GET /fionread HTTP/1.1\r\nHost: {sys.argv[1]}\r\nConnection: close\r\n\r\n".encode())
ep = select.epoll()
ep.register(s.fileno(), select.EPOLLIN)
if not ep.poll(10):
    sys.exit("FAIL: no readiness within 10 s")
time.sleep(0.3)  # the whole answer: headers and body
n = struct.unpack("i", fcntl.ioctl(s.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
got = s.recv(65536)
if n != len(got) or not got:
    sys.exit(f"FAIL: FIONREAD said {n}, recv read {len(got)}")
print(f"FIONREAD {n} = bytes read")
