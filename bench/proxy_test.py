#!/usr/bin/env python3
"""Tests of bench/proxy.py (the recording proxy and its AWS realism layer) against a real
moto_server, driven with awscli.

Starts its own moto_server and proxy on free loopback ports below the ephemeral range
(cluster/free_ports.py), builds a small world with awscli straight against moto (VPC, subnet,
route table, two instances, an extra ENI attached to the first at device index 1), then for
each realism mode writes the control file and checks with awscli pointed at the proxy that
the mode behaves as documented, and with awscli pointed at moto that the truth is what it
should be. awscli runs in this process (awscli.clidriver, one driver reused: ~40 ms a call
instead of ~1 s for a fresh `aws` process) with the usual test environment and
AWS_MAX_ATTEMPTS=1, so every raw answer is seen. Standard library plus moto and awscli.

Run: python3 bench/proxy_test.py [-v] [TestRealism.test_name]   (exit status 1 on failure)
"""
import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "cluster"))
sys.path.insert(0, HERE)
from free_ports import free_ports  # noqa: E402
import proxy as proxy_mod  # noqa: E402

ENV = {
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_MAX_ATTEMPTS": "1", "AWS_RETRY_MODE": "standard",
    "AWS_PAGER": "",
}
os.environ.update(ENV)

VGW = "vgw-0123456789abcdef0"
AUTH = "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def wait_port(port, deadline_s, proc):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        with socket.socket() as s:
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
                return
            except OSError:
                time.sleep(0.1)
    raise RuntimeError("nothing listening on 127.0.0.1:%d after %ds" % (port, deadline_s))


def poll(cond, deadline_s=30, interval=0.2, what="condition"):
    """cond()'s first truthy value, polling until the deadline."""
    end = time.monotonic() + deadline_s
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError("timed out after %ss waiting for %s" % (deadline_s, what))
        time.sleep(interval)


class World:
    """moto, the proxy, awscli and the AWS objects every test shares."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="proxy-test-")
        self.moto_port, self.proxy_port = free_ports(2)
        self.control = os.path.join(self.dir, "realism.json")
        self.log = os.path.join(self.dir, "proxy.jsonl")
        self.procs = []
        self.set_control({})
        self.moto = self._spawn(["moto_server", "-H", "127.0.0.1", "-p", str(self.moto_port)], "moto.out")
        wait_port(self.moto_port, 60, self.moto)
        self.proxy = self._spawn([sys.executable, os.path.join(HERE, "proxy.py"), "--port", str(self.proxy_port),
                                  "--upstream", "127.0.0.1:%d" % self.moto_port, "--log", self.log,
                                  "--realism", self.control], "proxy.out")
        wait_port(self.proxy_port, 30, self.proxy)
        from awscli.clidriver import create_clidriver
        self.driver = create_clidriver()
        self.build()

    def _spawn(self, argv, out):
        with open(os.path.join(self.dir, out), "wb") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def close(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if os.environ.get("PROXY_TEST_KEEP"):
            print("kept", self.dir, file=sys.stderr)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------ awscli

    def cli(self, port, *args):
        """(exit status, parsed JSON output or None, stderr) of one awscli command."""
        out, err = io.StringIO(), io.StringIO()
        argv = ["--endpoint-url", "http://127.0.0.1:%d" % port, "--output", "json"] + [str(a) for a in args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = self.driver.main(argv)
        text = out.getvalue().strip()
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = text
        return rc, data, err.getvalue()

    def moto_ok(self, *args):
        rc, data, err = self.cli(self.moto_port, *args)
        if rc != 0:
            raise AssertionError("aws %s (moto) failed: %s" % (" ".join(map(str, args)), err))
        return data

    # ------------------------------------------------------------ control file and log

    def set_control(self, settings):
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            json.dump(settings, f)
        os.replace(tmp, self.control)
        t = time.time_ns()
        os.utime(self.control, ns=(t, t))

    def log_pos(self):
        try:
            return os.path.getsize(self.log)
        except OSError:
            return 0

    def records(self, pos=0):
        with open(self.log, "rb") as f:
            f.seek(pos)
            data = f.read()
        return [json.loads(line) for line in data.decode().splitlines() if line.strip()]

    # ------------------------------------------------------------ the AWS world

    def build(self):
        self.vpc = self.moto_ok("ec2", "create-vpc", "--cidr-block", "10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnet = self.moto_ok("ec2", "create-subnet", "--vpc-id", self.vpc, "--cidr-block", "10.0.1.0/24",
                                   "--availability-zone", "us-east-1a")["Subnet"]["SubnetId"]
        self.rtb = self.moto_ok("ec2", "create-route-table", "--vpc-id", self.vpc)["RouteTable"]["RouteTableId"]
        self.main_rtb = [t["RouteTableId"] for t in self.moto_ok(
            "ec2", "describe-route-tables", "--filters", "Name=vpc-id,Values=" + self.vpc)["RouteTables"]
            if t["RouteTableId"] != self.rtb][0]
        insts = self.moto_ok("ec2", "run-instances", "--image-id", "ami-12c6146b", "--count", "2",
                             "--subnet-id", self.subnet, "--instance-type", "t3.micro")["Instances"]
        self.inst1, self.inst2 = insts[0]["InstanceId"], insts[1]["InstanceId"]
        self.eni1 = insts[0]["NetworkInterfaces"][0]["NetworkInterfaceId"]   # inst1, device 0
        self.eni2 = insts[1]["NetworkInterfaces"][0]["NetworkInterfaceId"]   # inst2, device 0
        self.extra = self.new_eni()
        self.moto_ok("ec2", "attach-network-interface", "--network-interface-id", self.extra,
                     "--instance-id", self.inst1, "--device-index", "1")
        self.zone = self.moto_ok("route53", "create-hosted-zone", "--name", "switchman.test",
                                 "--caller-reference", str(uuid.uuid4()))["HostedZone"]["Id"]

    def new_eni(self, port=None):
        rc, data, err = self.cli(port or self.moto_port, "ec2", "create-network-interface", "--subnet-id", self.subnet)
        assert rc == 0, err
        return data["NetworkInterface"]["NetworkInterfaceId"]

    def route(self, dest, target, table=None):
        """A static route in moto, created or replaced."""
        kind = "--instance-id" if target.startswith("i-") else "--network-interface-id"
        rc, _, err = self.cli(self.moto_port, "ec2", "create-route", "--route-table-id", table or self.rtb,
                              "--destination-cidr-block", dest, kind, target)
        if rc != 0:
            self.moto_ok("ec2", "replace-route", "--route-table-id", table or self.rtb,
                         "--destination-cidr-block", dest, kind, target)

    def routes(self, port, table=None):
        """The routes of a table as answered on port: a list of awscli Route dicts."""
        rc, data, err = self.cli(port, "ec2", "describe-route-tables", "--route-table-ids", table or self.rtb)
        assert rc == 0, err
        return data["RouteTables"][0]["Routes"]

    def raw(self, params, port=None):
        """(status, headers, body) of a form POST, signed with a fake header (moto checks none)."""
        body = urllib.parse.urlencode(dict(params, Version="2016-11-15")).encode()
        req = urllib.request.Request("http://127.0.0.1:%d/" % (port or self.proxy_port), data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                                              "Authorization": AUTH})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()


def static(routes, dest):
    return [r for r in routes if r.get("DestinationCidrBlock") == dest and r.get("Origin") != "EnableVgwRoutePropagation"]


def target(routes, dest):
    """The static route's target for dest (ENI or instance), None if there is none."""
    s = static(routes, dest)
    return (s[0].get("NetworkInterfaceId") or s[0].get("InstanceId")) if s else None


