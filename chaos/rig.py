"""The chaos rig: a Switchman cluster whose every process lives in its own network namespace.

Layout (chaos/README.md): a bridge `swcbr0` in the root namespace (198.18.0.1/24), one
namespace per process joined to it by a veth pair, addresses from 198.18.0.0/15 (RFC 2544's
benchmarking range) behind a blackhole route in the root namespace, so nothing the rig sends
can ever leave the machine:

  swc-aws   198.18.0.2   moto (:5000) and the recording, fault-injecting proxy (:4566)
  swc-rN    198.18.0.1N  replica N (peer :7000, admin :7443)
  swc-sT    198.18.0.2x  the sentinel of tunnel T (:7100), on "the VPN instance"
  swc-fT    198.18.0.3x  the far side of tunnel T (a TCP responder, :7200)

Faults are nftables rules inside the namespaces (table inet chaos), signals, the proxy's
control file, libfaketime's timestamp file and a tmpfs under a replica's data. Everything is
undone by `Rig.teardown`, which also runs when a scenario fails or the run is interrupted.
Standard library only (boto3 for seeding moto comes with moto[server]).
"""
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET = "198.18.0"
RANGE = "198.18.0.0/15"
BRIDGE = "swcbr0"
PREFIX = "swc-"
TUNNELS = ["a1", "a2", "b1", "b2"]
REGION = "us-east-1"
ZONE_NAME = "vpn.switchman.chaos"
TAG_KEY = "switchman/tunnel"
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
# Preloaded before libfaketime so that timers stay real (chaos/realtimers.c says why).
REALTIMERS_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "realtimers.c")

PEER_PORT, ADMIN_PORT, SENTINEL_PORT, RESPONDER_PORT = 7000, 7443, 7100, 7200
MOTO_PORT, PROXY_PORT = 5000, 4566

# The timings every chaos cluster runs with (chaos/README.md derives the convergence bound).
TIMING = dict(probeInterval=0.5, probeTimeout=0.4, fall=2, rise=3, holdDown=4.0, observationTTL=5.0,
              heartbeat=0.1, electionTimeout=1.0, maxClockDrift=0.05)


class RigError(Exception):
    pass


def sh(*cmd, check=True, ns=None, input=None, quiet=False):
    """Runs a command (in namespace `ns`), returns its stdout; raises RigError with its stderr."""
    full = (["ip", "netns", "exec", ns] if ns else []) + [str(c) for c in cmd]
    p = subprocess.run(full, capture_output=True, text=True, input=input)
    if check and p.returncode != 0:
        raise RigError("%s failed (%d): %s" % (" ".join(full), p.returncode, (p.stderr or p.stdout).strip()))
    return p.stdout


def mono():
    return time.monotonic_ns()


