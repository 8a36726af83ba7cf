import ArgumentParser
import BenchSupport
import Foundation
import Logging
import Metrics
import Raft
import RaftRuntime
import ServiceLifecycle

enum StorageKind: String, ExpressibleByArgument, CaseIterable, Sendable {
    case memory, lmdb
}

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run one Raft replica with an HTTP/1.1 + mutual TLS client port (POST /propose, GET /status)."
    )

    static let clusterName = "switchman-bench"

    @Option(help: "This replica's member id.") var id: UInt64
    @Option(help: "Every member's peer address: 1=127.0.0.1:7001,2=...,3=...") var peers: String
    @Option(help: "Certificate directory (ca.pem, member-<id>.pem, member-<id>-key.pem).") var certs: String
    @Option(help: "Data directory (used by --storage lmdb).") var data: String
    @Option(help: "Client listen address host:port.") var http: String
    @Option(help: "lmdb (fsync per write, like etcd's WAL) or memory (not durable).") var storage: StorageKind = .lmdb
    @Option(help: "Milliseconds per Raft tick.") var tickMs: Int = 100
    @Option(help: "Election timeout in ticks.") var electionTicks: Int = 10
    @Option(help: "Heartbeat interval in ticks.") var heartbeatTicks: Int = 1
    @Option(help: "trace, debug, info, notice, warning, error, critical") var logLevel: String = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let metrics = BenchMetrics()
        MetricsSystem.bootstrap(metrics)
        let logger = Logger(label: "switchman-bench.node")

        guard let peerTexts = parsePeerList(peers) else { throw ValidationError("--peers: expected id=host:port,...") }
        var addresses: [NodeID: PeerAddress] = [:]
        for (peer, text) in peerTexts {
            guard let a = PeerAddress(text) else { throw ValidationError("--peers: bad address \(text)") }
            addresses[peer] = a
        }
        guard let own = addresses[id] else { throw ValidationError("--peers must include this node's id \(id)") }
        guard let httpAddress = PeerAddress(http) else { throw ValidationError("--http: expected host:port") }

        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        let store = try makeStorage(storage, directory: data, logger: logger)
        var transportConfiguration = PeerTransportConfiguration(
            localMemberID: id, clusterName: Self.clusterName, listenHost: own.host, listenPort: own.port,
            peers: addresses.filter { $0.key != id })
        // The same start-up rules as `switchman serve --bootstrap`: a durable directory
        // founds the cluster once, and later starts take the voters from it, not --peers.
        var founding = Set(addresses.keys)
        if let lmdb = store as? LMDBLogStore {
            let identity = try DataDirectory.open(
                lmdb, clusterName: Self.clusterName, memberID: id, fileMembers: addresses.keys.sorted(), mode: .bootstrap,
                logger: logger)
            founding = Set(identity.founding)
            transportConfiguration.localIncarnation = identity.incarnation
            transportConfiguration.incarnations = try IncarnationBook.stored(in: lmdb, logger: logger)
        }
        let credentials = try PeerTLSCredentials(directory: CertificateDirectory(path: certs), memberID: id)
        let transport = try PeerTransport(configuration: transportConfiguration, credentials: credentials, logger: logger)
        var config = RaftNodeConfiguration(id: id, bootstrap: Membership(voters: founding), peers: addresses)
        config.tickInterval = .milliseconds(tickMs)
        config.electionTicks = electionTicks
        config.heartbeatTicks = heartbeatTicks
        let node = try RaftNode(
            configuration: config, storage: store, transport: transport, stateMachine: BenchStateMachine(),
            logger: logger)
        let server = try NodeHTTPServer(
            host: httpAddress.host, port: httpAddress.port, credentials: credentials, node: node, metrics: metrics,
            storageName: storage.rawValue, logger: logger)
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [
                    .init(service: transport), .init(service: node), .init(service: server),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}

func makeStorage(_ kind: StorageKind, directory: String, logger: Logger) throws -> any RaftStorage {
    switch kind {
    case .memory:
        return InMemoryRaftStorage()
    case .lmdb:
        // One LMDB write transaction (fsynced) per batch of Raft writes: etcd's durability.
        return try LMDBLogStore(directory: directory, logger: logger)
    }
}