W = None


def setUpModule():
    global W
    W = World()


def tearDownModule():
    if W:
        W.close()


class TestRealism(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        W.set_control({})

    def proxy(self, *args):
        return W.cli(W.proxy_port, *args)

    def proxy_ok(self, *args):
        rc, data, err = self.proxy(*args)
        self.assertEqual(rc, 0, "aws %s via the proxy failed: %s" % (" ".join(map(str, args)), err))
        return data

    def assertAwsError(self, result, code, message=None):
        rc, _, err = result
        self.assertNotEqual(rc, 0, "expected %s, the call succeeded" % code)
        self.assertIn("An error occurred (%s)" % code, err)
        if message is not None:
            self.assertIn(": " + message, err)

    def requests(self, pos, action=None):
        """Request lines since pos (of action), each with its response line as "done" (or None)."""
        recs = W.records(pos)
        out = []
        for r in recs:
            if "mono_ns" in r and (action is None or r.get("action") == action):
                r = dict(r)
                r["done"] = next((d for d in recs if d.get("seq") == r["seq"] and "done_ns" in d), None)
                r["late"] = next((d for d in recs if d.get("late_applied") == r["seq"]), None)
                out.append(r)
        return out

    # ------------------------------------------------------------ pass-through and legacy faults

    def test_off_is_pass_through(self):
        W.route("10.20.0.0/16", W.extra)
        pos = W.log_pos()
        via_proxy = self.proxy_ok("ec2", "describe-route-tables", "--route-table-ids", W.rtb)
        self.assertEqual(via_proxy, W.moto_ok("ec2", "describe-route-tables", "--route-table-ids", W.rtb))
        (req,) = self.requests(pos)
        self.assertNotIn("realism", req)
        self.assertNotIn("realism", req["done"])
        self.assertEqual(req["done"]["status"], 200)
        self.assertIn({"table": W.rtb, "destination": "10.20.0.0/16", "eni": W.extra, "state": "active",
                       "origin": "CreateRoute"}, req["done"]["routes"])
        status, headers, body = W.raw({"Action": "DeleteRoute", "RouteTableId": W.rtb,
                                       "DestinationCidrBlock": "10.21.0.0/16"})
        self.assertEqual(status, 400)
        self.assertIn(b'xmlns="http://ec2.amazonaws.com/doc/', body)   # moto's own error, untouched

    def test_incomplete_body_is_not_carried_out(self):
        W.route("10.22.0.0/16", W.extra)
        pos = W.log_pos()
        body = urllib.parse.urlencode({"Action": "DeleteRoute", "RouteTableId": W.rtb,
                                       "DestinationCidrBlock": "10.22.0.0/16", "Version": "2016-11-15"}).encode()
        with socket.create_connection(("127.0.0.1", W.proxy_port), timeout=30) as s:
            # The head promises the whole body; half of it is sent, then the connection closes.
            s.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + AUTH.encode() +
                      b"\r\nContent-Type: application/x-www-form-urlencoded; charset=utf-8\r\n"
                      b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:len(body) // 2])
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(s.recv(1024), b"")   # closed without an answer
        self.assertEqual(self.requests(pos), [])
        self.assertEqual(target(W.routes(W.moto_port), "10.22.0.0/16"), W.extra)

    def test_legacy_faults_unchanged(self):
        W.set_control({"throttle": 1, "actions": ["DescribeVpcs"]})
        pos = W.log_pos()
        self.assertAwsError(self.proxy("ec2", "describe-vpcs"), "RequestLimitExceeded")
        self.proxy_ok("ec2", "describe-subnets")
        vpcs, subnets = self.requests(pos)
        self.assertEqual((vpcs["fault"], vpcs["done"]["status"]), ("throttle", 400))
        self.assertNotIn("fault", subnets)

    # ------------------------------------------------------------ 1. latency

    def test_latency(self):
        settings = {"latency_ms": 300, "latency_jitter": 0.5, "seed": 4}
        W.set_control(settings)
        pos = W.log_pos()
        for _ in range(3):
            self.proxy_ok("ec2", "describe-vpcs")
        reqs = self.requests(pos)
        drawn = [r["latency_ms"] for r in reqs]
        for r in reqs:
            self.assertEqual(r["realism"], ["latency"])
            self.assertTrue(150 <= r["latency_ms"] <= 450, r["latency_ms"])
            self.assertGreaterEqual(r["done"]["done_ns"] - r["mono_ns"], r["latency_ms"] * 1e6)
        self.assertEqual(len(set(drawn)), 3, drawn)
        # the same seed draws the same latencies again
        W.set_control(settings)
        pos = W.log_pos()
        for _ in range(3):
            self.proxy_ok("ec2", "describe-vpcs")
        self.assertEqual([r["latency_ms"] for r in self.requests(pos)], drawn)
        # waits overlap: four concurrent requests are all in the proxy at once
        W.set_control({"latency_ms": 1500})
        pos = W.log_pos()
        threads = [threading.Thread(target=W.raw, args=({"Action": "DescribeVpcs"},)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        reqs = self.requests(pos)
        self.assertEqual(len(reqs), 4)
        for r in reqs:
            self.assertGreaterEqual(r["done"]["done_ns"] - r["mono_ns"], 1.5e9)
        # serialised waits would finish >= 1.5 s apart; overlapping ones finish together
        done = sorted(r["done"]["done_ns"] for r in reqs)
        self.assertLess(done[-1] - done[0], 1.5e9, "the latency waits were serialised")

    # ------------------------------------------------------------ 2. propagation

    def test_propagation(self):
        W.route("172.16.0.0/16", W.extra)
        W.set_control({"propagation": {"gateway": VGW, "cidrs": ["172.16.0.0/16", "192.168.0.0/16"],
                                       "tables": [W.rtb]}, "seed": 5})
        pos = W.log_pos()
        positions = set()
        for _ in range(6):
            routes = self.routes_via_proxy()
            vgw = [r for r in routes if r.get("GatewayId") == VGW]
            self.assertEqual(sorted(r["DestinationCidrBlock"] for r in vgw), ["172.16.0.0/16", "192.168.0.0/16"])
            for r in vgw:
                self.assertEqual((r["State"], r["Origin"]), ("active", "EnableVgwRoutePropagation"))
            self.assertEqual(target(routes, "172.16.0.0/16"), W.extra)       # the static route is still there
            positions.add(tuple(i for i, r in enumerate(routes) if r.get("GatewayId") == VGW))
        self.assertGreater(len(positions), 1, "the propagated routes never moved")
        self.assertFalse([r for r in W.routes(W.moto_port) if r.get("GatewayId") == VGW], "moto holds a vgw route")
        self.assertFalse([r for r in W.routes(W.proxy_port, W.main_rtb) if r.get("GatewayId") == VGW],
                         "a table not listed in `tables` gained a propagated route")
        # the log records what the client was answered
        req = self.requests(pos, "DescribeRouteTables")[0]
        self.assertIn("propagation", req["done"]["realism"])
        self.assertIn({"table": W.rtb, "destination": "192.168.0.0/16", "eni": None, "state": "active",
                       "origin": "EnableVgwRoutePropagation"}, req["done"]["routes"])
        # a ReplaceRoute of a CIDR that only has a propagated route answers as AWS does
        pos = W.log_pos()
        self.assertAwsError(self.proxy("ec2", "replace-route", "--route-table-id", W.rtb, "--destination-cidr-block",
                                       "192.168.0.0/16", "--network-interface-id", W.extra),
                            "InvalidParameterValue",
                            "There is no route defined for '192.168.0.0/16' in the route table. Use CreateRoute instead.")
        (req,) = self.requests(pos)
        self.assertEqual((req["done"]["status"], req["done"]["code"]), (400, "InvalidParameterValue"))
        # writes of the static route go to moto unchanged
        self.proxy_ok("ec2", "replace-route", "--route-table-id", W.rtb, "--destination-cidr-block", "172.16.0.0/16",
                      "--network-interface-id", W.eni2)
        self.assertEqual(target(W.routes(W.moto_port), "172.16.0.0/16"), W.eni2)

    def routes_via_proxy(self):
        return W.routes(W.proxy_port)

    # ------------------------------------------------------------ 3. consistency lag

    def test_consistency_lag(self):
        lag = 4
        W.route("10.1.0.0/16", W.eni1)      # will be replaced
        W.route("10.2.0.0/16", W.eni1)      # will be deleted
        self.assertIsNone(target(W.routes(W.moto_port), "10.3.0.0/16"))   # will be created
        W.set_control({"consistency_lag_s": lag})
        pos = W.log_pos()
        self.proxy_ok("ec2", "replace-route", "--route-table-id", W.rtb, "--destination-cidr-block", "10.1.0.0/16",
                      "--network-interface-id", W.eni2)
        self.proxy_ok("ec2", "create-route", "--route-table-id", W.rtb, "--destination-cidr-block", "10.3.0.0/16",
                      "--network-interface-id", W.eni2)
        self.proxy_ok("ec2", "delete-route", "--route-table-id", W.rtb, "--destination-cidr-block", "10.2.0.0/16")
        shown = self.routes_via_proxy()
        truth = W.routes(W.moto_port)
        writes = self.requests(pos)[:3]
        first_write_ns = min(w["mono_ns"] for w in writes)
        read = self.requests(pos, "DescribeRouteTables")[0]
        if read["done"]["done_ns"] >= first_write_ns + lag * 1e9:
            self.skipTest("the machine took more than the %ds window to write and read back" % lag)
        for w in writes:
            self.assertEqual(w["done"]["status"], 200)
            self.assertIn("consistency", w["done"]["realism"])
        self.assertEqual((target(truth, "10.1.0.0/16"), target(truth, "10.2.0.0/16"), target(truth, "10.3.0.0/16")),
                         (W.eni2, None, W.eni2))
        self.assertEqual((target(shown, "10.1.0.0/16"), target(shown, "10.2.0.0/16"), target(shown, "10.3.0.0/16")),
                         (W.eni1, W.eni1, None), "the proxy showed the writes inside the lag window")
        self.assertIn("consistency", read["done"]["realism"])
        self.assertIn({"table": W.rtb, "destination": "10.1.0.0/16", "eni": W.eni1, "state": "active",
                       "origin": "CreateRoute"}, read["done"]["routes"])

        def converged():
            r = self.routes_via_proxy()
            return (target(r, "10.1.0.0/16"), target(r, "10.2.0.0/16"), target(r, "10.3.0.0/16")) == \
                (W.eni2, None, W.eni2)
        poll(converged, 30, 0.25, "the proxy to show the writes")
        last = self.requests(pos, "DescribeRouteTables")[-1]
        for w in writes:
            self.assertGreaterEqual(last["done"]["done_ns"], w["mono_ns"] + lag * 1e9,
                                    "the truth showed before the window ended")

    # ------------------------------------------------------------ 4. new id lag

    def test_new_id_lag(self):
        lag = 3
        W.route("10.4.0.0/16", W.eni1)
        W.set_control({"new_id_lag_s": lag})
        # ids already in moto when the mode is switched on count as old
        self.proxy_ok("ec2", "replace-route", "--route-table-id", W.rtb, "--destination-cidr-block", "10.4.0.0/16",
                      "--network-interface-id", W.extra)
        pos = W.log_pos()
        eni = W.new_eni(W.proxy_port)
        self.assertAwsError(self.proxy("ec2", "create-route", "--route-table-id", W.rtb, "--destination-cidr-block",
                                       "10.5.0.0/16", "--network-interface-id", eni),
                            "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist" % eni)
        self.assertIsNone(target(W.routes(W.moto_port), "10.5.0.0/16"), "the rejected write reached moto")
        inst = self.proxy_ok("ec2", "run-instances", "--image-id", "ami-12c6146b", "--count", "1",
                             "--subnet-id", W.subnet)["Instances"][0]["InstanceId"]
        self.assertAwsError(self.proxy("ec2", "replace-route", "--route-table-id", W.rtb, "--destination-cidr-block",
                                       "10.4.0.0/16", "--instance-id", inst),
                            "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist" % inst)
        self.assertEqual(target(W.routes(W.moto_port), "10.4.0.0/16"), W.extra)
        created = self.requests(pos, "CreateNetworkInterface")[0]
        rejected = self.requests(pos, "CreateRoute")[0]
        self.assertEqual(rejected["realism"], ["new_id_lag"])
        self.assertEqual((rejected["done"]["status"], rejected["done"]["code"]),
                         (400, "InvalidNetworkInterfaceID.NotFound"))

        def accepted():
            return self.proxy("ec2", "create-route", "--route-table-id", W.rtb, "--destination-cidr-block",
                              "10.5.0.0/16", "--network-interface-id", eni)[0] == 0
        poll(accepted, 30, 0.25, "the new ENI to become usable")
        ok = [r for r in self.requests(pos, "CreateRoute") if r["done"]["status"] == 200][0]
        self.assertGreaterEqual(ok["done"]["done_ns"], created["mono_ns"] + lag * 1e9, "the new id was usable too early")
        self.assertEqual(target(W.routes(W.moto_port), "10.5.0.0/16"), eni)
        W.moto_ok("ec2", "terminate-instances", "--instance-ids", inst)

    # ------------------------------------------------------------ 5. blackhole

    def test_blackhole(self):
        doomed = W.new_eni()
        W.moto_ok("ec2", "attach-network-interface", "--network-interface-id", doomed, "--instance-id", W.inst1,
                  "--device-index", "2")
        loose = W.new_eni()
        W.route("10.6.0.0/16", W.eni2)       # ENI of inst2
        W.route("10.7.0.0/16", W.inst2)      # inst2 itself
        W.route("10.8.0.0/16", doomed)       # an ENI that will be deleted
        W.route("10.9.0.0/16", loose)        # an ENI attached to nothing
        W.set_control({"blackhole": True})
        dests = ("10.6.0.0/16", "10.7.0.0/16", "10.8.0.0/16", "10.9.0.0/16")

        def states(port):
            routes = W.routes(port)
            return tuple(static(routes, d)[0]["State"] for d in dests)
        pos = W.log_pos()
        self.assertEqual(states(W.proxy_port), ("active", "active", "active", "blackhole"))
        self.assertIn("blackhole", self.requests(pos)[0]["done"]["realism"])
        W.moto_ok("ec2", "stop-instances", "--instance-ids", W.inst2)
        W.moto_ok("ec2", "detach-network-interface", "--attachment-id", W.moto_ok(
            "ec2", "describe-network-interfaces", "--network-interface-ids", doomed)
            ["NetworkInterfaces"][0]["Attachment"]["AttachmentId"])
        W.moto_ok("ec2", "delete-network-interface", "--network-interface-id", doomed)
        poll(lambda: states(W.proxy_port) == ("blackhole",) * 4, 15, 0.3, "the routes to read blackhole")
        self.assertEqual(states(W.moto_port), ("active",) * 4)          # moto never says blackhole
        pos = W.log_pos()
        self.routes_via_proxy()
        logged = {r["destination"]: r["state"] for r in self.requests(pos)[0]["done"]["routes"]}
        self.assertEqual(logged["10.7.0.0/16"], "blackhole")
        W.moto_ok("ec2", "start-instances", "--instance-ids", W.inst2)
        poll(lambda: states(W.proxy_port)[:2] == ("active", "active"), 15, 0.3, "inst2's routes to come back")

    # ------------------------------------------------------------ 6. ENI order

    def test_eni_order(self):
        settings = {"eni_order": "shuffle", "seed": 11}

        def orders(port, n):
            out = []
            for _ in range(n):
                rc, data, err = W.cli(port, "ec2", "describe-instances", "--instance-ids", W.inst1)
                self.assertEqual(rc, 0, err)
                nis = data["Reservations"][0]["Instances"][0]["NetworkInterfaces"]
                out.append(tuple((n["NetworkInterfaceId"], n["Attachment"]["DeviceIndex"]) for n in nis))
            return out
        truth = orders(W.moto_port, 2)
        self.assertEqual(truth[0], truth[1])
        self.assertEqual([d for _, d in truth[0]], sorted(d for _, d in truth[0]), "moto lists device order")
        self.assertIn((W.eni1, 0), truth[0])
        self.assertIn((W.extra, 1), truth[0])
        W.set_control(settings)
        pos = W.log_pos()
        first = orders(W.proxy_port, 8)
        for o in first:
            self.assertEqual(sorted(o), sorted(truth[0]), "the ENIs or their device indexes changed")
        self.assertGreater(len(set(first)), 1, "the ENI order never changed")
        self.assertIn("eni_order", self.requests(pos)[0]["done"]["realism"])
        W.set_control(settings)            # same seed: same orders
        self.assertEqual(orders(W.proxy_port, 8), first)
        seen = set()
        for _ in range(6):
            data = self.proxy_ok("ec2", "describe-network-interfaces", "--filters", "Name=subnet-id,Values=" + W.subnet)
            seen.add(tuple(n["NetworkInterfaceId"] for n in data["NetworkInterfaces"]))
        self.assertGreater(len(seen), 1, "DescribeNetworkInterfaces was never shuffled")

    # ------------------------------------------------------------ 6b. instance status

    def test_instance_status(self):
        truth = W.moto_ok("ec2", "describe-instance-status", "--instance-ids", W.inst1, "--include-all-instances")
        self.assertEqual(truth["InstanceStatuses"][0]["InstanceStatus"]["Status"], "ok", "moto says ok")
        W.set_control({"instance_status": {W.inst1: {"instance": "impaired", "events": [
            {"code": "system-reboot", "description": "scheduled reboot", "notBefore": "2026-12-09T02:00:00.000Z",
             "notAfter": "2026-12-09T04:00:00.000Z"}]}}})
        pos = W.log_pos()
        data = self.proxy_ok("ec2", "describe-instance-status", "--instance-ids", W.inst1, "--include-all-instances")
        st = data["InstanceStatuses"][0]
        self.assertEqual(st["InstanceStatus"]["Status"], "impaired")
        self.assertEqual(st["InstanceStatus"]["Details"], [{"Name": "reachability", "Status": "failed"}])
        self.assertEqual(st["SystemStatus"]["Status"], "ok", "an unlisted check is moto's")
        (ev,) = st["Events"]
        self.assertEqual((ev["Code"], ev["InstanceEventId"], ev["Description"]), ("system-reboot", "instance-event-1", "scheduled reboot"))
        self.assertTrue(str(ev["NotBefore"]).startswith("2026-12-09T02:00:00"))
        self.assertIn("instance_status", self.requests(pos)[0]["done"]["realism"])
        W.set_control({"instance_status": {W.inst1: {"events": []}}})
        st = self.proxy_ok("ec2", "describe-instance-status", "--instance-ids", W.inst1)["InstanceStatuses"][0]
        self.assertEqual((st["InstanceStatus"]["Status"], st.get("Events", [])), ("ok", []))

    # ------------------------------------------------------------ 7. AWS errors

    def test_aws_errors(self):
        missing = "10.10.0.0/16"
        status, _, body = W.raw({"Action": "ReplaceRoute", "RouteTableId": W.rtb, "DestinationCidrBlock": missing,
                                 "NetworkInterfaceId": W.extra})
        self.assertEqual(status, 400)
        self.assertIn(b"<RequestID>request-id</RequestID>", body)      # moto's own shape while off
        W.set_control({"aws_errors": True})
        pos = W.log_pos()
        self.assertAwsError(self.proxy("ec2", "replace-route", "--route-table-id", W.rtb, "--destination-cidr-block",
                                       missing, "--network-interface-id", W.extra),
                            "InvalidParameterValue",
                            "There is no route defined for '%s' in the route table. Use CreateRoute instead." % missing)
        (req,) = self.requests(pos)
        self.assertEqual(req["done"]["realism"], ["aws_errors"])
        self.assertEqual(req["done"]["status"], 400)
        for params, code in (({"Action": "ReplaceRoute", "RouteTableId": W.rtb, "DestinationCidrBlock": missing,
                               "NetworkInterfaceId": W.extra}, "InvalidParameterValue"),
                             ({"Action": "ReplaceRoute", "RouteTableId": "rtb-0000000000000000a",
                               "DestinationCidrBlock": missing, "NetworkInterfaceId": W.extra},
                              "InvalidRouteTableID.NotFound")):
            status, headers, body = W.raw(params)
            self.assertEqual(status, 400)
            self.assertTrue(body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), body[:60])
            root = ET.fromstring(body)
            self.assertEqual(root.tag, "Response")                          # no namespace
            self.assertEqual(root.findtext("Errors/Error/Code"), code)
            rid = root.findtext("RequestID")
            self.assertRegex(rid, UUID_RE)
            self.assertEqual(headers.get("x-amzn-RequestId"), rid)
            self.assertEqual(len(headers.get_all("x-amzn-RequestId")), 1)
            self.assertEqual(int(headers["Content-Length"]), len(body))
        self.assertIsNone(target(W.routes(W.moto_port), missing))

    # ------------------------------------------------------------ 8. DryRun and deny

    def test_dryrun_and_deny(self):
        new, old = "10.11.0.0/16", "10.12.0.0/16"
        W.route(old, W.eni1)
        # moto ignores DryRun: the dry create is applied
        self.proxy_ok("ec2", "create-route", "--dry-run", "--route-table-id", W.rtb, "--destination-cidr-block", new,
                      "--network-interface-id", W.eni1)
        self.assertEqual(target(W.routes(W.moto_port), new), W.eni1)
        W.moto_ok("ec2", "delete-route", "--route-table-id", W.rtb, "--destination-cidr-block", new)
        W.set_control({"dryrun": True, "deny": ["ReplaceRoute"]})
        pos = W.log_pos()
        self.assertAwsError(self.proxy("ec2", "create-route", "--dry-run", "--route-table-id", W.rtb,
                                       "--destination-cidr-block", new, "--network-interface-id", W.eni1),
                            "DryRunOperation", "Request would have succeeded, but DryRun flag is set.")
        self.assertAwsError(self.proxy("ec2", "replace-route", "--dry-run", "--route-table-id", W.rtb,
                                       "--destination-cidr-block", old, "--network-interface-id", W.eni2),
                            "UnauthorizedOperation", "You are not authorized to perform this operation.")
        self.assertAwsError(self.proxy("ec2", "replace-route", "--route-table-id", W.rtb,
                                       "--destination-cidr-block", old, "--network-interface-id", W.eni2),
                            "UnauthorizedOperation", "You are not authorized to perform this operation.")
        truth = W.routes(W.moto_port)
        self.assertIsNone(target(truth, new), "the dry run reached moto")
        self.assertEqual(target(truth, old), W.eni1, "the denied write reached moto")
        dry_create, dry_replace, replace = self.requests(pos)
        self.assertEqual((dry_create["done"]["status"], dry_create["realism"]), (412, ["dryrun"]))
        self.assertEqual((dry_replace["done"]["status"], dry_replace["realism"]), (403, ["deny", "dryrun"]))
        self.assertEqual((replace["done"]["status"], replace["realism"]), (403, ["deny"]))
        self.proxy_ok("ec2", "create-route", "--route-table-id", W.rtb, "--destination-cidr-block", new,
                      "--network-interface-id", W.eni1)                     # not dry, not denied
        self.assertEqual(target(W.routes(W.moto_port), new), W.eni1)

    # ------------------------------------------------------------ 9. buckets and the noisy neighbour

    def test_buckets(self):
        W.set_control({"buckets": {"DescribeVpcs": [2, 0.01], "route53": [2, 0.01]}})
        pos = W.log_pos()
        self.proxy_ok("ec2", "describe-vpcs")
        self.proxy_ok("ec2", "describe-vpcs")
        self.assertAwsError(self.proxy("ec2", "describe-vpcs"), "RequestLimitExceeded", "Request limit exceeded.")
        self.proxy_ok("ec2", "describe-subnets")                            # no bucket: unlimited
        self.proxy_ok("route53", "list-hosted-zones")
        self.proxy_ok("route53", "get-hosted-zone", "--id", W.zone)         # one bucket for all of Route 53
        self.assertAwsError(self.proxy("route53", "list-hosted-zones"), "Throttling", "Rate exceeded")
        reqs = self.requests(pos)
        self.assertEqual([r["done"]["status"] for r in reqs], [200, 200, 503, 200, 200, 200, 400])
        self.assertEqual((reqs[2]["realism"], reqs[2]["done"]["code"]), (["buckets"], "RequestLimitExceeded"))
        self.assertEqual(reqs[6]["done"]["code"], "Throttling")

    def test_neighbour(self):
        W.set_control({"buckets": {"DescribeVpcs": [5, 0.01]}, "neighbour": {"DescribeVpcs": 200}})
        calls = []

        def throttled():
            rc, _, err = self.proxy("ec2", "describe-vpcs")
            calls.append(rc)
            return rc != 0 and "RequestLimitExceeded" in err
        poll(throttled, 20, 0.05, "a throttled DescribeVpcs")
        self.assertLess(len(calls) - 1, 5, "the neighbour drew no tokens: %d calls went through" % (len(calls) - 1))

    def test_ec2_default_buckets(self):
        spec = proxy_mod.bucket_spec
        self.assertEqual(spec("ec2-default", "ReplaceRoute", {}, True), ("ReplaceRoute", (50, 5.0)))
        self.assertEqual(spec("ec2-default", "DescribeRouteTables", {}, True), ("DescribeRouteTables", (100, 20.0)))
        self.assertEqual(spec("ec2-default", "DescribeInstances", {"InstanceId.1": "i-1"}, True),
                         ("DescribeInstances (unfiltered)", (50, 10.0)))
        self.assertEqual(spec("ec2-default", "DescribeInstances", {"Filter.1.Name": "x"}, True),
                         ("DescribeInstances", (100, 20.0)))
        self.assertEqual(spec("ec2-default", "ListHostedZones", {}, False), ("route53", (5, 5.0)))
        self.assertEqual(spec({"ReplaceRoute": [3, 1]}, "CreateRoute", {}, True), None)
        self.assertEqual(spec({"ReplaceRoute": [3, 1], "*": "ec2-default"}, "CreateRoute", {}, True),
                         ("CreateRoute", (50, 5.0)))
        # and the proxy applies them: ReplaceRoute's 50-token burst, then RequestLimitExceeded
        W.route("10.13.0.0/16", W.eni1)
        W.set_control({"buckets": "ec2-default"})
        self.proxy_ok("ec2", "describe-route-tables", "--route-table-ids", W.rtb)
        ok = 0
        for _ in range(400):
            status, _, body = W.raw({"Action": "ReplaceRoute", "RouteTableId": W.rtb,
                                     "DestinationCidrBlock": "10.13.0.0/16", "NetworkInterfaceId": W.eni1})
            if status == 503:
                self.assertIn(b"<Code>RequestLimitExceeded</Code>", body)
                break
            self.assertEqual(status, 200, body)
            ok += 1
        else:
            self.fail("400 ReplaceRoutes and no RequestLimitExceeded")
        self.assertGreaterEqual(ok, 50)

    # ------------------------------------------------------------ 10. late apply

    def test_late_apply(self):
        delay, hold = 3.0, 1.5
        W.route("10.14.0.0/16", W.eni1)
        W.set_control({"late_apply": {"p": 1, "delay_s": delay, "hold_s": hold, "actions": ["ReplaceRoute"]}})
        pos = W.log_pos()
        t0 = time.monotonic()
        result = self.proxy("--cli-read-timeout", "30", "ec2", "replace-route", "--route-table-id", W.rtb,
                            "--destination-cidr-block", "10.14.0.0/16", "--network-interface-id", W.eni2)
        t1 = time.monotonic()
        early = target(W.routes(W.moto_port), "10.14.0.0/16")
        t2 = time.monotonic()
        self.assertNotEqual(result[0], 0, "the held request was answered")
        self.assertIn("Connection was closed", result[2])
        self.assertGreaterEqual(t1 - t0, hold - 0.05, "the connection closed before hold_s")
        poll(lambda: target(W.routes(W.moto_port), "10.14.0.0/16") == W.eni2, 30, 0.2, "the late application")
        (req,) = self.requests(pos, "ReplaceRoute")
        self.assertEqual(req["realism"], ["late_apply"])
        self.assertIsNone(req["done"], "a response line was written for the unanswered request")
        poll(lambda: self.requests(pos, "ReplaceRoute")[0]["late"], 10, 0.1, "the late_applied line")
        late = self.requests(pos, "ReplaceRoute")[0]["late"]
        self.assertEqual(late["status"], 200)
        self.assertGreaterEqual(late["applied_ns"] - req["mono_ns"], delay * 1e9, "applied before delay_s")
        if (t2 - t0) < delay:
            self.assertEqual(early, W.eni1, "moto changed before delay_s")
        self.proxy_ok("ec2", "describe-route-tables", "--route-table-ids", W.rtb)   # other actions answered

    # ------------------------------------------------------------ 11. AZ outage

    def test_az_outage(self):
        W.set_control({"az_outage": {"filtered_describe_fails": True}})
        pos = W.log_pos()
        self.assertAwsError(self.proxy("ec2", "describe-instances", "--filters", "Name=instance-state-name,Values=running"),
                            "Unavailable", "The service is unavailable. Please try again shortly.")
        data = self.proxy_ok("ec2", "describe-instances", "--instance-ids", W.inst1)
        self.assertEqual(data["Reservations"][0]["Instances"][0]["InstanceId"], W.inst1)
        self.proxy_ok("ec2", "describe-route-tables", "--filters", "Name=vpc-id,Values=" + W.vpc)
        filtered, by_id, _ = self.requests(pos)
        self.assertEqual((filtered["done"]["status"], filtered["realism"]), (503, ["az_outage"]))
        self.assertEqual(by_id["done"]["status"], 200)

    # ------------------------------------------------------------ presets and combinations

    def test_presets(self):
        with open(os.path.join(HERE, "realism", "off.json")) as f:
            self.assertEqual(json.load(f), {})
        with open(os.path.join(HERE, "realism", "aws.json")) as f:
            aws = json.load(f)
        for key in ("latency_ms", "latency_jitter", "consistency_lag_s", "new_id_lag_s", "blackhole", "eni_order",
                    "aws_errors", "dryrun", "buckets"):
            self.assertIn(key, aws)
        self.assertEqual(aws["buckets"], "ec2-default")
        aws["propagation"] = {"gateway": VGW, "cidrs": ["172.31.0.0/16"]}
        W.route("10.15.0.0/16", W.extra)
        W.set_control(aws)
        pos = W.log_pos()
        routes = self.routes_via_proxy()
        self.assertEqual(target(routes, "10.15.0.0/16"), W.extra)
        self.assertTrue([r for r in routes if r.get("GatewayId") == VGW])
        self.proxy_ok("ec2", "describe-instances", "--instance-ids", W.inst1)
        self.proxy_ok("ec2", "replace-route", "--route-table-id", W.rtb, "--destination-cidr-block", "10.15.0.0/16",
                      "--network-interface-id", W.eni1)
        lagged = target(self.routes_via_proxy(), "10.15.0.0/16")
        self.assertEqual(target(W.routes(W.moto_port), "10.15.0.0/16"), W.eni1)
        reqs = self.requests(pos)
        if reqs[3]["done"]["done_ns"] < reqs[2]["mono_ns"] + aws["consistency_lag_s"] * 1e9:
            self.assertEqual(lagged, W.extra, "the read inside the lag window showed the write")
        for r in reqs:
            self.assertIn("latency", r["realism"])
            lo, hi = aws["latency_ms"] * (1 - aws["latency_jitter"]), aws["latency_ms"] * (1 + aws["latency_jitter"])
            self.assertTrue(lo <= r["latency_ms"] <= hi, r["latency_ms"])
        self.assertIn("propagation", reqs[0]["done"]["realism"])
        self.assertIn("eni_order", reqs[1]["done"]["realism"])
        self.assertIn("consistency", reqs[3]["done"]["realism"])


if __name__ == "__main__":
    unittest.main()
