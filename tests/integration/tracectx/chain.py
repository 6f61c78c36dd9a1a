#!/usr/bin/env python3
"""One service of tracectx.sh's chain: a ThreadingHTTPServer whose handler calls on.

  chain.py PORT                      answers GET /c
  chain.py PORT NEXT_PORT PATH       answers, after GET NEXT_PORT PATH
  chain.py PORT NEXT_PORT PATH DB_PORT  the same, then one SELECT on MariaDB (pymysql)

Every call is a new connection, so that each request's exchanges are its own. It
prints "ready" once it listens, and never forwards a traceparent itself: the
spans must be joined from what periscope sees.
"""
import http.client
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port = int(sys.argv[1])
next_port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
next_path = sys.argv[3] if len(sys.argv) > 3 else ""
db_port = int(sys.argv[4]) if len(sys.argv) > 4 else 0
if db_port:
    import pymysql


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"ok\n"
        if next_port:
            conn = http.client.HTTPConnection("127.0.0.1", next_port, timeout=10)
            conn.request("GET", next_path)
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            if resp.status != 200:
                self.send_error(502)
                return
        if db_port:
            db = pymysql.connect(host="127.0.0.1", port=db_port, user="app", password="pw",
                                 database="pstest", autocommit=True)
            with db.cursor() as cur:
                cur.execute("SELECT name FROM items WHERE id = %s", (1,))
                cur.fetchall()
            db.close()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print("ready", flush=True)
server.serve_forever()
