import Crypto
import Foundation

/// A request as the signer sees it. `path` is the decoded path (the signer encodes it);
/// `query` holds decoded name/value pairs in any order.
public struct SigV4Request: Sendable {
    public var method: String
    public var path: String
    public var query: [(name: String, value: String)]
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(
        method: String,
        path: String,
        query: [(name: String, value: String)] = [],
        headers: [(name: String, value: String)] = [],
        body: [UInt8] = []
    ) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
    }

    /// The percent-encoded query string in canonical order, for building the URL we send.
    public var encodedQuery: String { SigV4Signer.canonicalQuery(query) }
    /// The percent-encoded path, for building the URL we send.
    public var encodedPath: String { SigV4Signer.encodePath(path) }
}

/// Intermediate products are returned so tests can compare every stage with AWS's suite.
public struct SigV4Result: Sendable, Equatable {
    public var canonicalRequest: String
    public var stringToSign: String
    public var signature: String
    public var signedHeaders: String
}

public struct SigV4Options: Sendable {
    /// Remove dot segments and duplicate slashes from the path (every service but S3).
    public var normalizePath: Bool = true
    /// Add and sign `x-amz-content-sha256`.
    public var signBodyHeader: Bool = false
    /// Some services (STS-style) want the token added after signing, outside the signature.
    public var omitSessionToken: Bool = false

    public init(normalizePath: Bool = true, signBodyHeader: Bool = false, omitSessionToken: Bool = false) {
        self.normalizePath = normalizePath
        self.signBodyHeader = signBodyHeader
        self.omitSessionToken = omitSessionToken
    }
}

/// Caches derived signing keys: deriving costs four HMACs, and a key is valid for one
/// (day, region, service, credential). The cache is keyed by a digest of the secret, so the
/// secret itself is never kept here. `@unchecked Sendable` is safe: all mutable state is
/// read and written only while holding `lock`.
final class SigningKeyCache: @unchecked Sendable {
    private struct Key: Hashable {
        var accessKeyID: String
        var secretDigest: SHA256Digest
        var day: String
        var region: String
        var service: String
    }

    private let lock = NSLock()
    private var keys: [Key: SymmetricKey] = [:]
    private(set) var derivations = 0

    func key(secret: String, accessKeyID: String, day: String, region: String, service: String) -> SymmetricKey {
        let k = Key(
            accessKeyID: accessKeyID, secretDigest: SHA256.hash(data: Array(secret.utf8)),
            day: day, region: region, service: service)
        lock.lock()
        defer { lock.unlock() }
        if let cached = keys[k] { return cached }
        // A day change or key rotation makes old entries useless; dropping them all keeps the cache tiny.
        if keys.count > 16 { keys.removeAll() }
        let derived = SigV4Signer.deriveKey(secret: secret, day: day, region: region, service: service)
        keys[k] = derived
        derivations += 1
        return derived
    }

    var derivationCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return derivations
    }
}

public struct SigV4Signer: Sendable {
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// Headers a proxy or the HTTP layer may rewrite; signing them would break the signature.
    static let unsignedHeaders: Set<String> = ["authorization", "user-agent", "expect", "x-amzn-trace-id", "connection"]

    public let region: String
    public let service: String
    public let options: SigV4Options
    let cache: SigningKeyCache

    public init(region: String, service: String, options: SigV4Options = SigV4Options()) {
        self.region = region
        self.service = service
        self.options = options
        self.cache = SigningKeyCache()
    }

    /// How many keys this signer has derived (tests check the per-day cache).
    public var keyDerivations: Int { cache.derivationCount }

    // MARK: header signing

