import Logging
import NIOCore

/// One managed route: in `routeTableId`, traffic to `destination` goes to `target`.
public struct DesiredRoute: Sendable, Hashable, CustomStringConvertible {
    public var routeTableId: String
    public var destination: String
    public var target: RouteTarget

    public init(routeTableId: String, destination: String, target: RouteTarget) {
        self.routeTableId = routeTableId
        self.destination = destination
        self.target = target
    }

    public var description: String { "\(routeTableId) \(destination) → \(target)" }
}

public enum RouteEnsureOutcome: Sendable, CustomStringConvertible {
    case unchanged
    case created
    case replaced
    case failed(any Error)

    public var description: String {
        switch self {
        case .unchanged: return "unchanged"
        case .created: return "created"
        case .replaced: return "replaced"
        case .failed(let e): return "failed: \(e)"
        }
    }

    public var succeeded: Bool {
        if case .failed = self { return false }
        return true
    }
}

public enum RouteActuatorError: Error, Sendable, CustomStringConvertible {
    case routeTableNotFound(String)
    public var description: String {
        switch self {
        case .routeTableNotFound(let id): return "route table \(id) not found"
        }
    }
}

/// What the reconciler needs from EC2. Writes are idempotent: ensuring a route that is
/// already right makes no write at all.
public protocol RouteActuator: Sendable {
    /// The actual route tables, keyed by id; tables that do not exist are absent.
    func readRouteTables(_ ids: [String], deadline: NIODeadline) async throws -> [String: EC2RouteTable]
    /// Ensures every route; one outcome per route. Writes to different tables run in
    /// parallel within the rate budget. One failure does not stop the others.
    func ensureRoutes(_ routes: [DesiredRoute], fencing: FencingToken, deadline: NIODeadline) async throws -> [DesiredRoute: RouteEnsureOutcome]
    /// Writes one route without reading its table first: the caller planned it from a read
    /// it already made, and `exists` is what that read said about the static route. A table
    /// that changed since is handled by falling over from replace to create (or back) once.
    func writeRoute(_ route: DesiredRoute, exists: Bool, fencing: FencingToken, deadline: NIODeadline) async -> RouteEnsureOutcome
    /// Each interface's source/destination check, for the interfaces that exist.
    func sourceDestChecks(_ networkInterfaceIds: [String], deadline: NIODeadline) async throws -> [String: Bool]
    /// Turns an interface's source/destination check off; returns the request id.
    func disableSourceDestCheck(_ networkInterfaceId: String, fencing: FencingToken, deadline: NIODeadline) async throws -> String?
    /// Status checks and scheduled events per instance, for the instances that exist.
    func instanceStatuses(_ instanceIds: [String], deadline: NIODeadline) async throws -> [String: EC2InstanceStatus]
    /// The Elastic IPs with these allocation ids that exist.
    func addresses(_ allocationIds: [String], deadline: NIODeadline) async throws -> [String: EC2Address]
    /// Associates an Elastic IP with an interface; returns the request id.
    func associateAddress(_ allocationId: String, networkInterfaceId: String, privateIpAddress: String?,
                          fencing: FencingToken, deadline: NIODeadline) async throws -> String?
}

extension RouteActuator {
    public func ensureRoute(_ route: DesiredRoute, fencing: FencingToken, deadline: NIODeadline) async throws -> RouteEnsureOutcome {
        let outcomes = try await ensureRoutes([route], fencing: fencing, deadline: deadline)
        return outcomes[route] ?? .failed(RouteActuatorError.routeTableNotFound(route.routeTableId))
    }
}

public final class AWSRouteActuator: RouteActuator {
    let ec2: EC2Client
    let logger: Logger
    /// Bounds in-flight writes; the token buckets bound the rate.
    public let maxConcurrentWrites: Int
    /// Filter values per DescribeRouteTables call.
    static let describeChunk = 100

    public init(ec2: EC2Client, maxConcurrentWrites: Int = 16, logger: Logger = Logger(label: "switchman.actuators.routes")) {
        self.ec2 = ec2
        self.maxConcurrentWrites = max(1, maxConcurrentWrites)
        self.logger = logger
    }

