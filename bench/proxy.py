#!/usr/bin/env python3
"""Recording HTTP proxy between the replicas and moto (bench/failover starts it), and the AWS
realism layer (DESIGN.md, "moto is kinder than AWS").

Every request is forwarded to moto (unchanged unless a fault or realism mode below says
otherwise) and recorded as one JSON line, written when
the request arrives (before it is forwarded): its arrival time (time.monotonic_ns, the
same clock as the bench's t0 on Linux, and wall clock), method, path, the EC2 Action (form
body) or the Route 53 path, the route table and ENI of route writes, and the fencing
token from the User-Agent (`node/<id> term/<t> index/<i>`), or, for other clients, the
`exec-env/<tag>` that awscli/botocore append to it from AWS_EXECUTION_ENV (bench/keepalived
tags each keepalived instance's writes this way). A second line with the same `seq` records
moto's status and the round-trip time. Standard library only.

DescribeRouteTables answers are parsed and their routes recorded on the response line
(chaos/HISTORY.md), so a checker can treat each answer as a read of every route. The routes
are those the CLIENT was answered (after the realism rewrites below); each also carries
`origin` (`CreateRoute`, `CreateRouteTable`, `EnableVgwRoutePropagation`, ...), so a checker
can tell a propagated `vgw-` route (eni null) from our static route for the same CIDR.

Faults (the chaos rig, chaos/run): with --control FILE the proxy re-reads FILE (JSON) when it
changes and injects, per request matching its `actions` (all requests when absent):
  {"throttle": P}      answer 400 RequestLimitExceeded (EC2) / 400 Throttling (Route 53)
  {"error500": P}      answer 500 InternalError without forwarding
  {"hang_s": S, "hang_p": P}   hold the request S seconds, then forward it
  {"delay_ms": D}      forward every matching request D ms late
  {"seed": N}          the fault dice's seed
P are probabilities in [0, 1]. The injected fault is recorded as "fault" on the request line.
`actions` filters these legacy faults only; the realism modes below ignore it.

AWS realism (same control file; every key optional, absent = off, all combinable). One RNG,
seeded with `seed` (default 0) each time the file changes, draws the fault dice, latencies,
propagated-route positions, ENI shuffles and late_apply dice, so a run is reproducible for a
given request order.
  "latency_ms": L, "latency_jitter": J
      every request (EC2 and Route 53, answered by moto or by the proxy) waits
      L ms x uniform(1-J, 1+J) (J clamped to [0, 1], default 0) before it is forwarded or
      answered (a late_apply request is held from its arrival instead). Requests are
      threaded; waits overlap.
  "propagation": {"gateway": "vgw-..", "cidrs": ["172.16.0.0/16", ..], "tables": ["rtb-.."]}
      DescribeRouteTables answers: every listed table (`tables` absent or null = every table)
      gains, per cidr, <destinationCidrBlock>cidr</destinationCidrBlock><gatewayId>vgw-..
      </gatewayId><state>active</state><origin>EnableVgwRoutePropagation</origin> at a seeded
      random position among its routes, beside any static route for the same CIDR. Writes go
      to moto unchanged, except a ReplaceRoute for a (table, cidr) with no static route in
      moto: answered as AWS does (400 InvalidParameterValue, see aws_errors), not forwarded.
  "consistency_lag_s": S
      eventual consistency of route writes. Before forwarding a CreateRoute/ReplaceRoute/
      DeleteRoute the proxy reads that table from moto itself; when the write succeeds it
      remembers the route as it was before. For S seconds after the success, DescribeRoute-
      Tables answers show that (table, destination) as before the write (old target; absent
      if it did not exist; present if it was deleted). Chained writes: a read at time t shows
      the value before the first write that succeeded after t-S, i.e. the state as of t-S.
      Route writes to one (table, destination) are serialised while this (or aws_errors or
      propagation) is on, so "before" is exact.
  "new_id_lag_s": S
      a just-created ENI or instance is NotFound for S seconds. While on, the proxy notes
      the first time each eni-.. / i-.. id appears in an EC2 answer it forwards. A CreateRoute
      or ReplaceRoute naming (NetworkInterfaceId / InstanceId) an id first seen less than S
      seconds ago answers 400 InvalidNetworkInterfaceID.NotFound "The networkInterface ID
      'eni-..' does not exist" / InvalidInstanceID.NotFound "The instance ID 'i-..' does not
      exist", not forwarded. Decision: when the mode is switched on (off -> on in the
      file), every id already in moto counts as old: the next EC2 request first makes the
      proxy list DescribeInstances and DescribeNetworkInterfaces itself. An id a route
      write names that the proxy has never seen (created behind its back after switch-on)
      counts as first seen at that write.
  "blackhole": true
      DescribeRouteTables answers: a route whose networkInterfaceId is gone from moto, or is
      not attached to an instance, or whose instance (instanceId, or the ENI's attached
      instance) is not `running`, reads <state>blackhole</state>. The proxy lists
      DescribeNetworkInterfaces and DescribeInstances from moto itself, cached <= 1 s.
  "eni_order": "shuffle"
      DescribeInstances answers: each instance's networkInterfaceSet in seeded random order
      (moto lists device order; AWS promises none). DescribeNetworkInterfaces answers: the
      networkInterfaceSet shuffled likewise. moto 5 reports attachment/deviceIndex for each
      ENI of DescribeInstances; an item lacking it gets one (its position in moto's list).
  "aws_errors": true
      moto's EC2 error answers are rewritten to AWS's shape: <?xml version="1.0"
      encoding="UTF-8"?><Response><Errors><Error><Code>..</Code><Message>..</Message></Error>
      </Errors><RequestID>uuid</RequestID></Response> (no xmlns; moto adds one and answers
      RequestID "request-id") with a matching x-amzn-RequestId header; codes, messages and
      statuses are kept (moto 5.2 already matches AWS for the route errors we use). A
      ReplaceRoute on a (table, destination) with no route in moto answers 400
      InvalidParameterValue "There is no route defined for '<cidr>' in the route table. Use
      CreateRoute instead." (checked by the proxy; moto 5.2 answers the same itself).
  "dryrun": true
      an EC2 request with DryRun=true is not forwarded (moto ignores DryRun and applies it):
      412 DryRunOperation "Request would have succeeded, but DryRun flag is set.", or, if
      its action is in "deny", 403 UnauthorizedOperation "You are not authorized to perform
      this operation.".
  "deny": ["ReplaceRoute", ..]
      requests of these actions (dry or not, dryrun on or off) answer 403
      UnauthorizedOperation (EC2), or 403 AccessDenied for Route 53 operation names
      (ChangeResourceRecordSets, ListResourceRecordSets, GetChange, GetHostedZone, ...).
  "buckets": {"ReplaceRoute": [BURST, REFILL_PER_S], .., "route53": [5, 5], "*": "ec2-default"}
      | "ec2-default"
      server-side token buckets, one per EC2 action (per account and Region on AWS; here
      per proxy), one shared by all Route 53 calls ("route53"). A request finding its
      bucket empty is not forwarded: 503 RequestLimitExceeded "Request limit exceeded."
      (EC2 answers 503; botocore's legacy retry table matches RequestLimitExceeded at 503,
      its standard mode by code alone) / 400 Throttling "Rate exceeded" (Route 53). In a
      dict, unlisted actions are unlimited unless "*" is "ec2-default". "ec2-default" is
      AWS's published table (docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html,
      "Request token bucket sizes and refill rates", read 2026-12): Describe*/List*/Search*/
      Get* 100 burst, 20/s; DescribeInstances, DescribeInstanceStatus,
      DescribeNetworkInterfaces, DescribeSecurityGroups, DescribeSnapshots,
      DescribeSpotInstanceRequests, DescribeVolumes without a Filter and without
      MaxResults/NextToken draw from a separate smaller bucket (key "<Action> (unfiltered)")
      50, 10/s; mutating actions 50, 5/s (including CreateRoute, ReplaceRoute,
      DeleteRoute); the resource-intensive and uncategorised actions of EC2_BUCKETS below
      their own sizes (e.g. RunInstances 5, 2/s; CreateTags 100, 10/s); Route 53 5, 5/s for
      all its calls together (its quota: five requests per second per account). The
      per-instance resource buckets of RunInstances & co. are not modelled. A bucket starts
      full and keeps its level across file changes while its size is unchanged (a file
      without "buckets" empties the registry).
  "neighbour": {"ReplaceRoute": 4.0, "DescribeRouteTables": 10, "route53": 2}
      a noisy neighbour (background thread, every 50 ms) drawing that many tokens per second
      from the same buckets (the action's filtered bucket), so our calls share the account's
      budget. No effect on an action without a bucket.
  "late_apply": {"p": P, "delay_s": D, "hold_s": H, "actions": ["ReplaceRoute", ..]}
      AWS may apply a request after the client gave up: with probability P (default 1) a
      matching request (`actions` absent = every request; names are EC2 actions or Route 53
      operation names) is held H seconds (default 12) from its arrival, then its connection
      is closed with no answer, and D seconds (default 5) after arrival it is forwarded to
      moto. No response line is written for it; a line {"seq": N, "late_applied": N,
      "applied_ns": .., "status": ..} records the late application (no done_ns, so the
      checkers still see an unanswered request that may or may not have taken effect).
  "az_outage": {"filtered_describe_fails": true, "actions": ["DescribeInstances"]}
      while an AZ is impaired AWS documents that filtered describes can fail: a request of
      `actions` (default DescribeInstances) with any Filter.N.Name answers 503 Unavailable
      "The service is unavailable. Please try again shortly."; by InstanceId.N only it is
      forwarded.
  "instance_status": {"i-..": {"instance": "impaired", "system": "ok",
                               "events": [{"code": "system-reboot", "id": "instance-event-..",
                                           "description": "..", "notBefore": "2026-12-09T02:00:00.000Z",
                                           "notAfter": "..."}]}}
      moto answers every running instance "ok" with no scheduled events. DescribeInstanceStatus
      answers: each listed instance's instanceStatus / systemStatus status (and a reachability
      detail "failed" for "impaired", "passed" otherwise) as given (absent: moto's), and its
      eventsSet replaced by `events` when the key is there (an event without "id" gets
      "instance-event-<n>"; AWS marks a finished one with a "[Completed]" description).
Every answer the proxy synthesises carries a RequestID (uuid) and an x-amzn-RequestId header.
Rewritten XML keeps moto's default namespace (no ns0: prefixes) and <?xml ..?> declaration;
Content-Length is recomputed. moto's Route 53 answers are never rewritten (the proxy only
answers Route 53 itself for buckets and deny).

The realism modes that touched a request are recorded as "realism" (a list, in the order of
REALISM_MODES): on the request line those decided on arrival (latency, az_outage, buckets,
deny, dryrun, new_id_lag, late_apply); on the response line all of them, including those that
act on the answer or the forwarding (propagation, consistency, blackhole, eni_order,
aws_errors). The request line of a delayed request also has "latency_ms" (the drawn wait), and
an answer synthesised by a realism mode has "code" on its response line.
Presets: bench/realism/aws.json (cluster/up's default), bench/realism/off.json ({}).

Usage: proxy.py --port P (--ports-file STATE/ports | --upstream HOST:PORT) --log FILE
                [--listen HOST] [--control FILE | --realism FILE]
(--host is another name for --listen; --realism is another name for --control.)
With --ports-file the upstream (moto) port is read from it (MOTO_PORT=) when first needed, so
the proxy can start before cluster/up picks its ports.
"""
import argparse
import copy
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
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape as xml_escape

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
TOKEN = re.compile(r"node/(\d+) term/(\d+) index/(\d+)")
EXEC_ENV = re.compile(r"exec-env/(\S+)")