    /// Adds `x-amz-date`, optional `x-amz-content-sha256` / `x-amz-security-token` and
    /// `Authorization` to `request.headers`.
    @discardableResult
    public func sign(_ request: inout SigV4Request, credentials: AWSCredentials, date: Date) -> SigV4Result {
        let (amzDate, day) = Self.timestamps(date)
        let payloadHash = Self.sha256Hex(request.body)
        request.headers.append((name: "X-Amz-Date", value: amzDate))
        if options.signBodyHeader {
            request.headers.append((name: "x-amz-content-sha256", value: payloadHash))
        }
        if let token = credentials.sessionToken, !options.omitSessionToken {
            request.headers.append((name: "X-Amz-Security-Token", value: token))
        }
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(request.headers)
        let canonicalRequest = canonicalRequest(request, canonicalHeaders, signedHeaders, payloadHash)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let result = finish(canonicalRequest: canonicalRequest, amzDate: amzDate, day: day, scope: scope,
                            signedHeaders: signedHeaders, credentials: credentials)
        request.headers.append((
            name: "Authorization",
            value: "\(Self.algorithm) Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(result.signature)"
        ))
        if let token = credentials.sessionToken, options.omitSessionToken {
            request.headers.append((name: "X-Amz-Security-Token", value: token))
        }
        return result
    }

    // MARK: query signing (presigning)

    /// Adds the `X-Amz-*` query parameters and `X-Amz-Signature` to `request.query`.
    @discardableResult
    public func presign(_ request: inout SigV4Request, credentials: AWSCredentials, date: Date, expires: Int) -> SigV4Result {
        let (amzDate, day) = Self.timestamps(date)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let (canonicalHeaders, signedHeaders) = Self.canonicalHeaders(request.headers)
        request.query.append((name: "X-Amz-Algorithm", value: Self.algorithm))
        request.query.append((name: "X-Amz-Credential", value: "\(credentials.accessKeyID)/\(scope)"))
        request.query.append((name: "X-Amz-Date", value: amzDate))
        request.query.append((name: "X-Amz-Expires", value: String(expires)))
        request.query.append((name: "X-Amz-SignedHeaders", value: signedHeaders))
        if let token = credentials.sessionToken, !options.omitSessionToken {
            request.query.append((name: "X-Amz-Security-Token", value: token))
        }
        let canonicalRequest = canonicalRequest(request, canonicalHeaders, signedHeaders, Self.sha256Hex(request.body))
        let result = finish(canonicalRequest: canonicalRequest, amzDate: amzDate, day: day, scope: scope,
                            signedHeaders: signedHeaders, credentials: credentials)
        if let token = credentials.sessionToken, options.omitSessionToken {
            request.query.append((name: "X-Amz-Security-Token", value: token))
        }
        request.query.append((name: "X-Amz-Signature", value: result.signature))
        return result
    }

    private func canonicalRequest(_ request: SigV4Request, _ canonicalHeaders: String, _ signedHeaders: String,
                                  _ payloadHash: String) -> String {
        [request.method, canonicalURI(request.path), Self.canonicalQuery(request.query),
         canonicalHeaders, signedHeaders, payloadHash].joined(separator: "\n")
    }

