@testable import Actuators
import ChaosCheck
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Raft
import RaftRuntime
import ServiceLifecycle
import Testing

@testable import Controller
import SwitchmanTestSupport

/// One AWS account in memory, shared by every replica of a test, that records every write
/// with its fencing token: the leader changes, the account does not.
final class FakeAWS: Sendable {
    struct Write: Sendable, Hashable {
        var token: FencingToken
        var what: String
    }

    /// Every route read and write with the times around it (nanoseconds since the account
    /// was made), so a test can hand the history to the chaos rig's linearizability checker.
    enum RouteEvent: Sendable {
        case read(table: String, routes: [String: String], call: Int64, ret: Int64)
        /// `token` nil: a change made by hand.
        case write(table: String, destination: String, eni: String, token: FencingToken?, call: Int64, ret: Int64)
    }

    private struct State {
        var tables: [String: [String: String]] = [:]  // table -> destination -> ENI
        var instances: [String: InstanceIdentity] = [:]  // tunnel -> identity
        var records: [String: String] = [:]  // name -> address
        var writes: [Write] = []
        var routeEvents: [RouteEvent] = []
        var failWrites = false
        var dnsReads = 0
        var failDNSReads = false
        var refuseDNSWrites = false
        var dnsWriteAttempts = 0
        /// The record names of each ChangeBatch, in order.
        var dnsBatches: [[String]] = []
        /// Names Route 53 refuses: a batch holding one of them fails whole.
        var refusedNames: Set<String> = []
        var readDelay: Duration = .zero
        /// Interfaces whose source/destination check is off; every other one has it on, as
        /// EC2 gives a new instance's interfaces.
        var checkOff: Set<String> = []
        /// Route writes that pointed at an interface whose check was on at that moment.
        var writesToCheckedInterfaces: [String] = []
        /// Every check-off write, in order, beside the route writes: `order` below.
        var order: [String] = []
        var refuseCheckWrites = false
        /// EC2's status per instance id; an instance not listed reads ok with no events.
        var statuses: [String: EC2InstanceStatus] = [:]
        /// Elastic IPs: allocation id -> (public address, interface it is on).
        var addresses: [String: (ip: String, eni: String?)] = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let born = ContinuousClock.now

    func now() -> Int64 {
        let d = ContinuousClock.now - born
        return d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }

    init(tables: [String]) {
        state.withLockedValue { s in for t in tables { s.tables[t] = [:] } }
    }

    var writes: [Write] { state.withLockedValue { $0.writes } }
    var writesToCheckedInterfaces: [String] { state.withLockedValue { $0.writesToCheckedInterfaces } }
    /// "check-off ENI" and "route TABLE DEST ENI", in the order the account saw them.
    var order: [String] { state.withLockedValue { $0.order } }
    func sourceDestCheckIsOff(_ eni: String) -> Bool { state.withLockedValue { $0.checkOff.contains(eni) } }
    /// Turns an interface's check on (or off) by hand, as an operator or a launch template does.
    func setSourceDestCheck(_ eni: String, on: Bool) {
        state.withLockedValue { if on { $0.checkOff.remove(eni) } else { $0.checkOff.insert(eni) } }
    }
    func refuseCheckWrites(_ refuse: Bool) { state.withLockedValue { $0.refuseCheckWrites = refuse } }
    func setStatus(_ status: EC2InstanceStatus) { state.withLockedValue { $0.statuses[status.instanceId] = status } }
    func setAddress(_ allocation: String, ip: String, eni: String?) { state.withLockedValue { $0.addresses[allocation] = (ip, eni) } }
    func address(_ allocation: String) -> String? { state.withLockedValue { $0.addresses[allocation]?.eni } }
    var routeEvents: [RouteEvent] { state.withLockedValue { $0.routeEvents } }
    func route(_ table: String, _ destination: String) -> String? { state.withLockedValue { $0.tables[table]?[destination] } }
    func record(_ name: String) -> String? { state.withLockedValue { $0.records[name] } }
    /// Route 53 reads so far, failed ones included.
    var dnsReads: Int { state.withLockedValue { $0.dnsReads } }
    func failDNSReads(_ fail: Bool) { state.withLockedValue { $0.failDNSReads = fail } }
    /// Route 53 answers every change with a client error (what a denied record name gets).
    func refuseDNSWrites(_ refuse: Bool) { state.withLockedValue { $0.refuseDNSWrites = refuse } }
    var dnsWriteAttempts: Int { state.withLockedValue { $0.dnsWriteAttempts } }
    var dnsBatches: [[String]] { state.withLockedValue { $0.dnsBatches } }
    func setReadDelay(_ d: Duration) { state.withLockedValue { $0.readDelay = d } }
    func refuseRecord(_ name: String, _ refuse: Bool) {
        state.withLockedValue { if refuse { $0.refusedNames.insert(name) } else { $0.refusedNames.remove(name) } }
    }
    func setInstance(_ tunnel: String, _ identity: InstanceIdentity) { state.withLockedValue { $0.instances[tunnel] = identity } }
    func setRouteByHand(_ table: String, _ destination: String, _ eni: String) {
        let call = now()
        state.withLockedValue {
            $0.tables[table]?[destination] = eni
            $0.routeEvents.append(.write(table: table, destination: destination, eni: eni, token: nil, call: call, ret: now()))
        }
    }

    func actuators() -> ReplicaActuators {
        ReplicaActuators(routes: { _ in FakeRoutes(aws: self) }, dns: FakeDNS(aws: self), instances: FakeInstances(aws: self))
    }

