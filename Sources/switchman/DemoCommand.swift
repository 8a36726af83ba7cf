import ArgumentParser
import Foundation
import Logging
import NIOConcurrencyHelpers
import Raft
import RaftRuntime
import ServiceLifecycle

/// Until the controller and `cluster/up` exist, this shows what the replicated log does: three
/// replicas on loopback over mutual TLS with their logs in LMDB, writes, a killed leader, a new
/// election, and the old leader catching up.
struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run a local three-replica Raft cluster (mTLS, LMDB) and show elections, writes and failover.",
        discussion: """
            Everything stays on 127.0.0.1 and under --dir (a fresh temporary directory by \
            default, removed at the end unless --keep is given).
            """
    )

    @Option(name: .long, help: "Directory for certificates and the replicas' LMDB logs.")
    var dir: String?

    @Flag(name: .long, help: "Keep the directory afterwards.")
    var keep = false

    @Option(name: .long, help: "Writes before and after the leader is killed.")
    var writes = 100

    func run() async throws {
        let root = dir ?? FileManager.default.temporaryDirectory.appendingPathComponent("switchman-demo-\(getpid())").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if !keep && dir == nil { try? FileManager.default.removeItem(atPath: root) } }
        var logger = Logger(label: "switchman.demo") { StreamLogHandler.standardError(label: $0) }
        logger.logLevel = .warning

        let certs = CertificateDirectory(path: root + "/certs")
        _ = try certs.bootstrap(clusterName: "demo", members: [1, 2, 3], hosts: ["127.0.0.1"], force: true)
        print("certificates: \(certs.path) (cluster CA + members 1-3 + operator)")

        let ids: [NodeID] = [1, 2, 3]
        var transports: [NodeID: PeerTransport] = [:]
        for id in ids {
            let t = try PeerTransport(
                configuration: PeerTransportConfiguration(
                    localMemberID: id, clusterName: "demo", listenHost: "127.0.0.1", listenPort: 0, peers: [:]),
                credentials: PeerTLSCredentials(directory: certs, memberID: id), logger: logger)
            try await t.start()
            transports[id] = t
        }
        let peers = transports.compactMapValues { t in t.listeningPort.map { PeerAddress(host: "127.0.0.1", port: $0) } }
        print("replicas listening (mTLS): " + ids.map { "\($0)=\(peers[$0]?.description ?? "?")" }.joined(separator: " "))

        var replicas: [NodeID: DemoReplica] = [:]
        for id in ids {
            guard let t = transports[id] else { continue }
            replicas[id] = try DemoReplica(id: id, root: root, peers: peers, transport: t, logger: logger)
        }

        let first = try await waitForLeader(replicas)
        print("elected: replica \(first.id) leads term \(await first.node.status.term)")
        let t0 = ContinuousClock.now
        for k in 0..<writes { _ = try await first.node.propose(Array("write \(k)".utf8)) }
        print("committed \(writes) writes through replica \(first.id) in \(ContinuousClock.now - t0)")

        print("killing the leader (replica \(first.id))…")
        await first.stop()
        let killedAt = ContinuousClock.now
        let second = try await waitForLeader(replicas.filter { $0.key != first.id })
        print("replica \(second.id) leads term \(await second.node.status.term), \(ContinuousClock.now - killedAt) after the kill")
        for k in writes..<(2 * writes) { _ = try await second.node.propose(Array("write \(k)".utf8)) }
        print("committed \(writes) more writes without replica \(first.id)")

        print("restarting replica \(first.id) from its LMDB log…")
        let restarted = try await DemoReplica.restart(id: first.id, root: root, peers: peers, logger: logger)
        replicas[first.id] = restarted
        let deadline = ContinuousClock.now + .seconds(60)
        while restarted.machine.count < 2 * writes && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
        print("replica \(first.id) applied \(restarted.machine.count) of \(2 * writes) writes")
        print("")
        print("replica  role       term  commit  applied")
        for id in ids {
            guard let s = await replicas[id]?.node.status else { continue }
            print(
                "\(id)".padding(toLength: 9, withPad: " ", startingAt: 0) + "\(s.role)".padding(toLength: 11, withPad: " ", startingAt: 0)
                    + "\(s.term)".padding(toLength: 6, withPad: " ", startingAt: 0)
                    + "\(s.commitIndex)".padding(toLength: 8, withPad: " ", startingAt: 0) + "\(s.appliedIndex)")
        }
        for r in replicas.values { await r.stop() }
        if restarted.machine.count < 2 * writes { throw ExitCode.failure }
    }

    private func waitForLeader(_ replicas: [NodeID: DemoReplica]) async throws -> DemoReplica {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            for r in replicas.values.sorted(by: { $0.id < $1.id }) where await r.node.status.role == .leader {
                return r
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ValidationError("no leader was elected within 60 s")
    }
}

