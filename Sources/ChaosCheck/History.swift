import Foundation

/// A managed route as the rig configured it.
public struct RouteSpec: Sendable, Hashable {
    public var table: String
    public var destination: String
    public var candidates: [String]

    public init(table: String, destination: String, candidates: [String]) {
        self.table = table
        self.destination = destination
        self.candidates = candidates
    }

    public var key: RouteKey { RouteKey(table: table, destination: destination) }
}

/// One route register: a (route table, destination CIDR) pair.
public struct RouteKey: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var table: String
    public var destination: String

    public init(table: String, destination: String) {
        self.table = table
        self.destination = destination
    }

    public static func < (a: RouteKey, b: RouteKey) -> Bool { (a.table, a.destination) < (b.table, b.destination) }
    public var description: String { "\(table) \(destination)" }
}

public struct FlappingWindow: Sendable, Hashable {
    public var tunnel: String
    public var fromMonoNs: Int64
    public var toMonoNs: Int64

    public init(tunnel: String, fromMonoNs: Int64, toMonoNs: Int64) {
        self.tunnel = tunnel
        self.fromMonoNs = fromMonoNs
        self.toMonoNs = toMonoNs
    }
}

public struct FinalRoute: Sendable, Hashable {
    public var table: String
    public var destination: String
    /// nil when the route is gone or has another kind of target.
    public var eni: String?

    public init(table: String, destination: String, eni: String?) {
        self.table = table
        self.destination = destination
        self.eni = eni
    }

    public var key: RouteKey { RouteKey(table: table, destination: destination) }
}

/// meta.json.
public struct RunMeta: Sendable {
    public var scenario: String
    public var seed: Int64
    public var replicas: [Int]
    public var finalMembers: [Int]
    public var fakedClock: Set<Int>
    public var enis: [String: String]
    public var routes: [RouteSpec]
    public var probeIntervalMs: Int64?
    public var fall: Int64?
    public var rise: Int64?
    public var holdDownMs: Int64
    public var electionTimeoutMs: Int64?
    public var lockDelayMs: Int64?
    public var startMonoNs: Int64
    public var healedMonoNs: Int64
    public var endMonoNs: Int64
    public var convergenceBoundMs: Int64
    public var convergedMonoNs: Int64?
    public var healthyAtEnd: Set<String>
    public var flapping: [FlappingWindow]
    public var finalRoutes: [FinalRoute]
    /// The replicas' `aws.consistencyWindow` (default 5 s): no route is rewritten to the same
    /// target by the same term inside it.
    public var consistencyWindowMs: Int64 = 5000

    public init(
        scenario: String, seed: Int64, replicas: [Int], finalMembers: [Int], fakedClock: Set<Int> = [],
        enis: [String: String], routes: [RouteSpec], probeIntervalMs: Int64? = nil, fall: Int64? = nil,
        rise: Int64? = nil, holdDownMs: Int64, electionTimeoutMs: Int64? = nil, lockDelayMs: Int64? = nil,
        startMonoNs: Int64, healedMonoNs: Int64, endMonoNs: Int64, convergenceBoundMs: Int64,
        convergedMonoNs: Int64?, healthyAtEnd: Set<String>, flapping: [FlappingWindow] = [], finalRoutes: [FinalRoute]
    ) {
        self.scenario = scenario
        self.seed = seed
        self.replicas = replicas
        self.finalMembers = finalMembers
        self.fakedClock = fakedClock
        self.enis = enis
        self.routes = routes
        self.probeIntervalMs = probeIntervalMs
        self.fall = fall
        self.rise = rise
        self.holdDownMs = holdDownMs
        self.electionTimeoutMs = electionTimeoutMs
        self.lockDelayMs = lockDelayMs
        self.startMonoNs = startMonoNs
        self.healedMonoNs = healedMonoNs
        self.endMonoNs = endMonoNs
        self.convergenceBoundMs = convergenceBoundMs
        self.convergedMonoNs = convergedMonoNs
        self.healthyAtEnd = healthyAtEnd
        self.flapping = flapping
        self.finalRoutes = finalRoutes
    }
}

/// One route of a DescribeRouteTables answer.
public struct ObservedRoute: Sendable, Hashable {
    public var table: String
    public var destination: String
    public var eni: String?
    public var state: String?
    /// `CreateRoute`, `CreateRouteTable`, `EnableVgwRoutePropagation`; nil in older logs.
    public var origin: String?

    public init(table: String, destination: String, eni: String?, state: String? = nil, origin: String? = nil) {
        self.table = table
        self.destination = destination
        self.eni = eni
        self.state = state
        self.origin = origin
    }

    /// The route a replica manages: not a propagated one, not the VPC's local one.
    public var isStatic: Bool { origin == nil || origin == "CreateRoute" }
}

