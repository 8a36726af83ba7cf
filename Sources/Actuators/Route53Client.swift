import AsyncHTTPClient
import Logging
import NIOCore
import NIOHTTP1

public struct ResourceRecordSet: Sendable, Hashable {
    public var name: String
    public var type: String
    public var ttl: Int?
    public var values: [String]
    public var setIdentifier: String?

    public init(name: String, type: String, ttl: Int?, values: [String], setIdentifier: String? = nil) {
        self.name = name
        self.type = type
        self.ttl = ttl
        self.values = values
        self.setIdentifier = setIdentifier
    }
}

public struct RecordChange: Sendable, Hashable {
    public enum Action: String, Sendable { case create = "CREATE", delete = "DELETE", upsert = "UPSERT" }
    public var action: Action
    public var recordSet: ResourceRecordSet
    public init(_ action: Action, _ recordSet: ResourceRecordSet) {
        self.action = action
        self.recordSet = recordSet
    }
}

public struct ChangeInfo: Sendable, Hashable {
    public var id: String
    /// `PENDING` or `INSYNC`.
    public var status: String
    public var submittedAt: String?
}

public struct RecordSetPage: Sendable {
    public var recordSets: [ResourceRecordSet]
    public var isTruncated: Bool
    public var nextRecordName: String?
    public var nextRecordType: String?
    public var nextRecordIdentifier: String?
}

/// Route 53 REST API (version 2013-04-01). Route 53 is global: it is signed for us-east-1.
public final class Route53Client: Sendable {
    public static let apiVersion = "2013-04-01"
    static let xmlns = "https://route53.amazonaws.com/doc/2013-04-01/"
    let transport: AWSTransport

    public init(
        configuration: AWSClientConfiguration,
        credentials: any CredentialsSource,
        httpClient: HTTPClient = .shared,
        rateLimiter: RateLimiter = RateLimiter(),
        logger: Logger = Logger(label: "switchman.actuators.route53")
    ) {
        // Route 53 is global within a partition: one endpoint, signed for one Region, whatever
        // Region the configuration names (its partition picks which).
        let home = AWSPartition(region: configuration.region).route53(fips: configuration.fips)
        transport = AWSTransport(
            service: "route53", signingRegion: home.signingRegion, defaultEndpoint: home.endpoint,
            configuration: configuration, credentials: credentials,
            httpClient: httpClient, limiter: rateLimiter, logger: logger)
    }

    /// Accepts `Z123` or `/hostedzone/Z123`.
    static func bareID(_ id: String, prefix: String) -> String {
        id.hasPrefix(prefix) ? String(id.dropFirst(prefix.count)) : id
    }

    /// Applies a batch atomically. UPSERT-only batches are retried on ambiguous failures
    /// (repeating them is harmless); batches with CREATE or DELETE only on throttling.
    public func changeResourceRecordSets(hostedZoneId: String, changes: [RecordChange], comment: String? = nil,
                                         fencing: FencingToken, deadline: NIODeadline? = nil) async throws -> ChangeInfo {
        let zone = Self.bareID(hostedZoneId, prefix: "/hostedzone/")
        let idempotency: Idempotency = changes.allSatisfy { $0.action == .upsert } ? .safe : .unsafe
        let op = AWSOperation(
            action: "ChangeResourceRecordSets", method: .POST,
            path: "/\(Self.apiVersion)/hostedzone/\(zone)/rrset/",
            headers: [("Content-Type", "application/xml")],
            body: Array(Self.changeBatchXML(changes, comment: comment).utf8),
            idempotency: idempotency, fencing: fencing)
        let root = try XMLElement.parse(try await transport.send(op, deadline: deadline).body)
        return try Self.changeInfo(root)
    }

    public func getChange(id: String, deadline: NIODeadline? = nil) async throws -> ChangeInfo {
        let op = AWSOperation(action: "GetChange", method: .GET,
                              path: "/\(Self.apiVersion)/change/\(Self.bareID(id, prefix: "/change/"))",
                              idempotency: .safe)
        let root = try XMLElement.parse(try await transport.send(op, deadline: deadline).body)
        return try Self.changeInfo(root)
    }

    /// Polls GetChange until INSYNC, at most until `deadline`. Returns the last status seen;
    /// the change stays applied either way, so giving up only means "not confirmed yet".
    public func waitForInsync(changeID: String, pollInterval: TimeAmount = .seconds(2),
                              deadline: NIODeadline) async throws -> ChangeInfo {
        while true {
            let info = try await getChange(id: changeID, deadline: deadline)
            if info.status == "INSYNC" { return info }
            if NIODeadline.now() + pollInterval >= deadline { return info }
            try await Task.sleep(nanoseconds: UInt64(pollInterval.nanoseconds))
        }
    }