def wait_until(what, predicate, timeout, interval=0.1):
    """Polls `predicate` until it returns a true value, which it returns; RigError on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # a process still starting: try again
            last_error = e
        time.sleep(interval)
    raise RigError("timed out after %ds waiting for %s%s" % (timeout, what, " (last error: %s)" % last_error if last_error else ""))


class Node:
    """One namespace and the process in it."""

    def __init__(self, name, addr):
        self.name, self.addr = name, addr
        self.ns = PREFIX + name
        self.proc = None
        self.stopped = False  # SIGSTOPped

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None


class Rig:
    def __init__(self, run_dir, binary, replicas=3, members=None, log=print):
        self.dir = run_dir
        self.binary = binary
        self.log = log
        self.replica_ids = list(range(1, replicas + 1))
        self.nodes = {"aws": Node("aws", NET + ".2")}
        for i in self.replica_ids:
            self.nodes["r%d" % i] = Node("r%d" % i, "%s.%d" % (NET, 10 + i))
        for k, t in enumerate(TUNNELS):
            self.nodes["s" + t] = Node("s" + t, "%s.%d" % (NET, 21 + k))
            self.nodes["f" + t] = Node("f" + t, "%s.%d" % (NET, 31 + k))
        self.added_blackhole = False
        self.mounts = []
        self.faults_file = open(os.path.join(run_dir, "faults.jsonl"), "a", buffering=1)
        self.control = os.path.join(run_dir, "proxy-control.json")
        self.realism = {}
        self.world = {}
        self.enis = {}
        self.faked = set()
        self.members = list(members or self.replica_ids)
        self.founders = set(self.members)
        self.configs = {}
        self.fault_count = 0
        self._ssl = None

    # ------------------------------------------------------------------ network

    @staticmethod
    def leftovers():
        out = sh("ip", "netns", "list", check=False)
        return [l.split()[0] for l in out.splitlines() if l.startswith(PREFIX)]

    def setup_network(self):
        if self.leftovers() or os.path.exists("/sys/class/net/" + BRIDGE):
            self.log("    removing a previous run's namespaces")
            self.teardown_network()
        # The blackhole first: from here on, nothing addressed to the range can leave the host.
        routes = sh("ip", "route", "show", RANGE, check=False)
        if "blackhole" not in routes:
            sh("ip", "route", "add", "blackhole", RANGE)
            self.added_blackhole = True
        sh("ip", "link", "add", BRIDGE, "type", "bridge")
        sh("ip", "addr", "add", NET + ".1/24", "dev", BRIDGE)
        sh("ip", "link", "set", BRIDGE, "up")
        for node in self.nodes.values():
            self._add_node(node)

    def _add_node(self, node):
        veth = "swcv-" + node.name
        sh("ip", "netns", "add", node.ns)
        sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", node.ns)
        sh("ip", "link", "set", veth, "master", BRIDGE)
        sh("ip", "link", "set", veth, "up")
        sh("ip", "addr", "add", node.addr + "/24", "dev", "eth0", ns=node.ns)
        sh("ip", "link", "set", "eth0", "up", ns=node.ns)
        sh("ip", "link", "set", "lo", "up", ns=node.ns)
        sh("nft", "-f", "-", ns=node.ns, input="""
table inet chaos {
  chain input { type filter hook input priority 0; policy accept; }
  chain output { type filter hook output priority 0; policy accept; }
}
""")

    def teardown_network(self):
        for ns in self.leftovers():
            for pid in sh("ip", "netns", "pids", ns, check=False).split():
                try:
                    os.kill(int(pid), signal.SIGCONT)
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", ns, check=False)
        if os.path.exists("/sys/class/net/" + BRIDGE):
            sh("ip", "link", "del", BRIDGE, check=False)

    def teardown(self):
        for node in self.nodes.values():
            if node.proc and node.proc.poll() is None:
                try:
                    os.killpg(node.proc.pid, signal.SIGCONT)
                    os.killpg(node.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for node in self.nodes.values():
            if node.proc:
                try:
                    node.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self.teardown_network()
        for m in self.mounts:
            sh("umount", "-l", m, check=False)
        self.mounts = []
        if self.added_blackhole:
            sh("ip", "route", "del", "blackhole", RANGE, check=False)
            self.added_blackhole = False

    # ------------------------------------------------------------------ faults: events

    def fault(self, event, kind, detail=""):
        if event == "start":
            self.fault_count += 1
        rec = {"mono_ns": mono(), "wall": time.time(), "event": event, "fault": kind, "detail": detail}
        self.faults_file.write(json.dumps(rec) + "\n")
        self.log("    [%s] %s %s" % (event, kind, detail))

    # ------------------------------------------------------------------ faults: network

    def _rules(self, node_name, chain, rules):
        ns = self.nodes[node_name].ns
        for r in rules:
            sh("nft", "add", "rule", "inet", "chaos", chain, *r.split(), "comment", '"chaos"', ns=ns)

    def block(self, src, dst, one_way=False, loss=None):
        """Drops what node `dst` receives from node `src` (and, unless one_way, the reverse).
        With `loss` (percent) only that share, picked by `numgen random`."""
        sa, da = self.nodes[src].addr, self.nodes[dst].addr
        match = "numgen random mod 100 < %d " % loss if loss else ""
        self._rules(dst, "input", ["ip saddr %s %sdrop" % (sa, match)])
        self._rules(src, "output", ["ip daddr %s %sdrop" % (da, match)])
        if not one_way:
            self._rules(src, "input", ["ip saddr %s %sdrop" % (da, match)])
            self._rules(dst, "output", ["ip daddr %s %sdrop" % (sa, match)])

    def partition(self, groups):
        """Replicas in different groups cannot reach each other (AWS and sentinels still can)."""
        names = [["r%d" % i for i in g] for g in groups]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                for x in a:
                    for y in b:
                        self.block(x, y)

    def heal_network(self, names=None):
        for name in names or list(self.nodes):
            node = self.nodes[name]
            sh("nft", "flush", "chain", "inet", "chaos", "input", ns=node.ns, check=False)
            sh("nft", "flush", "chain", "inet", "chaos", "output", ns=node.ns, check=False)

    def delay_peers(self, delay_ms, jitter_ms=0, seed=0):
        """Every replica's inbound peer connections pass through chaos/delay.py, which holds
        each chunk back `delay_ms` (+ up to `jitter_ms`), both ways."""
        for i in self.members:
            r = self.nodes["r%d" % i]
            d = Node("delay%d" % i, r.addr)
            d.ns = r.ns
            self.nodes[d.name] = d
            self.spawn(d, [sys.executable, os.path.join(ROOT, "chaos", "delay.py"), "--listen", PEER_PORT + 1,
                           "--to", "%s:%d" % (r.addr, PEER_PORT), "--delay-ms", delay_ms, "--jitter-ms", jitter_ms,
                           "--seed", seed + i], "delay-%d.log" % i)
        for i in self.members:
            r = self.nodes["r%d" % i]
            wait_until("the delay relay of replica %d" % i, lambda r=r: self._port_open(r.addr, PEER_PORT + 1), 30)
            sh("nft", "-f", "-", ns=r.ns, input="""
