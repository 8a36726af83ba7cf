import Foundation

/// A mistake in how the operator called the CLI (exit code 2): missing or malformed
/// endpoints, certificates, timeout.
public struct AdminUsageError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Where the operator commands connect and with which certificate: each setting from its
/// flag, else from its environment variable (flags win, so a one-off `--endpoints` overrides
/// a profile that exports `SWITCHMAN_ENDPOINTS`).
public struct AdminSettings: Sendable, Equatable {
    public var endpoints: [HostPort]
    public var caFile: String
    public var certificateFile: String
    public var keyFile: String
    public var timeout: Duration

    public static let endpointsVariable = "SWITCHMAN_ENDPOINTS"
    public static let caVariable = "SWITCHMAN_CA"
    public static let certificateVariable = "SWITCHMAN_CERT"
    public static let keyVariable = "SWITCHMAN_KEY"
    public static let defaultTimeout: Duration = .seconds(10)

    public init(endpoints: [HostPort], caFile: String, certificateFile: String, keyFile: String, timeout: Duration = defaultTimeout) {
        self.endpoints = endpoints
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.timeout = timeout
    }

    /// Resolves flags (nil when not given) against `environment`. Empty values count as unset.
    public static func resolve(
        endpoints: String?, ca: String?, cert: String?, key: String?, timeout: String?,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(AdminUsageError) -> AdminSettings {
        func pick(_ flag: String?, _ variable: String, _ name: String, _ what: String) throws(AdminUsageError) -> String {
            if let flag, !flag.isEmpty { return flag }
            if let value = environment[variable], !value.isEmpty { return value }
            throw AdminUsageError("missing \(what): give --\(name) or set \(variable)")
        }
        let endpointText = try pick(endpoints, endpointsVariable, "endpoints", "admin endpoints (host:port,host:port)")
        let parsed: [HostPort]
        do {
            parsed = try parseEndpoints(endpointText)
        } catch {
            let source = (endpoints?.isEmpty == false) ? "--endpoints" : endpointsVariable
            throw AdminUsageError("\(source): \(error.message)")
        }
        let settings = AdminSettings(
            endpoints: parsed,
            caFile: try pick(ca, caVariable, "ca", "cluster CA certificate"),
            certificateFile: try pick(cert, certificateVariable, "cert", "operator certificate"),
            keyFile: try pick(key, keyVariable, "key", "operator key"),
            timeout: try parseTimeout(timeout))
        return settings
    }

    /// `host:port,host:port` (`[v6]:port` too); spaces around commas are ignored, duplicates
    /// dropped (keeping the first), order kept: it is the order endpoints are tried in.
    public static func parseEndpoints(_ text: String) throws(AdminUsageError) -> [HostPort] {
        var result: [HostPort] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let item = part.trimmingCharacters(in: .whitespaces)
            guard !item.isEmpty else {
                throw AdminUsageError("empty endpoint in \"\(text)\"; expected host:port,host:port")
            }
            guard let endpoint = HostPort.parse(item) else {
                throw AdminUsageError("\"\(item)\" is not host:port (port 1-65535; IPv6 as [addr]:port)")
            }
            if !result.contains(endpoint) { result.append(endpoint) }
        }
        return result
    }

    /// `--timeout`: a duration (`10s`, `500ms`, `1m`) or plain seconds (`10`); nil is the default.
    public static func parseTimeout(_ text: String?) throws(AdminUsageError) -> Duration {
        guard let text else { return defaultTimeout }
        let duration: Duration?
        if let seconds = Double(text), seconds.isFinite {
            duration = seconds <= 86_400 ? .milliseconds(Int64((seconds * 1000).rounded())) : nil
        } else {
            duration = DurationParser.parse(text)
        }
        guard let duration, duration > .zero else {
            throw AdminUsageError("--timeout: \"\(text)\" is not a positive duration (e.g. 10s, 500ms)")
        }
        return duration
    }
}
