import Foundation

/// A malformed or missing part of a run directory, named down to the file and line so the
/// rig's author can find it.
public struct HistoryError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var line: Int?
    public var message: String

    public init(file: String, line: Int? = nil, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

/// Typed access to one decoded JSON object. The rig is Python and the replicas log through
/// swift-log, so numbers may arrive as ints, floats or (in log metadata) strings: every
/// accessor accepts all three rather than making the rig's author match Swift's types.
struct JSONFields {
    let object: [String: Any]
    let file: String
    let line: Int?

    init(_ object: [String: Any], file: String, line: Int?) {
        self.object = object
        self.file = file
        self.line = line
    }

    func has(_ key: String) -> Bool { object[key] != nil && !(object[key] is NSNull) }

    func error(_ message: String) -> HistoryError { HistoryError(file: file, line: line, message) }

    func optionalInt(_ key: String) throws -> Int64? {
        guard let raw = object[key], !(raw is NSNull) else { return nil }
        if let v = Self.int(raw) { return v }
        throw error("\"\(key)\" is not an integer: \(raw)")
    }

    func int(_ key: String) throws -> Int64 {
        guard let v = try optionalInt(key) else { throw error("missing \"\(key)\"") }
        return v
    }

    func optionalString(_ key: String) throws -> String? {
        guard let raw = object[key], !(raw is NSNull) else { return nil }
        if let s = raw as? String { return s }
        throw error("\"\(key)\" is not a string: \(raw)")
    }

    func string(_ key: String) throws -> String {
        guard let v = try optionalString(key) else { throw error("missing \"\(key)\"") }
        return v
    }

    func optionalDouble(_ key: String) throws -> Double? {
        guard let raw = object[key], !(raw is NSNull) else { return nil }
        if let n = raw as? NSNumber { return n.doubleValue }
        if let s = raw as? String, let d = Double(s) { return d }
        throw error("\"\(key)\" is not a number: \(raw)")
    }

    func intArray(_ key: String) throws -> [Int64] {
        guard let raw = object[key], !(raw is NSNull) else { throw error("missing \"\(key)\"") }
        guard let items = raw as? [Any] else { throw error("\"\(key)\" is not an array") }
        return try items.map { item in
            guard let v = Self.int(item) else { throw error("\"\(key)\" holds a non-integer: \(item)") }
            return v
        }
    }

    func stringArray(_ key: String) throws -> [String] {
        guard let raw = object[key], !(raw is NSNull) else { throw error("missing \"\(key)\"") }
        guard let items = raw as? [Any] else { throw error("\"\(key)\" is not an array") }
        return try items.map { item in
            guard let s = item as? String else { throw error("\"\(key)\" holds a non-string: \(item)") }
            return s
        }
    }

    func objects(_ key: String) throws -> [JSONFields] {
        guard let raw = object[key], !(raw is NSNull) else { throw error("missing \"\(key)\"") }
        guard let items = raw as? [Any] else { throw error("\"\(key)\" is not an array") }
        return try items.map { item in
            guard let o = item as? [String: Any] else { throw error("\"\(key)\" holds a non-object: \(item)") }
            return JSONFields(o, file: file, line: line)
        }
    }

    /// Log metadata: swift-log renders every value as a string, but a hand-written fixture
    /// may not, so non-strings are rendered rather than rejected.
    func stringMap(_ key: String) throws -> [String: String] {
        guard let raw = object[key], !(raw is NSNull) else { return [:] }
        guard let dict = raw as? [String: Any] else { throw error("\"\(key)\" is not an object") }
        var out: [String: String] = [:]
        for (k, v) in dict {
            if let s = v as? String {
                out[k] = s
            } else if let n = v as? NSNumber {
                out[k] = Self.int(n).map(String.init) ?? n.stringValue
            } else if !(v is NSNull) {
                out[k] = "\(v)"
            }
        }
        return out
    }

    /// A float (a rig computing nanoseconds from `time.monotonic()`) is rounded: sub-nanosecond
    /// digits mean nothing here.
    static func int(_ raw: Any) -> Int64? {
        if let s = raw as? String { return Int64(s) ?? Double(s).flatMap(rounded) }
        guard let n = raw as? NSNumber else { return nil }
        let d = n.doubleValue
        // Beyond 2^53 a double has lost digits, so trust the integer reading there.
        if abs(d) >= 9.0e15 { return n.int64Value }
        return rounded(d)
    }

    private static func rounded(_ d: Double) -> Int64? {
        guard d.isFinite, abs(d) < 9.2e18 else { return nil }
        return Int64(d.rounded())
    }

    /// Parses one line as a JSON object; nil when it is not one.
    static func parseObject(_ text: Substring) -> [String: Any]? {
        guard let data = text.data(using: .utf8),
            let any = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        else { return nil }
        return any as? [String: Any]
    }
}
