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
    /// The records of one zone named in `names` (of `type`), keyed by canonical name (lower
    /// case, with the final dot); a name missing from the result has no such record.
    func readRecords(hostedZoneId: String, names: [String], type: String, deadline: NIODeadline) async throws -> [String: ResourceRecordSet]
    /// Upserts `records`, all of one hosted zone, in one ChangeBatch without reading them
    /// first (the caller's read planned the write). Route 53 applies a batch whole or not at
    /// all, so a refusal means none of the records changed.
    func writeRecords(_ records: [DesiredRecord], fencing: FencingToken, deadline: NIODeadline) async throws -> DNSEnsureOutcome
}

/// What a batch cannot be asked to do.
public enum DNSBatchError: Error, Equatable, CustomStringConvertible {
    case empty
    case severalZones([String])
    case tooLarge(Int)

    public var description: String {
        switch self {
        case .empty: return "a DNS batch with no records"
        case .severalZones(let zones): return "a DNS batch for several hosted zones: \(zones.joined(separator: ", "))"
        case .tooLarge(let n): return "a DNS batch of \(n) upserts; Route 53 takes at most \(AWSDNSActuator.maxUpsertsPerBatch)"
        }
    }
}

extension DNSActuator {
    /// One read per name.
    public func readRecords(hostedZoneId: String, names: [String], type: String, deadline: NIODeadline) async throws -> [String: ResourceRecordSet] {
        var found: [String: ResourceRecordSet] = [:]
        var seen = Set<String>()
        for name in names where seen.insert(canonicalRecordName(name)).inserted {
            if let record = try await readRecord(hostedZoneId: hostedZoneId, name: name, type: type, deadline: deadline) {
                found[canonicalRecordName(name)] = record
            }
        }
        return found
    }
}

/// Route 53 names are absolute and case-insensitive.
public func canonicalRecordName(_ name: String) -> String {
    let lower = name.lowercased()
    return lower.hasSuffix(".") ? lower : lower + "."
}

public final class AWSDNSActuator: DNSActuator {
    let route53: Route53Client
    let logger: Logger
    public let pollInterval: TimeAmount
    /// Records per ListResourceRecordSets page when reading a zone (Route 53 returns at most
    /// 300).
    public let zonePageSize: Int

    public init(route53: Route53Client, pollInterval: TimeAmount = .seconds(2), zonePageSize: Int = 300,
                logger: Logger = Logger(label: "switchman.actuators.dns")) {
        self.route53 = route53
        self.pollInterval = pollInterval
        self.zonePageSize = max(1, min(zonePageSize, 300))
        self.logger = logger
    }

    public func readRecord(hostedZoneId: String, name: String, type: String, deadline: NIODeadline) async throws -> ResourceRecordSet? {
        let page = try await route53.listResourceRecordSetsPage(hostedZoneId: hostedZoneId, startName: name, startType: type,
                                                                maxItems: 1, deadline: deadline)
        // The list starts at (name, type) but returns the next record if that one is missing.
        return page.recordSets.first {
            canonicalRecordName($0.name) == canonicalRecordName(name) && $0.type == type && $0.setIdentifier == nil
        }
    }

    /// Pages through the zone instead of one call per name: Route 53 allows 5 calls a second
    /// per account, and a zone of a few dozen records fits one page. The listing stops after
    /// half as many pages as names (a zone much bigger than what we manage) and reads the
    /// names it has not met one by one, so it never costs much more than reading each.
    public func readRecords(hostedZoneId: String, names: [String], type: String, deadline: NIODeadline) async throws -> [String: ResourceRecordSet] {
        let wanted = Set(names.map(canonicalRecordName))
        var found: [String: ResourceRecordSet] = [:]
        var next: (name: String, type: String?, identifier: String?)? = nil
        // One name is one read either way: no listing then.
        for _ in 0..<(wanted.count > 1 ? max(1, wanted.count / 2) : 0) {
            let page = try await route53.listResourceRecordSetsPage(
                hostedZoneId: hostedZoneId, startName: next?.name, startType: next?.type, startIdentifier: next?.identifier,
                maxItems: zonePageSize, deadline: deadline)
            for record in page.recordSets where record.type == type && record.setIdentifier == nil {
                let name = canonicalRecordName(record.name)
                if wanted.contains(name) { found[name] = record }
            }
            // The whole zone has been seen: a name not found has no record.
            guard page.isTruncated, let nextName = page.nextRecordName else { return found }
            next = (nextName, page.nextRecordType, page.nextRecordIdentifier)
        }
        for name in wanted where found[name] == nil {
            if let record = try await readRecord(hostedZoneId: hostedZoneId, name: name, type: type, deadline: deadline) {
                found[name] = record
            }
        }
        return found
    }

    /// Route 53 counts an UPSERT twice against its 1,000 ResourceRecord elements per batch,
    /// and each of our records has one value.
    public static let maxUpsertsPerBatch = 500

    /// Reads the record and upserts it only when it differs.
    public func ensureRecord(_ record: DesiredRecord, fencing: FencingToken, deadline: NIODeadline) async throws -> DNSEnsureOutcome {
        if let current = try await readRecord(hostedZoneId: record.hostedZoneId, name: record.name, type: record.type, deadline: deadline),
           current.ttl == record.ttl, current.values.sorted() == record.values.sorted() {
            return .unchanged
        }
        return try await writeRecords([record], fencing: fencing, deadline: deadline)
    }

    public func writeRecords(_ records: [DesiredRecord], fencing: FencingToken, deadline: NIODeadline) async throws -> DNSEnsureOutcome {
        guard let zone = records.first?.hostedZoneId else { throw DNSBatchError.empty }
        let zones = Set(records.map(\.hostedZoneId))
        guard zones.count == 1 else { throw DNSBatchError.severalZones(zones.sorted()) }
        guard records.count <= Self.maxUpsertsPerBatch else { throw DNSBatchError.tooLarge(records.count) }
        let info = try await route53.changeResourceRecordSets(
            hostedZoneId: zone,
            changes: records.map { RecordChange(.upsert, ResourceRecordSet(name: $0.name, type: $0.type, ttl: $0.ttl, values: $0.values)) },
            comment: "switchman \(fencing)", fencing: fencing, deadline: deadline)
        logger.info("records upserted", metadata: [
            "zone": "\(zone)", "records": "\(records.map(\.description).joined(separator: "; "))",
            "change": "\(info.id)", "fencing": "\(fencing)",
        ])
        if info.status == "INSYNC" { return .upserted(changeID: info.id, insync: true) }
        let final = try await route53.waitForInsync(changeID: info.id, pollInterval: pollInterval, deadline: deadline)
        return .upserted(changeID: info.id, insync: final.status == "INSYNC")
    }
}
