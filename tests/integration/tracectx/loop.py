#!/usr/bin/env python3
"""tracectx.sh's event-loop service: one thread (asyncio) serving GET /d.

  loop.py PORT NEXT_PORT

Each request waits 0.3 s, then calls GET /e on NEXT_PORT (a new connection) and
answers. Two requests at once interleave on the one thread: whose call is whose is
then not knowable from threads and times, and must stay unjoined.
"""
import asyncio
import sys

port, next_port = int(sys.argv[1]), int(sys.argv[2])


async def read_head(reader):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await reader.read(4096)
        if not chunk:
            return None
        head += chunk
    return head


async def call_next():
    reader, writer = await asyncio.open_connection("127.0.0.1", next_port)
    writer.write(b"GET /e HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.0 200")


async def serve(reader, writer):
    if await read_head(reader) is None:
        writer.close()
        return
    await asyncio.sleep(0.3)
    ok = await call_next()
    body = b"ok\n" if ok else b"bad\n"
    writer.write(b"HTTP/1.1 %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                 % (b"200 OK" if ok else b"502 Bad Gateway", len(body), body))
    await writer.drain()
    writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
