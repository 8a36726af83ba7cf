import Actuators
import Logging
import NIOCore

/// What one poll of a tunnel's sentinel told this replica. A sentinel that cannot be reached
/// counts as a failed check: the VPN instance it runs on may be down (DESIGN data flow).
public struct TunnelCheck: Sendable, Hashable {
    public var healthy: Bool
    public var rttMillis: UInt32?
    public var detail: String

    public init(healthy: Bool, rttMillis: UInt32? = nil, detail: String = "") {
        self.healthy = healthy
        self.rttMillis = rttMillis
        self.detail = detail
    }
}

/// How a replica checks a tunnel: by asking the sentinel on its VPN instance.
public protocol TunnelChecker: Sendable {
    func check(_ tunnel: TunnelConfig, timeout: Duration) async -> TunnelCheck
}

/// Finds the VPN instance currently behind a tunnel (by its EC2 tag, so a replacement is found).
public protocol InstanceDirectory: Sendable {
    /// `known` is the identity in the replicated state: when several running instances carry
    /// the tag, the known one is kept, so a brief overlap during a replacement does not flap.
    func currentInstance(of tunnel: TunnelConfig, known: InstanceIdentity?, deadline: NIODeadline) async throws -> InstanceIdentity?
}

/// The AWS side of a replica: only the leader uses it, and only for reads outside the lease.
public struct ReplicaActuators: Sendable {
    /// The route actuator of a region; nil when the region has none configured.
    public var routes: @Sendable (String) -> (any RouteActuator)?
    public var dns: (any DNSActuator)?
    public var instances: any InstanceDirectory

    public init(routes: @escaping @Sendable (String) -> (any RouteActuator)?, dns: (any DNSActuator)?, instances: any InstanceDirectory) {
        self.routes = routes
        self.dns = dns
        self.instances = instances
    }
}

/// `InstanceDirectory` over EC2 DescribeInstances with a tag filter, one client per region.
public struct EC2InstanceDirectory: InstanceDirectory {
    let clients: @Sendable (String) -> EC2Client?
    let defaultRegion: String
    let logger: Logger

    public init(defaultRegion: String, logger: Logger, clients: @escaping @Sendable (String) -> EC2Client?) {
        self.clients = clients
        self.defaultRegion = defaultRegion
        self.logger = logger
    }

    public func currentInstance(of tunnel: TunnelConfig, known: InstanceIdentity?, deadline: NIODeadline) async throws -> InstanceIdentity? {
        let region = tunnel.region ?? defaultRegion
        guard let ec2 = clients(region) else { return nil }
        let found = try await ec2.describeInstances(
            filters: [.tag(tunnel.instance.tagKey, tunnel.instance.tagValue), EC2Filter("instance-state-name", ["running"])],
            deadline: deadline)
        let candidates = found.compactMap { i -> InstanceIdentity? in
            guard let eni = i.networkInterfaceIds.first, let ip = i.privateIpAddress else { return nil }
            return InstanceIdentity(instanceId: i.id, eniId: eni, privateIP: ip)
        }
        if let known, let same = candidates.first(where: { $0.instanceId == known.instanceId }) { return same }
        if candidates.count > 1 {
            logger.warning("several running instances carry the tunnel's tag; using the first by id", metadata: [
                "tunnel": "\(tunnel.name)", "instances": "\(candidates.map(\.instanceId).sorted())",
            ])
        }
        return candidates.min { $0.instanceId < $1.instanceId }
    }
}
