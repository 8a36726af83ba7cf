"""The nemeses: each a named scenario, driven by a seeded random.Random (chaos/README.md).

A scenario function gets the rig, the RNG and the duration in seconds; it injects its faults
(recording each with rig.fault) while the workload breaks and heals tunnels, and returns
with whatever it broke still broken: run.py heals everything afterwards and then measures
convergence. It may return a dict of extra meta (e.g. flapping windows).
"""
import os
import signal
import threading
import time

from rig import TIMING, TUNNELS, mono, wait_until

SCENARIOS = {}


def scenario(name, replicas=3, members=None, workload=True, disk=False, faked=(), help=""):
    def register(fn):
        SCENARIOS[name] = dict(fn=fn, replicas=replicas, members=members, workload=workload, disk=disk, faked=set(faked),
                               help=help)
        return fn
    return register


class Workload(threading.Thread):
    """Breaks and heals tunnels at random, one per VPC at most, so the leader has writes to
    make while the nemesis works. Its own faults are recorded as `tunnel-down`."""

    def __init__(self, rig, rng):
        super().__init__(daemon=True)
        self.rig, self.rng = rig, rng
        self.halt = threading.Event()
        self.down = set()

    def run(self):
        while not self.halt.is_set():
            self.halt.wait(self.rng.uniform(2.0, 5.0))
            if self.halt.is_set():
                break
            if self.down and self.rng.random() < 0.6:
                t = self.rng.choice(sorted(self.down))
                self.rig.tunnel_up(t)
                self.down.discard(t)
                self.rig.fault("stop", "tunnel-down", t)
            else:
                candidates = [t for t in TUNNELS if t not in self.down and not any(d[0] == t[0] for d in self.down)]
                if candidates:
                    t = self.rng.choice(candidates)
                    self.rig.tunnel_down(t)
                    self.down.add(t)
                    self.rig.fault("start", "tunnel-down", t)

    def stop(self):
        self.halt.set()
        self.join(timeout=10)
        for t in sorted(self.down):
            self.rig.tunnel_up(t)
            self.rig.fault("stop", "tunnel-down", t)
        self.down.clear()


def rounds(duration, per_round):
    end = time.monotonic() + duration
    while time.monotonic() + per_round * 0.5 < end:
        yield


def hold(seconds):
    time.sleep(seconds)


def current_leader(rig, among=None):
    return rig.wait_leader(among=among, timeout=60)


# ------------------------------------------------------------------------------ partitions

def ids(group):
    return ",".join(map(str, group))


def network_rounds(rig, rng, duration, cut, hold_for=(4, 8)):
    """Rounds of: `cut(rig, rng)` cuts the replicas' network and returns what it did, the cut
    holds for a while, everything between replicas heals, the cluster settles for a while."""
    for _ in rounds(duration, 10):
        kind, detail = cut(rig, rng)
        rig.fault("start", kind, detail)
        hold(rng.uniform(*hold_for))
        rig.heal_network(["r%d" % i for i in rig.members])
        rig.fault("stop", kind, "healed")
        hold(rng.uniform(2, 4))


@scenario("isolate-leader", help="cut the leader off from the other replicas (it still reaches AWS and its sentinels)")
def isolate_leader(rig, rng, duration):
    def cut(rig, rng):
        leader = current_leader(rig)
        rest = [i for i in rig.members if i != leader]
        rig.partition([[leader], rest])
        return "partition", "{%d} | {%s}" % (leader, ids(rest))
    network_rounds(rig, rng, duration, cut)


@scenario("halves", help="random majority/minority halves")
def halves(rig, rng, duration):
    def cut(rig, rng):
        members = list(rig.members)
        rng.shuffle(members)
        k = len(members) // 2
        minority, majority = sorted(members[:k]), sorted(members[k:])
        rig.partition([minority, majority])
        return "partition", "{%s} | {%s}" % (ids(minority), ids(majority))
    network_rounds(rig, rng, duration, cut)


