import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// Where a route sends its traffic. Switchman only ever points routes at VPN instances or
/// their network interfaces.
public enum RouteTarget: Sendable, Hashable, CustomStringConvertible {
    case instance(String)
    case networkInterface(String)

    public var description: String {
        switch self {
        case .instance(let id): return id
        case .networkInterface(let id): return id
        }
    }
}

public struct EC2Route: Sendable, Hashable {
    public var destinationCidrBlock: String?
    public var destinationIpv6CidrBlock: String?
    public var destinationPrefixListId: String?
    public var gatewayId: String?
    public var instanceId: String?
    public var networkInterfaceId: String?
    public var natGatewayId: String?
    public var transitGatewayId: String?
    public var vpcPeeringConnectionId: String?
    /// `active` or `blackhole`.
    public var state: String?
    /// `CreateRouteTable`, `CreateRoute` or `EnableVgwRoutePropagation`.
    public var origin: String?

    public init(destinationCidrBlock: String? = nil, instanceId: String? = nil, networkInterfaceId: String? = nil) {
        self.destinationCidrBlock = destinationCidrBlock
        self.instanceId = instanceId
        self.networkInterfaceId = networkInterfaceId
    }

    public var destination: String? { destinationCidrBlock ?? destinationIpv6CidrBlock ?? destinationPrefixListId }

    /// A route made with CreateRoute (by us, by hand, by another tool): the only kind
    /// ReplaceRoute can change. AWS lists a propagated route (EnableVgwRoutePropagation) and
    /// the VPC's local route (CreateRouteTable) beside it for the same prefix; neither is
    /// ever ours to replace, and a static route takes precedence over a propagated one.
    public var isStatic: Bool { origin == nil || origin == "CreateRoute" }

    /// What the route points at when that is not an instance or interface (a gateway, NAT
    /// gateway, peering connection): a route an operator pointed there is not a tunnel's.
    public var gatewayTarget: String? {
        if let gatewayId, gatewayId != "local" { return gatewayId }
        return transitGatewayId ?? natGatewayId ?? vpcPeeringConnectionId
    }

    /// Whether the route already sends traffic where `target` says. An instance route also
    /// shows the instance's primary interface, so a target by interface id matches it too.
    public func points(to target: RouteTarget) -> Bool {
        switch target {
        case .instance(let id): return instanceId == id
        case .networkInterface(let id): return networkInterfaceId == id
        }
    }
}

public struct EC2RouteTableAssociation: Sendable, Hashable {
    public var id: String?
    public var routeTableId: String?
    public var subnetId: String?
    public var gatewayId: String?
    public var main: Bool
}

public struct EC2RouteTable: Sendable, Hashable {
    public var id: String
    public var vpcId: String?
    public var routes: [EC2Route]
    public var associations: [EC2RouteTableAssociation]
    public var tags: [String: String]

    /// The static route to `destination`: the one Switchman manages. Propagated routes for
    /// the same prefix are skipped whatever order AWS lists them in.
    public func route(to destination: String) -> EC2Route? {
        routes.first { $0.destination == destination && $0.isStatic }
    }

    /// Every route to `destination`, static or not.
    public func routes(to destination: String) -> [EC2Route] { routes.filter { $0.destination == destination } }
}

public struct EC2Instance: Sendable, Hashable {
    public var id: String
    public var state: String?
    public var privateIpAddress: String?
    public var subnetId: String?
    public var vpcId: String?
    public var availabilityZone: String?
    public var sourceDestCheck: Bool?
    /// Interface ids with their device index, in the order AWS listed them (no promised order).
    public var networkInterfaces: [EC2InstanceInterface]
    public var tags: [String: String]

    public var networkInterfaceIds: [String] { networkInterfaces.map(\.id) }

