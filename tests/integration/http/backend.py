#!/usr/bin/env python3
"""A small HTTP/1.1 backend for tests/integration/http.sh.

Serves on 127.0.0.1 (an ephemeral port) and on a Unix-domain stream socket:
  GET  /slow    sleeps 200 ms, then 200
  POST /upload  reads a Content-Length or chunked body, answers 200 "got N"
  GET  /unix    200
  anything else 404
Prints {"port": P} on stdout once both listeners are up, then serves until killed.
"""
import http.server
import json
import os
import socketserver
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def address_string(self):
        return "unix" if not self.client_address else super().address_string()

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_chunked(self):
        total = 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return total
            total += len(self.rfile.read(size))
            self.rfile.readline()

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.2)
            self.reply(200, b"slow\n")
        elif self.path == "/unix":
            self.reply(200, b"unix\n")
        else:
            self.reply(404, b"not found\n")

    def do_POST(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            n = self.read_chunked()
        else:
            n = len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if self.path == "/upload":
            self.reply(200, b"got %d\n" % n)
        else:
            self.reply(404, b"not found\n")


class TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def main():
    unix_path = sys.argv[1]
    tcp = TCPServer(("127.0.0.1", 0), Handler)
    if os.path.exists(unix_path):
        os.unlink(unix_path)
    unix = UnixServer(unix_path, Handler)
    threading.Thread(target=unix.serve_forever, daemon=True).start()
    print(json.dumps({"port": tcp.server_address[1]}), flush=True)
    tcp.serve_forever()


if __name__ == "__main__":
    main()