REALISM_MODES = ("latency", "az_outage", "buckets", "deny", "dryrun", "new_id_lag", "late_apply",
                 "aws_errors", "consistency", "blackhole", "propagation", "eni_order", "instance_status")
ROUTE_WRITES = ("CreateRoute", "ReplaceRoute", "DeleteRoute")
# (request parameter, answer element) naming a route's destination
DESTINATIONS = (("DestinationCidrBlock", "destinationCidrBlock"),
                ("DestinationIpv6CidrBlock", "destinationIpv6CidrBlock"),
                ("DestinationPrefixListId", "destinationPrefixListId"))
ID_RE = re.compile(r"(?<![\w-])((?:eni|i)-[0-9a-f]{8,17})(?![\w-])")
CRED_RE = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/[^/,\s]+/aws4_request")
EC2_VERSION = "2016-11-15"
R53_PREFIX = "/2013-04-01/"

# AWS's EC2 request buckets (see the docstring): (burst, refill per second).
EC2_NON_MUTATING = (100, 20.0)
EC2_UNFILTERED = (50, 10.0)
EC2_MUTATING = (50, 5.0)
ROUTE53_BUCKET = (5, 5.0)
EC2_UNFILTERED_ACTIONS = {"DescribeInstances", "DescribeInstanceStatus", "DescribeNetworkInterfaces",
                          "DescribeSecurityGroups", "DescribeSnapshots", "DescribeSpotInstanceRequests",
                          "DescribeVolumes"}