    /// The interface a route to this instance should name: the one at `deviceIndex` (0, the
    /// primary, unless the tunnel says otherwise), chosen by index, never by listing order.
    public func networkInterface(deviceIndex: Int = 0) -> String? {
        let indexed = networkInterfaces.filter { $0.deviceIndex != nil }
        if !indexed.isEmpty { return indexed.first { $0.deviceIndex == deviceIndex }?.id }
        // An answer without device indexes (an emulator that leaves them out): the primary
        // interface is the one holding the instance's primary private address.
        guard deviceIndex == 0 else { return nil }
        if networkInterfaces.count == 1 { return networkInterfaces[0].id }
        return networkInterfaces.first { $0.privateIpAddress != nil && $0.privateIpAddress == privateIpAddress }?.id
    }
}

public struct EC2InstanceInterface: Sendable, Hashable {
    public var id: String
    public var deviceIndex: Int?
    public var privateIpAddress: String?
    public init(id: String, deviceIndex: Int?, privateIpAddress: String? = nil) {
        self.id = id
        self.deviceIndex = deviceIndex
        self.privateIpAddress = privateIpAddress
    }
}

public struct EC2NetworkInterface: Sendable, Hashable {
    public var id: String
    public var subnetId: String?
    public var vpcId: String?
    public var availabilityZone: String?
    public var privateIpAddress: String?
    public var status: String?
    public var attachedInstanceId: String?
    public var sourceDestCheck: Bool?
    public var tags: [String: String]
}

/// One instance's status checks and scheduled events (`DescribeInstanceStatus`).
public struct EC2InstanceStatus: Sendable, Hashable {
    public var instanceId: String
    /// `ok`, `impaired`, `insufficient-data`, `not-applicable` or `initializing`.
    public var instanceStatus: String?
    public var systemStatus: String?
    /// The attached EBS volumes' status, where the answer has one.
    public var ebsStatus: String?
    public var events: [EC2ScheduledEvent]

    public init(instanceId: String, instanceStatus: String?, systemStatus: String?, ebsStatus: String? = nil,
                events: [EC2ScheduledEvent] = []) {
        self.instanceId = instanceId
        self.instanceStatus = instanceStatus
        self.systemStatus = systemStatus
        self.ebsStatus = ebsStatus
        self.events = events
    }

    /// Only `impaired` counts: `insufficient-data` and `initializing` are no evidence, and
    /// failing over on them would move routes off every instance EC2 has not checked yet.
    public var impaired: Bool { [instanceStatus, systemStatus, ebsStatus].contains("impaired") }

    public var summary: String {
        "instance \(instanceStatus ?? "unknown"), system \(systemStatus ?? "unknown")" + (ebsStatus.map { ", EBS \($0)" } ?? "")
    }
}

/// A retirement, reboot or maintenance EC2 has scheduled for an instance.
public struct EC2ScheduledEvent: Sendable, Hashable {
    public var id: String?
    /// `instance-reboot`, `system-reboot`, `system-maintenance`, `instance-retirement` or `instance-stop`.
    public var code: String
    public var description: String
    public var notBefore: Date?
    public var notAfter: Date?

    public init(id: String?, code: String, description: String, notBefore: Date?, notAfter: Date?) {
        self.id = id
        self.code = code
        self.description = description
        self.notBefore = notBefore
        self.notAfter = notAfter
    }

    /// EC2 keeps a finished or cancelled event listed for a while, its description prefixed.
    public var isOver: Bool { description.hasPrefix("[Completed]") || description.hasPrefix("[Canceled]") }
}

/// An Elastic IP and where it is associated now (nothing: not associated).
public struct EC2Address: Sendable, Hashable {
    public var allocationId: String
    public var publicIp: String
    public var networkInterfaceId: String?
    public var privateIpAddress: String?
    public var instanceId: String?
    public var associationId: String?

    public init(allocationId: String, publicIp: String, networkInterfaceId: String?, privateIpAddress: String?,
                instanceId: String?, associationId: String?) {
        self.allocationId = allocationId
        self.publicIp = publicIp
        self.networkInterfaceId = networkInterfaceId
        self.privateIpAddress = privateIpAddress
        self.instanceId = instanceId
        self.associationId = associationId
    }
}

