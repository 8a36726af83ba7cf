import Actuators
import AsyncHTTPClient
import Foundation
import Logging
import Raft
import RaftRuntime

public enum ReplicaAssemblyError: Error, CustomStringConvertible {
    case notAMember(UInt64, file: String, members: [UInt64])
    case cannotBind(String, underlying: String)

    public var description: String {
        switch self {
        case .notAMember(let id, let file, let members):
            return "\(file): cluster.members has no member with id \(id) (members: \(members.map(String.init).joined(separator: ", ")))"
        case .cannotBind(let address, let why):
            return "cannot listen for peers on \(address): \(why)"
        }
    }
}

/// Builds a replica's parts from its config: what `switchman serve` runs, and what the
/// integration tests start in-process when they want to look inside.
public struct ReplicaAssembly: Sendable {
    public let node: RaftNode
    public let replica: ControllerReplica
    public let transport: PeerTransport
    public let store: LMDBLogStore

    /// `bindTimeout`: a replica restarted right after a crash may find its port still held
    /// for a moment; it keeps trying for this long.
    public static func make(
        id: UInt64, config: SwitchmanConfig, configFile: String, checker: any TunnelChecker,
        start: StartMode = .existing, environment: [String: String] = ProcessInfo.processInfo.environment,
        bindTimeout: Duration = .seconds(30), logger: Logger, actuators: ReplicaActuators? = nil
    ) async throws -> ReplicaAssembly {
        guard let member = config.cluster.members.first(where: { $0.id == id }) else {
            throw ReplicaAssemblyError.notAMember(id, file: configFile, members: config.cluster.members.map(\.id))
        }
        let paths = config.tls.paths(for: id)
        let credentials = try PeerTLSCredentials(caFile: paths.ca, certificateFile: paths.cert, privateKeyFile: paths.key)
        let peers = Dictionary(uniqueKeysWithValues: config.cluster.members.map {
            ($0.id, PeerAddress(host: $0.peer.host, port: Int($0.peer.port)))
        })
        let dataDir = config.dataDir(for: id)
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let store = try LMDBLogStore(directory: dataDir, logger: logger)
        let identity: ClusterIdentity
        let incarnations: IncarnationBook
        do {
            identity = try DataDirectory.open(
                store, clusterName: config.cluster.name, memberID: id, fileMembers: config.cluster.members.map(\.id),
                mode: start, logger: logger)
            incarnations = try IncarnationBook.stored(in: store, logger: logger)
        } catch {
            store.close()
            throw error
        }
        var transportConfiguration = PeerTransportConfiguration(
            localMemberID: id, clusterName: config.cluster.name, listenHost: member.peer.host,
            listenPort: Int(member.peer.port), peers: [:])
        transportConfiguration.localIncarnation = identity.incarnation
        transportConfiguration.incarnations = incarnations
        let transport: PeerTransport
        do {
            transport = try await bind(transportConfiguration, credentials: credentials, timeout: bindTimeout, logger: logger)
        } catch {
            store.close()
            throw error
        }

        // The voters come from the directory (founding) and the log (every change since),
        // never from the file: two files edited apart must not make two quorums that do
        // not overlap. The file only gives addresses.
        var raft = RaftNodeConfiguration(id: id, bootstrap: Membership(voters: Set(identity.founding)), peers: peers)
        let heartbeat = config.timing.heartbeat
        raft.tickInterval = heartbeat
        raft.heartbeatTicks = 1
        raft.electionTicks = max(2, Int(config.timing.electionTimeout.milliseconds / max(1, heartbeat.milliseconds)))
        raft.maxClockDrift = config.timing.maxClockDrift
        // Every replica starts from the same policy, whatever its own file says: the state must
        // be a function of the log alone (DESIGN rule 6), and the policy of the file arrives
        // through the log (`setPolicy`, proposed by the leader). A replica whose file named a
        // fourth member once computed other verdicts from the same entries (chaos/run
        // --scenario membership).
        let machine = ControllerStateMachine(policy: .default, logger: logger)
        let node = try RaftNode(configuration: raft, storage: store, transport: transport, stateMachine: machine, logger: logger)
        warnIfFileDisagrees(await node.status.membership, config: config, configFile: configFile, logger: logger)

        let actuators = actuators ?? makeActuators(id: id, config: config, environment: environment, logger: logger)
        let replica = ControllerReplica(
            id: id, config: config, node: node, machine: machine, checker: checker, actuators: actuators, logger: logger)
        return ReplicaAssembly(node: node, replica: replica, transport: transport, store: store)
    }