table ip chaosnat {
  chain prerouting { type nat hook prerouting priority -100; tcp dport %d redirect to :%d; }
}
""" % (PEER_PORT, PEER_PORT + 1))
            # Redirection applies to new connections: reset the established ones so the
            # replicas reconnect through the relay.
            sh("nft", "add", "rule", "inet", "chaos", "input", "tcp", "dport", PEER_PORT, "ct", "state", "established",
               "reject", "with", "tcp", "reset", ns=r.ns)
        time.sleep(0.5)
        for i in self.members:
            self.heal_network(["r%d" % i])

    def undelay_peers(self):
        for name in [n for n in self.nodes if n.startswith("delay")]:
            node = self.nodes.pop(name)
            sh("nft", "delete", "table", "ip", "chaosnat", ns=node.ns, check=False)
            if node.alive:
                os.killpg(node.proc.pid, signal.SIGKILL)
                node.proc.wait(timeout=10)

    def tunnel_down(self, t):
        """The far side of tunnel T stops answering its sentinel (packets dropped, no RST)."""
        self._rules("f" + t, "input", ["tcp dport %d drop" % RESPONDER_PORT])

    def tunnel_up(self, t):
        self.heal_network(["f" + t])

    # ------------------------------------------------------------------ processes

    def spawn(self, node, cmd, log_name, env=None, stdout_name=None):
        logs = os.path.join(self.dir, "logs")
        os.makedirs(logs, exist_ok=True)
        err = open(os.path.join(self.dir, log_name) if log_name.endswith(".jsonl") else os.path.join(logs, log_name), "ab")
        out = open(os.path.join(logs, stdout_name), "ab") if stdout_name else err
        full_env = dict(os.environ)
        full_env.update(env or {})
        node.proc = subprocess.Popen(["ip", "netns", "exec", node.ns] + [str(c) for c in cmd], stdin=subprocess.DEVNULL,
                                     stdout=out, stderr=err, env=full_env, start_new_session=True, cwd=self.dir)
        node.stopped = False
        return node.proc

    def send_signal(self, name, sig):
        node = self.nodes[name]
        if node.alive:
            os.killpg(node.proc.pid, sig)
            node.stopped = sig == signal.SIGSTOP
            if sig == signal.SIGCONT:
                node.stopped = False

    def kill(self, name, sig=signal.SIGKILL, timeout=30):
        node = self.nodes[name]
        if not node.alive:
            return
        if node.stopped:
            os.killpg(node.proc.pid, signal.SIGCONT)
        os.killpg(node.proc.pid, sig)
        try:
            node.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(timeout=10)

    def start_aws(self):
        aws = self.nodes["aws"]
        self.spawn(aws, ["moto_server", "-H", "0.0.0.0", "-p", MOTO_PORT], "moto.log")
        proxy = Node("proxy", aws.addr)
        proxy.ns = aws.ns
        self.nodes["proxy"] = proxy
        with open(self.control, "w") as f:
            json.dump({}, f)
        self.spawn(proxy, [sys.executable, os.path.join(ROOT, "bench", "proxy.py"), "--listen", aws.addr, "--port", PROXY_PORT,
                           "--upstream", "127.0.0.1:%d" % MOTO_PORT, "--log", os.path.join(self.dir, "proxy.jsonl"),
                           "--control", self.control], "proxy.log")
        wait_until("moto on %s:%d" % (aws.addr, MOTO_PORT), lambda: self._port_open(aws.addr, MOTO_PORT), 120)
        wait_until("the proxy on %s:%d" % (aws.addr, PROXY_PORT), lambda: self._port_open(aws.addr, PROXY_PORT), 60)

    def aws_faults(self, **settings):
        """Sets the proxy's faults (see bench/proxy.py); no arguments clears them, except the
        realism modes set with `aws_realism`, which stay through the heal: the steady state
        after it is where a write loop shows."""
        tmp = self.control + ".tmp"
        merged = dict(self.realism)
        merged.update(settings)
        with open(tmp, "w") as f:
            json.dump(merged, f)
        os.replace(tmp, self.control)
        # The proxy notices by mtime; make sure a same-second rewrite is seen too.
        t = time.time_ns()
        os.utime(self.control, ns=(t, t))

    def aws_realism(self, **modes):
        """AWS realism modes (bench/proxy.py) that last for the rest of the run."""
        self.realism = dict(modes)
        self.aws_faults()

    @staticmethod
    def _port_open(host, port):
        with socket.socket() as s:
            s.settimeout(1)
            try:
                s.connect((host, port))
                return True
            except OSError:
                return False

    # ------------------------------------------------------------------ the AWS world

    def ec2(self):
        import boto3
        return boto3.client("ec2", region_name=REGION, endpoint_url="http://%s:%d" % (self.nodes["aws"].addr, MOTO_PORT),
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def route53(self):
        import boto3
        return boto3.client("route53", region_name=REGION, endpoint_url="http://%s:%d" % (self.nodes["aws"].addr, MOTO_PORT),
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def seed(self):
        """Two VPCs with two AZs each, a route table and a VPN instance per AZ, a hosted zone —
        the local cluster's topology (cluster/up), straight to moto, not through the proxy."""
        ec2, r53 = self.ec2(), self.route53()
        ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        zone = r53.create_hosted_zone(Name=ZONE_NAME, CallerReference="chaos-%d" % time.time_ns())["HostedZone"]["Id"]
        self.world["zone"] = zone.split("/")[-1]
        self.world["ami"] = ami
        vpcs = {"a": ("10.0.0.0/16", "172.16.0.0/16"), "b": ("172.16.0.0/16", "10.0.0.0/16")}
        changes = []
        for v, (cidr, _) in vpcs.items():
            vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
            for az_i, az in enumerate(["us-east-1a", "us-east-1b"]):
                t = "%s%d" % (v, az_i + 1)
                subnet_cidr = cidr.replace("0.0/16", "%d.0/24" % (az_i + 1))
                subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=subnet_cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
                rtb = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
                ec2.associate_route_table(RouteTableId=rtb, SubnetId=subnet)
                self.world["rtb_" + t] = rtb
                self.world["subnet_" + t] = subnet
                self._run_instance(t)
                # The tunnel's Elastic IP, on its instance as an operator would have left it.
                address = ec2.allocate_address(Domain="vpc")
                self.world["eip_" + t] = address["AllocationId"]
                ec2.associate_address(AllocationId=address["AllocationId"], InstanceId=self.world["instance_" + t])
                if "bystander" not in self.world:
                    # An instance of no tunnel: where an Elastic IP can be "held by another instance".
                    self.world["bystander"] = ec2.run_instances(
                        ImageId=ami, InstanceType="t3.micro", MinCount=1, MaxCount=1, SubnetId=subnet)["Instances"][0]["InstanceId"]
                changes.append({"Action": "UPSERT", "ResourceRecordSet": {
                    "Name": "%s.%s" % (t, ZONE_NAME), "Type": "A", "TTL": 30,
                    "ResourceRecords": [{"Value": self.world["ip_" + t]}]}})
        r53.change_resource_record_sets(HostedZoneId=self.world["zone"], ChangeBatch={"Changes": changes})
        self.routes = [
            {"table": self.world["rtb_a1"], "destination": "172.16.0.0/16", "candidates": ["a1", "a2"]},
            {"table": self.world["rtb_a2"], "destination": "172.16.0.0/16", "candidates": ["a2", "a1"]},
            {"table": self.world["rtb_b1"], "destination": "10.0.0.0/16", "candidates": ["b1", "b2"]},
            {"table": self.world["rtb_b2"], "destination": "10.0.0.0/16", "candidates": ["b2", "b1"]},
        ]

    def _run_instance(self, t):
        ec2 = self.ec2()
        inst = ec2.run_instances(ImageId=self.world["ami"], InstanceType="t3.micro", MinCount=1, MaxCount=1,
                                 SubnetId=self.world["subnet_" + t],
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                     {"Key": TAG_KEY, "Value": t}, {"Key": "Name", "Value": "vpn-" + t}]}])["Instances"][0]
        self.world["instance_" + t] = inst["InstanceId"]
        self.world["eni_" + t] = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
        self.world["ip_" + t] = inst["PrivateIpAddress"]
        self.enis[self.world["eni_" + t]] = t

    # How a replacement arrives (issue #16): its sentinel up at once; not up yet; the old
    # instance's sentinel still answering at the tunnel's address; the tunnel's Elastic IP
    # held by another instance when it comes.
    REPLACEMENTS = ("check-on", "sentinel-late", "old-sentinel", "eip-elsewhere")

    def replace_instance(self, t, how="check-on"):
        """A VPN instance is replaced: the old one terminated, a new one (new ENI, new address,
        source/destination check on) tagged for the same tunnel. Straight to moto, as an
        operator or an ASG would. With "sentinel-late" and "old-sentinel" the new instance's
        sentinel is not running yet: the caller starts it with start_sentinel(t)."""
        old = self.world["instance_" + t]
        ec2 = self.ec2()
        if how == "eip-elsewhere":
            ec2.associate_address(AllocationId=self.world["eip_" + t], InstanceId=self.world["bystander"], AllowReassociation=True)
        ec2.terminate_instances(InstanceIds=[old])
        self._run_instance(t)
        if how == "sentinel-late":
            self.kill("s" + t, signal.SIGTERM)
        elif how != "old-sentinel":
            self.start_sentinel(t)   # stops the old instance's sentinel first
        return old, self.world["instance_" + t]

    def eip_eni(self, t):
        """The interface tunnel T's Elastic IP is on now (None when it is on none)."""
        a = self.ec2().describe_addresses(AllocationIds=[self.world["eip_" + t]])["Addresses"][0]
        return a.get("NetworkInterfaceId") or None

    def route_targets(self):
        """(table, destination) -> ENI (None when absent or not an ENI), read from moto."""
        tables = self.ec2().describe_route_tables(RouteTableIds=[r["table"] for r in self.routes])["RouteTables"]
        out = {}
        for table in tables:
            for r in table.get("Routes", []):
                out[(table["RouteTableId"], r.get("DestinationCidrBlock"))] = r.get("NetworkInterfaceId")
        return {(r["table"], r["destination"]): out.get((r["table"], r["destination"])) for r in self.routes}

    def routes_settled(self, healthy):
        """Whether every managed route points at its first candidate in `healthy`."""
        targets = self.route_targets()
        for r in self.routes:
            want = next((c for c in r["candidates"] if c in healthy), None)
            if want is None:
                continue
            if targets[(r["table"], r["destination"])] != self.world["eni_" + want]:
                return False
        return True

    # ------------------------------------------------------------------ certificates and config

    def write_config(self, disk_dirs=None):
        certs = os.path.join(self.dir, "certs")
        b = self.binary
        sh(b, "certs", "init", "--dir", certs, "--cluster", "switchman-chaos")
        for i in range(1, 6):
            sh(b, "certs", "member", "--dir", certs, "--id", i, "--host", "%s.%d" % (NET, 10 + i))
        for t in TUNNELS:
            sh(b, "certs", "sentinel", "--dir", certs, "--tunnel", t, "--ip", self.nodes["s" + t].addr)
        sh(b, "certs", "client", "--dir", certs, "--name", "operator")
        self.certs = certs
        self.config_path = os.path.join(self.dir, "config.yaml")
        self._write_config(self.config_path, self.members)
        # A replica that joins later starts from a config that names it, for the addresses
        # (it starts with --join: no membership until the leader's log reaches it).
        for i in self.replica_ids:
            if i not in self.members:
                path = os.path.join(self.dir, "config-%d.yaml" % i)
                self._write_config(path, sorted(set(self.members) | {i}))
                self.configs[i] = path

    def _write_config(self, path, members):
        T = TIMING
        zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
        lines = ["cluster:", "  name: switchman-chaos", "  members:"]
        for i in members:
            lines += ['    - id: %d' % i, '      peer: "%s.%d:%d"' % (NET, 10 + i, PEER_PORT),
                      '      admin: "%s.%d:%d"' % (NET, 10 + i, ADMIN_PORT), "      zone: %s" % zones[(i - 1) % 3]]
        lines += ["tls:", '  ca: "%s/ca.pem"' % self.certs, '  cert: "%s/member-{id}.pem"' % self.certs,
                  '  key: "%s/member-{id}-key.pem"' % self.certs, 'dataDir: "%s/data/{id}"' % self.dir,
                  "aws:", "  region: %s" % REGION, '  endpoint: "http://%s:%d"' % (self.nodes["aws"].addr, PROXY_PORT),
                  "tunnels:"]
        for t in TUNNELS:
            lines += ["  - name: %s" % t, "    instance: {tagKey: %s, tagValue: %s}" % (TAG_KEY, t),
                      '    sentinel: "%s:%d"' % (self.nodes["s" + t].addr, SENTINEL_PORT),
                      "    dns: {zoneId: %s, name: %s.%s, ttl: 30}" % (self.world["zone"], t, ZONE_NAME),
                      "    eip: %s" % self.world["eip_" + t],
                      '    probes: [{tcp: "%s:%d"}]' % (self.nodes["f" + t].addr, RESPONDER_PORT)]
        lines.append("routes:")
        for r in self.routes:
            lines.append("  - {routeTable: %s, destination: %s, candidates: [%s]}" % (r["table"], r["destination"], ", ".join(r["candidates"])))
        lines += ["health:", "  probeInterval: %dms" % (T["probeInterval"] * 1000), "  probeTimeout: %dms" % (T["probeTimeout"] * 1000),
                  "  fall: %d" % T["fall"], "  rise: %d" % T["rise"], "  failbackHoldDown: %dms" % (T["holdDown"] * 1000),
                  "  observationTTL: %dms" % (T["observationTTL"] * 1000), "timing:", "  heartbeat: %dms" % (T["heartbeat"] * 1000),
                  "  electionTimeout: %dms" % (T["electionTimeout"] * 1000), "  maxClockDrift: %s" % T["maxClockDrift"]]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        sh(self.binary, "config", "check", path)

    @staticmethod
    def lock_delay(after_transfer=False):
        """A new leader's wait before its first write (docs/CONTROLLER.md, "The lock-delay"):
        the write deadline (the lease) on a clock that may run slow, twice after a transfer."""
        T = TIMING
        lease = T["electionTimeout"] * (1 - T["maxClockDrift"])
        return lease * (1 + T["maxClockDrift"]) * (2 if after_transfer else 1)

    # ------------------------------------------------------------------ the Switchman processes

    def start_sentinel(self, t):
        """The sentinel of tunnel T, saying which instance it runs on (IMDSv2 would on EC2);
        noted for the checker no-route-to-unvouched-instance."""
        s = self.nodes["s" + t]
        self.kill("s" + t, signal.SIGTERM)
        self.fault("note", "sentinel", "%s %s %s" % (t, self.world["instance_" + t], self.world["eni_" + t]))
        self.spawn(s, [self.binary, "sentinel", "--config", self.config_path, "--tunnel", t,
                       "--instance-id", self.world["instance_" + t]], "sentinel-%s.log" % t,
                   env={"AWS_EC2_METADATA_DISABLED": "true"})

    def start_far_sides_and_sentinels(self):
        for t in TUNNELS:
            f = self.nodes["f" + t]
            self.spawn(f, [sys.executable, os.path.join(ROOT, "cluster", "responder.py"), RESPONDER_PORT, t, self.dir, f.addr],
                       "responder-%s.log" % t)
            self.start_sentinel(t)
        for t in TUNNELS:
            wait_until("responder %s" % t, lambda t=t: self._port_open(self.nodes["f" + t].addr, RESPONDER_PORT), 60)
            wait_until("sentinel %s" % t, lambda t=t: self._port_open(self.nodes["s" + t].addr, SENTINEL_PORT), 60)

    def start_replica(self, i, config=None, faketime=False):
        node = self.nodes["r%d" % i]
        # moto takes any key; the real credential chain must never be consulted here.
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_EC2_METADATA_DISABLED": "true"}
        if faketime or i in self.faked:
            self.faked.add(i)
            stamp = os.path.join(self.dir, "faketime-r%d" % i)
            if not os.path.exists(stamp):
                with open(stamp, "w") as f:
                    f.write("+0\n")
            # Re-read at most every second: libfaketime reads the file on a time call, and NIO
            # asks the time constantly. Only the wall clock is faked: CLOCK_MONOTONIC never
            # steps on a real host (NTP slews its rate, within maxClockDrift), and a fake
            # backward step of it would test a fault that cannot happen; realtimers.so keeps
            # libfaketime off the timers, which it would otherwise shift too.
            env.update({"LD_PRELOAD": "%s %s" % (self.realtimers(), FAKETIME_LIB), "FAKETIME_TIMESTAMP_FILE": stamp,
                        "FAKETIME_CACHE_DURATION": "1",
                        "FAKETIME_DONT_RESET": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})
        config = config or self.configs.get(i, self.config_path)
        # The founders found the cluster; a replica added later joins it (and is added as a
        # learner by the scenario). Either flag does nothing once the directory is set up.
        start = "--bootstrap" if i in self.founders else "--join"
        self.spawn(node, [self.binary, "serve", "--config", config, "--id", i, "--log-format", "json",
                          "--log-level", "debug", start], "replica-%d.jsonl" % i, env=env, stdout_name="replica-%d.out" % i)

    def realtimers(self):
        """The timer shim, built once per run directory."""
        lib = os.path.join(self.dir, "realtimers.so")
        if not os.path.exists(lib):
            sh("gcc", "-shared", "-fPIC", "-O2", "-o", lib, REALTIMERS_SRC)
        return lib

    def set_clock(self, i, offset):
        """libfaketime offset of replica i, e.g. "+30s", "-20s", "+0"."""
        with open(os.path.join(self.dir, "faketime-r%d" % i), "w") as f:
            f.write(offset + "\n")

    def start_cluster(self):
        self.start_far_sides_and_sentinels()
        for i in self.members:
            self.start_replica(i)

    # ------------------------------------------------------------------ the admin API

    def _context(self):
        if self._ssl is None:
            ctx = ssl.create_default_context(cafile=os.path.join(self.certs, "ca.pem"))
            ctx.load_cert_chain(os.path.join(self.certs, "client-operator.pem"), os.path.join(self.certs, "client-operator-key.pem"))
            self._ssl = ctx
        return self._ssl

    def admin(self, i, path, method="GET", body=None, timeout=3):
        url = "https://%s.%d:%d%s" % (NET, 10 + i, ADMIN_PORT, path)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self._context(), timeout=timeout) as resp:
            return json.loads(resp.read() or b"null")

    def status(self, i, stale=True):
        return self.admin(i, "/v1/status" + ("?stale=true" if stale else ""))

    def leader(self, among=None):
        """The leader most replicas (of `among`) agree on, when it says so itself; else None."""
        votes = {}
        for i in among or self.members:
            if not self.nodes["r%d" % i].alive or self.nodes["r%d" % i].stopped:
                continue
            try:
                s = self.status(i)
            except Exception:
                continue
            if s.get("leader"):
                votes[s["leader"]] = votes.get(s["leader"], 0) + 1
        if not votes:
            return None
        leader = max(votes, key=votes.get)
        try:
            mine = self.status(leader)
        except Exception:
            return None
        return leader if mine.get("leader") == leader and mine.get("answeredBy") == leader else None

    def wait_leader(self, among=None, timeout=60):
        return wait_until("a leader", lambda: self.leader(among), timeout, interval=0.2)

    def wait_caught_up(self, timeout=60):
        """Every live member has applied what the leader has committed."""
        def ok():
            leader = self.leader()
            if not leader:
                return False
            commit = self.status(leader)["commitIndex"]
            return all(self.status(i)["appliedIndex"] >= commit for i in self.members if self.nodes["r%d" % i].alive)
        return wait_until("every replica to catch up", ok, timeout, interval=0.3)
