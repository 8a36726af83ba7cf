import Benchmark
import Controller
import Raft

// Micro-benchmarks of the hot pure paths (issue 9, item 6): the Raft core's step, the codecs
// (Raft messages and entries, the controller's log entries and state snapshot), and the
// planner over the scale world of bench/scale (20 VPCs, 500 route tables, 1,000 routes,
// 40 tunnels). Everything here is pure: no sockets, files or clocks.

// MARK: - The scale world, as the planner sees it

/// The same topology bench/scale generates: VPC i is 10.i.0.0/16 with `tunnelsPerVPC`
/// tunnels; each route table prefers its own AZ's tunnel, then the VPC's others, and holds
/// routes to the next VPCs.
struct ScaleWorld {
    let config: SwitchmanConfig
    let tunnels: [String]

    init(vpcs: Int = 20, tables: Int = 500, routes: Int = 1000, tunnels: Int = 40) {
        let perVPCTunnels = tunnels / vpcs, perVPCTables = tables / vpcs, perTable = routes / tables
        var names: [String] = []
        var yaml = """
            cluster:
              name: bench
              members:
                - {id: 1, peer: "127.0.0.1:7001", admin: "127.0.0.1:7101", zone: us-east-1a}
                - {id: 2, peer: "127.0.0.1:7002", admin: "127.0.0.1:7102", zone: us-east-1b}
                - {id: 3, peer: "127.0.0.1:7003", admin: "127.0.0.1:7103", zone: us-east-1c}
            tls: {ca: /ca.pem, cert: "/m-{id}.pem", key: "/m-{id}-key.pem"}
            dataDir: "/data/{id}"
            aws: {region: us-east-1}
            tunnels:

            """
        func name(_ i: Int, _ j: Int) -> String {
            "v\(i < 10 ? "0" : "")\(i)\(Character(UnicodeScalar(UInt8(97 + j))))"
        }
        for i in 0..<vpcs {
            for j in 0..<perVPCTunnels {
                let n = name(i, j)
                names.append(n)
                yaml += """
                      - name: \(n)
                        instance: {tagKey: switchman/tunnel, tagValue: \(n)}
                        sentinel: "127.0.0.1:\(8000 + names.count)"
                        probes: [{tcp: "127.0.0.1:\(9000 + names.count)"}]

                    """
            }
        }
        yaml += "routes:\n"
        var rtb = 0
        for i in 0..<vpcs {
            for r in 0..<perVPCTables {
                rtb += 1
                let j = r % perVPCTunnels
                let candidates = (0..<perVPCTunnels).map { name(i, (j + $0) % perVPCTunnels) }
                for d in 0..<perTable {
                    let remote = (i + 1 + d % (vpcs - 1)) % vpcs
                    yaml += "  - {routeTable: rtb-\(String(rtb, radix: 16)), destination: 10.\(remote).0.0/16, candidates: [\(candidates.joined(separator: ", "))]}\n"
                }
            }
        }
        let result = ConfigLoader.load(yaml: yaml, file: "scale.yaml")
        guard let config = result.config else {
            fatalError("scale config: \(result.errors.map { "\($0)" }.joined(separator: "\n"))")
        }
        self.config = config
        self.tunnels = names
    }

    /// The replicated state with every tunnel up (three replicas' observations, identities
    /// known), optionally with some tunnels down.
    func state(down: Set<String> = []) -> FailoverState {
        var s = FailoverState(policy: HealthPolicy(fall: 2, rise: 3, observationTTLMillis: 5000, failbackHoldDownMillis: 10_000,
                                                   autoFailback: true, minimumObservers: 2))
        var t: UInt64 = 1000
        for (k, name) in tunnels.enumerated() {
            let hex = String(k, radix: 16)
            _ = s.apply(.instanceIdentity(tunnel: name, InstanceIdentity(instanceId: "i-\(hex)", eniId: "eni-\(hex)", privateIP: "10.0.0.\(k)")),
                        stamp: Stamp(millis: t))
            for replica: ReplicaID in 1...3 {
                _ = s.apply(.observe(replica: replica, tunnel: name, healthyRun: 10, unhealthyRun: 0, rttMillis: 1), stamp: Stamp(millis: t))
            }
            t += 1
        }
        for name in down {
            for replica: ReplicaID in 1...3 {
                _ = s.apply(.observe(replica: replica, tunnel: name, healthyRun: 0, unhealthyRun: 10, rttMillis: nil), stamp: Stamp(millis: t))
            }
        }
        _ = s.apply(.tick, stamp: Stamp(millis: t + 1))
        return s
    }
}

// MARK: - A three-node Raft cluster of pure cores, messages delivered at once

struct CoreCluster {
    var cores: [NodeID: RaftCore] = [:]
    var queue: [Message] = []
    var applied: [NodeID: UInt64] = [:]
    let leader: NodeID = 1

    init() {
        let membership = Membership(voters: [1, 2, 3])
        for id: NodeID in 1...3 {
            cores[id] = try! RaftCore(config: RaftConfig(id: id, electionTicks: 10, heartbeatTicks: 1, randomSeed: id),
                                      bootstrap: membership)
        }
        // Node 1 campaigns first: tick it alone past its election timeout, then settle.
        for _ in 0..<40 where cores[1]!.role != .leader {
            step(1, .tick)
            drain()
        }
        precondition(cores[1]!.role == .leader, "no leader")
        drain()
    }

