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

DescribeRouteTables answers are parsed and their routes recorded on the response line
(chaos/HISTORY.md), so a checker can treat each answer as a read of every route.

Faults (the chaos rig, chaos/run): with --control FILE the proxy re-reads FILE (JSON) when it
changes and injects, per request matching its `actions` (all requests when absent):
  {"throttle": P}      answer 400 RequestLimitExceeded (EC2) / 400 Throttling (Route 53)
  {"error500": P}      answer 500 InternalError without forwarding
  {"hang_s": S, "hang_p": P}   hold the request S seconds, then forward it
  {"delay_ms": D}      forward every matching request D ms late
  {"seed": N}          the fault dice's seed
P are probabilities in [0, 1]. The injected fault is recorded as "fault" on the request line.

Usage: proxy.py --port P (--ports-file STATE/ports | --upstream HOST:PORT) --log FILE
                [--listen HOST] [--control FILE]
(--host is another name for --listen.)
With --ports-file the upstream (moto) port is read from it (MOTO_PORT=) when first needed, so
the proxy can start before cluster/up picks its ports.
"""
import argparse
import http.client
import http.server
import itertools
import json
import os
import random
import re
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
TOKEN = re.compile(r"node/(\d+) term/(\d+) index/(\d+)")
EXEC_ENV = re.compile(r"exec-env/(\S+)")


class Faults:
    """The fault settings from the control file, re-read when its mtime changes."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.settings = {}
        self.rng = random.Random(0)
        self.lock = threading.Lock()

    def pick(self, action):
        """The fault for one request (None, "throttle", "error500", "hang", "delay") and its value."""
        if not self.path:
            return None, 0
        with self.lock:
            try:
                mtime = os.stat(self.path).st_mtime_ns
            except OSError:
                mtime = None
            if mtime != self.mtime:
                self.mtime = mtime
                try:
                    with open(self.path) as f:
                        self.settings = json.load(f) if mtime is not None else {}
                except (OSError, ValueError):
                    self.settings = {}
                self.rng = random.Random(self.settings.get("seed", 0))
            s = self.settings
            actions = s.get("actions")
            if actions is not None and action not in actions:
                return None, 0
            roll = self.rng.random()
            if roll < s.get("throttle", 0):
                return "throttle", 0
            roll -= s.get("throttle", 0)
            if roll < s.get("error500", 0):
                return "error500", 0
            if s.get("hang_s") and self.rng.random() < s.get("hang_p", 1):
                return "hang", float(s["hang_s"])
            if s.get("delay_ms"):
                return "delay", float(s["delay_ms"]) / 1000
            return None, 0


def local(tag):
    return tag.rsplit("}", 1)[-1]


def parse_routes(body):
    """Every route of every table in a DescribeRouteTables answer."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    out = []
    for table in root.iter():
        if local(table.tag) != "item":
            continue
        kids = {local(c.tag): c for c in table}
        if "routeTableId" not in kids or "routeSet" not in kids:
            continue
        tid = kids["routeTableId"].text
        for r in kids["routeSet"]:
            f = {local(c.tag): (c.text or "") for c in r}
            dest = f.get("destinationCidrBlock") or f.get("destinationIpv6CidrBlock") or f.get("destinationPrefixListId")
            out.append({"table": tid, "destination": dest, "eni": f.get("networkInterfaceId") or None,
                        "state": f.get("state")})
    return out


class Recorder:
    def __init__(self, path, ports_file, upstream=None, control=None):
        self.f = open(path, "a", buffering=1)
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.ports_file = ports_file
        self.host, self.port = "127.0.0.1", None
        if upstream:
            host, port = upstream.rsplit(":", 1)
            self.host, self.port = host, int(port)
        self.faults = Faults(control)

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
        fault, value = rec_.faults.pick(rec.get("action"))
        if fault:
            rec["fault"] = fault
        rec_.write(rec)
        if fault in ("throttle", "error500"):
            self._answer_fault(seq, fault, rec.get("action", ""))
            return
        if fault in ("hang", "delay"):
            time.sleep(value)
        try:
            conn = http.client.HTTPConnection(rec_.host, rec_.upstream_port(), timeout=30)
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
        done = {"seq": seq, "done_ns": time.monotonic_ns(), "status": status}
        if rec.get("action") == "DescribeRouteTables" and status == 200:
            routes = parse_routes(data)
            if routes is not None:
                done["routes"] = routes
        rec_.write(done)
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer_fault(self, seq, fault, action):
        if action.startswith("route53"):
            code = "Throttling" if fault == "throttle" else "ServiceUnavailable"
            body = ('<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type><Code>%s</Code>'
                    '<Message>injected by the chaos proxy</Message></Error><RequestId>chaos-%d</RequestId>'
                    '</ErrorResponse>' % (code, seq)).encode()
        else:
            code = "RequestLimitExceeded" if fault == "throttle" else "InternalError"
            body = ('<?xml version="1.0"?><Response><Errors><Error><Code>%s</Code><Message>injected by the '
                    'chaos proxy</Message></Error></Errors><RequestID>chaos-%d</RequestID></Response>' % (code, seq)).encode()
        status = 400 if fault == "throttle" else 500
        self.server.recorder.write({"seq": seq, "done_ns": time.monotonic_ns(), "status": status})
        self.send_response(status)
        self.send_header("Content-Type", "text/xml")
        self.send_header("x-amzn-RequestId", "chaos-%d" % seq)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    up = ap.add_mutually_exclusive_group(required=True)
    up.add_argument("--ports-file", help="cluster/up's ports file: moto is 127.0.0.1:MOTO_PORT")
    up.add_argument("--upstream", help="moto's HOST:PORT")
    ap.add_argument("--listen", "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--log", required=True)
    ap.add_argument("--control", help="JSON fault settings, re-read when the file changes")
    a = ap.parse_args()
    http.server.ThreadingHTTPServer.daemon_threads = True
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer((a.listen, a.port), Handler)
    server.recorder = Recorder(a.log, a.ports_file, a.upstream, a.control)
    print("recording proxy on %s:%d" % (a.listen, a.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