/// One replica: transport, LMDB log and node, the node running in its own ServiceGroup.
private final class DemoReplica: Sendable {
    let id: NodeID
    let node: RaftNode
    let machine: CountingStateMachine
    private let transport: PeerTransport
    private let task: Task<Void, any Error>

    /// `transport` must already be started.
    init(id: NodeID, root: String, peers: [NodeID: PeerAddress], transport: PeerTransport, logger: Logger) throws {
        self.id = id
        self.transport = transport
        let store = try LMDBLogStore(directory: root + "/replica-\(id)", logger: logger)
        machine = CountingStateMachine()
        // Founded once, as `serve --bootstrap` does: the restart takes its voters from the
        // directory, not from this list.
        let identity: ClusterIdentity
        do {
            identity = try DataDirectory.open(
                store, clusterName: "switchman-demo", memberID: id, fileMembers: [1, 2, 3], mode: .bootstrap, logger: logger)
        } catch {
            store.close()
            throw error
        }
        var config = RaftNodeConfiguration(id: id, bootstrap: Membership(voters: Set(identity.founding)), peers: peers)
        config.tickInterval = .milliseconds(50)
        let node = try RaftNode(configuration: config, storage: store, transport: transport, stateMachine: machine, logger: logger)
        self.node = node
        let group = ServiceGroup(services: [node], gracefulShutdownSignals: [], logger: logger)
        task = Task {
            defer { store.close() }
            try await group.run()
        }
    }

    /// Starts a replica's transport on its old port (the kernel may need a moment to free it).
    static func restart(id: NodeID, root: String, peers: [NodeID: PeerAddress], logger: Logger) async throws -> DemoReplica {
        let certs = CertificateDirectory(path: root + "/certs")
        let deadline = ContinuousClock.now + .seconds(30)
        while true {
            let t = try PeerTransport(
                configuration: PeerTransportConfiguration(
                    localMemberID: id, clusterName: "demo", listenHost: "127.0.0.1", listenPort: peers[id]?.port ?? 0,
                    peers: [:]),
                credentials: PeerTLSCredentials(directory: certs, memberID: id), logger: logger)
            do {
                try await t.start()
                return try DemoReplica(id: id, root: root, peers: peers, transport: t, logger: logger)
            } catch {
                await t.shutdown()
                if ContinuousClock.now > deadline { throw error }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Stops the replica at once, as a crash would (what it persisted stays in LMDB).
    func stop() async {
        task.cancel()
        _ = await task.result
        await transport.shutdown()
    }
}

private final class CountingStateMachine: RaftStateMachine {
    private let applied = NIOLockedValueBox(0)
    var count: Int { applied.withLockedValue { $0 } }
    func apply(_ entry: Entry) {
        if entry.kind == .normal && !entry.data.isEmpty { applied.withLockedValue { $0 += 1 } }
    }
    func snapshot() -> [UInt8] { withUnsafeBytes(of: UInt64(count).littleEndian) { Array($0) } }
    func restore(from snapshot: Snapshot) throws {
        var v: UInt64 = 0
        for (i, b) in snapshot.data.prefix(8).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        applied.withLockedValue { $0 = Int(v) }
    }
}