public struct EC2Filter: Sendable, Hashable {
    public var name: String
    public var values: [String]
    public init(_ name: String, _ values: [String]) {
        self.name = name
        self.values = values
    }
    public static func tag(_ key: String, _ values: String...) -> EC2Filter { EC2Filter("tag:\(key)", values) }
}

public struct EC2Page<Item: Sendable>: Sendable {
    public var items: [Item]
    public var nextToken: String?
    public var requestID: String?
}

/// EC2 Query API (version 2016-11-15) for the handful of actions Switchman needs.
public final class EC2Client: Sendable {
    public static let apiVersion = "2016-11-15"
    let transport: AWSTransport

    public init(
        configuration: AWSClientConfiguration,
        credentials: any CredentialsSource,
        httpClient: HTTPClient = .shared,
        rateLimiter: RateLimiter = RateLimiter(),
        logger: Logger = Logger(label: "switchman.actuators.ec2"),
        clock: @escaping @Sendable () -> Date = { Date() }
    ) {
        transport = AWSTransport(
            service: "ec2", signingRegion: configuration.region,
            defaultEndpoint: Self.endpoint(region: configuration.region, fips: configuration.fips),
            configuration: configuration, credentials: credentials,
            httpClient: httpClient, limiter: rateLimiter, logger: logger, clock: clock)
    }

    public static func endpoint(region: String, fips: Bool = false) -> String {
        AWSPartition.ec2Endpoint(region: region, fips: fips)
    }

    // MARK: route tables

    /// All route tables matching `filters`, following `NextToken` to the end.
    public func describeRouteTables(filters: [EC2Filter] = [], pageSize: Int = 100,
                                    deadline: NIODeadline? = nil) async throws -> [EC2RouteTable] {
        try await Self.allPages { token in
            try await self.describeRouteTablesPage(filters: filters, nextToken: token, maxResults: pageSize, deadline: deadline)
        }
    }

    public func describeRouteTablesPage(
        filters: [EC2Filter], nextToken: String?, maxResults: Int?, deadline: NIODeadline?
    ) async throws -> EC2Page<EC2RouteTable> {
        var params = Self.filterParams(filters)
        if let maxResults { params.append(("MaxResults", String(maxResults))) }
        if let nextToken { params.append(("NextToken", nextToken)) }
        let root = try await call("DescribeRouteTables", params, idempotency: .safe, fencing: nil, deadline: deadline)
        return EC2Page(items: root.items("routeTableSet").compactMap(Self.routeTable),
                       nextToken: root.string("nextToken"), requestID: root.string("requestId"))
    }

    /// Returns AWS's request id, for matching the write to its CloudTrail event.
    @discardableResult
    public func createRoute(routeTableId: String, destination: String, target: RouteTarget,
                            fencing: FencingToken, deadline: NIODeadline? = nil) async throws -> String? {
        // Safe to retry only because RouteActuator turns a RouteAlreadyExists into a replace.
        try await routeWrite("CreateRoute", routeTableId, destination, target, fencing, deadline)
    }

    /// Returns AWS's request id, for matching the write to its CloudTrail event.
    @discardableResult
    public func replaceRoute(routeTableId: String, destination: String, target: RouteTarget,
                             fencing: FencingToken, deadline: NIODeadline? = nil) async throws -> String? {
        try await routeWrite("ReplaceRoute", routeTableId, destination, target, fencing, deadline)
    }

    public enum DryRunResult: Sendable, Equatable {
        /// `DryRunOperation`: IAM allows it and the request is well formed.
        case allowed
        /// `UnauthorizedOperation`: IAM denies it.
        case denied(String)
    }

    /// The write a route would need, with `DryRun`: nothing changes, IAM answers whether it
    /// would be allowed. Other errors (a bad table or target) are thrown.
    public func dryRunRouteWrite(create: Bool, routeTableId: String, destination: String, target: RouteTarget,
                                 deadline: NIODeadline? = nil) async throws -> DryRunResult {
        var params = [("RouteTableId", routeTableId), Self.destinationParam(destination)]
        switch target {
        case .instance(let id): params.append(("InstanceId", id))
        case .networkInterface(let id): params.append(("NetworkInterfaceId", id))
        }
        return try await dryRun(create ? "CreateRoute" : "ReplaceRoute", params, deadline: deadline)
    }