EC2_BUCKETS = {
    # resource-intensive actions
    "AcceptVpcPeeringConnection": (50, 5.0), "AuthorizeSecurityGroupIngress": (50, 5.0),
    "CancelSpotInstanceRequests": (50, 5.0), "CreateKeyPair": (50, 5.0),
    "CreateVpcPeeringConnection": (50, 5.0), "DeleteVpcPeeringConnection": (50, 5.0),
    "RejectVpcPeeringConnection": (50, 5.0), "RevokeSecurityGroupIngress": (50, 5.0),
    "RequestSpotInstances": (50, 5.0),
    # uncategorised actions (a subset: those near what Switchman and its rigs call)
    "AssignIpv6Addresses": (100, 5.0), "AssignPrivateIpAddresses": (100, 5.0),
    "UnassignPrivateIpAddresses": (100, 5.0), "AssociateIamInstanceProfile": (100, 5.0),
    "DisassociateIamInstanceProfile": (100, 5.0), "CreateNetworkInterface": (100, 5.0),
    "DeleteNetworkInterface": (100, 5.0), "ModifyNetworkInterfaceAttribute": (100, 5.0),
    "CreateTags": (100, 10.0), "DeleteTags": (100, 10.0), "CreateVolume": (100, 5.0),
    "DeleteVolume": (100, 5.0), "CreateSnapshot": (100, 5.0), "DeleteSnapshot": (100, 5.0),
    "CreateNatGateway": (10, 1.0), "DeleteNatGateway": (10, 1.0), "CreateVpcEndpoint": (4, 0.3),
    "DeleteVpcEndpoints": (4, 0.3), "ModifyVpcEndpoint": (4, 0.3),
    "ModifyInstanceMetadataOptions": (100, 5.0), "RunInstances": (5, 2.0), "StartInstances": (5, 2.0),
    "TerminateInstances": (100, 5.0),
}


class Faults:
    """The fault settings from the control file, re-read when its mtime changes."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.settings = {}
        self.generation = 0
        self.rng = random.Random(0)
        self.lock = threading.Lock()

    def _reload(self):
        """Re-reads the file if its mtime changed (with self.lock held)."""
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
            if not isinstance(self.settings, dict):
                self.settings = {}
            self.generation += 1
            self.rng = random.Random(self.settings.get("seed", 0))

    def current(self):
        """(settings, generation), re-reading the file if it changed."""
        if not self.path:
            return {}, 0
        with self.lock:
            self._reload()
            return self.settings, self.generation

    def draw(self, f):
        """f(rng) with the one seeded RNG, under the lock."""
        with self.lock:
            return f(self.rng)

    def pick(self, action):
        """The fault for one request (None, "throttle", "error500", "hang", "delay") and its value."""
        if not self.path:
            return None, 0
        with self.lock:
            self._reload()
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
            route = {"table": tid, "destination": dest, "eni": f.get("networkInterfaceId") or None,
                     "state": f.get("state")}
            if f.get("origin"):
                route["origin"] = f["origin"]
            out.append(route)
    return out


# ---------------------------------------------------------------- XML helpers for the rewrites

def xml_parse(data):
    """(root, namespace or None, declaration bytes) of an XML answer, or (None, None, None)."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None, None, None
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else None
    m = re.match(rb"\s*(<\?xml[^>]*\?>)", data)
    decl = m.group(1) if m else b'<?xml version="1.0" encoding="UTF-8"?>'
    return root, ns, decl