    /// The distinct ids, sorted, in describe-sized chunks.
    static func chunks(_ ids: [String]) -> [[String]] {
        let unique = Array(Set(ids)).sorted()
        return stride(from: 0, to: unique.count, by: describeChunk).map { Array(unique[$0..<min($0 + describeChunk, unique.count)]) }
    }

    public func sourceDestChecks(_ networkInterfaceIds: [String], deadline: NIODeadline) async throws -> [String: Bool] {
        var out: [String: Bool] = [:]
        // By filter, not by id: one unknown id fails a by-id call as a whole
        // (InvalidNetworkInterfaceID.NotFound), and a replaced instance's old interface is gone.
        for chunk in Self.chunks(networkInterfaceIds) {
            let found = try await ec2.describeNetworkInterfaces(
                filters: [EC2Filter("network-interface-id", chunk)], deadline: deadline)
            for interface in found {
                if let check = interface.sourceDestCheck { out[interface.id] = check }
            }
        }
        return out
    }

    public func disableSourceDestCheck(_ networkInterfaceId: String, fencing: FencingToken, deadline: NIODeadline) async throws -> String? {
        try await ec2.modifySourceDestCheck(networkInterfaceId: networkInterfaceId, enabled: false, fencing: fencing, deadline: deadline)
    }

    public func instanceStatuses(_ instanceIds: [String], deadline: NIODeadline) async throws -> [String: EC2InstanceStatus] {
        var out: [String: EC2InstanceStatus] = [:]
        for chunk in Self.chunks(instanceIds) {
            do {
                for status in try await ec2.describeInstanceStatus(ids: chunk, deadline: deadline) { out[status.instanceId] = status }
            } catch let error as AWSError where error.code == "InvalidInstanceID.NotFound" && chunk.count > 1 {
                // DescribeInstanceStatus has no instance-id filter, and one id that is gone
                // fails the call as a whole: ask for each alone, leaving out the missing ones.
                for id in chunk {
                    do {
                        for status in try await ec2.describeInstanceStatus(ids: [id], deadline: deadline) { out[status.instanceId] = status }
                    } catch let error as AWSError where error.code == "InvalidInstanceID.NotFound" {
                        continue
                    }
                }
            }
        }
        return out
    }

    public func addresses(_ allocationIds: [String], deadline: NIODeadline) async throws -> [String: EC2Address] {
        var out: [String: EC2Address] = [:]
        for chunk in Self.chunks(allocationIds) {
            for address in try await ec2.describeAddresses(allocationIds: chunk, deadline: deadline) { out[address.allocationId] = address }
        }
        return out
    }

    public func associateAddress(_ allocationId: String, networkInterfaceId: String, privateIpAddress: String?,
                                 fencing: FencingToken, deadline: NIODeadline) async throws -> String? {
        let answer = try await ec2.associateAddress(allocationId: allocationId, networkInterfaceId: networkInterfaceId,
                                                    privateIpAddress: privateIpAddress, fencing: fencing, deadline: deadline)
        logger.info("elastic IP associated", metadata: [
            "allocation": "\(allocationId)", "eni": "\(networkInterfaceId)", "association": "\(answer.associationId ?? "none")",
            "fencing": "\(fencing)", "requestID": "\(answer.requestID ?? "none")",
        ])
        return answer.requestID
    }

    /// Chunks read side by side: one after another, a pass over 500 tables cost five call
    /// latencies before any route could move.
    static let readsInFlight = 4

    public func readRouteTables(_ ids: [String], deadline: NIODeadline) async throws -> [String: EC2RouteTable] {
        let chunks = Self.chunks(ids)
        return try await withThrowingTaskGroup(of: [EC2RouteTable].self) { group in
            var pending = chunks[...]
            var tables: [String: EC2RouteTable] = [:]
            func start(_ chunk: [String]) {
                group.addTask { try await self.ec2.describeRouteTables(filters: [EC2Filter("route-table-id", chunk)], deadline: deadline) }
            }
            for _ in 0..<Self.readsInFlight {
                guard let chunk = pending.popFirst() else { break }
                start(chunk)
            }
            while let part = try await group.next() {
                for table in part { tables[table.id] = table }
                if let chunk = pending.popFirst() { start(chunk) }
            }
            return tables
        }
    }