def deafen(leader_hears):
    """One-way cuts around the leader: it hears nothing (`leader_hears` False), or the
    followers hear nothing from it."""
    def cut(rig, rng):
        leader = current_leader(rig)
        for i in rig.members:
            if i != leader:
                src, dst = ("r%d" % i, "r%d" % leader) if not leader_hears else ("r%d" % leader, "r%d" % i)
                rig.block(src, dst, one_way=True)
        return "one-way", ("nobody -> %d" if not leader_hears else "%d -> nobody") % leader
    return cut


@scenario("leader-deaf", help="asymmetric: the leader hears nothing, its messages still go out")
def leader_deaf(rig, rng, duration):
    network_rounds(rig, rng, duration, deafen(leader_hears=False))


@scenario("followers-deaf", help="asymmetric: the followers hear nothing from the leader, it hears them")
def followers_deaf(rig, rng, duration):
    network_rounds(rig, rng, duration, deafen(leader_hears=True))


@scenario("bridge", replicas=5, help="5 replicas: two halves joined by one node")
def bridge(rig, rng, duration):
    def cut(rig, rng):
        members = list(rig.members)
        rng.shuffle(members)
        middle, left, right = members[0], sorted(members[1:3]), sorted(members[3:])
        for a in left:
            for b in right:
                rig.block("r%d" % a, "r%d" % b)
        return "partition", "{%s} - %d - {%s}" % (ids(left), middle, ids(right))
    network_rounds(rig, rng, duration, cut, hold_for=(5, 9))


@scenario("majorities-ring", replicas=5, help="5 replicas in a ring: each sees a majority, no two the same")
def majorities_ring(rig, rng, duration):
    def cut(rig, rng):
        members = list(rig.members)
        rng.shuffle(members)
        n = len(members)
        for k in range(n):
            rig.block("r%d" % members[k], "r%d" % members[(k + 2) % n])
        return "partition", "ring %s" % "-".join(map(str, members))
    network_rounds(rig, rng, duration, cut, hold_for=(5, 9))


@scenario("lossy", help="30% packet loss and 40-60 ms of delay on every peer link, AWS calls 150 ms late")
def lossy(rig, rng, duration):
    rig.delay_peers(40, 20, seed=rng.randrange(1 << 20))
    ids = list(rig.members)
    for k, a in enumerate(ids):
        for b in ids[k + 1:]:
            rig.block("r%d" % a, "r%d" % b, loss=30)
    rig.aws_faults(delay_ms=150, seed=rng.randrange(1 << 30))
    rig.fault("start", "loss", "30% loss and 40-60 ms delay on every peer link, AWS +150 ms")
    hold(duration)
    rig.heal_network(["r%d" % i for i in rig.members])
    rig.undelay_peers()
    rig.aws_faults()
    rig.fault("stop", "loss", "healed")


# ------------------------------------------------------------------------------ processes