def xml_dump(root, ns, decl):
    """The answer's bytes: its declaration, then the tree with ns as the default namespace."""
    if ns:
        text = ET.tostring(root, encoding="unicode", default_namespace=ns)
    else:
        text = ET.tostring(root, encoding="unicode")
    return decl + b"\n" + text.encode("utf-8")


def qname(ns, tag):
    return "{%s}%s" % (ns, tag) if ns else tag


def child(elem, name):
    for c in elem:
        if local(c.tag) == name:
            return c
    return None


def child_text(elem, *path):
    for name in path:
        if elem is None:
            return None
        elem = child(elem, name)
    return elem.text if elem is not None else None


def route_destination(route):
    for _, tag in DESTINATIONS:
        v = child_text(route, tag)
        if v:
            return v
    return None


def route_tables(root):
    """(routeTableId, routeSet element) of every table in a DescribeRouteTables answer."""
    out = []
    for ts in root.iter():
        if local(ts.tag) != "routeTableSet":
            continue
        for item in ts:
            tid, rs = child_text(item, "routeTableId"), child(item, "routeSet")
            if tid:
                if rs is None:
                    ns = item.tag[1:].split("}", 1)[0] if item.tag.startswith("{") else None
                    rs = ET.SubElement(item, qname(ns, "routeSet"))
                out.append((tid, rs))
    return out


def ec2_error_body(code, message, request_id):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code><Message>%s'
            '</Message></Error></Errors><RequestID>%s</RequestID></Response>'
            % (xml_escape(code), xml_escape(message), request_id)).encode()


def route53_error_body(code, message, request_id):
    return ('<?xml version="1.0"?>\n<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
            '<Error><Type>Sender</Type><Code>%s</Code><Message>%s</Message></Error><RequestId>%s</RequestId>'
            '</ErrorResponse>' % (xml_escape(code), xml_escape(message), request_id)).encode()


def route53_operation(method, path):
    """The Route 53 API operation of a request, or None."""
    p = path.split("?", 1)[0]
    if not p.startswith(R53_PREFIX):
        return None
    parts = [x for x in p[len(R53_PREFIX):].split("/") if x]
    if parts[:1] == ["hostedzone"]:
        if len(parts) == 1:
            return {"GET": "ListHostedZones", "POST": "CreateHostedZone"}.get(method)
        if len(parts) == 2:
            return {"GET": "GetHostedZone", "DELETE": "DeleteHostedZone", "POST": "UpdateHostedZoneComment"}.get(method)
        if parts[2] == "rrset":
            return {"GET": "ListResourceRecordSets", "POST": "ChangeResourceRecordSets"}.get(method)
    if parts[:1] == ["hostedzonesbyname"]:
        return "ListHostedZonesByName"
    if parts[:1] == ["change"]:
        return "GetChange"
    if parts[:1] == ["healthcheck"]:
        return {"GET": "GetHealthCheck" if len(parts) > 1 else "ListHealthChecks"}.get(method, "HealthCheck")
    return None


def as_list(v):
    """A list setting; a lone string counts as a one-item list."""
    if isinstance(v, str):
        return [v]
    return list(v) if isinstance(v, (list, tuple)) else []


def number(v, default=0.0):
    try:
        return float(v)
    except (TypeError, ValueError):
        return default


class Plan:
    """What the realism layer decided when a request arrived."""

    def __init__(self, settings):
        self.settings = settings
        self.latency = 0.0
        self.answer = None      # (status, code, message, "ec2" | "route53") synthesised, not forwarded
        self.late = None        # (delay_s, hold_s)
        self.tags = []
        self.cred = None
        self.op = None
        self.ec2 = False

    def tag(self, mode):
        if mode not in self.tags:
            self.tags.append(mode)


def ordered(tags):
    return [m for m in REALISM_MODES if m in tags]


class Bucket:
    def __init__(self, burst, refill, now):
        self.spec = (burst, refill)
        self.burst, self.refill = float(burst), float(refill)
        self.tokens, self.t = float(burst), now

    def _fill(self, now):
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.refill)
        self.t = now

    def take(self, now):
        self._fill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def drain(self, now, n):
        self._fill(now)
        self.tokens = max(0.0, self.tokens - n)


def ec2_default_bucket(action, params=None):
    """(bucket key, (burst, refill)) of an EC2 action under AWS's published defaults."""
    if action in EC2_BUCKETS:
        return action, EC2_BUCKETS[action]
    if action.startswith(("Describe", "List", "Search", "Get")):
        if action in EC2_UNFILTERED_ACTIONS and params is not None and not any(
                k.startswith("Filter.") or k in ("MaxResults", "NextToken") for k in params):
            return action + " (unfiltered)", EC2_UNFILTERED
        return action, EC2_NON_MUTATING
    return action, EC2_MUTATING


def bucket_spec(buckets, op, params, ec2):
    """(key, (burst, refill)) of the bucket a request draws from under `buckets`, or None."""
    if ec2:
        key = op
    else:
        key = "route53"
    if buckets == "ec2-default":
        return ec2_default_bucket(op, params) if ec2 else ("route53", ROUTE53_BUCKET)
    if not isinstance(buckets, dict):
        return None
    v = buckets.get(key)
    if isinstance(v, (list, tuple)) and len(v) == 2:
        return key, (number(v[0]), number(v[1]))
    if buckets.get("*") == "ec2-default":
        return ec2_default_bucket(op, params) if ec2 else ("route53", ROUTE53_BUCKET)
    return None


