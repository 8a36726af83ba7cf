#!/usr/bin/env python3
"""Recording HTTP proxy between the replicas and moto (bench/failover starts it).

Every request is forwarded to moto unchanged and recorded as one JSON line, written when
the request arrives (before it is forwarded): its arrival time (time.monotonic_ns, the
same clock as the bench's t0 on Linux, and wall clock), method, path, the EC2 Action (form
body) or the Route 53 path, the route table and ENI of route writes, and the fencing
token from the User-Agent (`node/<id> term/<t> index/<i>`), or, for other clients, the
`exec-env/<tag>` that awscli/botocore append to it from AWS_EXECUTION_ENV (bench/keepalived
tags each keepalived instance's writes this way). A second line with the same `seq` records
moto's status and the round-trip time. Standard library only.

Usage: proxy.py --port P --ports-file STATE/ports --log FILE [--host ADDR]
The upstream (moto) port is read from the ports file (MOTO_PORT=) when first needed, so
the proxy can start before cluster/up picks its ports.
"""
import argparse
import http.client
import http.server
import itertools
import json
import re
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
TOKEN = re.compile(r"node/(\d+) term/(\d+) index/(\d+)")
EXEC_ENV = re.compile(r"exec-env/(\S+)")


class Recorder:
    def __init__(self, path, ports_file):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.ports_file = ports_file
        self.port = None

    def upstream_port(self):
        if self.port is None:
            with open(self.ports_file) as f:
                for line in f:
                    if line.startswith("MOTO_PORT="):
                        self.port = int(line.split("=", 1)[1])
        return self.port

    def write(self, rec):
        line = json.dumps(rec, separators=(",", ":"))
        with self.lock:
            self.f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _handle(self):
        mono = time.monotonic_ns()
        wall = time.time()
        rec_ = self.server.recorder
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seq = next(rec_.seq)
        rec = {"seq": seq, "mono_ns": mono, "wall": wall, "method": self.command, "path": self.path}
        ua = self.headers.get("User-Agent", "")
        m = TOKEN.search(ua)
        if m:
            rec["node"], rec["term"], rec["index"] = (int(x) for x in m.groups())
        m = EXEC_ENV.search(ua)
        if m:
            rec["exec_env"] = m.group(1)
        params = {}
        if body and "x-www-form-urlencoded" in (self.headers.get("Content-Type") or ""):
            params = dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
        elif "?" in self.path:
            params = dict(urllib.parse.parse_qsl(self.path.split("?", 1)[1]))
        if "Action" in params:
            rec["action"] = params["Action"]
            for k in ("RouteTableId", "NetworkInterfaceId", "DestinationCidrBlock"):
                if k in params:
                    rec[k] = params[k]
        elif "/hostedzone" in self.path:
            rec["action"] = "route53 %s %s" % (self.command, self.path.split("?", 1)[0])
        rec_.write(rec)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", rec_.upstream_port(), timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
            conn.request(self.command, self.path, body=body if body or self.command in ("POST", "PUT") else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP and k.lower() != "content-length"]
            conn.close()
        except Exception as e:  # moto down: answer 502 so the client sees an error
            data = ("proxy: %s" % e).encode()
            status = 502
            out_headers = [("Content-Type", "text/plain")]
        rec_.write({"seq": seq, "done_ns": time.monotonic_ns(), "status": status})
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ports-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    a = ap.parse_args()
    http.server.ThreadingHTTPServer.daemon_threads = True
    server = http.server.ThreadingHTTPServer((a.host, a.port), Handler)
    server.recorder = Recorder(a.log, a.ports_file)
    print("recording proxy on %s:%d" % (a.host, a.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