    /// `modifySourceDestCheck(enabled: false)` with `DryRun`.
    public func dryRunDisableSourceDestCheck(networkInterfaceId: String, deadline: NIODeadline? = nil) async throws -> DryRunResult {
        try await dryRun("ModifyNetworkInterfaceAttribute", [("NetworkInterfaceId", networkInterfaceId), ("SourceDestCheck.Value", "false")],
                         deadline: deadline)
    }

    public func dryRunAssociateAddress(allocationId: String, networkInterfaceId: String, deadline: NIODeadline? = nil) async throws -> DryRunResult {
        try await dryRun("AssociateAddress", [("AllocationId", allocationId), ("NetworkInterfaceId", networkInterfaceId),
                                              ("AllowReassociation", "true")], deadline: deadline)
    }

    private func dryRun(_ action: String, _ params: [(String, String)], deadline: NIODeadline?) async throws -> DryRunResult {
        do {
            let root = try await call(action, params + [("DryRun", "true")], idempotency: .safe, fencing: nil, deadline: deadline)
            // Only an emulator that ignores DryRun answers 2xx, and then it has written.
            throw AWSClientError.invalidResponse("\(action) with DryRun=true succeeded (request id \(root.string("requestId") ?? "none")): this endpoint ignores DryRun and applied the write")
        } catch let error as AWSError where error.code == "DryRunOperation" {
            return .allowed
        } catch let error as AWSError where error.code == "UnauthorizedOperation" {
            return .denied(error.description)
        }
    }

    public func deleteRoute(routeTableId: String, destination: String,
                            fencing: FencingToken, deadline: NIODeadline? = nil) async throws {
        var params = [("RouteTableId", routeTableId)]
        params.append(Self.destinationParam(destination))
        do {
            let root = try await call("DeleteRoute", params, idempotency: .safe, fencing: fencing, deadline: deadline)
            try Self.expectTrue(root, "DeleteRoute")
        } catch let error as AWSError where error.code == "InvalidRoute.NotFound" && error.attempt > 1 {
            // Our earlier attempt deleted it and its answer was lost: the route is gone, as asked.
        }
    }

    /// Moves a subnet to another route table; returns the new association id.
    public func replaceRouteTableAssociation(associationId: String, routeTableId: String,
                                             fencing: FencingToken, deadline: NIODeadline? = nil) async throws -> String {
        // Not repeated after an ambiguous failure: a replace that went through retires the old
        // association id, so a repeat would fail with InvalidAssociationID.NotFound and hide
        // the success. The caller re-reads the table and decides.
        let root = try await call("ReplaceRouteTableAssociation",
                                  [("AssociationId", associationId), ("RouteTableId", routeTableId)],
                                  idempotency: .unsafe, fencing: fencing, deadline: deadline)
        guard let id = root.string("newAssociationId") else {
            throw AWSClientError.invalidResponse("ReplaceRouteTableAssociation: no newAssociationId")
        }
        return id
    }

    // MARK: instances and interfaces

    public func describeInstances(filters: [EC2Filter] = [], pageSize: Int = 1000,
                                  deadline: NIODeadline? = nil) async throws -> [EC2Instance] {
        try await Self.allPages { token in
            try await self.describeInstancesPage(filters: filters, nextToken: token, maxResults: pageSize, deadline: deadline)
        }
    }

    /// The instances with these ids (no filters): while an Availability Zone is impaired AWS
    /// documents that DescribeInstances with filters can fail where a lookup by id still works.
    public func describeInstances(ids: [String], deadline: NIODeadline? = nil) async throws -> [EC2Instance] {
        guard !ids.isEmpty else { return [] }
        var params: [(String, String)] = []
        for (i, id) in ids.enumerated() { params.append(("InstanceId.\(i + 1)", id)) }
        let root = try await call("DescribeInstances", params, idempotency: .safe, fencing: nil, deadline: deadline)
        return root.items("reservationSet").flatMap { $0.items("instancesSet") }.compactMap(Self.instance)
    }