class Realism:
    """State of the AWS realism modes (see the module docstring)."""

    def __init__(self, recorder):
        self.rec = recorder
        self.faults = recorder.faults
        self.lock = threading.Lock()
        self.generation = None
        self.prev = {}
        self.buckets = {}
        self.history = {}          # (table, destination) -> [(success mono s, route element or None)]
        self.key_locks = {}
        self.first_seen = {}       # id -> mono s (0 = old)
        self.baseline_needed = False
        self.world_cache = {}      # cred key -> (mono s, enis {id: attached instance}, states {id: name})
        self.world_lock = threading.Lock()
        t = threading.Thread(target=self._neighbour, daemon=True)
        t.start()

    # ------------------------------------------------------------ settings

    def settings(self):
        s, gen = self.faults.current()
        with self.lock:
            if gen != self.generation:
                self.generation = gen
                if number(s.get("new_id_lag_s")) > 0 and not number(self.prev.get("new_id_lag_s")) > 0:
                    self.baseline_needed = True
                    self.first_seen.clear()
                if not s.get("buckets"):
                    self.buckets.clear()
                self.prev = s
        return s

    # ------------------------------------------------------------ moto, asked by the proxy itself

    @staticmethod
    def cred_of(headers):
        m = CRED_RE.search(headers.get("Authorization", "") or "")
        if m:
            return m.group(1), m.group(2), m.group(3)
        return "testing", "20000101", "us-east-1"

    def moto(self, params, cred):
        """An EC2 query straight to moto (unsigned; moto needs an Authorization header whose
        credential scope names the service and Region). The answer's root, ns, or None."""
        ak, date, region = cred
        body = urllib.parse.urlencode(dict(params, Version=EC2_VERSION))
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
                   "Authorization": "AWS4-HMAC-SHA256 Credential=%s/%s/%s/ec2/aws4_request, "
                                    "SignedHeaders=host, Signature=0" % (ak, date, region)}
        try:
            conn = http.client.HTTPConnection(self.rec.host, self.rec.upstream_port(), timeout=30)
            conn.request("POST", "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
        except Exception:
            return None, None
        if resp.status != 200:
            return None, None
        root, ns, _ = xml_parse(data)
        return root, ns

    def fetch_route(self, table, dest, cred):
        """(table exists?, the route element for dest or None); (None, None) if moto failed."""
        root, _ = self.moto({"Action": "DescribeRouteTables", "Filter.1.Name": "route-table-id",
                             "Filter.1.Value.1": table}, cred)
        if root is None:
            return None, None
        for tid, rs in route_tables(root):
            if tid == table:
                for r in rs:
                    if route_destination(r) == dest:
                        return True, r
                return True, None
        return False, None

    def world(self, cred):
        """({eni: attached instance or None}, {instance: state}) from moto, cached <= 1 s."""
        key = (cred[0], cred[2])
        now = time.monotonic()
        with self.world_lock:
            hit = self.world_cache.get(key)
            if hit and now - hit[0] < 1.0:
                return hit[1], hit[2]
            enis_root, _ = self.moto({"Action": "DescribeNetworkInterfaces"}, cred)
            inst_root, _ = self.moto({"Action": "DescribeInstances"}, cred)
            if enis_root is None or inst_root is None:
                return None, None
            enis, states = {}, {}
            for e in enis_root.iter():
                if local(e.tag) == "networkInterfaceSet":
                    for item in e:
                        eid = child_text(item, "networkInterfaceId")
                        att = child(item, "attachment")
                        inst = child_text(att, "instanceId") if att is not None else None
                        if att is not None and (child_text(att, "status") or "attached") not in ("attached", "attaching"):
                            inst = None
                        if eid:
                            enis[eid] = inst
            for e in inst_root.iter():
                if local(e.tag) == "instancesSet":
                    for item in e:
                        iid = child_text(item, "instanceId")
                        if iid:
                            states[iid] = child_text(item, "instanceState", "name")
            self.world_cache[key] = (time.monotonic(), enis, states)
            return enis, states

    # ------------------------------------------------------------ new ids

    def _baseline(self, cred):
        with self.lock:
            if not self.baseline_needed:
                return
        seen = set()
        for action in ("DescribeInstances", "DescribeNetworkInterfaces"):
            root, _ = self.moto({"Action": action}, cred)
            if root is None:
                return  # try again with the next request
            seen.update(ID_RE.findall(ET.tostring(root, encoding="unicode")))
        with self.lock:
            for i in seen:
                self.first_seen.setdefault(i, 0.0)
            self.baseline_needed = False

    def track_ids(self, data):
        now = time.monotonic()
        ids = ID_RE.findall(data.decode("utf-8", "replace"))
        if ids:
            with self.lock:
                for i in ids:
                    self.first_seen.setdefault(i, now)

    def is_new(self, ident, lag):
        now = time.monotonic()
        with self.lock:
            t = self.first_seen.setdefault(ident, now)
        return now - t < lag

    # ------------------------------------------------------------ buckets

    def _bucket(self, key, spec, now):
        b = self.buckets.get(key)
        if b is None or b.spec != spec:
            b = self.buckets[key] = Bucket(spec[0], spec[1], now)
        return b

    def take(self, key, spec):
        now = time.monotonic()
        with self.lock:
            return self._bucket(key, spec, now).take(now)

    def _neighbour(self):
        last = time.monotonic()
        while True:
            time.sleep(0.05)
            now = time.monotonic()
            dt, last = now - last, now
            try:
                s = self.settings()
                nb = s.get("neighbour")
                if not isinstance(nb, dict) or not s.get("buckets"):
                    continue
                for name, rate in nb.items():
                    ec2 = name != "route53"
                    spec = bucket_spec(s["buckets"], name, {"Filter.1.Name": ""}, ec2)
                    if spec:
                        with self.lock:
                            self._bucket(spec[0], spec[1], now).drain(now, number(rate) * dt)
            except Exception:
                pass

    # ------------------------------------------------------------ on arrival

    def arrive(self, method, path, params, headers, legacy_fault):
        s = self.settings()
        plan = Plan(s)
        if not s:
            return plan
        plan.cred = self.cred_of(headers)
        lat = number(s.get("latency_ms"))
        if lat > 0:
            j = min(1.0, max(0.0, number(s.get("latency_jitter"))))
            plan.latency = lat / 1000.0 * self.faults.draw(lambda r: r.uniform(1 - j, 1 + j))
            plan.tag("latency")
        if legacy_fault in ("throttle", "error500"):
            return plan
        plan.ec2 = "Action" in params
        plan.op = params["Action"] if plan.ec2 else route53_operation(method, path)
        if plan.op is None:
            return plan
        op, ec2 = plan.op, plan.ec2

        az = s.get("az_outage")
        if ec2 and isinstance(az, dict) and az.get("filtered_describe_fails") \
                and op in (as_list(az.get("actions")) or ["DescribeInstances"]) \
                and any(k.startswith("Filter.") and k.endswith(".Name") for k in params):
            plan.tag("az_outage")
            plan.answer = (503, "Unavailable", "The service is unavailable. Please try again shortly.", "ec2")
            return plan

        if s.get("buckets"):
            spec = bucket_spec(s["buckets"], op, params, ec2)
            if spec and not self.take(*spec):
                plan.tag("buckets")
                plan.answer = ((503, "RequestLimitExceeded", "Request limit exceeded.", "ec2") if ec2 else
                               (400, "Throttling", "Rate exceeded", "route53"))
                return plan

        deny = as_list(s.get("deny"))
        dry = ec2 and str(params.get("DryRun", "")).lower() == "true"
        if op in deny:
            plan.tag("deny")
            if dry and s.get("dryrun"):
                plan.tag("dryrun")
            plan.answer = ((403, "UnauthorizedOperation", "You are not authorized to perform this operation.", "ec2")
                           if ec2 else
                           (403, "AccessDenied", "User is not authorized to perform: route53:%s" % op, "route53"))
            return plan
        if dry and s.get("dryrun"):
            plan.tag("dryrun")
            plan.answer = (412, "DryRunOperation", "Request would have succeeded, but DryRun flag is set.", "ec2")
            return plan

        lag = number(s.get("new_id_lag_s"))
        if ec2 and lag > 0:
            self._baseline(plan.cred)
            if op in ("CreateRoute", "ReplaceRoute"):
                for param, code, noun in (("NetworkInterfaceId", "InvalidNetworkInterfaceID.NotFound", "networkInterface"),
                                          ("InstanceId", "InvalidInstanceID.NotFound", "instance")):
                    v = params.get(param)
                    if v and self.is_new(v, lag):
                        plan.tag("new_id_lag")
                        plan.answer = (400, code, "The %s ID '%s' does not exist" % (noun, v), "ec2")
                        return plan

        la = s.get("late_apply")
        if isinstance(la, dict) and (la.get("actions") is None or op in as_list(la["actions"])):
            p = number(la.get("p"), 1.0)
            if self.faults.draw(lambda r: r.random()) < p:
                plan.tag("late_apply")
                plan.late = (number(la.get("delay_s"), 5.0), number(la.get("hold_s"), 12.0))
        return plan

    # ------------------------------------------------------------ forwarding and answers

    def _key_lock(self, key):
        with self.lock:
            lk = self.key_locks.get(key)
            if lk is None:
                lk = self.key_locks[key] = threading.Lock()
            return lk

    def apply(self, plan, method, path, body, headers, params):
        """Forwards a request, with the realism of its route writes and answers: (status,
        headers, data, tags, code of a synthesised answer or None)."""
        s, tags = plan.settings, []
        op = plan.op if plan.ec2 else None
        lag = number(s.get("consistency_lag_s"))
        key = None
        if op in ROUTE_WRITES and (lag > 0 or s.get("aws_errors") or s.get("propagation")):
            dest = next((params[p] for p, _ in DESTINATIONS if params.get(p)), None)
            if params.get("RouteTableId") and dest:
                key = (params["RouteTableId"], dest)
        if key:
            with self._key_lock(key):
                exists, before = self.fetch_route(key[0], key[1], plan.cred)
                if op == "ReplaceRoute" and exists and before is None and (s.get("aws_errors") or s.get("propagation")):
                    tags.append("aws_errors" if s.get("aws_errors") else "propagation")
                    status, code, msg = 400, "InvalidParameterValue", (
                        "There is no route defined for '%s' in the route table. Use CreateRoute instead." % key[1])
                    rid = str(uuid.uuid4())
                    return status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], \
                        ec2_error_body(code, msg, rid), tags, code
                status, out_headers, data = self.rec.forward(method, path, body, headers)
                if lag > 0 and status == 200 and exists is not None:
                    with self.lock:
                        self.history.setdefault(key, []).append((time.monotonic(), before))
                    tags.append("consistency")
        else:
            status, out_headers, data = self.rec.forward(method, path, body, headers)
        if not plan.ec2 or plan.op is None:
            return status, out_headers, data, tags, None
        if status == 200 and number(s.get("new_id_lag_s")) > 0:
            self.track_ids(data)
        try:
            if status == 200 and op == "DescribeRouteTables" and (
                    lag > 0 or s.get("blackhole") or s.get("propagation")):
                data = self._route_tables(data, s, plan.cred, tags)
            elif status == 200 and op in ("DescribeInstances", "DescribeNetworkInterfaces") \
                    and s.get("eni_order") == "shuffle":
                data = self._shuffle(data, op, tags)
            elif status == 200 and op == "DescribeInstanceStatus" and isinstance(s.get("instance_status"), dict):
                data = self._instance_status(data, s["instance_status"], tags)
            elif status >= 400 and s.get("aws_errors"):
                data, out_headers = self._aws_error(data, out_headers, tags)
        except Exception:  # a rewrite must never cost the answer
            pass
        return status, out_headers, data, tags, None

    def _route_tables(self, data, s, cred, tags):
        root, ns, decl = xml_parse(data)
        if root is None:
            return data
        tables = route_tables(root)
        changed = False
        lag = number(s.get("consistency_lag_s"))
        if lag > 0:
            now = time.monotonic()
            with self.lock:
                views = {}
                for key in list(self.history):
                    entries = [e for e in self.history[key] if e[0] + lag > now]
                    if entries:
                        self.history[key] = entries
                        views[key] = entries[0][1]
                    else:
                        del self.history[key]
            for tid, rs in tables:
                for (t, dest), shown in views.items():
                    if t != tid:
                        continue
                    routes = list(rs)
                    idx = next((i for i, r in enumerate(routes) if route_destination(r) == dest), None)
                    if shown is None and idx is None:
                        continue
                    if shown is None:
                        rs.remove(routes[idx])
                    elif idx is None:
                        rs.append(copy.deepcopy(shown))
                    else:
                        if ET.tostring(routes[idx]) == ET.tostring(shown):
                            continue
                        rs.remove(routes[idx])
                        rs.insert(idx, copy.deepcopy(shown))
                    changed = True
                    if "consistency" not in tags:
                        tags.append("consistency")
        if s.get("blackhole"):
            enis, states = self.world(cred)
            if enis is not None:
                for _, rs in tables:
                    for r in rs:
                        eni, inst = child_text(r, "networkInterfaceId"), child_text(r, "instanceId")
                        dead = False
                        if eni:
                            att = enis.get(eni)
                            dead = eni not in enis or att is None or states.get(att) != "running"
                        elif inst:
                            dead = states.get(inst) != "running"
                        if dead:
                            st = child(r, "state")
                            if st is None:
                                st = ET.SubElement(r, qname(ns, "state"))
                            if st.text != "blackhole":
                                st.text = "blackhole"
                                changed = True
                                if "blackhole" not in tags:
                                    tags.append("blackhole")
        prop = s.get("propagation")
        if isinstance(prop, dict) and prop.get("gateway") and prop.get("cidrs"):
            only = prop.get("tables")
            only = None if only is None else as_list(only)
            for tid, rs in tables:
                if only is not None and tid not in only:
                    continue
                for cidr in as_list(prop["cidrs"]):
                    r = ET.Element(qname(ns, "item"))
                    for tag, text in (("destinationCidrBlock", cidr), ("gatewayId", prop["gateway"]),
                                      ("state", "active"), ("origin", "EnableVgwRoutePropagation")):
                        ET.SubElement(r, qname(ns, tag)).text = text
                    n = len(rs)
                    rs.insert(self.faults.draw(lambda g: g.randint(0, n)), r)
                    changed = True
                    if "propagation" not in tags:
                        tags.append("propagation")
        return xml_dump(root, ns, decl) if changed else data

    def _shuffle(self, data, op, tags):
        root, ns, decl = xml_parse(data)
        if root is None:
            return data
        changed = False
        for nis in [e for e in root.iter() if local(e.tag) == "networkInterfaceSet"]:
            items = list(nis)
            if op == "DescribeInstances":
                for i, it in enumerate(items):
                    att = child(it, "attachment")
                    if att is None:
                        att = ET.SubElement(it, qname(ns, "attachment"))
                    if child(att, "deviceIndex") is None:
                        ET.SubElement(att, qname(ns, "deviceIndex")).text = str(i)
                        changed = True
            if len(items) >= 2:
                order = self.faults.draw(lambda r: r.sample(items, len(items)))
                for it in items:
                    nis.remove(it)
                nis.extend(order)
                changed = True
                if "eni_order" not in tags:
                    tags.append("eni_order")
        return xml_dump(root, ns, decl) if changed else data

    @staticmethod
    def _instance_status(data, given, tags):
        root, ns, decl = xml_parse(data)
        if root is None:
            return data
        changed = False
        for item in [e for e in root.iter() if local(e.tag) == "item" and child(e, "instanceId") is not None]:
            want = given.get(child_text(item, "instanceId"))
            if not isinstance(want, dict):
                continue
            for key, tag in (("instance", "instanceStatus"), ("system", "systemStatus")):
                if key not in want:
                    continue
                old = child(item, tag)
                if old is not None:
                    item.remove(old)
                el = ET.SubElement(item, qname(ns, tag))
                ET.SubElement(el, qname(ns, "status")).text = str(want[key])
                det = ET.SubElement(ET.SubElement(el, qname(ns, "details")), qname(ns, "item"))
                ET.SubElement(det, qname(ns, "name")).text = "reachability"
                ET.SubElement(det, qname(ns, "status")).text = "failed" if want[key] == "impaired" else "passed"
                changed = True
            if "events" in want:
                old = child(item, "eventsSet")
                if old is not None:
                    item.remove(old)
                evs = ET.SubElement(item, qname(ns, "eventsSet"))
                for n, ev in enumerate(as_list(want["events"])):
                    if not isinstance(ev, dict):
                        continue
                    it = ET.SubElement(evs, qname(ns, "item"))
                    ET.SubElement(it, qname(ns, "instanceEventId")).text = str(ev.get("id") or "instance-event-%d" % (n + 1))
                    for k in ("code", "description", "notBefore", "notAfter"):
                        if ev.get(k) is not None:
                            ET.SubElement(it, qname(ns, k)).text = str(ev[k])
                changed = True
        if changed:
            tags.append("instance_status")
        return xml_dump(root, ns, decl) if changed else data

    @staticmethod
    def _aws_error(data, out_headers, tags):
        root, _, _ = xml_parse(data)
        if root is None or local(root.tag) != "Response":
            return data, out_headers
        err = None
        for e in root.iter():
            if local(e.tag) == "Error":
                err = e
                break
        if err is None:
            return data, out_headers
        rid = str(uuid.uuid4())
        body = ec2_error_body(child_text(err, "Code") or "", child_text(err, "Message") or "", rid)
        hdrs = [(k, v) for k, v in out_headers if k.lower() != "x-amzn-requestid"] + [("x-amzn-RequestId", rid)]
        tags.append("aws_errors")
        return body, hdrs


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
        self.realism = Realism(self) if control else None

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

    def forward(self, method, path, body, in_headers):
        """(status, headers without hop-by-hop and Content-Length, data) of moto's answer."""
        try:
            conn = http.client.HTTPConnection(self.host, self.upstream_port(), timeout=30)
            headers = {k: v for k, v in in_headers.items() if k.lower() not in HOP}
            conn.request(method, path, body=body if body or method in ("POST", "PUT") else None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in HOP and k.lower() != "content-length"]
            conn.close()
        except Exception as e:  # moto down: answer 502 so the client sees an error
            data = ("proxy: %s" % e).encode()
            status = 502
            out_headers = [("Content-Type", "text/plain")]
        return status, out_headers, data


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
        if len(body) < length:
            # The client closed before its body was complete (a Switchman write whose lease ran
            # out after the head left): AWS never acts on such a request, and neither do we.
            self.close_connection = True
            return
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
            for k in ("RouteTableId", "NetworkInterfaceId", "DestinationCidrBlock", "SourceDestCheck.Value"):
                if k in params:
                    rec[k] = params[k]
        elif "/hostedzone" in self.path:
            rec["action"] = "route53 %s %s" % (self.command, self.path.split("?", 1)[0])
        fault, value = rec_.faults.pick(rec.get("action"))
        if fault:
            rec["fault"] = fault
        plan = rec_.realism.arrive(self.command, self.path, params, self.headers, fault) if rec_.realism else None
        if plan is not None and plan.tags:
            rec["realism"] = ordered(plan.tags)
            if plan.latency:
                rec["latency_ms"] = round(plan.latency * 1000, 3)
        rec_.write(rec)
        if plan is not None and plan.latency and not plan.late:
            time.sleep(plan.latency)
        if fault in ("throttle", "error500"):
            self._answer_fault(seq, fault, rec.get("action", ""))
            return
        if fault in ("hang", "delay"):
            time.sleep(value)
        if plan is not None and plan.answer:
            self._answer_realism(seq, plan)
            return
        if plan is not None and plan.late:
            self._late(seq, mono, plan, body, params)
            return
        code = None
        tags = list(plan.tags) if plan is not None else []
        if plan is not None:
            status, out_headers, data, more, code = rec_.realism.apply(
                plan, self.command, self.path, body, self.headers, params)
            tags += more
        else:
            status, out_headers, data = rec_.forward(self.command, self.path, body, self.headers)
        done = {"seq": seq, "done_ns": time.monotonic_ns(), "status": status}
        if rec.get("action") == "DescribeRouteTables" and status == 200:
            routes = parse_routes(data)
            if routes is not None:
                done["routes"] = routes
        if tags:
            done["realism"] = ordered(tags)
        if code:
            done["code"] = code
        rec_.write(done)
        self._send(status, out_headers, data)

    def _send(self, status, out_headers, data):
        self.send_response(status)
        for k, v in out_headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _answer_realism(self, seq, plan):
        status, code, message, service = plan.answer
        rid = str(uuid.uuid4())
        body = (ec2_error_body if service == "ec2" else route53_error_body)(code, message, rid)
        self.server.recorder.write({"seq": seq, "done_ns": time.monotonic_ns(), "status": status,
                                    "realism": ordered(plan.tags), "code": code})
        self._send(status, [("Content-Type", "text/xml"), ("x-amzn-RequestId", rid)], body)

    def _late(self, seq, mono, plan, body, params):
        """Holds the request hold_s from its arrival, closes the connection unanswered, and
        forwards it to moto delay_s after its arrival."""
        rec_ = self.server.recorder
        delay_s, hold_s = plan.late
        method, path = self.command, self.path
        headers = {k: v for k, v in self.headers.items()}

        def apply_late():
            status, _, _, _, _ = rec_.realism.apply(plan, method, path, body, headers, params)
            rec_.write({"seq": seq, "late_applied": seq, "applied_ns": time.monotonic_ns(), "status": status})

        wait = max(0.0, delay_s - (time.monotonic_ns() - mono) / 1e9)
        t = threading.Timer(wait, apply_late)
        t.daemon = True
        t.start()
        hold = max(0.0, hold_s - (time.monotonic_ns() - mono) / 1e9)
        time.sleep(hold)
        self.close_connection = True

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
    ap.add_argument("--control", "--realism", dest="control",
                    help="JSON fault and realism settings, re-read when the file changes (--realism is another name)")
    a = ap.parse_args()
    http.server.ThreadingHTTPServer.daemon_threads = True
    http.server.ThreadingHTTPServer.allow_reuse_address = True
    server = http.server.ThreadingHTTPServer((a.listen, a.port), Handler)
    server.recorder = Recorder(a.log, a.ports_file, a.upstream, a.control)
    print("recording proxy on %s:%d" % (a.listen, a.port), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