    public func ensureRoutes(_ routes: [DesiredRoute], fencing: FencingToken, deadline: NIODeadline) async throws -> [DesiredRoute: RouteEnsureOutcome] {
        let actual = try await readRouteTables(routes.map(\.routeTableId), deadline: deadline)
        var outcomes: [DesiredRoute: RouteEnsureOutcome] = [:]
        var writes: [(DesiredRoute, EC2Route?)] = []
        for route in routes {
            guard let table = actual[route.routeTableId] else {
                outcomes[route] = .failed(RouteActuatorError.routeTableNotFound(route.routeTableId))
                continue
            }
            let current = table.route(to: route.destination)
            if let current, current.points(to: route.target) {
                if current.state == "blackhole" {
                    logger.warning("route points at the desired target but is a blackhole", metadata: ["route": "\(route)"])
                }
                outcomes[route] = .unchanged
            } else {
                writes.append((route, current))
            }
        }
        // `write` reports failures as outcomes, so one bad route never cancels the others.
        await withTaskGroup(of: (DesiredRoute, RouteEnsureOutcome).self) { group in
            var pending = writes[...]
            func startNext() {
                guard let (route, current) = pending.popFirst() else { return }
                group.addTask { (route, await self.write(route, exists: current != nil, fencing: fencing, deadline: deadline)) }
            }
            for _ in 0..<maxConcurrentWrites { startNext() }
            while let (route, outcome) = await group.next() {
                outcomes[route] = outcome
                startNext()
            }
        }
        return outcomes
    }

    public func writeRoute(_ route: DesiredRoute, exists: Bool, fencing: FencingToken, deadline: NIODeadline) async -> RouteEnsureOutcome {
        await write(route, exists: exists, fencing: fencing, deadline: deadline)
    }

    /// Whether a ReplaceRoute failed because the table has no static route to replace. AWS
    /// answers InvalidParameterValue ("There is no route defined for '…' in the route table.
    /// Use CreateRoute instead."); InvalidRoute.NotFound is DeleteRoute's answer, accepted too.
    static func isMissingRoute(_ error: AWSError) -> Bool {
        if error.code == "InvalidRoute.NotFound" { return true }
        return error.code == "InvalidParameterValue" && error.message.lowercased().contains("no route defined")
    }

    /// Create if missing, replace if different. Each falls over to the other once when the
    /// table changed under us: RouteAlreadyExists (someone, or our own earlier attempt whose
    /// answer got lost, created it) → replace; no route to replace (deleted meanwhile, or only
    /// a propagated one) → create.
    private func write(_ route: DesiredRoute, exists: Bool, fencing: FencingToken, deadline: NIODeadline) async -> RouteEnsureOutcome {
        let first: RouteEnsureOutcome = exists ? .replaced : .created
        let fallback: RouteEnsureOutcome = exists ? .created : .replaced
        do {
            do {
                return try await perform(first, route, fencing, deadline)
            } catch let error as AWSError where exists ? Self.isMissingRoute(error) : error.code == "RouteAlreadyExists" {
                logger.info("route changed under us, ensuring the other way", metadata: [
                    "route": "\(route)", "code": "\(error.code)", "requestID": "\(error.requestID ?? "none")",
                    "afterRetry": "\(error.attempt > 1)",
                ])
            }
            return try await perform(fallback, route, fencing, deadline)
        } catch {
            logger.error("ensuring route failed", metadata: ["route": "\(route)", "error": "\(error)"])
            return .failed(error)
        }
    }

    /// Does `.created` (CreateRoute) or `.replaced` (ReplaceRoute) and returns it.
    private func perform(_ kind: RouteEnsureOutcome, _ route: DesiredRoute, _ fencing: FencingToken,
                         _ deadline: NIODeadline) async throws -> RouteEnsureOutcome {
        let requestID: String?
        if case .created = kind {
            requestID = try await ec2.createRoute(routeTableId: route.routeTableId, destination: route.destination,
                                                  target: route.target, fencing: fencing, deadline: deadline)
        } else {
            requestID = try await ec2.replaceRoute(routeTableId: route.routeTableId, destination: route.destination,
                                                   target: route.target, fencing: fencing, deadline: deadline)
        }
        logger.info("route \(kind)", metadata: [
            "route": "\(route)", "fencing": "\(fencing)", "requestID": "\(requestID ?? "none")",
        ])
        return kind
    }
}