    public func describeInstancesPage(filters: [EC2Filter], nextToken: String?, maxResults: Int?,
                                      deadline: NIODeadline?) async throws -> EC2Page<EC2Instance> {
        var params = Self.filterParams(filters)
        if let maxResults { params.append(("MaxResults", String(maxResults))) }
        if let nextToken { params.append(("NextToken", nextToken)) }
        let root = try await call("DescribeInstances", params, idempotency: .safe, fencing: nil, deadline: deadline)
        let instances = root.items("reservationSet").flatMap { $0.items("instancesSet") }.compactMap(Self.instance)
        return EC2Page(items: instances, nextToken: root.string("nextToken"), requestID: root.string("requestId"))
    }

    public func describeNetworkInterfaces(ids: [String] = [], filters: [EC2Filter] = [],
                                          deadline: NIODeadline? = nil) async throws -> [EC2NetworkInterface] {
        try await Self.allPages { token in
            var params = Self.filterParams(filters)
            for (i, id) in ids.enumerated() { params.append(("NetworkInterfaceId.\(i + 1)", id)) }
            // EC2 refuses MaxResults together with explicit ids.
            if ids.isEmpty { params.append(("MaxResults", "1000")) }
            if let token { params.append(("NextToken", token)) }
            let root = try await self.call("DescribeNetworkInterfaces", params, idempotency: .safe, fencing: nil, deadline: deadline)
            return EC2Page(items: root.items("networkInterfaceSet").compactMap(Self.networkInterface),
                           nextToken: root.string("nextToken"), requestID: root.string("requestId"))
        }
    }

    /// Status checks and scheduled events of these instances, stopped ones included
    /// (`IncludeAllInstances`). By id, at most 100 per call; EC2 refuses MaxResults with ids.
    public func describeInstanceStatus(ids: [String], deadline: NIODeadline? = nil) async throws -> [EC2InstanceStatus] {
        try await Self.allPages { token in
            var params = [("IncludeAllInstances", "true")]
            for (i, id) in ids.enumerated() { params.append(("InstanceId.\(i + 1)", id)) }
            if let token { params.append(("NextToken", token)) }
            let root = try await self.call("DescribeInstanceStatus", params, idempotency: .safe, fencing: nil, deadline: deadline)
            return EC2Page(items: root.items("instanceStatusSet").compactMap(Self.instanceStatus),
                           nextToken: root.string("nextToken"), requestID: root.string("requestId"))
        }
    }

    /// The Elastic IPs with these allocation ids. By filter, so one released address does
    /// not fail the call for the others (InvalidAllocationID.NotFound).
    public func describeAddresses(allocationIds: [String], deadline: NIODeadline? = nil) async throws -> [EC2Address] {
        let params = Self.filterParams([EC2Filter("allocation-id", allocationIds)])
        let root = try await call("DescribeAddresses", params, idempotency: .safe, fencing: nil, deadline: deadline)
        return root.items("addressesSet").compactMap(Self.address)
    }

    /// Associates an Elastic IP with an interface (and its private address), taking it from
    /// wherever it is now (`AllowReassociation`). The same association again changes nothing
    /// that matters, so a retry is safe.
    public func associateAddress(allocationId: String, networkInterfaceId: String, privateIpAddress: String?,
                                 fencing: FencingToken, deadline: NIODeadline? = nil) async throws -> (associationId: String?, requestID: String?) {
        var params = [("AllocationId", allocationId), ("NetworkInterfaceId", networkInterfaceId), ("AllowReassociation", "true")]
        if let privateIpAddress { params.append(("PrivateIpAddress", privateIpAddress)) }
        let root = try await call("AssociateAddress", params, idempotency: .safe, fencing: fencing, deadline: deadline)
        try Self.expectTrue(root, "AssociateAddress")
        return (root.string("associationId"), root.string("requestId"))
    }

