#!/usr/bin/env python3
"""A keep-alive HTTP/1.1 server for the latency and privacy tests.

  GET /sleep/MS/...   sleeps MS milliseconds, then 200
  GET /fail/...       500
  anything else       200
Prints {"port": P} once it listens on 127.0.0.1, then serves until killed. With a file
name, appends "PATH SECONDS" there for each request: its own time from the parsed request to
the written response, what periscope's server view measures too (the client's clock adds its
own scheduling, which on a busy machine is not small).
"""
import http.server
import json
import socketserver
import sys
import threading
import time

TIMES = open(sys.argv[1], "a", buffering=1) if len(sys.argv) > 1 else None
times_lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out in two writes: without this, Nagle holds the body for the
    # client's delayed ACK (40 ms) and the client's timing measures that.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        start = time.monotonic()
        parts = self.path.split("/")
        status = 200
        if len(parts) > 2 and parts[1] == "sleep":
            time.sleep(int(parts[2]) / 1000)
        elif len(parts) > 1 and parts[1] == "fail":
            status = 500
        body = b"ok\n"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if TIMES:
            with times_lock:
                TIMES.write(f"{self.path} {time.monotonic() - start:.9f}\n")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    print(json.dumps({"port": srv.server_address[1]}), flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
