#!/usr/bin/env python3
"""tracectx_propagate.sh's servers. `hop.py ADDR PORT HEADS [NEXT_URL]`: an HTTP/1.1
server (one thread per connection) that appends each request's raw head, as the kernel
delivered it, to HEADS (one JSON string per line), and, with NEXT_URL, calls it once
(urllib: a new connection each time, no traceparent of its own) before answering."""
import http.server, json, sys, urllib.request

addr, port, heads = sys.argv[1], int(sys.argv[2]), sys.argv[3]
next_url = sys.argv[4] if len(sys.argv) > 4 else None


class Hop(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        head = self.requestline + "\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in self.headers.items()) + "\r\n"
        with open(heads, "a") as f:
            f.write(json.dumps(head) + "\n")
        if next_url:
            urllib.request.urlopen(next_url, timeout=10).read()
        body = b"hop\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer((addr, port), Hop).serve_forever()