def tail_for(path, needle, timeout, start_at=None):
    """Waits until a line containing `needle` is appended to `path` after `start_at`; polls
    every millisecond, since the point is to act in the next few instructions of the writer."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END) if start_at is None else f.seek(start_at)
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = f.read()
            if chunk:
                buf += chunk
                if needle.encode() in buf:
                    return True
                buf = buf[-4096:]
            else:
                time.sleep(0.001)
    return False


def break_for_write(rig, rng, workload_down):
    """Breaks a tunnel whose route the leader must then move; returns it."""
    options = [t for t in TUNNELS if t not in workload_down]
    t = rng.choice(options)
    rig.tunnel_down(t)
    rig.fault("start", "tunnel-down", t)
    return t


def heal_tunnel(rig, t):
    rig.tunnel_up(t)
    rig.fault("stop", "tunnel-down", t)


@scenario("kill-leader-write-in-flight", workload=False,
          help="SIGKILL the leader while the proxy holds its route write, then let the write through")
def kill_leader_in_flight(rig, rng, duration):
    proxy_log = os.path.join(rig.dir, "proxy.jsonl")
    for _ in rounds(duration, 15):
        leader = current_leader(rig)
        rig.wait_caught_up()
        # Held for less than the lock-delay: a real AWS applies a call within its timeout, and
        # the new leader's lock-delay is what waits that out.
        held = round(min(1.5, rig.lock_delay() * 0.7), 2)
        rig.aws_faults(hang_s=held, hang_p=1, actions=["ReplaceRoute", "CreateRoute"])
        size = os.path.getsize(proxy_log)
        t = break_for_write(rig, rng, set())
        if tail_for(proxy_log, '"fault":"hang"', 30, start_at=size):
            rig.kill("r%d" % leader)
            rig.fault("start", "kill", "leader %d (SIGKILL) with a write held %.1fs in the proxy" % (leader, held))
        else:
            rig.fault("start", "kill", "no write was held; leader %d killed anyway" % leader)
            rig.kill("r%d" % leader)
        rig.aws_faults()
        current_leader(rig, among=[i for i in rig.members if i != leader])
        hold(rng.uniform(2, 4))
        rig.start_replica(leader)
        rig.fault("stop", "kill", "replica %d restarted" % leader)
        heal_tunnel(rig, t)
        hold(rng.uniform(4, 6))


@scenario("pause-leader", workload=False,
          help="SIGSTOP the leader right after its lease check, past the election timeout, then SIGCONT")
def pause_leader(rig, rng, duration):
    for _ in rounds(duration, 15):
        leader = current_leader(rig)
        rig.wait_caught_up()
        log = os.path.join(rig.dir, "replica-%d.jsonl" % leader)
        size = os.path.getsize(log)
        t = break_for_write(rig, rng, set())
        caught = tail_for(log, '"msg":"AWS write starting"', 30, start_at=size)
        rig.send_signal("r%d" % leader, signal.SIGSTOP)
        rig.fault("start", "pause", "leader %d SIGSTOP %s" % (leader, "after its lease check" if caught else "(no write seen)"))
        pause = TIMING["electionTimeout"] * 3 + rig.lock_delay()
        current_leader(rig, among=[i for i in rig.members if i != leader])
        hold(max(0.0, pause - 1))
        rig.send_signal("r%d" % leader, signal.SIGCONT)
        rig.fault("stop", "pause", "leader %d SIGCONT" % leader)
        hold(rng.uniform(3, 5))
        heal_tunnel(rig, t)
        hold(rng.uniform(4, 6))


@scenario("kill-majority", help="SIGKILL a majority (sometimes all) of the replicas, then restart them")
def kill_majority(rig, rng, duration):
    for _ in rounds(duration, 12):
        ids = list(rig.members)
        rng.shuffle(ids)
        victims = sorted(ids if rng.random() < 0.3 else ids[: len(ids) // 2 + 1])
        for i in victims:
            rig.kill("r%d" % i)
        rig.fault("start", "kill", "replicas %s (SIGKILL)" % victims)
        hold(rng.uniform(2, 5))
        for i in victims:
            rig.start_replica(i)
        rig.fault("stop", "kill", "replicas %s restarted" % victims)
        current_leader(rig)
        hold(rng.uniform(3, 5))


@scenario("rolling-restart", help="SIGTERM and restart every replica in turn, the leader among them")
def rolling_restart(rig, rng, duration):
    for _ in rounds(duration, 20):
        for i in sorted(rig.members, key=lambda _: rng.random()):
            rig.kill("r%d" % i, sig=signal.SIGTERM)
            rig.fault("start", "restart", "replica %d (SIGTERM)" % i)
            hold(rng.uniform(0.5, 2))
            rig.start_replica(i)
            rig.fault("stop", "restart", "replica %d started" % i)
            rig.wait_caught_up()


@scenario("disk-full", disk=True, help="the leader's data directory (a tiny tmpfs) fills up, then frees")
def disk_full(rig, rng, duration):
    for _ in rounds(duration, 15):
        leader = current_leader(rig)
        data = os.path.join(rig.dir, "data", str(leader))
        filler = os.path.join(data, "filler")
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        rig.fault("start", "disk-full", "replica %d's data tmpfs" % leader)
        hold(rng.uniform(5, 8))
        os.unlink(filler)
        rig.fault("stop", "disk-full", "replica %d freed" % leader)
        if not rig.nodes["r%d" % leader].alive:
            # A replica that could not persist stops rather than run without a durable log.
            rig.start_replica(leader)
            rig.fault("stop", "restart", "replica %d restarted after the disk filled" % leader)
        hold(rng.uniform(3, 5))


@scenario("clock", faked=(3,), help="replica 3's wall clock (libfaketime) jumps ±30 s and strobes, mostly while it leads")
def clock(rig, rng, duration):
    end = time.monotonic() + duration
    while time.monotonic() < end - 3:
        if rng.random() < 0.7:
            leader = current_leader(rig)
            if leader != 3:
                try:
                    rig.admin(leader, "/v1/leader/transfer", "POST", {"to": 3})
                    wait_until("replica 3 to lead", lambda: rig.leader() == 3, 10, 0.2)
                    rig.fault("start", "transfer", "leadership %d -> 3" % leader)
                except Exception as e:  # noqa: BLE001 - a refused transfer only means 3 does not lead this round
                    rig.fault("start", "transfer", "leadership %d -> 3 refused: %s" % (leader, e))
        kind = rng.choice(["jump-forward", "jump-back", "strobe"])
        if kind == "strobe":
            rig.fault("start", "clock", "replica 3 strobes 0/+5s")
            for k in range(8):
                rig.set_clock(3, "+5s" if k % 2 == 0 else "+0")
                hold(1.5)
        else:
            offset = "+30s" if kind == "jump-forward" else "-30s"
            rig.set_clock(3, offset)
            rig.fault("start", "clock", "replica 3 jumps %s" % offset)
            hold(rng.uniform(4, 7))
        rig.set_clock(3, "+0")
        rig.fault("stop", "clock", "replica 3 back to +0")
        hold(rng.uniform(2, 4))


@scenario("flapping", workload=False, help="tunnel a1 flaps faster than the failback hold-down")
def flapping(rig, rng, duration):
    t = "a1"
    start = mono()
    rig.fault("start", "flap", t)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        rig.tunnel_down(t)
        hold(rng.uniform(1.2, 2.0))
        rig.tunnel_up(t)
        hold(rng.uniform(1.2, 2.0))
    rig.fault("stop", "flap", t)
    return {"flapping": [{"tunnel": t, "fromMonoNs": start, "toMonoNs": mono()}]}


@scenario("aws-storm", help="AWS throttles and fails: 40% RequestLimitExceeded, 30% InternalError")
def aws_storm(rig, rng, duration):
    for _ in rounds(duration, 12):
        rig.aws_faults(throttle=0.4, error500=0.3, seed=rng.randrange(1 << 30))
        rig.fault("start", "aws-errors", "throttle 40%, 500 30%")
        hold(rng.uniform(6, 9))
        rig.aws_faults()
        rig.fault("stop", "aws-errors", "cleared")
        hold(rng.uniform(3, 5))


@scenario("instance-replaced", help="a VPN instance is replaced (check on; its sentinel late; the old sentinel still "
                                     "answering; its Elastic IP held elsewhere) while a minority replica is cut off")
def instance_replaced(rig, rng, duration):
    for n, _ in enumerate(rounds(duration, 18)):
        leader = current_leader(rig)
        others = [i for i in rig.members if i != leader]
        cut = rng.choice(others + [leader])
        rig.partition([[cut], [i for i in rig.members if i != cut]])
        rig.fault("start", "partition", "{%d} | rest" % cut)
        t = rng.choice(TUNNELS)
        # Every kind in turn, from a seeded start, so a short run still sees each.
        how = rig.REPLACEMENTS[(n + rng.randrange(len(rig.REPLACEMENTS))) % len(rig.REPLACEMENTS)]
        old, new = rig.replace_instance(t, how)
        rig.fault("start", "replace-instance", "%s (%s): %s -> %s" % (t, how, old, new))
        if how in ("sentinel-late", "old-sentinel"):
            # No route may reach the new instance meanwhile (no-route-to-unvouched-instance).
            hold(rng.uniform(3, 5))
            rig.start_sentinel(t)
            rig.fault("stop", "replace-instance", "%s: its own sentinel answers" % t)
        hold(rng.uniform(6, 9))
        rig.heal_network(["r%d" % i for i in rig.members])
        rig.fault("stop", "partition", "healed")
        # The far side's peer address followed to the new interface, also from another instance.
        wait_until("%s's Elastic IP on %s" % (t, rig.world["eni_" + t]), lambda: rig.eip_eni(t) == rig.world["eni_" + t], 60, 0.5)
        rig.fault("stop", "replace-instance", "%s: Elastic IP on %s" % (t, rig.world["eni_" + t]))
        hold(rng.uniform(3, 5))


def add_member(rig, i):
    """Starts replica i and adds it the way an operator does: learner, caught up, voter."""
    rig.start_replica(i)
    peer = "%s:%d" % (rig.nodes["r%d" % i].addr, 7000)
    wait_until("replica %d added as a learner" % i, lambda: rig.admin(current_leader(rig), "/v1/members", "POST",
                                                                      {"id": i, "peer": peer, "learner": True}).get("ok"), 60, 1)
    rig.fault("start", "membership", "add %d as a learner" % i)
    rig.members.append(i)
    rig.wait_caught_up()
    wait_until("replica %d promoted" % i, lambda: rig.admin(current_leader(rig), "/v1/members", "POST",
                                                            {"id": i, "peer": peer}).get("ok"), 60, 1)
    rig.fault("stop", "membership", "%d promoted to voter" % i)


@scenario("membership", replicas=5, members=[1, 2, 3],
          help="add a replica (learner, then voter), remove the leader, remove a partitioned replica, "
               "add another so three voters remain")
def membership(rig, rng, duration):
    add_member(rig, 4)
    hold(duration / 5)
    leader = current_leader(rig)
    wait_until("the leader removed", lambda: rig.admin(leader, "/v1/members/%d" % leader, "DELETE").get("ok"), 60, 1)
    rig.fault("start", "membership", "remove the leader %d" % leader)
    rig.members.remove(leader)
    current_leader(rig)
    rig.kill("r%d" % leader, sig=signal.SIGTERM)
    rig.fault("stop", "membership", "%d removed and stopped" % leader)
    hold(duration / 5)
    leader = current_leader(rig)
    victim = rng.choice([i for i in rig.members if i != leader])
    rest = [i for i in rig.members if i != victim]
    rig.partition([[victim], rest])
    rig.fault("start", "partition", "{%d} | {%s}" % (victim, ",".join(map(str, rest))))
    hold(2)
    wait_until("the partitioned replica removed",
               lambda: rig.admin(current_leader(rig, among=rest), "/v1/members/%d" % victim, "DELETE").get("ok"), 60, 1)
    rig.fault("start", "membership", "remove the partitioned replica %d" % victim)
    rig.members.remove(victim)
    hold(duration / 5)
    rig.heal_network()
    rig.fault("stop", "partition", "healed")
    rig.kill("r%d" % victim, sig=signal.SIGTERM)
    rig.fault("stop", "membership", "%d removed and stopped" % victim)
    # Two voters tolerate no failure: leave the cluster as an operator would, three again.
    add_member(rig, 5)


# ------------------------------------------------------------------------------ AWS realism
# The nemeses above against an AWS that behaves like AWS (bench/proxy.py's realism modes):
# each run also passes the no-write-loop checker, which is what these exist for.

REALISM = {"latency_ms": 40, "latency_jitter": 0.5, "aws_errors": True, "eni_order": "shuffle", "blackhole": True}


def realism(rig, rng, what, lasting=True, **modes):
    """Turns realism modes on. `lasting` ones stay through the heal and the settled end of
    the run (no-write-loop checks that nothing is written there); others (late apply) are
    faults of the nemesis phase only."""
    settings = dict(REALISM)
    settings.update(modes)
    settings["seed"] = rng.randrange(1 << 30)
    if lasting:
        rig.aws_realism(**settings)
    else:
        rig.aws_faults(**settings)
    rig.fault("start", "realism", what)


def realism_off(rig, what):
    """Ends the nemesis-only modes; lasting ones stay."""
    rig.aws_faults()
    rig.fault("stop", "realism", what + (" (lasting modes stay)" if rig.realism else ""))


def kill_and_restart_leader(rig, rng):
    leader = current_leader(rig)
    rig.kill("r%d" % leader)
    rig.fault("start", "kill", "leader %d (SIGKILL)" % leader)
    current_leader(rig, among=[i for i in rig.members if i != leader])
    hold(rng.uniform(2, 4))
    rig.start_replica(leader)
    rig.fault("stop", "kill", "replica %d restarted" % leader)


@scenario("realism-propagation-kill-leader",
          help="VGW propagation lists a propagated route beside every managed one (any order), 40 ms calls; the leader is killed")
def realism_propagation_kill_leader(rig, rng, duration):
    cidrs = sorted({r["destination"] for r in rig.routes})
    realism(rig, rng, "VGW propagation of %s" % ", ".join(cidrs),
            propagation={"gateway": "vgw-0c4a05e1ab5e0f1a7", "cidrs": cidrs})
    for _ in rounds(duration, 12):
        hold(rng.uniform(3, 5))
        kill_and_restart_leader(rig, rng)
    realism_off(rig, "propagation")


@scenario("realism-stale-reads-flapping", workload=False,
          help="reads lag writes by 3 s while tunnel a1 flaps faster than the hold-down")
def realism_stale_reads_flapping(rig, rng, duration):
    realism(rig, rng, "reads lag writes by 3 s", consistency_lag_s=3)
    meta = flapping(rig, rng, duration)
    realism_off(rig, "stale reads")
    return meta


@scenario("realism-throttled-mass-failover", workload=False,
          help="EC2's token buckets with a noisy neighbour spending ReplaceRoute's refill; every first-choice tunnel fails at once")
def realism_throttled_mass_failover(rig, rng, duration):
    realism(rig, rng, "EC2 buckets, a neighbour at 4.5 ReplaceRoute/s and 15 DescribeRouteTables/s",
            buckets="ec2-default", neighbour={"ReplaceRoute": 4.5, "CreateRoute": 2, "DescribeRouteTables": 15})
    for _ in rounds(duration, 16):
        down = [t for t in TUNNELS if t.endswith("1")]
        for t in down:
            rig.tunnel_down(t)
            rig.fault("start", "tunnel-down", t)
        hold(rng.uniform(5, 7))
        for t in down:
            heal_tunnel(rig, t)
        hold(rng.uniform(7, 9))
    realism_off(rig, "throttling")


@scenario("realism-late-apply-pause-leader", workload=False,
          help="half the route writes are applied 3 s after their client gave up, while the leader is paused past its lease")
def realism_late_apply_pause_leader(rig, rng, duration):
    realism(rig, rng, "late apply: p 0.5, applied after 3 s, no answer for 4 s", lasting=False,
            late_apply={"p": 0.5, "delay_s": 3, "hold_s": 4, "actions": ["ReplaceRoute", "CreateRoute"]})
    pause_leader(rig, rng, duration)
    realism_off(rig, "late apply")
