import Foundation

/// What `GET /v1/verdict` answers; docs/SENTINEL.md documents every field. Field names are
/// part of the wire contract between sentinels and replicas of different versions: add
/// fields, never rename or remove them.
public struct SentinelReport: Sendable, Equatable, Codable {
    public static let version = "1"

    public var tunnel: String
    /// The latest round's verdict; `false` before the first round has finished.
    public var healthy: Bool
    /// Consecutive healthy rounds up to and including the latest (0 if it was unhealthy).
    public var healthyRun: Int
    /// Consecutive unhealthy rounds up to and including the latest (0 if it was healthy).
    public var unhealthyRun: Int
    /// Rounds finished since the sentinel started; 0 means no verdict yet.
    public var round: Int
    /// When the latest round finished (sentinel's wall clock); `nil` before the first.
    public var checkedAt: Date?
    /// `all` or `any`.
    public var require: String
    /// The latest round's targets, in config order.
    public var targets: [SentinelTargetReport]
    /// The last rounds, oldest first, newest (= the latest round) last.
    public var history: [SentinelRound]
    /// The EC2 instance the sentinel runs on (IMDSv2, `--instance-id` or
    /// `SWITCHMAN_INSTANCE_ID`); `null` when it could not tell. Replicas count the verdict for
    /// a tunnel only while this is the tunnel's current instance. Absent from sentinels
    /// before issue #16.
    public var instanceId: String?

    public init(
        tunnel: String, healthy: Bool, healthyRun: Int, unhealthyRun: Int, round: Int, checkedAt: Date?, require: String,
        targets: [SentinelTargetReport], history: [SentinelRound], instanceId: String? = nil
    ) {
        self.tunnel = tunnel
        self.healthy = healthy
        self.healthyRun = healthyRun
        self.unhealthyRun = unhealthyRun
        self.round = round
        self.checkedAt = checkedAt
        self.require = require
        self.targets = targets
        self.history = history
        self.instanceId = instanceId
    }

    enum CodingKeys: String, CodingKey {
        case tunnel, healthy, healthyRun, unhealthyRun, round, checkedAt, require, targets, history, instanceId
    }

    // Written out so absent values are explicit `null`s: the shape of the document never
    // depends on the answer.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(tunnel, forKey: .tunnel)
        try c.encode(healthy, forKey: .healthy)
        try c.encode(healthyRun, forKey: .healthyRun)
        try c.encode(unhealthyRun, forKey: .unhealthyRun)
        try c.encode(round, forKey: .round)
        try c.encode(checkedAt, forKey: .checkedAt)
        try c.encode(require, forKey: .require)
        try c.encode(targets, forKey: .targets)
        try c.encode(history, forKey: .history)
        try c.encode(instanceId, forKey: .instanceId)
    }

    /// The encoder both ends use: ISO 8601 times, sorted keys (stable output for diffs).
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}

/// One target's answer in one round.
public struct SentinelTargetReport: Sendable, Equatable, Codable {
    /// As written in the config: `10.1.0.10`, `10.1.0.10:443`, `http://10.1.0.10/health`.
    public var target: String
    /// `icmp`, `tcp` or `http`.
    public var kind: String
    public var ok: Bool
    /// Milliseconds, microsecond precision; `null` when the target did not answer.
    public var rttMillis: Double?
    /// Why it did not answer; `null` when `ok`.
    public var error: String?

    public init(target: String, kind: String, ok: Bool, rttMillis: Double?, error: String?) {
        self.target = target
        self.kind = kind
        self.ok = ok
        self.rttMillis = rttMillis
        self.error = error
    }

    public init(_ outcome: ProbeOutcome) {
        self.init(
            target: outcome.target.target, kind: outcome.target.kind, ok: outcome.ok,
            rttMillis: outcome.rtt.map(Self.millis), error: outcome.error)
    }

    static func millis(_ d: Duration) -> Double {
        let (seconds, attoseconds) = d.components
        let micros = Double(seconds) * 1_000_000 + Double(attoseconds / 1_000_000_000_000)
        return micros / 1000
    }

    enum CodingKeys: String, CodingKey { case target, kind, ok, rttMillis, error }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(target, forKey: .target)
        try c.encode(kind, forKey: .kind)
        try c.encode(ok, forKey: .ok)
        try c.encode(rttMillis, forKey: .rttMillis)
        try c.encode(error, forKey: .error)
    }
}

/// One finished round, as kept in the history.
public struct SentinelRound: Sendable, Equatable, Codable {
    public var round: Int
    public var checkedAt: Date
    public var healthy: Bool
    public var targets: [SentinelTargetReport]

    public init(round: Int, checkedAt: Date, healthy: Bool, targets: [SentinelTargetReport]) {
        self.round = round
        self.checkedAt = checkedAt
        self.healthy = healthy
        self.targets = targets
    }
}

/// The sentinel's memory: run counters and a bounded history. A plain value, so the round
/// logic is tested without clocks or sockets.
public struct SentinelRecorder: Sendable, Equatable {
    public let tunnel: String
    public let requirement: ProbeRequirement
    public let historyLimit: Int
    public private(set) var round = 0
    public private(set) var healthyRun = 0
    public private(set) var unhealthyRun = 0
    /// Oldest first. An array with `removeFirst` is fine at this size (120 × a few targets).
    public private(set) var history: [SentinelRound] = []

    public static let defaultHistoryLimit = 120

    /// The instance this sentinel runs on, as it learned it at start.
    public let instanceId: String?

    public init(tunnel: String, requirement: ProbeRequirement, historyLimit: Int = SentinelRecorder.defaultHistoryLimit,
                instanceId: String? = nil) {
        self.instanceId = instanceId
        self.tunnel = tunnel
        self.requirement = requirement
        self.historyLimit = max(1, historyLimit)
    }

    /// A round is healthy when every target (`all`) or at least one (`any`) answered. A
    /// round with no targets is unhealthy: nothing vouched for the tunnel.
    public static func isHealthy(_ outcomes: [ProbeOutcome], requirement: ProbeRequirement) -> Bool {
        guard !outcomes.isEmpty else { return false }
        switch requirement {
        case .all: return outcomes.allSatisfy(\.ok)
        case .any: return outcomes.contains(where: \.ok)
        }
    }

    @discardableResult
    public mutating func record(_ outcomes: [ProbeOutcome], at time: Date) -> SentinelRound {
        let healthy = Self.isHealthy(outcomes, requirement: requirement)
        round += 1
        if healthy {
            healthyRun += 1
            unhealthyRun = 0
        } else {
            unhealthyRun += 1
            healthyRun = 0
        }
        let entry = SentinelRound(round: round, checkedAt: time, healthy: healthy, targets: outcomes.map(SentinelTargetReport.init))
        history.append(entry)
        if history.count > historyLimit { history.removeFirst(history.count - historyLimit) }
        return entry
    }

    public var report: SentinelReport {
        let latest = history.last
        return SentinelReport(
            tunnel: tunnel, healthy: latest?.healthy ?? false, healthyRun: healthyRun, unhealthyRun: unhealthyRun, round: round,
            checkedAt: latest?.checkedAt, require: requirement.rawValue, targets: latest?.targets ?? [], history: history,
            instanceId: instanceId)
    }
}