    /// Sets an interface's source/destination check (`ModifyNetworkInterfaceAttribute`). A
    /// VPN instance forwards traffic for other hosts, which EC2 drops while the check is on.
    /// Idempotent: the same value again changes nothing, so a repeat is safe.
    public func modifySourceDestCheck(networkInterfaceId: String, enabled: Bool, fencing: FencingToken,
                                      deadline: NIODeadline? = nil) async throws -> String? {
        let params = [("NetworkInterfaceId", networkInterfaceId), ("SourceDestCheck.Value", enabled ? "true" : "false")]
        let root = try await call("ModifyNetworkInterfaceAttribute", params, idempotency: .safe, fencing: fencing, deadline: deadline)
        try Self.expectTrue(root, "ModifyNetworkInterfaceAttribute")
        return root.string("requestId")
    }

    /// Follows `NextToken` until AWS stops sending one.
    static func allPages<Item: Sendable>(_ fetch: (String?) async throws -> EC2Page<Item>) async throws -> [Item] {
        var all: [Item] = []
        var token: String?
        repeat {
            let page = try await fetch(token)
            all += page.items
            token = page.nextToken
        } while token != nil
        return all
    }

    // MARK: plumbing

    private func routeWrite(_ action: String, _ table: String, _ destination: String, _ target: RouteTarget,
                            _ fencing: FencingToken, _ deadline: NIODeadline?) async throws -> String? {
        var params = [("RouteTableId", table)]
        params.append(Self.destinationParam(destination))
        switch target {
        case .instance(let id): params.append(("InstanceId", id))
        case .networkInterface(let id): params.append(("NetworkInterfaceId", id))
        }
        let root = try await call(action, params, idempotency: .safe, fencing: fencing, deadline: deadline)
        try Self.expectTrue(root, action)
        return root.string("requestId")
    }

    static func destinationParam(_ destination: String) -> (String, String) {
        if destination.hasPrefix("pl-") { return ("DestinationPrefixListId", destination) }
        return destination.contains(":") ? ("DestinationIpv6CidrBlock", destination) : ("DestinationCidrBlock", destination)
    }

    /// AWS answers `<return>true</return>`; a 2xx without the element (some emulators) is
    /// still success, so only an explicit `false` counts as failure.
    static func expectTrue(_ root: XMLElement, _ action: String) throws {
        if root.string("return") == "false" {
            throw AWSClientError.invalidResponse("\(action) answered return=false")
        }
    }

    static func filterParams(_ filters: [EC2Filter]) -> [(String, String)] {
        var params: [(String, String)] = []
        for (i, filter) in filters.enumerated() {
            params.append(("Filter.\(i + 1).Name", filter.name))
            for (j, value) in filter.values.enumerated() { params.append(("Filter.\(i + 1).Value.\(j + 1)", value)) }
        }
        return params
    }

    static func formBody(action: String, _ params: [(String, String)]) -> [UInt8] {
        let pairs = [("Action", action), ("Version", apiVersion)] + params
        return Array(pairs.map { "\(SigV4Signer.uriEncode($0.0))=\(SigV4Signer.uriEncode($0.1))" }.joined(separator: "&").utf8)
    }

    func call(_ action: String, _ params: [(String, String)], idempotency: Idempotency,
              fencing: FencingToken?, deadline: NIODeadline?) async throws -> XMLElement {
        let op = AWSOperation(
            action: action, method: .POST, path: "/",
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: Self.formBody(action: action, params), idempotency: idempotency, fencing: fencing)
        let response = try await transport.send(op, deadline: deadline)
        return try XMLElement.parse(response.body)
    }

    // MARK: parsing

    static func tags(_ e: XMLElement) -> [String: String] {
        var tags: [String: String] = [:]
        for item in e.items("tagSet") {
            if let k = item.string("key") { tags[k] = item.child("value")?.text ?? "" }
        }
        return tags
    }

