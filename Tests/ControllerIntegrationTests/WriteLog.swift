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
    /// The request's `NetworkInterfaceId` (a route's target, or the interface whose
    /// attribute is set), when it has one.
    var networkInterface: String? = nil
    /// `SourceDestCheck.Value` of a ModifyNetworkInterfaceAttribute.
    var sourceDestCheck: String? = nil

    var description: String {
        "#\(sequence) \(action) node/\(node.map(String.init) ?? "?") term/\(term.map(String.init) ?? "?") index/\(index.map(String.init) ?? "?")"
    }
}

enum WriteLog {
    static let writeActions: Set<String> = [
        "CreateRoute", "ReplaceRoute", "DeleteRoute", "ChangeResourceRecordSets", "ModifyNetworkInterfaceAttribute",
    ]

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
            let params = formParams(of: obj)
            out.append(RecordedWrite(
                sequence: n, action: action, node: field(ua, "node"), term: field(ua, "term"), index: field(ua, "index"),
                networkInterface: params["NetworkInterfaceId"], sourceDestCheck: params["SourceDestCheck.Value"]))
        }
        return out
    }

    static func formParams(of request: [String: Any]) -> [String: String] {
        guard var body = request["body"] as? String else { return [:] }
        if request["body_encoded"] as? Bool == true, let d = Data(base64Encoded: body) {
            body = String(decoding: d, as: UTF8.self)
        }
        var out: [String: String] = [:]
        for pair in body.split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            if kv.count == 2 { out[kv[0]] = kv[1] }
        }
        return out
    }

    /// Issue #16's check: a route write names an interface only after a write turned that
    /// interface's source/destination check off (or `preset` says it was off from the start).
    /// Returns the first violation.
    static func routeToCheckedInterface(_ writes: [RecordedWrite], preset: Set<String> = []) -> String? {
        var off = preset
        for w in writes {
            switch w.action {
            case "ModifyNetworkInterfaceAttribute":
                guard let eni = w.networkInterface, let v = w.sourceDestCheck else { continue }
                if v == "false" { off.insert(eni) } else { off.remove(eni) }
            case "CreateRoute", "ReplaceRoute":
                if let eni = w.networkInterface, !off.contains(eni) { return "\(w) points at \(eni) before its source/destination check was turned off" }
            default:
                continue
            }
        }
        return nil
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