    public func listResourceRecordSetsPage(
        hostedZoneId: String, startName: String? = nil, startType: String? = nil, startIdentifier: String? = nil,
        maxItems: Int? = nil, deadline: NIODeadline? = nil
    ) async throws -> RecordSetPage {
        var query: [(name: String, value: String)] = []
        if let startName { query.append(("name", startName)) }
        if let startType { query.append(("type", startType)) }
        if let startIdentifier { query.append(("identifier", startIdentifier)) }
        if let maxItems { query.append(("maxitems", String(maxItems))) }
        let zone = Self.bareID(hostedZoneId, prefix: "/hostedzone/")
        let op = AWSOperation(action: "ListResourceRecordSets", method: .GET,
                              path: "/\(Self.apiVersion)/hostedzone/\(zone)/rrset", query: query, idempotency: .safe)
        let root = try XMLElement.parse(try await transport.send(op, deadline: deadline).body)
        return Self.recordSetPage(root)
    }

    /// Every record set in the zone, following the Next* markers.
    public func listResourceRecordSets(hostedZoneId: String, deadline: NIODeadline? = nil) async throws -> [ResourceRecordSet] {
        var all: [ResourceRecordSet] = []
        var next: (String?, String?, String?) = (nil, nil, nil)
        while true {
            let page = try await listResourceRecordSetsPage(hostedZoneId: hostedZoneId, startName: next.0,
                                                            startType: next.1, startIdentifier: next.2, deadline: deadline)
            all += page.recordSets
            guard page.isTruncated, page.nextRecordName != nil else { return all }
            next = (page.nextRecordName, page.nextRecordType, page.nextRecordIdentifier)
        }
    }

    // MARK: XML

    static func changeBatchXML(_ changes: [RecordChange], comment: String?) -> String {
        var x = #"<?xml version="1.0" encoding="UTF-8"?>"#
        x += #"<ChangeResourceRecordSetsRequest xmlns="\#(xmlns)"><ChangeBatch>"#
        if let comment { x += "<Comment>\(xmlEscape(comment))</Comment>" }
        x += "<Changes>"
        for change in changes {
            let r = change.recordSet
            x += "<Change><Action>\(change.action.rawValue)</Action><ResourceRecordSet>"
            x += "<Name>\(xmlEscape(r.name))</Name><Type>\(xmlEscape(r.type))</Type>"
            if let id = r.setIdentifier { x += "<SetIdentifier>\(xmlEscape(id))</SetIdentifier>" }
            if let ttl = r.ttl { x += "<TTL>\(ttl)</TTL>" }
            x += "<ResourceRecords>"
            for v in r.values { x += "<ResourceRecord><Value>\(xmlEscape(v))</Value></ResourceRecord>" }
            x += "</ResourceRecords></ResourceRecordSet></Change>"
        }
        x += "</Changes></ChangeBatch></ChangeResourceRecordSetsRequest>"
        return x
    }

    static func changeInfo(_ root: XMLElement) throws -> ChangeInfo {
        guard let info = root.find("ChangeInfo"), let id = info.string("Id"), let status = info.string("Status") else {
            throw AWSClientError.invalidResponse("no ChangeInfo in \(root.name)")
        }
        return ChangeInfo(id: bareID(id, prefix: "/change/"), status: status, submittedAt: info.string("SubmittedAt"))
    }

    static func recordSetPage(_ root: XMLElement) -> RecordSetPage {
        let sets = (root.child("ResourceRecordSets")?.all("ResourceRecordSet") ?? []).compactMap { e -> ResourceRecordSet? in
            guard let name = e.string("Name"), let type = e.string("Type") else { return nil }
            let values = (e.child("ResourceRecords")?.all("ResourceRecord") ?? []).compactMap { $0.child("Value")?.text }
            return ResourceRecordSet(name: name, type: type, ttl: e.string("TTL").flatMap { Int($0) },
                                     values: values, setIdentifier: e.string("SetIdentifier"))
        }
        return RecordSetPage(recordSets: sets, isTruncated: root.string("IsTruncated") == "true",
                             nextRecordName: root.string("NextRecordName"), nextRecordType: root.string("NextRecordType"),
                             nextRecordIdentifier: root.string("NextRecordIdentifier"))
    }
}