    static func routeTable(_ e: XMLElement) -> EC2RouteTable? {
        guard let id = e.string("routeTableId") else { return nil }
        let routes = e.items("routeSet").map { r -> EC2Route in
            var route = EC2Route()
            route.destinationCidrBlock = r.string("destinationCidrBlock")
            route.destinationIpv6CidrBlock = r.string("destinationIpv6CidrBlock")
            route.destinationPrefixListId = r.string("destinationPrefixListId")
            route.gatewayId = r.string("gatewayId")
            route.instanceId = r.string("instanceId")
            route.networkInterfaceId = r.string("networkInterfaceId")
            route.natGatewayId = r.string("natGatewayId")
            route.transitGatewayId = r.string("transitGatewayId")
            route.vpcPeeringConnectionId = r.string("vpcPeeringConnectionId")
            route.state = r.string("state")
            route.origin = r.string("origin")
            return route
        }
        let associations = e.items("associationSet").map { a in
            EC2RouteTableAssociation(id: a.string("routeTableAssociationId"), routeTableId: a.string("routeTableId"),
                                     subnetId: a.string("subnetId"), gatewayId: a.string("gatewayId"),
                                     main: a.string("main") == "true")
        }
        return EC2RouteTable(id: id, vpcId: e.string("vpcId"), routes: routes, associations: associations, tags: tags(e))
    }

    static func instance(_ e: XMLElement) -> EC2Instance? {
        guard let id = e.string("instanceId") else { return nil }
        return EC2Instance(
            id: id, state: e.child("instanceState")?.string("name"), privateIpAddress: e.string("privateIpAddress"),
            subnetId: e.string("subnetId"), vpcId: e.string("vpcId"),
            availabilityZone: e.child("placement")?.string("availabilityZone"),
            sourceDestCheck: e.string("sourceDestCheck").map { $0 == "true" },
            networkInterfaces: e.items("networkInterfaceSet").compactMap { n in
                n.string("networkInterfaceId").map {
                    EC2InstanceInterface(id: $0, deviceIndex: n.child("attachment")?.string("deviceIndex").flatMap { Int($0) },
                                         privateIpAddress: n.string("privateIpAddress"))
                }
            },
            tags: tags(e))
    }

    static func instanceStatus(_ e: XMLElement) -> EC2InstanceStatus? {
        guard let id = e.string("instanceId") else { return nil }
        return EC2InstanceStatus(
            instanceId: id, instanceStatus: e.child("instanceStatus")?.string("status"),
            systemStatus: e.child("systemStatus")?.string("status"),
            ebsStatus: e.child("attachedEbsStatus")?.string("status"),
            events: e.items("eventsSet").compactMap { ev in
                ev.string("code").map {
                    EC2ScheduledEvent(id: ev.string("instanceEventId"), code: $0, description: ev.string("description") ?? "",
                                      notBefore: ev.string("notBefore").flatMap(Self.timestamp),
                                      notAfter: ev.string("notAfter").flatMap(Self.timestamp))
                }
            })
    }

    static func address(_ e: XMLElement) -> EC2Address? {
        guard let id = e.string("allocationId"), let ip = e.string("publicIp") else { return nil }
        return EC2Address(allocationId: id, publicIp: ip, networkInterfaceId: e.string("networkInterfaceId"),
                          privateIpAddress: e.string("privateIpAddress"), instanceId: e.string("instanceId"),
                          associationId: e.string("associationId"))
    }

    /// EC2's ISO 8601 times, with or without fractional seconds.
    static func timestamp(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }

    static func networkInterface(_ e: XMLElement) -> EC2NetworkInterface? {
        guard let id = e.string("networkInterfaceId") else { return nil }
        return EC2NetworkInterface(
            id: id, subnetId: e.string("subnetId"), vpcId: e.string("vpcId"),
            availabilityZone: e.string("availabilityZone"), privateIpAddress: e.string("privateIpAddress"),
            status: e.string("status"), attachedInstanceId: e.child("attachment")?.string("instanceId"),
            sourceDestCheck: e.string("sourceDestCheck").map { $0 == "true" }, tags: tags(e))
    }
}