/// A request through the recording proxy joined with its response line, if it had one.
public struct ProxyCall: Sendable {
    public var seq: Int64
    /// 1-based line of the request in proxy.jsonl, for messages.
    public var line: Int
    public var monoNs: Int64
    public var action: String
    public var node: Int?
    public var term: Int64?
    public var index: Int64?
    public var table: String?
    public var destination: String?
    public var eni: String?
    public var fault: String?
    public var doneNs: Int64?
    public var status: Int?
    public var routes: [ObservedRoute]?
    /// The realism modes (bench/proxy.py) that shaped the answer. A read rewritten by
    /// `consistency` shows the past on purpose, as AWS may: it is not a read of the present.
    public var realism: [String] = []
    /// `SourceDestCheck.Value` of a ModifyNetworkInterfaceAttribute.
    public var sourceDestCheck: String? = nil

    public init(
        seq: Int64, line: Int = 0, monoNs: Int64, action: String, node: Int? = nil, term: Int64? = nil,
        index: Int64? = nil, table: String? = nil, destination: String? = nil, eni: String? = nil,
        fault: String? = nil, doneNs: Int64? = nil, status: Int? = nil, routes: [ObservedRoute]? = nil
    ) {
        self.seq = seq
        self.line = line
        self.monoNs = monoNs
        self.action = action
        self.node = node
        self.term = term
        self.index = index
        self.table = table
        self.destination = destination
        self.eni = eni
        self.fault = fault
        self.doneNs = doneNs
        self.status = status
        self.routes = routes
    }

    public static let routeWriteActions: Set<String> = ["ReplaceRoute", "CreateRoute", "DeleteRoute"]

    public var isRouteWrite: Bool { Self.routeWriteActions.contains(action) }
    public var isWrite: Bool { isRouteWrite || action.hasPrefix("route53 POST") }
    public var isRouteRead: Bool { action == "DescribeRouteTables" }

    /// throttle and error500 are answered by the proxy itself: the request never reached moto.
    public var answeredByProxy: Bool { fault == "throttle" || fault == "error500" }

    public enum Effect: Sendable { case applied, notApplied, unknown }

    /// Whether the request changed moto's state, as far as the recording can tell.
    public var effect: Effect {
        if answeredByProxy { return .notApplied }
        guard let status else { return .unknown }
        return (200..<300).contains(status) ? .applied : .notApplied
    }

    public var routeKey: RouteKey? {
        guard let table, let destination else { return nil }
        return RouteKey(table: table, destination: destination)
    }

    public var token: WriteToken? {
        guard let term, let index, term >= 0, index >= 0 else { return nil }
        return WriteToken(term: UInt64(term), index: UInt64(index))
    }

    public var summary: String {
        var s = "seq \(seq) \(action)"
        if let node { s += " node \(node)" }
        if let term { s += " term \(term)" }
        if let index { s += " index \(index)" }
        if let key = routeKey { s += " \(key)" }
        if let eni { s += " -> \(eni)" }
        return s
    }
}

/// One line of a replica's log.
public struct LogLine: Sendable {
    public var line: Int
    public var tsMs: Double?
    public var monoNs: Int64
    public var level: String?
    public var label: String?
    public var msg: String
    public var meta: [String: String]

    public init(line: Int = 0, tsMs: Double? = nil, monoNs: Int64, level: String? = nil, label: String? = nil, msg: String, meta: [String: String] = [:]) {
        self.line = line
        self.tsMs = tsMs
        self.monoNs = monoNs
        self.level = level
        self.label = label
        self.msg = msg
        self.meta = meta
    }

    func int(_ key: String) -> Int64? { meta[key].flatMap { JSONFields.int($0) } }
}

public struct FaultEvent: Sendable {
    public var monoNs: Int64
    public var event: String
    public var fault: String
    public var detail: String?

    public init(monoNs: Int64, event: String, fault: String, detail: String? = nil) {
        self.monoNs = monoNs
        self.event = event
        self.fault = fault
        self.detail = detail
    }
}

/// Everything one run directory recorded.
public struct RunHistory: Sendable {
    public var meta: RunMeta
    /// In arrival order (the proxy writes the request line on arrival).
    public var proxy: [ProxyCall]
    /// Replica id to its log lines, in file order (restarts append).
    public var replicas: [Int: [LogLine]]
    public var faults: [FaultEvent]
    /// File name to the number of cut-off lines skipped (a process killed mid-line).
    public var truncatedLines: [String: Int]
    /// Response lines whose request was never recorded.
    public var orphanResponses: Int

    public init(
        meta: RunMeta, proxy: [ProxyCall], replicas: [Int: [LogLine]], faults: [FaultEvent] = [],
        truncatedLines: [String: Int] = [:], orphanResponses: Int = 0
    ) {
        self.meta = meta
        self.proxy = proxy
        self.replicas = replicas
        self.faults = faults
        self.truncatedLines = truncatedLines
        self.orphanResponses = orphanResponses
    }

    public var routeKeys: [RouteKey] {
        var keys = Set(meta.routes.map(\.key))
        for c in proxy where c.isRouteWrite { if let k = c.routeKey { keys.insert(k) } }
        return keys.sorted()
    }
}
