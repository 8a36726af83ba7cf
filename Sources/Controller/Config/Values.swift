/// Small value types that the configuration is made of, each with a strict parser.
///
/// The parsers return `nil` (or a message) instead of throwing so that the config reader can
/// attach the key path and line of the offending node and keep going.

/// A `host:port` pair. The host is an IPv4 address, a bracketed IPv6 address or a DNS name;
/// it is never resolved here (the config is checked on machines that cannot resolve it).
public struct HostPort: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: UInt16

    public init(host: String, port: UInt16) {
        self.host = host
        self.port = port
    }

    public var description: String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Parses `host:port`, `[v6]:port`. Port 0 is refused: it means "any port" to a listener
    /// and nothing useful to a client.
    public static func parse(_ text: String) -> HostPort? {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
            guard host.contains(":"), host.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else { return nil }
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            guard isValidHostName(host) else { return nil }
        }
        guard !portText.isEmpty, portText.count <= 5, portText.allSatisfy({ $0.isASCII && $0.isNumber }),
            let port = UInt16(portText), port > 0
        else { return nil }
        return HostPort(host: String(host), port: port)
    }

    /// RFC 1123 labels (letters, digits, hyphens; no leading/trailing hyphen), which also
    /// covers dotted IPv4 addresses.
    static func isValidHostName(_ host: Substring) -> Bool {
        guard !host.isEmpty, host.utf8.count <= 253 else { return false }
        let labels = host.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            guard !label.isEmpty, label.utf8.count <= 63,
                label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }),
                label.first != "-", label.last != "-"
            else { return false }
        }
        return true
    }
}

/// An IPv4 prefix such as `10.0.0.0/16`. Host bits must be zero: `10.0.0.1/16` is almost
/// always a typo, and EC2 would silently normalise it to a different route than the one
/// the operator thinks they manage.
public struct IPv4CIDR: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var address: UInt32
    public var prefixLength: UInt8

    public init(address: UInt32, prefixLength: UInt8) {
        self.address = address
        self.prefixLength = prefixLength
    }

    public var mask: UInt32 { prefixLength == 0 ? 0 : UInt32.max << (32 - UInt32(prefixLength)) }

    public var description: String {
        let a = address
        return "\(a >> 24).\((a >> 16) & 0xff).\((a >> 8) & 0xff).\(a & 0xff)/\(prefixLength)"
    }

    public enum ParseError: Error, Equatable {
        case malformed
        case hostBitsSet(canonical: IPv4CIDR)
    }

    public static func parse(_ text: String) -> Result<IPv4CIDR, ParseError> {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = parseIPv4(parts[0]) else { return .failure(.malformed) }
        let lengthText = parts[1]
        guard !lengthText.isEmpty, lengthText.count <= 2, lengthText.allSatisfy({ $0.isASCII && $0.isNumber }),
            let length = UInt8(lengthText), length <= 32
        else { return .failure(.malformed) }
        let cidr = IPv4CIDR(address: address, prefixLength: length)
        if address & ~cidr.mask != 0 {
            return .failure(.hostBitsSet(canonical: IPv4CIDR(address: address & cidr.mask, prefixLength: length)))
        }
        return .success(cidr)
    }

    static func parseIPv4(_ text: Substring) -> UInt32? {
        let octets = text.split(separator: ".", omittingEmptySubsequences: false)
        guard octets.count == 4 else { return nil }
        var value: UInt32 = 0
        for octet in octets {
            // Leading zeros are refused: some tools read them as octal.
            guard !octet.isEmpty, octet.count <= 3, octet.allSatisfy({ $0.isASCII && $0.isNumber }),
                octet == "0" || octet.first != "0", let byte = UInt8(octet)
            else { return nil }
            value = value << 8 | UInt32(byte)
        }
        return value
    }

    public func contains(_ other: IPv4CIDR) -> Bool {
        prefixLength <= other.prefixLength && (other.address & mask) == address
    }

    public func overlaps(_ other: IPv4CIDR) -> Bool {
        contains(other) || other.contains(self)
    }

    public static func < (lhs: IPv4CIDR, rhs: IPv4CIDR) -> Bool {
        (lhs.address, lhs.prefixLength) < (rhs.address, rhs.prefixLength)
    }
}

