#!/usr/bin/env python3
"""The far side of one local tunnel: a tiny HTTP responder on a loopback port.

A sentinel probes it (TCP connect) "through the tunnel"; `cluster/drill tunnel-down`
stops it, `tunnel-up` starts it again on the same port. Standard library only.
Usage: responder.py PORT NAME   (listens on $RESPONDER_HOST, default 127.0.0.1; the chaos
rig runs it in a network namespace on that namespace's address)
"""
import http.server
import os
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("far side of tunnel %s: ok\n" % self.server.tunnel).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):  # quiet: probes are plain TCP connects
        pass


def main():
    port, name = int(sys.argv[1]), sys.argv[2]
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    host = os.environ.get("RESPONDER_HOST", "127.0.0.1")
    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.tunnel = name
    print("responder for tunnel %s listening on %s:%d" % (name, host, port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