    struct FakeRoutes: RouteActuator {
        let aws: FakeAWS
        func readRouteTables(_ ids: [String], deadline: NIODeadline) async throws -> [String: EC2RouteTable] {
            // A read that takes its time, as five pages at AWS latency do: past its deadline it
            // fails, as the real client would.
            let delay = aws.state.withLockedValue { $0.readDelay }
            if delay > .zero {
                try await Task.sleep(for: delay)
                if NIODeadline.now() > deadline { throw AWSClientError.deadlineExceeded(action: "DescribeRouteTables", attempts: 1, lastError: nil) }
            }
            let call = aws.now()
            return aws.state.withLockedValue { s in
                var out: [String: EC2RouteTable] = [:]
                for id in ids {
                    guard let routes = s.tables[id] else { continue }
                    s.routeEvents.append(.read(table: id, routes: routes, call: call, ret: aws.now()))
                    out[id] = EC2RouteTable(
                        id: id, vpcId: nil,
                        routes: routes.map { EC2Route(destinationCidrBlock: $0.key, networkInterfaceId: $0.value) },
                        associations: [], tags: [:])
                }
                return out
            }
        }

        func ensureRoutes(_ routes: [DesiredRoute], fencing: FencingToken, deadline: NIODeadline) async throws -> [DesiredRoute: RouteEnsureOutcome] {
            let call = aws.now()
            return aws.state.withLockedValue { s in
                var out: [DesiredRoute: RouteEnsureOutcome] = [:]
                for r in routes {
                    guard case .networkInterface(let eni) = r.target else { continue }
                    s.writes.append(Write(token: fencing, what: "\(r.routeTableId) \(r.destination) \(eni)"))
                    s.order.append("route \(r.routeTableId) \(r.destination) \(eni)")
                    if !s.checkOff.contains(eni) { s.writesToCheckedInterfaces.append("\(r.routeTableId) \(r.destination) \(eni)") }
                    s.routeEvents.append(
                        .write(table: r.routeTableId, destination: r.destination, eni: eni, token: fencing, call: call, ret: aws.now()))
                    s.tables[r.routeTableId]?[r.destination] = eni
                    out[r] = .replaced
                }
                return out
            }
        }

        func writeRoute(_ route: DesiredRoute, exists: Bool, fencing: FencingToken, deadline: NIODeadline) async -> RouteEnsureOutcome {
            do {
                return try await ensureRoutes([route], fencing: fencing, deadline: deadline)[route] ?? .unchanged
            } catch {
                return .failed(error)
            }
        }

        func sourceDestChecks(_ networkInterfaceIds: [String], deadline: NIODeadline) async throws -> [String: Bool] {
            aws.state.withLockedValue { s in
                Dictionary(uniqueKeysWithValues: Set(networkInterfaceIds).map { ($0, !s.checkOff.contains($0)) })
            }
        }

        func disableSourceDestCheck(_ networkInterfaceId: String, fencing: FencingToken, deadline: NIODeadline) async throws -> String? {
            try aws.state.withLockedValue { s in
                if s.refuseCheckWrites {
                    throw AWSError(service: "ec2", action: "ModifyNetworkInterfaceAttribute", httpStatus: 403, code: "UnauthorizedOperation",
                                   message: "not authorized", requestID: "req-check")
                }
                s.writes.append(Write(token: fencing, what: "check-off \(networkInterfaceId)"))
                s.order.append("check-off \(networkInterfaceId)")
                s.checkOff.insert(networkInterfaceId)
                return "req-\(s.writes.count)"
            }
        }

        func instanceStatuses(_ instanceIds: [String], deadline: NIODeadline) async throws -> [String: EC2InstanceStatus] {
            aws.state.withLockedValue { s in
                Dictionary(uniqueKeysWithValues: Set(instanceIds).map {
                    ($0, s.statuses[$0] ?? EC2InstanceStatus(instanceId: $0, instanceStatus: "ok", systemStatus: "ok"))
                })
            }
        }

        func addresses(_ allocationIds: [String], deadline: NIODeadline) async throws -> [String: EC2Address] {
            aws.state.withLockedValue { s in
                var out: [String: EC2Address] = [:]
                for id in allocationIds {
                    guard let a = s.addresses[id] else { continue }
                    out[id] = EC2Address(allocationId: id, publicIp: a.ip, networkInterfaceId: a.eni, privateIpAddress: nil, instanceId: nil,
                                         associationId: a.eni.map { _ in "eipassoc-1" })
                }
                return out
            }
        }

        func associateAddress(_ allocationId: String, networkInterfaceId: String, privateIpAddress: String?,
                              fencing: FencingToken, deadline: NIODeadline) async throws -> String? {
            aws.state.withLockedValue { s in
                s.writes.append(Write(token: fencing, what: "associate \(allocationId) \(networkInterfaceId)"))
                s.order.append("associate \(allocationId) \(networkInterfaceId)")
                s.addresses[allocationId]?.eni = networkInterfaceId
                return "req-\(s.writes.count)"
            }
        }
    }

    struct FakeDNS: DNSActuator {
        let aws: FakeAWS
        func readRecord(hostedZoneId: String, name: String, type: String, deadline: NIODeadline) async throws -> ResourceRecordSet? {
            try aws.state.withLockedValue { s in
                s.dnsReads += 1
                if s.failDNSReads { throw TestFailure("scripted Route 53 failure") }
                return s.records[name].map { ResourceRecordSet(name: name, type: "A", ttl: 30, values: [$0]) }
            }
        }

