import Foundation

/// The AWS write log as moto recorded it (MOTO_ENABLE_RECORDING): every request in arrival
/// order with its headers, an independent witness of who wrote what and when. Writes carry
/// the writer's fencing token in the User-Agent (`switchman/<v> node/<id> term/<t> index/<i>`).
struct RecordedWrite: Sendable, Hashable, CustomStringConvertible {
    var sequence: Int
    var action: String
    var node: UInt64?
    var term: UInt64?
    var index: UInt64?

    var description: String {
        "#\(sequence) \(action) node/\(node.map(String.init) ?? "?") term/\(term.map(String.init) ?? "?") index/\(index.map(String.init) ?? "?")"
    }
}

enum WriteLog {
    static let writeActions: Set<String> = ["CreateRoute", "ReplaceRoute", "DeleteRoute", "ChangeResourceRecordSets"]

    /// Every write in the recording file, in arrival order. Lines that are not JSON (a write
    /// in progress) end the read: the caller polls again.
    static func writes(in file: URL) -> [RecordedWrite] {
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return [] }
        var out: [RecordedWrite] = []
        for (n, line) in text.split(separator: "\n").enumerated() {
            guard let data = line.data(using: .utf8),
                let obj = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
            else { break }
            guard let action = action(of: obj), writeActions.contains(action) else { continue }
            let headers = (obj["headers"] as? [String: Any]) ?? [:]
            let ua = headers.first { $0.key.lowercased() == "user-agent" }?.value as? String ?? ""
            out.append(RecordedWrite(
                sequence: n, action: action, node: field(ua, "node"), term: field(ua, "term"), index: field(ua, "index")))
        }
        return out
    }

    static func action(of request: [String: Any]) -> String? {
        let url = request["url"] as? String ?? ""
        let method = (request["method"] as? String ?? "").uppercased()
        if url.contains("/rrset") { return method == "POST" ? "ChangeResourceRecordSets" : "ListResourceRecordSets" }
        guard var body = request["body"] as? String else { return nil }
        if request["body_encoded"] as? Bool == true, let d = Data(base64Encoded: body) {
            body = String(decoding: d, as: UTF8.self)
        }
        for pair in body.split(separator: "&") where pair.hasPrefix("Action=") {
            return String(pair.dropFirst("Action=".count))
        }
        return nil
    }

    static func field(_ ua: String, _ name: String) -> UInt64? {
        for part in ua.split(separator: " ") where part.hasPrefix(name + "/") {
            return UInt64(part.dropFirst(name.count + 1))
        }
        return nil
    }

    /// DESIGN rule 4's check: once a term has written, no write of an older term arrives.
    /// Returns the first violation. Writes that are not switchman's (awscli making drift by
    /// hand) are not fenced and are skipped; a switchman write without a token is a violation.
    static func fencingViolation(_ writes: [RecordedWrite]) -> String? {
        var newest: RecordedWrite? = nil
        for w in writes where w.node != nil {
            guard let term = w.term else { return "write without a fencing token: \(w)" }
            if let n = newest, let nt = n.term, term < nt { return "\(w) arrived after \(n)" }
            if newest?.term ?? 0 <= term { newest = w }
        }
        return nil
    }
}
