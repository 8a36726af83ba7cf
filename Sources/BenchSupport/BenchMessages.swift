import Foundation

/// The body of `POST /propose`, shaped like etcd's v3 JSON gateway `PUT` so both clusters
/// parse the same kind of request: key and value are base64.
public struct PutRequest: Codable, Sendable, Equatable {
    public var key: String
    public var value: String

    public init(key: [UInt8], value: [UInt8]) {
        self.key = Data(key).base64EncodedString()
        self.value = Data(value).base64EncodedString()
    }

    public func decoded() throws -> (key: [UInt8], value: [UInt8]) {
        guard let k = Data(base64Encoded: key), let v = Data(base64Encoded: value) else {
            throw BenchMessageError.invalidBase64
        }
        return (Array(k), Array(v))
    }

    public static func parse(_ body: [UInt8]) throws -> PutRequest {
        do {
            return try JSONDecoder().decode(PutRequest.self, from: Data(body))
        } catch {
            throw BenchMessageError.malformedJSON("\(error)")
        }
    }

    public func encoded() -> [UInt8] { encodeJSON(self) }
}

/// `200 OK` for a committed proposal.
public struct ProposeResponse: Codable, Sendable, Equatable {
    public var index: UInt64
    public init(index: UInt64) { self.index = index }
}

/// `503` from a replica that is not the leader; `leader` is 0 when it knows none.
public struct NotLeaderResponse: Codable, Sendable, Equatable {
    public var leader: UInt64
    public init(leader: UInt64) { self.leader = leader }
}

public struct ErrorResponse: Codable, Sendable, Equatable {
    public var error: String
    public init(error: String) { self.error = error }
}

/// `GET /status` of a bench node. The counters come from the node's swift-metrics: each
/// durable write `RaftNode` makes is one fsync with LMDB, and each proposal batch is one
/// log append, so their ratio says how well group commit works under load.
public struct NodeStatusResponse: Codable, Sendable, Equatable {
    public var id: UInt64
    public var role: String
    public var term: UInt64
    public var leader: UInt64
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    public var storage: String
    public var durableWrites: UInt64
    public var durableWriteSeconds: Double
    public var proposalBatches: UInt64
    public var batchedProposals: UInt64

    public init(
        id: UInt64, role: String, term: UInt64, leader: UInt64, commitIndex: UInt64, appliedIndex: UInt64,
        storage: String, durableWrites: UInt64, durableWriteSeconds: Double, proposalBatches: UInt64,
        batchedProposals: UInt64
    ) {
        self.id = id
        self.role = role
        self.term = term
        self.leader = leader
        self.commitIndex = commitIndex
        self.appliedIndex = appliedIndex
        self.storage = storage
        self.durableWrites = durableWrites
        self.durableWriteSeconds = durableWriteSeconds
        self.proposalBatches = proposalBatches
        self.batchedProposals = batchedProposals
    }
}

public enum BenchMessageError: Error, Equatable, CustomStringConvertible {
    case invalidBase64
    case malformedJSON(String)
    case truncatedEntry

    public var description: String {
        switch self {
        case .invalidBase64: return "key or value is not valid base64"
        case .malformedJSON(let why): return "malformed JSON: \(why)"
        case .truncatedEntry: return "log entry shorter than its key length says"
        }
    }
}

public func encodeJSON<T: Encodable>(_ value: T) -> [UInt8] {
    // Encoding these flat structs of strings and integers cannot fail.
    (try? Array(JSONEncoder().encode(value))) ?? Array("{}".utf8)
}

public func decodeJSON<T: Decodable>(_ type: T.Type, _ body: [UInt8]) throws -> T {
    do {
        return try JSONDecoder().decode(type, from: Data(body))
    } catch {
        throw BenchMessageError.malformedJSON("\(error)")
    }
}

/// A put as a log entry: 4-byte big-endian key length, key, value.
public enum BenchEntry {
    public static func encode(key: [UInt8], value: [UInt8]) -> [UInt8] {
        let n = UInt32(truncatingIfNeeded: key.count)
        var out: [UInt8] = [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
        out.reserveCapacity(4 + key.count + value.count)
        out += key
        out += value
        return out
    }

    public static func decode(_ data: [UInt8]) throws -> (key: [UInt8], value: [UInt8]) {
        guard data.count >= 4 else { throw BenchMessageError.truncatedEntry }
        let n = Int(data[0]) << 24 | Int(data[1]) << 16 | Int(data[2]) << 8 | Int(data[3])
        guard data.count - 4 >= n else { throw BenchMessageError.truncatedEntry }
        return (Array(data[4..<(4 + n)]), Array(data[(4 + n)...]))
    }
}

/// `--peers 1=127.0.0.1:7001,2=127.0.0.1:7002`: member id to `host:port`.
public func parsePeerList(_ text: String) -> [UInt64: String]? {
    var out: [UInt64: String] = [:]
    for item in text.split(separator: ",") {
        let parts = item.split(separator: "=", maxSplits: 1)
        guard parts.count == 2, let id = UInt64(parts[0]), id > 0, !parts[1].isEmpty, out[id] == nil else {
            return nil
        }
        out[id] = String(parts[1])
    }
    return out.isEmpty ? nil : out
}

/// etcd's `POST /v3/maintenance/status` answer, as the JSON gateway renders it (uint64
/// fields are strings).
public struct EtcdStatus: Equatable, Sendable {
    public var memberID: UInt64
    public var leader: UInt64
    public var raftIndex: UInt64

    public var isLeader: Bool { leader != 0 && leader == memberID }

    public static func parse(_ body: [UInt8]) throws -> EtcdStatus {
        guard let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
            let header = object["header"] as? [String: Any]
        else { throw BenchMessageError.malformedJSON("not an etcd status object") }
        func number(_ any: Any?) -> UInt64 {
            if let s = any as? String { return UInt64(s) ?? 0 }
            if let n = any as? NSNumber { return n.uint64Value }
            return 0
        }
        return EtcdStatus(
            memberID: number(header["member_id"]), leader: number(object["leader"]),
            raftIndex: number(object["raftIndex"]))
    }
}

/// The sum of every sample of `metric` (any labels) in Prometheus text format.
public func prometheusValue(_ metric: String, in text: String) -> Double? {
    var total: Double?
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard line.hasPrefix(metric) else { continue }
        let rest = line.dropFirst(metric.count)
        guard rest.first == " " || rest.first == "{" else { continue }
        guard let valueText = line.split(separator: " ").last, let value = Double(valueText) else { continue }
        total = (total ?? 0) + value
    }
    return total
}
