import Actuators
import Logging
import NIOCore

/// What one poll of a tunnel's sentinel told this replica. A sentinel that cannot be reached
/// counts as a failed check: the VPN instance it runs on may be down (DESIGN data flow).
public struct TunnelCheck: Sendable, Hashable {
    public var healthy: Bool
    public var rttMillis: UInt32?
    public var detail: String
    /// The instance the answer came from (the sentinel's own report), when it said.
    public var instanceId: String?

    public init(healthy: Bool, rttMillis: UInt32? = nil, detail: String = "", instanceId: String? = nil) {
        self.healthy = healthy
        self.rttMillis = rttMillis
        self.detail = detail
        self.instanceId = instanceId
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
    /// The same for many tunnels at once, keyed by tunnel name; `known` by tunnel name too.
    func currentInstances(of tunnels: [TunnelConfig], known: [String: InstanceIdentity],
                          deadline: NIODeadline) async -> [String: Result<InstanceIdentity?, any Error>]
}

extension InstanceDirectory {
    /// One lookup per tunnel, all at once.
    public func currentInstances(of tunnels: [TunnelConfig], known: [String: InstanceIdentity],
                                 deadline: NIODeadline) async -> [String: Result<InstanceIdentity?, any Error>] {
        await withTaskGroup(of: (String, Result<InstanceIdentity?, any Error>).self) { group in
            for tunnel in tunnels {
                group.addTask {
                    do {
                        return (tunnel.name, .success(try await self.currentInstance(of: tunnel, known: known[tunnel.name], deadline: deadline)))
                    } catch {
                        return (tunnel.name, .failure(error))
                    }
                }
            }
            var out: [String: Result<InstanceIdentity?, any Error>] = [:]
            for await (name, result) in group { out[name] = result }
            return out
        }
    }
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
        let tagged = try await taggedInterfaces(of: [tunnel], among: found, ec2: ec2, deadline: deadline)
        return choose(among: found, for: tunnel, known: known, tagged: tagged[tunnel.name] ?? [:])
    }

    /// For the tunnels that choose their interface by tag: per tunnel, each found instance's
    /// interfaces that carry it. DescribeInstances does not list interface tags, so this is one
    /// DescribeNetworkInterfaces per tag key (attachment and tag filters), none when no tunnel
    /// asks.
    func taggedInterfaces(of tunnels: [TunnelConfig], among found: [EC2Instance], ec2: EC2Client,
                          deadline: NIODeadline) async throws -> [String: [String: [String]]] {
        let byKey = Dictionary(grouping: tunnels.filter { $0.instance.interfaceTag != nil }) { $0.instance.interfaceTag?.key ?? "" }
        let instanceIDs = Array(Set(found.map(\.id))).sorted()
        guard !byKey.isEmpty, !instanceIDs.isEmpty else { return [:] }
        var out: [String: [String: [String]]] = [:]
        for (key, members) in byKey.sorted(by: { $0.key < $1.key }) {
            let values = Array(Set(members.compactMap { $0.instance.interfaceTag?.value })).sorted()
            var interfaces: [EC2NetworkInterface] = []
            for start in stride(from: 0, to: instanceIDs.count, by: Self.maxFilterValues) {
                let ids = Array(instanceIDs[start..<min(start + Self.maxFilterValues, instanceIDs.count)])
                interfaces += try await ec2.describeNetworkInterfaces(
                    filters: [EC2Filter("attachment.instance-id", ids), EC2Filter("tag:\(key)", values)], deadline: deadline)
            }
            for tunnel in members {
                guard let tag = tunnel.instance.interfaceTag else { continue }
                var mine: [String: [String]] = [:]
                for interface in interfaces where interface.tags[tag.key] == tag.value {
                    guard let instance = interface.attachedInstanceId else { continue }
                    mine[instance, default: []].append(interface.id)
                }
                out[tunnel.name] = mine.mapValues { $0.sorted() }
            }
        }
        return out
    }