    private func finish(
        canonicalRequest: String, amzDate: String, day: String, scope: String,
        signedHeaders: String, credentials: AWSCredentials
    ) -> SigV4Result {
        let stringToSign = [
            Self.algorithm, amzDate, scope, Self.hex(SHA256.hash(data: Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")
        let key = cache.key(secret: credentials.secretAccessKey, accessKeyID: credentials.accessKeyID,
                            day: day, region: region, service: service)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key)
        return SigV4Result(canonicalRequest: canonicalRequest, stringToSign: stringToSign,
                           signature: Self.hex(mac), signedHeaders: signedHeaders)
    }

    // MARK: building blocks

    static func deriveKey(secret: String, day: String, region: String, service: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array("AWS4\(secret)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        return key
    }

    static func canonicalHeaders(_ headers: [(name: String, value: String)]) -> (String, String) {
        var grouped: [String: [String]] = [:]
        for (name, value) in headers {
            let lower = name.lowercased()
            if unsignedHeaders.contains(lower) { continue }
            grouped[lower, default: []].append(trimAll(value))
        }
        let names = grouped.keys.sorted()
        let canonical = names.map { "\($0):\(grouped[$0, default: []].joined(separator: ","))\n" }.joined()
        return (canonical, names.joined(separator: ";"))
    }

    /// Trims the value and squeezes runs of whitespace (also folded line breaks) to one space.
    static func trimAll(_ value: String) -> String {
        var out = ""
        var pendingSpace = false
        for ch in value {
            if ch == " " || ch == "\t" || ch == "\n" || ch == "\r" || ch == "\r\n" {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(ch)
            }
        }
        return out
    }

    func canonicalURI(_ path: String) -> String {
        let p = path.isEmpty ? "/" : path
        return Self.encodePath(options.normalizePath ? Self.normalize(p) : p)
    }

    /// RFC 3986 dot-segment removal plus collapsing of empty segments, keeping a trailing slash.
    static func normalize(_ path: String) -> String {
        var out: [Substring] = []
        for segment in path.split(separator: "/", omittingEmptySubsequences: true) {
            switch segment {
            case ".": continue
            case "..": if !out.isEmpty { out.removeLast() }
            default: out.append(segment)
            }
        }
        var result = "/" + out.joined(separator: "/")
        if path.hasSuffix("/") && !result.hasSuffix("/") { result += "/" }
        return result
    }

    static func encodePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { uriEncode(String($0)) }.joined(separator: "/")
    }

    static func canonicalQuery(_ query: [(name: String, value: String)]) -> String {
        var encoded: [(String, String)] = query.map { pair in (uriEncode(pair.name), uriEncode(pair.value)) }
        encoded.sort { (a: (String, String), b: (String, String)) -> Bool in
            a.0 == b.0 ? a.1 < b.1 : a.0 < b.0
        }
        return encoded.map { pair in pair.0 + "=" + pair.1 }.joined(separator: "&")
    }

    /// SigV4's encoding: everything but the RFC 3986 unreserved set, uppercase hex.
    public static func uriEncode(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for byte in s.utf8 {
            if isUnreserved(byte) {
                out.unicodeScalars.append(UnicodeScalar(byte))
            } else {
                out.append("%")
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0xF)])
            }
        }
        return out
    }

    private static func isUnreserved(_ b: UInt8) -> Bool {
        (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
            || b == 0x2D || b == 0x5F || b == 0x2E || b == 0x7E  // - _ . ~
    }

    private static let hexDigits: [String] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "A", "B", "C", "D", "E", "F"]

    /// Percent-decodes a query component (`+` is literal, as in AWS's suite).
    public static func percentDecode(_ s: Substring) -> String {
        var bytes: [UInt8] = []
        var utf8 = Array(s.utf8)[...]
        while let b = utf8.popFirst() {
            if b == UInt8(ascii: "%"), utf8.count >= 2,
               let v = UInt8(String(decoding: utf8.prefix(2), as: UTF8.self), radix: 16) {
                bytes.append(v)
                utf8 = utf8.dropFirst(2)
            } else {
                bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func parseQuery(_ query: Substring) -> [(name: String, value: String)] {
        query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            if let eq = pair.firstIndex(of: "=") {
                return (percentDecode(pair[..<eq]), percentDecode(pair[pair.index(after: eq)...]))
            }
            return (percentDecode(pair), "")
        }
    }

    static func timestamps(_ date: Date) -> (amzDate: String, day: String) {
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC") ?? TimeZone(secondsFromGMT: 0) ?? cal.timeZone
        let c = cal.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ v: Int?, _ n: Int) -> String {
            let s = String(v ?? 0)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        let day = pad(c.year, 4) + pad(c.month, 2) + pad(c.day, 2)
        return (day + "T" + pad(c.hour, 2) + pad(c.minute, 2) + pad(c.second, 2) + "Z", day)
    }

    static func sha256Hex(_ bytes: [UInt8]) -> String { hex(SHA256.hash(data: bytes)) }

    static func hex<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
        var s = ""
        for b in bytes {
            s.append(hexLower[Int(b >> 4)])
            s.append(hexLower[Int(b & 0xF)])
        }
        return s
    }

    private static let hexLower: [String] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b", "c", "d", "e", "f"]
}