        /// One read per zone, as the real actuator's zone listing is.
        func readRecords(hostedZoneId: String, names: [String], type: String, deadline: NIODeadline) async throws -> [String: ResourceRecordSet] {
            try aws.state.withLockedValue { s in
                s.dnsReads += 1
                if s.failDNSReads { throw TestFailure("scripted Route 53 failure") }
                var found: [String: ResourceRecordSet] = [:]
                for name in names {
                    if let address = s.records[name] {
                        found[canonicalRecordName(name)] = ResourceRecordSet(name: name, type: "A", ttl: 30, values: [address])
                    }
                }
                return found
            }
        }

        func writeRecords(_ records: [DesiredRecord], fencing: FencingToken, deadline: NIODeadline) async throws -> DNSEnsureOutcome {
            try aws.state.withLockedValue { s in
                s.dnsWriteAttempts += 1
                s.dnsBatches.append(records.map(\.name))
                if s.refuseDNSWrites || records.contains(where: { s.refusedNames.contains($0.name) }) {
                    throw AWSError(service: "route53", action: "ChangeResourceRecordSets", httpStatus: 403, code: "AccessDenied",
                                   message: "not authorized to change this record", requestID: "req-dns")
                }
                // A batch is applied whole, as Route 53 does.
                for record in records {
                    s.writes.append(Write(token: fencing, what: "\(record)"))
                    s.records[record.name] = record.values.first
                }
            }
            return .upserted(changeID: "C1", insync: true)
        }
    }

    struct FakeInstances: InstanceDirectory {
        let aws: FakeAWS
        func currentInstance(of tunnel: TunnelConfig, known: InstanceIdentity?, deadline: NIODeadline) async throws -> InstanceIdentity? {
            aws.state.withLockedValue { $0.instances[tunnel.name] }
        }
    }
}

/// Tunnel health as the test sets it.
final class FakeChecker: TunnelChecker {
    private let healthy = NIOLockedValueBox<[String: Bool]>([:])
    private let instances = NIOLockedValueBox<[String: String]>([:])
    func set(_ tunnel: String, _ up: Bool) { healthy.withLockedValue { $0[tunnel] = up } }
    /// The instance the tunnel's sentinel says it runs on (none: it does not say).
    func setSentinelInstance(_ tunnel: String, _ instance: String?) { instances.withLockedValue { $0[tunnel] = instance } }
    func check(_ tunnel: TunnelConfig, timeout: Duration) async -> TunnelCheck {
        let up = healthy.withLockedValue { $0[tunnel.name] ?? true }
        return TunnelCheck(healthy: up, rttMillis: 1, detail: up ? "ok" : "scripted failure",
                           instanceId: instances.withLockedValue { $0[tunnel.name] })
    }
}

/// Three replicas in this process on loopback (mutual TLS, LMDB), AWS faked.
final class InProcessCluster: Sendable {
    let root: URL
    let config: SwitchmanConfig
    let aws: FakeAWS
    let checker = FakeChecker()
    private let running = NIOLockedValueBox<[UInt64: (assembly: ReplicaAssembly, task: Task<Void, any Error>)]>([:])

    /// `aws`: the config's `aws:` value; `checkOff`: interfaces whose source/destination
    /// check is off from the start (every other one has it on, as EC2 launches them).
    /// `vpnAEIP`: vpn-a's Elastic IP allocation; `vpnADNSAddress`: which address its record
    /// publishes; `reconcile`: the config's `reconcile:` value (a short drift check, so the
    /// drift tests need not wait out the default).
    init(aws awsYAML: String = "{region: us-east-1}", checkOff: Set<String> = [], vpnAEIP: String? = nil,
         vpnADNSAddress: String = "private", reconcile: String = "{driftCheckInterval: 500ms}") async throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("switchman-rt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let certs = CertificateDirectory(path: root.appendingPathComponent("certs").path)
        _ = try certs.bootstrap(clusterName: "rt", members: [1, 2, 3], hosts: ["127.0.0.1"], force: true)
        var ports: [Int] = []
        for _ in 0..<3 { ports.append(try LoopbackPorts.unused()) }
        let yaml = """
            cluster:
              name: rt
              members:
                - {id: 1, peer: "127.0.0.1:\(ports[0])", admin: "127.0.0.1:1", zone: a}
                - {id: 2, peer: "127.0.0.1:\(ports[1])", admin: "127.0.0.1:2", zone: b}
                - {id: 3, peer: "127.0.0.1:\(ports[2])", admin: "127.0.0.1:3", zone: c}
            tls: {ca: "\(certs.path)/ca.pem", cert: "\(certs.path)/member-{id}.pem", key: "\(certs.path)/member-{id}-key.pem"}
            dataDir: "\(root.path)/data-{id}"
            aws: \(awsYAML)
            tunnels:
              - name: vpn-a
                instance: {tagKey: t, tagValue: vpn-a}
                sentinel: "127.0.0.1:9"
                dns: {zoneId: Z1, name: vpn-a.example.internal, ttl: 30, address: \(vpnADNSAddress)}
                probes: [{tcp: "127.0.0.1:9"}]\(vpnAEIP.map { "\n    eip: \($0)" } ?? "")
              - name: vpn-b
                instance: {tagKey: t, tagValue: vpn-b}
                sentinel: "127.0.0.1:9"
                dns: {zoneId: Z1, name: vpn-b.example.internal, ttl: 30}
                probes: [{tcp: "127.0.0.1:9"}]
            routes:
              - {routeTable: rtb-a, destination: 172.16.0.0/16, candidates: [vpn-a, vpn-b]}
              - {routeTable: rtb-b, destination: 172.16.0.0/16, candidates: [vpn-b, vpn-a]}
            health: {probeInterval: 100ms, probeTimeout: 50ms, fall: 2, rise: 2, failbackHoldDown: 1s, observationTTL: 3s}
            timing: {heartbeat: 50ms, electionTimeout: 1s, maxClockDrift: 0.05}
            reconcile: \(reconcile)
            """
        let loaded = ConfigLoader.load(yaml: yaml, file: "rt.yaml")
        guard let config = loaded.config else { throw TestFailure("config: \(loaded.diagnostics)") }
        self.config = config
        aws = FakeAWS(tables: ["rtb-a", "rtb-b"])
        for eni in checkOff { aws.setSourceDestCheck(eni, on: false) }
        aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a", eniId: "eni-a", privateIP: "10.0.0.10"))
        aws.setInstance("vpn-b", InstanceIdentity(instanceId: "i-b", eniId: "eni-b", privateIP: "10.0.1.10"))
        for id in UInt64(1)...3 { try await start(id) }
    }