    /// EC2's read budget is 20 calls a second per account: one DescribeInstances per tunnel
    /// every discovery interval took 60 % of it at 40 tunnels (docs/BENCHMARKS.md, scale).
    /// Tunnels of one region and tag key share a call, with all their tag values in one
    /// filter (at most `maxFilterValues` each).
    public func currentInstances(of tunnels: [TunnelConfig], known: [String: InstanceIdentity],
                                 deadline: NIODeadline) async -> [String: Result<InstanceIdentity?, any Error>] {
        struct Group: Hashable { var region: String; var tagKey: String }
        var groups: [Group: [TunnelConfig]] = [:]
        for tunnel in tunnels {
            groups[Group(region: tunnel.region ?? defaultRegion, tagKey: tunnel.instance.tagKey), default: []].append(tunnel)
        }
        var batches: [(region: String, tagKey: String, tunnels: [TunnelConfig])] = []
        for (group, members) in groups {
            for start in stride(from: 0, to: members.count, by: Self.maxFilterValues) {
                batches.append((group.region, group.tagKey, Array(members[start..<min(start + Self.maxFilterValues, members.count)])))
            }
        }
        return await withTaskGroup(of: [String: Result<InstanceIdentity?, any Error>].self) { tasks in
            for batch in batches {
                tasks.addTask {
                    var out: [String: Result<InstanceIdentity?, any Error>] = [:]
                    guard let ec2 = self.clients(batch.region) else {
                        for tunnel in batch.tunnels { out[tunnel.name] = .success(nil) }
                        return out
                    }
                    let values = Array(Set(batch.tunnels.map(\.instance.tagValue))).sorted()
                    do {
                        let found = try await ec2.describeInstances(
                            filters: [EC2Filter("tag:\(batch.tagKey)", values), EC2Filter("instance-state-name", ["running"])],
                            deadline: deadline)
                        var tagged: [String: [String: [String]]] = [:]
                        var taggedFailure: (any Error)?
                        do {
                            tagged = try await self.taggedInterfaces(of: batch.tunnels, among: found, ec2: ec2, deadline: deadline)
                        } catch {
                            // Only the tunnels that choose by interface tag lack an answer.
                            taggedFailure = error
                        }
                        for tunnel in batch.tunnels {
                            if let taggedFailure, tunnel.instance.interfaceTag != nil {
                                out[tunnel.name] = .failure(taggedFailure)
                                continue
                            }
                            let mine = found.filter { $0.tags[batch.tagKey] == tunnel.instance.tagValue }
                            out[tunnel.name] = .success(self.choose(among: mine, for: tunnel, known: known[tunnel.name],
                                                                    tagged: tagged[tunnel.name] ?? [:]))
                        }
                    } catch {
                        // AWS documents that while an Availability Zone is impaired a filtered
                        // DescribeInstances can fail outright: the instances we know are still
                        // looked up by id, so the tunnels of healthy zones keep their identity
                        // checked and a replacement elsewhere is still noticed next pass.
                        out = await self.byKnownIDs(batch.tunnels, known: known, ec2: ec2, failure: error, deadline: deadline)
                    }
                    return out
                }
            }
            var all: [String: Result<InstanceIdentity?, any Error>] = [:]
            for await part in tasks { all.merge(part) { a, _ in a } }
            return all
        }
    }

    /// The fallback when the filtered lookup failed: the known instances by id. A known
    /// instance that still runs and still carries the tag keeps its identity; the others (and
    /// tunnels with no known instance) report the original failure, so nothing is dropped.
    func byKnownIDs(_ tunnels: [TunnelConfig], known: [String: InstanceIdentity], ec2: EC2Client,
                    failure: any Error, deadline: NIODeadline) async -> [String: Result<InstanceIdentity?, any Error>] {
        var out: [String: Result<InstanceIdentity?, any Error>] = [:]
        for tunnel in tunnels { out[tunnel.name] = .failure(failure) }
        let ids = Array(Set(tunnels.compactMap { known[$0.name]?.instanceId })).sorted()
        guard !ids.isEmpty else { return out }
        do {
            let found = try await ec2.describeInstances(ids: ids, deadline: deadline)
            let tagged = try await taggedInterfaces(of: tunnels, among: found, ec2: ec2, deadline: deadline)
            for tunnel in tunnels {
                guard let id = known[tunnel.name]?.instanceId,
                      let instance = found.first(where: { $0.id == id }), instance.state == "running",
                      instance.tags[tunnel.instance.tagKey] == tunnel.instance.tagValue
                else { continue }
                out[tunnel.name] = .success(choose(among: [instance], for: tunnel, known: known[tunnel.name],
                                                   tagged: tagged[tunnel.name] ?? [:]))
            }
            logger.warning("instance lookup by tag failed; kept the known instances by id", metadata: [
                "tunnels": "\(tunnels.map(\.name).sorted())", "error": "\(failure)",
            ])
        } catch {
            logger.warning("instance lookup by tag and by id both failed", metadata: [
                "tunnels": "\(tunnels.map(\.name).sorted())", "byTag": "\(failure)", "byID": "\(error)",
            ])
        }
        return out
    }

    /// EC2 takes up to 200 values in one filter.
    static let maxFilterValues = 200

    /// When several running instances carry the tunnel's tag, the known one is kept, else the
    /// lowest id, so every leader picks the same.
    /// `tagged`: per instance, its interfaces carrying the tunnel's `interfaceTag` (sorted).
    func choose(among found: [EC2Instance], for tunnel: TunnelConfig, known: InstanceIdentity?,
                tagged: [String: [String]] = [:]) -> InstanceIdentity? {
        let candidates = found.compactMap { i -> InstanceIdentity? in
            if let tag = tunnel.instance.interfaceTag {
                let attached = Set(i.networkInterfaceIds)
                let carrying = (tagged[i.id] ?? []).filter(attached.contains)
                guard let eni = carrying.first, let ip = i.privateIpAddress else {
                    logger.warning("instance has no network interface with the tunnel's interface tag", metadata: [
                        "tunnel": "\(tunnel.name)", "instance": "\(i.id)", "interfaceTag": "\(tag.key)=\(tag.value)",
                    ])
                    return nil
                }
                if carrying.count > 1 {
                    // The lowest id, so every leader and every answer order picks the same.
                    logger.warning("several of the instance's interfaces carry the tunnel's interface tag; using the first by id", metadata: [
                        "tunnel": "\(tunnel.name)", "instance": "\(i.id)", "interfaces": "\(carrying)",
                    ])
                }
                return InstanceIdentity(instanceId: i.id, eniId: eni, privateIP: ip)
            }
            // By device index, never by position: AWS lists an instance's interfaces in no
            // promised order, and a route must not move because an answer came back shuffled.
            guard let eni = i.networkInterface(deviceIndex: tunnel.instance.deviceIndex), let ip = i.privateIpAddress else {
                if i.privateIpAddress != nil {
                    logger.warning("instance has no network interface at the tunnel's device index", metadata: [
                        "tunnel": "\(tunnel.name)", "instance": "\(i.id)", "deviceIndex": "\(tunnel.instance.deviceIndex)",
                    ])
                }
                return nil
            }
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
