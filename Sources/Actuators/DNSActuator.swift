import Logging
import NIOCore

/// One managed record: `name` (type `type`) resolves to `values`.
public struct DesiredRecord: Sendable, Hashable, CustomStringConvertible {
    public var hostedZoneId: String
    public var name: String
    public var type: String
    public var ttl: Int
    public var values: [String]

    public init(hostedZoneId: String, name: String, type: String = "A", ttl: Int = 60, values: [String]) {
        self.hostedZoneId = hostedZoneId
        self.name = name
        self.type = type
        self.ttl = ttl
        self.values = values
    }

    public var description: String { "\(name) \(type) → \(values.joined(separator: ","))" }
}

public enum DNSEnsureOutcome: Sendable, Equatable {
    case unchanged
    /// `insync` is false when the deadline ended the GetChange poll before Route 53 said
    /// INSYNC; the change is accepted and will propagate regardless.
    case upserted(changeID: String, insync: Bool)
}

public protocol DNSActuator: Sendable {
    func readRecord(hostedZoneId: String, name: String, type: String, deadline: NIODeadline) async throws -> ResourceRecordSet?
    func ensureRecord(_ record: DesiredRecord, fencing: FencingToken, deadline: NIODeadline) async throws -> DNSEnsureOutcome
}

public final class AWSDNSActuator: DNSActuator {
    let route53: Route53Client
    let logger: Logger
    public let pollInterval: TimeAmount

    public init(route53: Route53Client, pollInterval: TimeAmount = .seconds(2),
                logger: Logger = Logger(label: "switchman.actuators.dns")) {
        self.route53 = route53
        self.pollInterval = pollInterval
        self.logger = logger
    }

    /// Route 53 names are absolute and case-insensitive.
    static func canonicalName(_ name: String) -> String {
        let lower = name.lowercased()
        return lower.hasSuffix(".") ? lower : lower + "."
    }

    public func readRecord(hostedZoneId: String, name: String, type: String, deadline: NIODeadline) async throws -> ResourceRecordSet? {
        let page = try await route53.listResourceRecordSetsPage(hostedZoneId: hostedZoneId, startName: name, startType: type,
                                                                maxItems: 1, deadline: deadline)
        // The list starts at (name, type) but returns the next record if that one is missing.
        return page.recordSets.first {
            Self.canonicalName($0.name) == Self.canonicalName(name) && $0.type == type && $0.setIdentifier == nil
        }
    }

    public func ensureRecord(_ record: DesiredRecord, fencing: FencingToken, deadline: NIODeadline) async throws -> DNSEnsureOutcome {
        if let current = try await readRecord(hostedZoneId: record.hostedZoneId, name: record.name, type: record.type, deadline: deadline),
           current.ttl == record.ttl, current.values.sorted() == record.values.sorted() {
            return .unchanged
        }
        let info = try await route53.changeResourceRecordSets(
            hostedZoneId: record.hostedZoneId,
            changes: [RecordChange(.upsert, ResourceRecordSet(name: record.name, type: record.type, ttl: record.ttl, values: record.values))],
            comment: "switchman \(fencing)", fencing: fencing, deadline: deadline)
        logger.info("record upserted", metadata: ["record": "\(record)", "change": "\(info.id)", "fencing": "\(fencing)"])
        if info.status == "INSYNC" { return .upserted(changeID: info.id, insync: true) }
        let final = try await route53.waitForInsync(changeID: info.id, pollInterval: pollInterval, deadline: deadline)
        return .upserted(changeID: info.id, insync: final.status == "INSYNC")
    }
}