    func start(_ id: UInt64) async throws {
        var logger = Logger(label: "rt.\(id)")
        logger.logLevel = .critical
        let assembly = try await ReplicaAssembly.make(
            id: id, config: config, configFile: "rt.yaml", checker: checker, start: .bootstrap, logger: logger,
            actuators: aws.actuators())
        let group = ServiceGroup(services: [assembly.node, assembly.replica], gracefulShutdownSignals: [], logger: logger)
        let task = Task {
            defer { assembly.store.close() }
            try await group.run()
            await assembly.transport.shutdown()
        }
        running.withLockedValue { $0[id] = (assembly, task) }
    }

    /// The highest term any running replica is in.
    func term() async -> UInt64 {
        var best: UInt64 = 0
        for (_, r) in running.withLockedValue({ $0 }) { best = max(best, await r.assembly.node.status.term) }
        return best
    }

    /// Runs `body` on a fresh cluster and shuts it down afterwards, also when `body` throws.
    @discardableResult
    static func with<T>(aws: String = "{region: us-east-1}", checkOff: Set<String> = [], vpnAEIP: String? = nil,
                        vpnADNSAddress: String = "private", reconcile: String = "{driftCheckInterval: 500ms}",
                        _ body: (InProcessCluster) async throws -> T) async throws -> T {
        let c = try await InProcessCluster(aws: aws, checkOff: checkOff, vpnAEIP: vpnAEIP, vpnADNSAddress: vpnADNSAddress, reconcile: reconcile)
        let result: T
        do {
            result = try await body(c)
        } catch {
            await c.shutdown()
            throw error
        }
        await c.shutdown()
        return result
    }

    func replica(_ id: UInt64) -> ControllerReplica? { running.withLockedValue { $0[id]?.assembly.replica } }

    func leader() async -> UInt64? {
        for (id, r) in running.withLockedValue({ $0 }) where await r.assembly.node.status.role == .leader { return id }
        return nil
    }

    /// Stops a replica the way a crash does: its log stays, its transport goes.
    func kill(_ id: UInt64) async {
        guard let r = running.withLockedValue({ $0.removeValue(forKey: id) }) else { return }
        r.task.cancel()
        _ = await r.task.result
        await r.assembly.transport.shutdown()
    }

