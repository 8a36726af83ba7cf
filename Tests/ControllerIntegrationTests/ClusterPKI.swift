import Foundation

/// Certificates for a loopback cluster, made by the real `switchman certs` commands (so the
/// tests also exercise them): a cluster CA, one member certificate per replica, one
/// certificate per sentinel and one operator client certificate. Paths come from the
/// "wrote PATH" lines the commands print, not from guessing file names.
struct ClusterPKI: Sendable {
    struct Pair: Sendable, Hashable {
        var cert: String
        var key: String
    }

    let directory: URL
    let caCert: String
    let members: [UInt64: Pair]
    let sentinels: [String: Pair]
    let operatorClient: Pair

    /// For `tls.cert` / `tls.key`: the member paths with the id replaced by `{id}`.
    var certTemplate: String { Self.template(members, placeholder: "{id}", \.cert) }
    var keyTemplate: String { Self.template(members, placeholder: "{id}", \.key) }
    /// For `tls.sentinelCert` / `tls.sentinelKey`: the sentinel paths with the tunnel replaced by `{tunnel}`.
    var sentinelCertTemplate: String? { sentinels.isEmpty ? nil : Self.template(sentinels, placeholder: "{tunnel}", \.cert) }
    var sentinelKeyTemplate: String? { sentinels.isEmpty ? nil : Self.template(sentinels, placeholder: "{tunnel}", \.key) }

    func member(_ id: UInt64) throws -> Pair {
        guard let pair = members[id] else { throw HarnessError.unexpected("no certificate for member \(id)") }
        return pair
    }

    func sentinel(_ tunnel: String) throws -> Pair {
        guard let pair = sentinels[tunnel] else { throw HarnessError.unexpected("no certificate for the sentinel of \(tunnel)") }
        return pair
    }

    /// All files the PKI consists of.
    var allFiles: [String] {
        [caCert, directory.appendingPathComponent("ca-key.pem").path, operatorClient.cert, operatorClient.key]
            + members.values.flatMap { [$0.cert, $0.key] } + sentinels.values.flatMap { [$0.cert, $0.key] }
    }

    /// The command that issues a sentinel's certificate (serverAuth, named for its tunnel).
    static func sentinelCommand(directory: String, tunnel: String) -> [String] {
        ["certs", "sentinel", "--dir", directory, "--tunnel", tunnel]
    }

    /// Creates everything in `directory` (which must not hold a PKI yet).
    static func generate(in directory: URL, members: [UInt64] = [1, 2, 3], sentinels: [String] = [],
                         operatorName: String = "operator", clusterName: String = "switchman-it") async throws -> ClusterPKI {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let dir = directory.path
        let ca = try pemPair(try await SwitchmanBinary.runChecked(["certs", "init", "--dir", dir, "--cluster", clusterName]),
                             what: "CA", expectKey: "ca-key.pem")
        var memberPairs: [UInt64: Pair] = [:]
        for id in members {
            memberPairs[id] = try pemPair(try await SwitchmanBinary.runChecked([
                "certs", "member", "--dir", dir, "--id", String(id), "--host", "127.0.0.1", "--host", "localhost",
            ]), what: "member \(id)")
        }
        var sentinelPairs: [String: Pair] = [:]
        for tunnel in sentinels {
            sentinelPairs[tunnel] = try pemPair(try await SwitchmanBinary.runChecked(sentinelCommand(directory: dir, tunnel: tunnel)),
                                                what: "sentinel \(tunnel)")
        }
        let client = try pemPair(try await SwitchmanBinary.runChecked(["certs", "client", "--dir", dir, "--name", operatorName]),
                                 what: "client \(operatorName)")
        let pki = ClusterPKI(directory: directory, caCert: ca.cert, members: memberPairs, sentinels: sentinelPairs, operatorClient: client)
        try pki.checkTemplates()
        return pki
    }

    /// Every member's and sentinel's files are where the `{id}` / `{tunnel}` templates say,
    /// so a config written from the templates never names a missing file.
    func checkTemplates() throws {
        for (id, pair) in members {
            let expanded = Pair(cert: certTemplate.replacingOccurrences(of: "{id}", with: String(id)),
                                key: keyTemplate.replacingOccurrences(of: "{id}", with: String(id)))
            guard expanded == pair else { throw HarnessError.unexpected("member \(id): template gives \(expanded), files are \(pair)") }
        }
        for (tunnel, pair) in sentinels {
            let expanded = Pair(cert: (sentinelCertTemplate ?? "").replacingOccurrences(of: "{tunnel}", with: tunnel),
                                key: (sentinelKeyTemplate ?? "").replacingOccurrences(of: "{tunnel}", with: tunnel))
            guard expanded == pair else { throw HarnessError.unexpected("sentinel \(tunnel): template gives \(expanded), files are \(pair)") }
        }
    }

    /// The certificate and key among the "wrote PATH" lines of one `switchman certs` run.
    private static func pemPair(_ result: CommandResult, what: String, expectKey: String? = nil) throws -> Pair {
        let written = result.stdout.split(separator: "\n").compactMap { line -> String? in
            line.hasPrefix("wrote ") ? String(line.dropFirst("wrote ".count)).trimmingCharacters(in: .whitespaces) : nil
        }
        let keys = written.filter { $0.hasSuffix("-key.pem") }
        let certs = written.filter { $0.hasSuffix(".pem") && !$0.hasSuffix("-key.pem") }
        guard let cert = certs.first, let key = keys.first(where: { expectKey == nil || $0.hasSuffix(expectKey ?? "") }) else {
            throw HarnessError.unexpected("switchman certs for \(what) wrote no certificate and key; it printed:\n\(result.stdout)\(result.stderr)")
        }
        return Pair(cert: cert, key: key)
    }

    /// One path of `pairs` with its own name replaced by `placeholder` (`checkTemplates`
    /// makes sure every other entry follows the same pattern).
    private static func template<K: CustomStringConvertible & Hashable>(_ pairs: [K: Pair], placeholder: String,
                                                                       _ field: KeyPath<Pair, String>) -> String {
        guard let (name, pair) = pairs.first(where: { _ in true }) else { return "" }
        let path = pair[keyPath: field]
        let file = URL(fileURLWithPath: path).lastPathComponent
        let dir = URL(fileURLWithPath: path).deletingLastPathComponent().path
        let templated = file.replacingOccurrences(of: "-\(name)", with: "-\(placeholder)")
        return "\(dir)/\(templated)"
    }
}