/// Go-style durations: one or more `<number><unit>` groups, units `ns`, `us`, `ms`, `s`, `m`,
/// `h`; a number may have a fraction (`1.5s`). A bare number is refused on purpose: "5"
/// could mean seconds or milliseconds, and guessing wrong in a failover timer is costly.
public enum DurationParser {
    public static func parse(_ text: String) -> Duration? {
        let scalars = Array(text.unicodeScalars)
        guard !scalars.isEmpty else { return nil }
        var i = 0
        var totalNanos: Double = 0
        while i < scalars.count {
            let numberStart = i
            while i < scalars.count, ("0"..."9").contains(scalars[i]) || scalars[i] == "." { i += 1 }
            guard i > numberStart else { return nil }
            let numberText = String(String.UnicodeScalarView(scalars[numberStart..<i]))
            guard numberText.first != ".", numberText.last != ".", let number = Double(numberText) else { return nil }
            let unitStart = i
            while i < scalars.count, scalars[i].properties.isAlphabetic || scalars[i] == "µ" { i += 1 }
            let unit = String(String.UnicodeScalarView(scalars[unitStart..<i]))
            let nanosPerUnit: Double
            switch unit {
            case "ns": nanosPerUnit = 1
            case "us", "µs": nanosPerUnit = 1_000
            case "ms": nanosPerUnit = 1_000_000
            case "s": nanosPerUnit = 1_000_000_000
            case "m": nanosPerUnit = 60_000_000_000
            case "h": nanosPerUnit = 3_600_000_000_000
            default: return nil
            }
            totalNanos += number * nanosPerUnit
        }
        // Refuse anything past ~100 days: a typo like 1000000h should not become a timer.
        guard totalNanos.isFinite, totalNanos <= 8_640_000_000_000_000 else { return nil }
        return .nanoseconds(Int64(totalNanos.rounded()))
    }

    /// The shortest faithful rendering, for messages and `config check` output.
    public static func format(_ duration: Duration) -> String {
        let ms = duration.milliseconds
        if ms == 0 { return duration == .zero ? "0s" : "\(duration.nanoseconds)ns" }
        if ms % 60_000 == 0, ms >= 60_000 { return "\(ms / 60_000)m" }
        if ms % 1000 == 0 { return "\(ms / 1000)s" }
        return "\(ms)ms"
    }
}

extension Duration {
    /// Whole milliseconds, truncated. The replicated state keeps time in milliseconds.
    public var milliseconds: Int64 {
        let (seconds, attos) = components
        return seconds &* 1000 &+ attos / 1_000_000_000_000_000
    }

    var nanoseconds: Int64 {
        let (seconds, attos) = components
        return seconds &* 1_000_000_000 &+ attos / 1_000_000_000
    }
}

/// Levenshtein distance, for "did you mean" suggestions on unknown keys.
func editDistance(_ a: String, _ b: String) -> Int {
    let a = Array(a.lowercased().unicodeScalars)
    let b = Array(b.lowercased().unicodeScalars)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    var current = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        current[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
        }
        swap(&previous, &current)
    }
    return previous[b.count]
}

/// The closest known key, if it is close enough to be a plausible typo.
func suggestion(for key: String, among known: [String]) -> String? {
    var best: (key: String, distance: Int)?
    for candidate in known {
        let d = editDistance(key, candidate)
        if d < (best?.distance ?? Int.max) { best = (candidate, d) }
    }
    guard let best else { return nil }
    let limit = max(1, min(3, max(key.count, best.key.count) / 3))
    return best.distance <= limit ? best.key : nil
}