    func shutdown() async {
        for id in running.withLockedValue({ Array($0.keys) }) { await kill(id) }
        try? FileManager.default.removeItem(at: root)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

func poll(_ what: String, timeout: Duration = .seconds(90), _ condition: () async -> Bool) async throws {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw TestFailure("timed out waiting for \(what)")
}

@Suite(.serialized) struct ReplicaRuntimeTests {
    /// Issue #17 items 2 and 3: at rest the leader reads no route table (the drift check is an
    /// hour away here); a committed failure is written from the last read, with no read first,
    /// and one read after the write confirms it.
    @Test func routeTablesAreReadOnTheDriftClockAndAfterWritesNotOnEveryPass() async throws {
        try await InProcessCluster.with(reconcile: "{driftCheckInterval: 1h}") { c in
            let dest = "172.16.0.0/16"
            func reads() -> [Int64] {
                c.aws.routeEvents.compactMap { if case .read(_, _, let call, _) = $0 { return call } else { return nil } }
            }
            func leaderStamp() async -> UInt64 {
                guard let l = await c.leader() else { return 0 }
                return c.replica(l)?.machine.state.now.millis ?? 0
            }
            try await poll("each table at its own tunnel") { c.aws.route("rtb-a", dest) == "eni-a" && c.aws.route("rtb-b", dest) == "eni-b" }
            let lastPlacement = c.aws.routeEvents.compactMap { e -> Int64? in
                if case .write(_, _, _, _?, let call, _) = e { return call } else { return nil }
            }.max() ?? 0
            try await poll("the placement confirmed by a read") { reads().contains { $0 > lastPlacement } }
            // Every pass stamps a tick: once the leader's time moved on by many reconcile
            // intervals, it made many passes, and none of them may read.
            let atRest = reads().count
            let from = await leaderStamp()
            try await poll("twenty leader passes") { await leaderStamp() >= from + 2_000 }
            #expect(reads().count == atRest, "route tables read at rest: \(reads().count - atRest) reads in twenty passes")

            let beforeFailure = reads().count
            c.checker.set("vpn-a", false)
            try await poll("failover to vpn-b") { c.aws.route("rtb-a", dest) == "eni-b" }
            let failoverWrite = c.aws.routeEvents.compactMap { e -> Int64? in
                if case .write("rtb-a", _, "eni-b", _?, let call, _) = e { return call } else { return nil }
            }.first ?? 0
            #expect(reads().prefix(while: { $0 < failoverWrite }).count == beforeFailure,
                    "the failover write waited for a read instead of using the last one")
            try await poll("the failover confirmed by a read") { reads().contains { $0 > failoverWrite } }
        }
    }

    @Test func routesFollowHealthThroughALeaderChangeAndEveryWriteIsFenced() async throws {
        try await InProcessCluster.with { c in
            let dest = "172.16.0.0/16"
            try await poll("each table at its own tunnel") { c.aws.route("rtb-a", dest) == "eni-a" && c.aws.route("rtb-b", dest) == "eni-b" }
            try await poll("the DNS record") { c.aws.record("vpn-a.example.internal") == "10.0.0.10" }

            c.checker.set("vpn-a", false)
            try await poll("failover to vpn-b") { c.aws.route("rtb-a", dest) == "eni-b" }
            #expect(c.aws.route("rtb-b", dest) == "eni-b")

            // The leader crashes; the next one fails back once vpn-a is healthy again.
            let first = try #require(await c.leader())
            await c.kill(first)
            c.checker.set("vpn-a", true)
            try await poll("failback to vpn-a under a new leader") { c.aws.route("rtb-a", dest) == "eni-a" }

            // Drift by hand is repaired; a replaced instance gets the routes and the record.
            c.aws.setRouteByHand("rtb-b", dest, "eni-x")
            try await poll("drift repaired") { c.aws.route("rtb-b", dest) == "eni-b" }
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a2", eniId: "eni-a2", privateIP: "10.0.0.20"))
            try await poll("routes follow the replacement") { c.aws.route("rtb-a", dest) == "eni-a2" }
            try await poll("DNS follows the replacement") { c.aws.record("vpn-a.example.internal") == "10.0.0.20" }

            // Fencing: tokens never go back in term, and every write had a committed intent.
            let writes = c.aws.writes
            for (a, b) in zip(writes, writes.dropFirst()) { #expect(a.token.term <= b.token.term, "\(a) then \(b)") }
            let leaderNow = try #require(await c.leader())
            let state = try #require(c.replica(leaderNow)?.machine.state)
            let intents = Set(state.events.events.compactMap { e -> FencingToken? in
                if case .intent(let t, _) = e.kind { return t } else { return nil }
            })
            for w in writes { #expect(intents.contains(w.token), "write \(w) without a committed intent") }
        }
    }

    /// Issue #16 item 1: EC2 drops what an instance forwards while its interface's
    /// source/destination check is on, as it is on every instance EC2 launches. The leader
    /// turns it off, fenced like a route write, before any route points at the interface,
    /// also for a replacement; an interface whose check cannot be turned off is passed over.
    @Test func aRouteGoesOnlyToAnInterfaceWhoseSourceDestCheckIsOff() async throws {
        try await InProcessCluster.with { c in
            let dest = "172.16.0.0/16"
            try await poll("routes to vpn-a and vpn-b") { c.aws.route("rtb-a", dest) == "eni-a" && c.aws.route("rtb-b", dest) == "eni-b" }
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a2", eniId: "eni-a2", privateIP: "10.0.0.20"))
            try await poll("routes follow the replacement") { c.aws.route("rtb-a", dest) == "eni-a2" }
            #expect(c.aws.sourceDestCheckIsOff("eni-a2"))

            // A replacement whose check AWS will not let us turn off is not a candidate.
            c.aws.refuseCheckWrites(true)
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a3", eniId: "eni-a3", privateIP: "10.0.0.30"))
            try await poll("vpn-a passed over for vpn-b") { c.aws.route("rtb-a", dest) == "eni-b" }
            #expect(!c.aws.sourceDestCheckIsOff("eni-a3"))

            #expect(c.aws.writesToCheckedInterfaces == [], "route writes to an interface with the check on")
            let order = c.aws.order
            for eni in ["eni-a", "eni-b", "eni-a2"] {
                let off = order.firstIndex(of: "check-off \(eni)")
                let route = order.firstIndex { $0.hasPrefix("route ") && $0.hasSuffix(" \(eni)") }
                #expect(off != nil && route != nil && off! < route!, "\(eni): \(order)")
            }
            let leaderNow = try #require(await c.leader())
            let state = try #require(c.replica(leaderNow)?.machine.state)
            let intents = state.events.events.compactMap { e -> String? in
                if case .intent(_, .disableSourceDestCheck(_, _, let eni)) = e.kind { return eni } else { return nil }
            }
            #expect(Set(intents).isSuperset(of: ["eni-a", "eni-b", "eni-a2", "eni-a3"]), "\(intents)")
            let intentTokens = Set(state.events.events.compactMap { e -> FencingToken? in
                if case .intent(let t, _) = e.kind { return t } else { return nil }
            })
            for w in c.aws.writes { #expect(intentTokens.contains(w.token), "write \(w) without a committed intent") }
        }
    }

    /// Issue #16 item 2: vpn-a's Elastic IP follows its instance across a replacement as a
    /// fenced write (intent committed before AssociateAddress), taken from wherever it is;
    /// its DNS record publishes the public address.
    @Test func anElasticIPFollowsTheReplacementFencedAndDNSPublishesIt() async throws {
        let eip = "eipalloc-0123456789abcdef0"
        try await InProcessCluster.with(vpnAEIP: eip, vpnADNSAddress: "public") { c in
            c.aws.setAddress(eip, ip: "203.0.113.7", eni: "eni-someone-else")
            let dest = "172.16.0.0/16"
            try await poll("the Elastic IP moves to vpn-a's interface") { c.aws.address(eip) == "eni-a" }
            try await poll("vpn-a's record publishes the Elastic IP") { c.aws.record("vpn-a.example.internal") == "203.0.113.7" }
            #expect(c.aws.record("vpn-b.example.internal") == "10.0.1.10", "a private record is unchanged")
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a2", eniId: "eni-a2", privateIP: "10.0.0.20"))
            try await poll("the Elastic IP follows the replacement") { c.aws.address(eip) == "eni-a2" }
            try await poll("routes follow the replacement") { c.aws.route("rtb-a", dest) == "eni-a2" }
            #expect(c.aws.record("vpn-a.example.internal") == "203.0.113.7", "the public record never changes")
            let associations = c.aws.order.filter { $0.hasPrefix("associate ") }
            #expect(associations == ["associate \(eip) eni-a", "associate \(eip) eni-a2"], "one association per instance: \(associations)")
            let leader = try #require(await c.leader())
            let state = try #require(c.replica(leader)?.machine.state)
            let intentTokens = Set(state.events.events.compactMap { e -> FencingToken? in
                if case .intent(let t, .associateAddress) = e.kind { return t } else { return nil }
            })
            for w in c.aws.writes where w.what.hasPrefix("associate ") {
                #expect(intentTokens.contains(w.token), "association \(w) without a committed intent")
            }
            #expect(state.tunnels["vpn-a"]?.elasticIP?.eniId == "eni-a2")
        }
    }

    /// Issue #16 item 4: an instance EC2 reports impaired loses its routes while its sentinel
    /// still says healthy; with autoDrainOnScheduledEvent a scheduled reboot drains vpn-b
    /// ahead of it and the drain lifts itself once EC2 lists the event as completed.
    @Test func anImpairedInstanceLosesItsRoutesAndAScheduledEventDrainsItsTunnel() async throws {
        try await InProcessCluster.with(aws: "{region: us-east-1, autoDrainOnScheduledEvent: true, scheduledEventDrainLead: 1h}") { c in
            let dest = "172.16.0.0/16"
            try await poll("routes to vpn-a and vpn-b") { c.aws.route("rtb-a", dest) == "eni-a" && c.aws.route("rtb-b", dest) == "eni-b" }
            c.aws.setStatus(EC2InstanceStatus(instanceId: "i-a", instanceStatus: "impaired", systemStatus: "ok"))
            try await poll("rtb-a moves off the impaired instance") { c.aws.route("rtb-a", dest) == "eni-b" }
            c.aws.setStatus(EC2InstanceStatus(instanceId: "i-a", instanceStatus: "ok", systemStatus: "ok"))
            try await poll("rtb-a back once the checks pass") { c.aws.route("rtb-a", dest) == "eni-a" }

            let soon = Date().addingTimeInterval(1800)
            let reboot = EC2ScheduledEvent(id: "instance-event-1", code: "system-reboot", description: "scheduled reboot",
                                           notBefore: soon, notAfter: soon.addingTimeInterval(3600))
            c.aws.setStatus(EC2InstanceStatus(instanceId: "i-b", instanceStatus: "ok", systemStatus: "ok", events: [reboot]))
            try await poll("rtb-b drained off vpn-b ahead of its reboot") { c.aws.route("rtb-b", dest) == "eni-a" }
            let leader = try #require(await c.leader())
            let drain = try #require(c.replica(leader)?.machine.state.tunnels["vpn-b"]?.drain)
            #expect(drain.by == ScheduledDrains.by && drain.reason.contains("system-reboot"), "\(drain)")
            var done = reboot
            done.description = "[Completed] scheduled reboot"
            c.aws.setStatus(EC2InstanceStatus(instanceId: "i-b", instanceStatus: "ok", systemStatus: "ok", events: [done]))
            try await poll("the drain lifts itself once the event is over") { c.aws.route("rtb-b", dest) == "eni-b" }
        }
    }

    /// Issue #16 item 3: a replacement is not a candidate on its predecessor's verdict, nor on
    /// the old instance's sentinel still answering; routes go to it once its own sentinel has
    /// said healthy `rise` times (vpn-b carries rtb-a meanwhile).
    @Test func aReplacementGetsRoutesOnlyOnItsOwnSentinelsVerdict() async throws {
        try await InProcessCluster.with { c in
            let dest = "172.16.0.0/16"
            c.checker.setSentinelInstance("vpn-a", "i-a")
            c.checker.setSentinelInstance("vpn-b", "i-b")
            try await poll("routes to vpn-a and vpn-b") { c.aws.route("rtb-a", dest) == "eni-a" && c.aws.route("rtb-b", dest) == "eni-b" }
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a2", eniId: "eni-a2", privateIP: "10.0.0.20"))
            try await poll("rtb-a to vpn-b while the old sentinel answers for vpn-a") { c.aws.route("rtb-a", dest) == "eni-b" }
            // Several more probe rounds: the old sentinel's healthy answers never count.
            let leader = try #require(await c.leader())
            let replica = try #require(c.replica(leader))
            try await poll("vpn-a judged down on the wrong sentinel's answers") { replica.machine.state.verdict(of: "vpn-a") == .down }
            #expect(c.aws.route("rtb-a", dest) == "eni-b")
            c.checker.setSentinelInstance("vpn-a", "i-a2")
            try await poll("rtb-a to the replacement once its own sentinel says healthy") { c.aws.route("rtb-a", dest) == "eni-a2" }
        }
    }

    /// With `enforceSourceDestCheck: false` the leader never changes the attribute: an
    /// interface with the check on disqualifies its tunnel until an operator turns it off.
    @Test func withoutEnforcementACheckedInterfaceIsPassedOverUntilFixedByHand() async throws {
        try await InProcessCluster.with(aws: "{region: us-east-1, enforceSourceDestCheck: false}", checkOff: ["eni-b"]) { c in
            let dest = "172.16.0.0/16"
            try await poll("both routes to vpn-b") { c.aws.route("rtb-a", dest) == "eni-b" && c.aws.route("rtb-b", dest) == "eni-b" }
            let leader = try #require(await c.leader())
            let state = try #require(c.replica(leader)?.machine.state)
            #expect(!(state.tunnels["vpn-a"]?.forwards ?? true))
            c.aws.setSourceDestCheck("eni-a", on: false)
            try await poll("rtb-a back to vpn-a once its check is off", timeout: .seconds(60)) { c.aws.route("rtb-a", dest) == "eni-a" }
            #expect(!c.aws.order.contains { $0.hasPrefix("check-off") }, "\(c.aws.order)")
            #expect(c.aws.writesToCheckedInterfaces == [])
        }
    }

    /// Route 53 is read back every `dnsReadBackInterval` (30 s here), not every discovery pass
    /// (2 s): at once after an instance change, and after a discovery interval when a read failed.
    /// A record Route 53 refuses (a client error) is not written again every pass: 5, 10,
    /// 20 s … apart, and at once again when Route 53 accepts it (after the backoff).
    @Test func aRefusedDNSWriteBacksOff() async throws {
        try await InProcessCluster.with { c in
            try await poll("the DNS record") { c.aws.record("vpn-a.example.internal") == "10.0.0.10" }
            c.aws.refuseDNSWrites(true)
            let before = c.aws.dnsWriteAttempts
            let reads = c.aws.dnsReads
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a2", eniId: "eni-a2", privateIP: "10.0.0.20"))
            try await poll("the refused write", timeout: .seconds(30)) { c.aws.dnsWriteAttempts > before }
            let first = c.aws.dnsWriteAttempts
            // The zone is read again every discovery pass (2 s) while the record is not in
            // sync; over three such reads a write without backoff would have been tried three
            // more times. Slowness only means fewer passes, never more attempts.
            try await poll("three more read-backs", timeout: .seconds(60)) { c.aws.dnsReads >= reads + 4 }
            #expect(c.aws.dnsWriteAttempts <= first + 1, "refused DNS writes: \(c.aws.dnsWriteAttempts - before) attempts")
            c.aws.refuseDNSWrites(false)
            try await poll("written once Route 53 accepts it", timeout: .seconds(90)) { c.aws.record("vpn-a.example.internal") == "10.0.0.20" }
        }
    }

    /// A read of the route tables may take longer than one call's timeout (the lease): five
    /// pages at 150 ms each did, and with that as the read's deadline no route ever moved.
    @Test func aFailoverHappensWhenReadingTheTablesTakesLongerThanOneCallMay() async throws {
        try await InProcessCluster.with { c in
            let dest = "172.16.0.0/16"
            try await poll("each table at its own tunnel") { c.aws.route("rtb-a", dest) == "eni-a" && c.aws.route("rtb-b", dest) == "eni-b" }
            let leaderID = try #require(await c.leader())
            let timing = try #require(c.replica(leaderID)?.timing)
            c.aws.setReadDelay(timing.apiTimeout + .milliseconds(500))
            c.checker.set("vpn-a", false)
            try await poll("failover to vpn-b with slow reads") { c.aws.route("rtb-a", dest) == "eni-b" }
        }
    }

    /// Replaces both tunnels' instances (`i-a<n>` at 10.0.0.<n>0, `i-b<n>` at 10.0.1.<n>0) and
    /// waits until the leader's state knows both.
    func replaceBoth(_ c: InProcessCluster, _ n: String) async throws {
        c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a\(n)", eniId: "eni-a\(n)", privateIP: "10.0.0.\(n)0"))
        c.aws.setInstance("vpn-b", InstanceIdentity(instanceId: "i-b\(n)", eniId: "eni-b\(n)", privateIP: "10.0.1.\(n)0"))
        try await poll("both replacements agreed") {
            guard let id = await c.leader(), let state = c.replica(id)?.machine.state else { return false }
            return state.tunnels["vpn-a"]?.identity?.instanceId == "i-a\(n)" && state.tunnels["vpn-b"]?.identity?.instanceId == "i-b\(n)"
        }
    }

    /// Two records of one zone that a pass finds out of date go in one ChangeBatch (one call,
    /// one intent); a batch Route 53 refuses is split so the record it accepts still moves.
    @Test func aPassWritesAZoneInOneBatchAndARefusedBatchRecordByRecord() async throws {
        try await InProcessCluster.with { c in
            try await poll("both records") {
                c.aws.record("vpn-a.example.internal") == "10.0.0.10" && c.aws.record("vpn-b.example.internal") == "10.0.1.10"
            }
            // Reads fail until the leader knows both replacements, so the next pass that can
            // write finds both records out of date at once.
            c.aws.failDNSReads(true)
            try await replaceBoth(c, "2")
            let before = c.aws.dnsBatches.count
            c.aws.failDNSReads(false)
            try await poll("both records follow") {
                c.aws.record("vpn-a.example.internal") == "10.0.0.20" && c.aws.record("vpn-b.example.internal") == "10.0.1.20"
            }
            let batches = Array(c.aws.dnsBatches.dropFirst(before))
            #expect(batches.first == ["vpn-a.example.internal", "vpn-b.example.internal"], "batches: \(batches)")

            // Route 53 refuses vpn-b's name: the pair is refused once, then vpn-a goes alone.
            c.aws.refuseRecord("vpn-b.example.internal", true)
            c.aws.failDNSReads(true)
            try await replaceBoth(c, "3")
            let split = c.aws.dnsBatches.count
            c.aws.failDNSReads(false)
            try await poll("vpn-a follows despite vpn-b") { c.aws.record("vpn-a.example.internal") == "10.0.0.30" }
            let tried = Array(c.aws.dnsBatches.dropFirst(split))
            #expect(tried.first == ["vpn-a.example.internal", "vpn-b.example.internal"], "batches: \(tried)")
            #expect(tried.dropFirst().allSatisfy { $0.count == 1 }, "after the refusal, one record per batch: \(tried)")
            #expect(c.aws.record("vpn-b.example.internal") == "10.0.1.20")
            c.aws.refuseRecord("vpn-b.example.internal", false)
            try await poll("vpn-b once Route 53 accepts it", timeout: .seconds(90)) { c.aws.record("vpn-b.example.internal") == "10.0.1.30" }
        }
    }

    @Test func dnsIsReadBackRarelyButAtOnceAfterAnInstanceChangeAndSoonerAfterAFailure() async throws {
        try await InProcessCluster.with { c in
            try await poll("a leader") { await c.leader() != nil }
            let leaderID = try #require(await c.leader())
            let timing = try #require(c.replica(leaderID)?.timing)
            #expect(timing.dnsReadBackInterval == .seconds(30))
            #expect(timing.discoveryInterval == .seconds(2))
            try await poll("the DNS record") { c.aws.record("vpn-a.example.internal") == "10.0.0.10" }

            // In sync: no read for longer than two discovery passes. Absence has no condition
            // to poll for, so this one waits out a window (slowness can only hide reads, not
            // make them up, so it cannot fail a correct build).
            // A new leader reads back at once, so only a window without an election counts.
            var quiet = c.aws.dnsReads
            var judged = false
            for _ in 0..<5 where !judged {
                try await Task.sleep(for: .seconds(1))
                let term = await c.term()
                quiet = c.aws.dnsReads
                try await Task.sleep(for: .seconds(5))
                guard await c.term() == term else { continue }
                #expect(c.aws.dnsReads == quiet, "records read back while nothing changed")
                judged = true
            }
            #expect(judged, "five 5 s windows in a row each saw an election")
            quiet = c.aws.dnsReads

            // A replaced instance: the record follows at once — well inside the 30 s read-back,
            // which is all the (generous) deadlines below tell apart.
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a2", eniId: "eni-a2", privateIP: "10.0.0.20"))
            try await poll("DNS follows the replacement", timeout: .seconds(20)) { c.aws.record("vpn-a.example.internal") == "10.0.0.20" }

            // A failed read is retried after a discovery interval (2 s), not after 30 s.
            c.aws.failDNSReads(true)
            c.aws.setInstance("vpn-a", InstanceIdentity(instanceId: "i-a3", eniId: "eni-a3", privateIP: "10.0.0.30"))
            try await poll("the failing read", timeout: .seconds(20)) { c.aws.dnsReads > quiet + 1 }
            let failed = c.aws.dnsReads
            try await poll("a retry", timeout: .seconds(20)) { c.aws.dnsReads > failed }
            c.aws.failDNSReads(false)
            try await poll("DNS written after the failures", timeout: .seconds(20)) { c.aws.record("vpn-a.example.internal") == "10.0.0.30" }
        }
    }

    /// The route history the fake account saw, checked the way the chaos rig checks moto's:
    /// each route a register (empty tables at the start), writes in fencing-token order.
    @Test func theRouteHistoryOfAFailoverAndALeaderCrashIsLinearizableInTokenOrder() async throws {
        let events = try await InProcessCluster.with { c in
            let dest = "172.16.0.0/16"
            try await poll("each table at its own tunnel") { c.aws.route("rtb-a", dest) == "eni-a" && c.aws.route("rtb-b", dest) == "eni-b" }
            c.checker.set("vpn-a", false)
            try await poll("failover to vpn-b") { c.aws.route("rtb-a", dest) == "eni-b" }
            let first = try #require(await c.leader())
            await c.kill(first)
            c.checker.set("vpn-a", true)
            try await poll("failback to vpn-a under a new leader") { c.aws.route("rtb-a", dest) == "eni-a" }
            c.aws.setRouteByHand("rtb-b", dest, "eni-x")
            try await poll("drift repaired") { c.aws.route("rtb-b", dest) == "eni-b" }
            return c.aws.routeEvents
        }

        var histories: [String: [RegisterOp<String?>]] = [:]
        let keys = [("rtb-a", "172.16.0.0/16"), ("rtb-b", "172.16.0.0/16")]
        var writeTerms = Set<UInt64>()
        for event in events {
            switch event {
            case .read(let table, let routes, let call, let ret):
                for (t, d) in keys where t == table {
                    histories["\(t) \(d)", default: []].append(.read(routes[d], call: call, ret: ret, label: "read"))
                }
            case .write(let table, let destination, let eni, let token, let call, let ret):
                if let token { writeTerms.insert(token.term) }
                histories["\(table) \(destination)", default: []].append(
                    .write(eni, call: call, ret: ret, token: token.map { WriteToken(term: $0.term, index: $0.index) }, label: token == nil ? "by hand" : ""))
            }
        }
        #expect(writeTerms.count >= 2, "the scenario should have written from two terms: \(writeTerms)")
        let checker = RegisterChecker<String?>(initial: .known(nil), tokenOrder: true)
        for (key, outcome) in checker.check(byKey: histories) {
            switch outcome {
            case .linearizable: continue
            case .violation(let v): Issue.record("\(key): \(v.explain(value: { $0 ?? "none" }, time: { "\($0 / 1_000_000)ms" }))")
            case .inconclusive(let why): Issue.record("\(key): \(why)")
            }
        }
        #expect(histories.count == 2 && histories.values.allSatisfy { $0.contains(where: \.isWrite) })
    }
}