    mutating func step(_ id: NodeID, _ input: RaftInput) {
        let result = cores[id]!.step(input)
        var persisted: (UInt64, UInt64)? = nil
        var lastApplied: UInt64? = nil
        for e in result.effects {
            switch e {
            case .persist(let req):
                if let last = req.entries.last { persisted = (last.term, last.index) }
            case .send(let m, _):
                queue.append(m)
            case .apply(let entries):
                if let last = entries.last { lastApplied = last.index }
            default:
                break
            }
        }
        if let (t, i) = persisted { step(id, .persisted(term: t, index: i)) }
        if let i = lastApplied {
            applied[id] = i
            step(id, .applied(i))
        }
    }

    mutating func drain() {
        while !queue.isEmpty {
            let m = queue.removeFirst()
            step(m.to, .receive(m))
        }
    }

    /// One proposal on the leader, replicated, committed and applied everywhere.
    mutating func commitOne(_ data: [UInt8]) {
        step(leader, .propose([data]))
        drain()
    }
}

// MARK: - Sample payloads

func observeEntry(_ k: Int) -> ControllerEntry {
    ControllerEntry(stamp: nil, origin: 2, requestID: 0x1234_5678_9abc_def0 &+ UInt64(k),
                    command: .observe(replica: 2, tunnel: "v07b", healthyRun: 1234, unhealthyRun: 0, rttMillis: 3))
}

func appendMessage(entries n: Int, bytes: Int) -> Message {
    let payload = observeEntry(0).encoded()
    let data = Array(repeating: payload, count: (bytes + payload.count - 1) / payload.count).flatMap { $0 }.prefix(bytes)
    let entries = (0..<n).map { Entry(term: 7, index: 100_000 + UInt64($0), data: Array(data)) }
    return Message(type: .append, from: 1, to: 2, term: 7, logTerm: 7, index: 99_999, entries: entries, commit: 99_990, context: 42)
}

// MARK: - Benchmarks

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .cpuTotal, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        maxDuration: .seconds(3),
        maxIterations: 100_000
    )

    // Raft core. A full round for one 40-byte proposal through three pure cores: the leader's
    // propose, persist and append; each follower's receive, persist and answer; the leader's
    // commit; apply on all three. The cluster is built once, outside the measurement.
    Benchmark("Raft core: commit one entry (3 cores, every step)") { benchmark in
        var cluster = CoreCluster()
        let data = observeEntry(0).encoded()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            cluster.commitOne(data)
        }
        benchmark.stopMeasurement()
        blackHole(cluster.applied)
    }

    Benchmark("Raft core: leader tick (heartbeat round to 2 followers, answered)") { benchmark in
        var cluster = CoreCluster()
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            cluster.step(1, .tick)
            cluster.drain()
        }
        benchmark.stopMeasurement()
        blackHole(cluster.applied)
    }

    Benchmark("Raft core: follower step, receive append of 8 entries") { benchmark in
        // A fresh follower each batch of iterations would cost more than the step; instead
        // feed it appends that keep extending its log.
        var follower = try! RaftCore(config: RaftConfig(id: 2, randomSeed: 2), bootstrap: Membership(voters: [1, 2, 3]))
        let payload = observeEntry(0).encoded()
        var next: UInt64 = 1
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            let entries = (0..<8).map { Entry(term: 1, index: next + UInt64($0), data: payload) }
            let m = Message(type: .append, from: 1, to: 2, term: 1, logTerm: next == 1 ? 0 : 1, index: next - 1,
                            entries: entries, commit: next - 1)
            blackHole(follower.step(.receive(m)))
            next += 8
        }
        benchmark.stopMeasurement()
    }

    // Codecs.
    let append8 = appendMessage(entries: 8, bytes: 64)
    let append8Bytes = RaftCodec.encode(append8)
    Benchmark("Codec: encode append, 8 entries x 64 B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(RaftCodec.encode(append8)) }
    }
    Benchmark("Codec: decode append, 8 entries x 64 B") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! RaftCodec.decodeMessage(append8Bytes)) }
    }
    let heartbeat = Message(type: .append, from: 1, to: 2, term: 7, logTerm: 7, index: 99_999, commit: 99_999, context: 42)
    let heartbeatBytes = RaftCodec.encode(heartbeat)
    Benchmark("Codec: encode + decode heartbeat") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(RaftCodec.encode(heartbeat))
            blackHole(try! RaftCodec.decodeMessage(heartbeatBytes))
        }
    }
    let observe = observeEntry(1)
    let observeBytes = observe.encoded()
    Benchmark("Codec: encode observation entry (controller)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(observe.encoded()) }
    }
    Benchmark("Codec: decode observation entry (controller)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! ControllerEntry.decode(observeBytes)) }
    }

    // The controller's state at scale (40 tunnels x 3 observations, 40 identities, events):
    // what a snapshot encodes every snapshotEvery entries.
    let world = ScaleWorld()
    let upState = world.state()
    let stateBytes = StateCodec.encode(upState)
    Benchmark("Codec: encode controller state, 40 tunnels") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(StateCodec.encode(upState)) }
    }
    Benchmark("Codec: decode controller state, 40 tunnels") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try! StateCodec.decodeState(stateBytes)) }
    }

    // The planner over the scale config.
    let routes = world.config.routes
    precondition(routes.count == 1000)
    Benchmark("Planner: 1,000 routes, 40 tunnels, all up") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Planner.plan(state: upState, routes: routes)) }
    }
    let downState = world.state(down: [world.tunnels[0]])
    Benchmark("Planner: 1,000 routes, 40 tunnels, one down (26 routes fail over)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Planner.plan(state: downState, routes: routes)) }
    }
    let allADown = world.state(down: Set(world.tunnels.filter { $0.hasSuffix("a") }))
    Benchmark("Planner: 1,000 routes, 40 tunnels, every AZ-a tunnel down (520 fail over)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(Planner.plan(state: allADown, routes: routes)) }
    }
}