    static func warnIfFileDisagrees(_ membership: Membership, config: SwitchmanConfig, configFile: String, logger: Logger) {
        let inFile = Set(config.cluster.members.map(\.id))
        let inLog = membership.voters.union(membership.learners)
        guard !inLog.isEmpty, inLog != inFile else { return }
        let show = { (s: Set<UInt64>) in "{" + s.sorted().map(String.init).joined(separator: ", ") + "}" }
        logger.warning(
            "cluster.members of the config file differs from the membership in the Raft log; the log's is the one in force (change it with `switchman member add|remove`), the file only gives addresses",
            metadata: [
                "file": "\(configFile)", "file_members": "\(show(inFile))", "log_voters": "\(show(membership.voters))",
                "log_learners": "\(show(membership.learners))",
            ])
    }

    static func bind(
        _ configuration: PeerTransportConfiguration, credentials: PeerTLSCredentials, timeout: Duration, logger: Logger
    ) async throws -> PeerTransport {
        let deadline = ContinuousClock.now + timeout
        var attempt = 0
        while true {
            let transport = try PeerTransport(configuration: configuration, credentials: credentials, logger: logger)
            do {
                try await transport.start()
                return transport
            } catch {
                await transport.shutdown()
                attempt += 1
                let address = "\(configuration.listenHost):\(configuration.listenPort)"
                if ContinuousClock.now >= deadline {
                    throw ReplicaAssemblyError.cannotBind(address, underlying: "\(error)")
                }
                if attempt == 1 || attempt % 10 == 0 {
                    logger.warning("peer port busy, retrying", metadata: ["address": "\(address)", "error": "\(error)"])
                }
                try await Task.sleep(for: .milliseconds(200))
            }
        }
    }

    static func makeActuators(id: UInt64, config: SwitchmanConfig, environment: [String: String], logger: Logger) -> ReplicaActuators {
        let aws = AWSClients(config: config, nodeID: String(id), environment: environment, logger: logger)
        let ec2 = aws.ec2
        var routes: [String: AWSRouteActuator] = [:]
        for (region, client) in ec2 { routes[region] = AWSRouteActuator(ec2: client, logger: logger) }
        let needsDNS = config.tunnels.contains { $0.dns != nil }
        let dns: (any DNSActuator)? = needsDNS ? AWSDNSActuator(route53: aws.route53, pollInterval: .milliseconds(500), logger: logger) : nil
        let clients = ec2
        let actuators = routes
        return ReplicaActuators(
            routes: { actuators[$0] }, dns: dns,
            instances: EC2InstanceDirectory(defaultRegion: config.aws.region, logger: logger) { clients[$0] })
    }
}

/// The AWS clients of one process for a config: one credentials chain, an EC2 client per
/// Region the file names, one Route 53 client (the default Region's partition picks its
/// endpoint and signing Region).
public struct AWSClients: Sendable {
    public let credentials: CredentialsChain
    public let ec2: [String: EC2Client]
    public let route53: Route53Client

    public init(config: SwitchmanConfig, nodeID: String, environment: [String: String], logger: Logger) {
        var env = environment
        if let profile = config.aws.profile { env["AWS_PROFILE"] = profile }
        let credentials = CredentialsChain.standard(environment: env)
        let identity = CallerIdentity(nodeID: nodeID)
        let regions = Set([config.aws.region] + config.tunnels.compactMap(\.region) + config.routes.compactMap(\.region))
        var ec2: [String: EC2Client] = [:]
        for region in regions {
            ec2[region] = EC2Client(
                configuration: AWSClientConfiguration(
                    region: region, endpointOverride: config.aws.ec2Endpoint(region: region), identity: identity, fips: config.aws.fips),
                credentials: credentials, logger: logger)
        }
        self.credentials = credentials
        self.ec2 = ec2
        route53 = Route53Client(
            configuration: AWSClientConfiguration(
                region: config.aws.region, endpointOverride: config.aws.route53Endpoint, identity: identity, fips: config.aws.fips),
            credentials: credentials, logger: logger)
    }
}
