#!/usr/bin/env python3
"""The far side of one local tunnel: a tiny HTTP responder on a loopback port.

A sentinel probes it (TCP connect) "through the tunnel"; `cluster/drill tunnel-down`
stops it, `tunnel-up` starts it again on the same port. Standard library only.
Usage: responder.py PORT NAME [STATE_DIR [ADDRESS ...]]
It always listens on 127.0.0.1:PORT, and also on ADDRESS:PORT for each extra address (the
same port; bench/keepalived uses this so that health checks from network namespaces reach
the same process). STATE_DIR only marks the process as the cluster's.
"""
import http.server
import sys
import threading


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
    addresses = ["127.0.0.1"] + [a for a in sys.argv[4:] if a and a != "127.0.0.1"]
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    servers = []
    for address in addresses:
        server = http.server.ThreadingHTTPServer((address, port), Handler)
        server.tunnel = name
        servers.append(server)
    print("responder for tunnel %s listening on %s" % (name, ", ".join("%s:%d" % (a, port) for a in addresses)), flush=True)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    servers[0].serve_forever()


if __name__ == "__main__":
    main()
