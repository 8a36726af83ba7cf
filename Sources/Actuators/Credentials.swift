import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// AWS credentials. `description` never shows the secret or the token, so interpolating a
/// value into a log line cannot leak it.
public struct AWSCredentials: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    /// nil for long-lived keys.
    public var expiration: Date?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, expiration: Date? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.expiration = expiration
    }

    public var description: String {
        "AWSCredentials(accessKeyID: \(accessKeyID), secret: <redacted>, token: \(sessionToken == nil ? "none" : "<redacted>"))"
    }
    public var debugDescription: String { description }
}

public enum CredentialsError: Error, Sendable, CustomStringConvertible {
    /// No source in the chain had credentials; each entry says why a source was skipped.
    case noCredentials(tried: [String])
    case invalidProfile(String)
    /// A profile was named (config `aws.profile`, AWS_PROFILE) and neither file has it.
    case profileNotFound(String, searched: [String])
    case imds(String)
    /// STS refused or failed an AssumeRole / AssumeRoleWithWebIdentity.
    case assumeRole(String)
    case process(String)
    case container(String)

    public var description: String {
        switch self {
        case .noCredentials(let tried): return "no AWS credentials found (tried: \(tried.joined(separator: "; ")))"
        case .invalidProfile(let why): return "invalid AWS profile: \(why)"
        case .profileNotFound(let name, let searched):
            return "AWS profile \"\(name)\" is in neither \(searched.joined(separator: " nor ")); fix the name or add the profile (no other credentials source is tried when a profile is named)"
        case .imds(let why): return "instance metadata service: \(why)"
        case .assumeRole(let why): return "assuming a role: \(why)"
        case .process(let why): return "credential_process: \(why)"
        case .container(let why): return "container credentials: \(why)"
        }
    }
}

extension CredentialsError {
    /// Errors of a source that was explicitly configured: the chain reports them instead of
    /// trying the next source.
    var stopsTheChain: Bool {
        switch self {
        case .profileNotFound, .invalidProfile, .assumeRole, .process, .container: return true
        case .noCredentials, .imds: return false
        }
    }
}

/// One place credentials may come from.
public protocol CredentialsProvider: Sendable {
    var name: String { get }
    /// nil when this source is not configured (the chain moves on); throws when the source is
    /// configured but unusable.
    func load(logger: Logger) async throws -> AWSCredentials?
}

/// What the signing layer asks for credentials: the chain, or a fixed value in tests.
public protocol CredentialsSource: Sendable {
    func credentials(logger: Logger) async throws -> AWSCredentials
}

public struct StaticCredentials: CredentialsSource, CredentialsProvider {
    public let value: AWSCredentials
    public var name: String { "static" }
    public init(_ value: AWSCredentials) { self.value = value }
    public func credentials(logger: Logger) async throws -> AWSCredentials { value }
    public func load(logger: Logger) async throws -> AWSCredentials? { value }
}

// MARK: - environment

public struct EnvironmentCredentialsProvider: CredentialsProvider {
    public let environment: [String: String]
    public var name: String { "environment" }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    public func load(logger: Logger) async throws -> AWSCredentials? {
        guard let id = environment["AWS_ACCESS_KEY_ID"], !id.isEmpty,
              let secret = environment["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty
        else { return nil }
        // AWS_SECURITY_TOKEN is the legacy name the CLI still honours.
        let token = environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["AWS_SECURITY_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
    }
}

// MARK: - shared files

/// The shared `credentials` and `config` files, with the CLI's precedence: the credentials
/// file wins over the config file for the same profile.
public struct ProfileCredentialsProvider: CredentialsProvider {
    public let environment: [String: String]
    public let profileOverride: String?
    public var name: String { "shared-files(profile \(profile))" }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, profile: String? = nil) {
        self.environment = environment
        self.profileOverride = profile
    }

    public var profile: String {
        profileOverride ?? environment["AWS_PROFILE"] ?? environment["AWS_DEFAULT_PROFILE"] ?? "default"
    }

    /// Whether someone named the profile: then it must exist, and nothing else is tried.
    var profileNamed: Bool { profileOverride != nil || environment["AWS_PROFILE"] != nil || environment["AWS_DEFAULT_PROFILE"] != nil }

    /// The assume-role, process and web-identity settings need STS; tests and a VPC endpoint
    /// replace it. nil: the real regional STS endpoint.
    public var sts: (any STSCaller)? = nil

    var home: String { environment["HOME"] ?? NSHomeDirectory() }
    var credentialsPath: String { environment["AWS_SHARED_CREDENTIALS_FILE"] ?? "\(home)/.aws/credentials" }
    var configPath: String { environment["AWS_CONFIG_FILE"] ?? "\(home)/.aws/config" }

    public func load(logger: Logger) async throws -> AWSCredentials? {
        try await load(profile: profile, logger: logger, visited: [])
    }

    /// The two files' sections for `name`, credentials file first.
    func sections(_ name: String) -> (credentials: [String: String]?, config: [String: String]?) {
        let fromCredentials = Self.readINI(path: credentialsPath)[name]
        // In the config file every profile but "default" is spelled "[profile name]".
        let configSections = Self.readINI(path: configPath)
        let fromConfig = configSections[name == "default" ? "default" : "profile \(name)"]
            ?? (name == "default" ? configSections["profile default"] : nil)
        return (fromCredentials, fromConfig)
    }

    func load(profile: String, logger: Logger, visited: [String]) async throws -> AWSCredentials? {
        let (fromCredentials, fromConfig) = sections(profile)
        if fromCredentials == nil && fromConfig == nil {
            if profileNamed || !visited.isEmpty { throw CredentialsError.profileNotFound(profile, searched: [credentialsPath, configPath]) }
            return nil
        }
        // The CLI's order within a profile: a role to assume, a web identity, a process, keys.
        let merged = (fromConfig ?? [:]).merging(fromCredentials ?? [:]) { $1 }
        if let roleARN = merged["role_arn"] {
            if let tokenFile = merged["web_identity_token_file"], merged["source_profile"] == nil {
                return try await WebIdentityCredentialsProvider.assume(
                    roleARN: roleARN, tokenFile: tokenFile, sessionName: merged["role_session_name"],
                    sts: stsCaller(merged), logger: logger)
            }
            let source: AWSCredentials
            if let sourceProfile = merged["source_profile"] {
                guard !visited.contains(sourceProfile) || (sourceProfile == profile && merged["aws_access_key_id"] != nil) else {
                    throw CredentialsError.invalidProfile("source_profile loop: \((visited + [profile, sourceProfile]).joined(separator: " → "))")
                }
                if sourceProfile == profile {
                    guard let keys = try staticKeys(profile, fromCredentials, fromConfig) else {
                        throw CredentialsError.invalidProfile("profile \(profile) is its own source_profile but has no keys")
                    }
                    source = keys
                } else {
                    guard let loaded = try await load(profile: sourceProfile, logger: logger, visited: visited + [profile]) else {
                        throw CredentialsError.invalidProfile("source_profile \(sourceProfile) of \(profile) has no credentials")
                    }
                    source = loaded
                }
            } else if let named = merged["credential_source"] {
                source = try await credentialSource(named, profile: profile, logger: logger)
            } else {
                throw CredentialsError.invalidProfile("profile \(profile) has role_arn but neither source_profile nor credential_source")
            }
            let duration = merged["duration_seconds"].flatMap(Int.init) ?? 3600
            return try await stsCaller(merged).assumeRole(
                roleARN: roleARN, sessionName: merged["role_session_name"] ?? Self.defaultSessionName(),
                externalID: merged["external_id"], durationSeconds: duration, using: source, logger: logger)
        }
        if let command = merged["credential_process"] {
            return try await ProcessCredentialsProvider.run(command, logger: logger)
        }
        return try staticKeys(profile, fromCredentials, fromConfig)
    }

    /// `credential_source` of a role profile: where the source credentials come from.
    func credentialSource(_ named: String, profile: String, logger: Logger) async throws -> AWSCredentials {
        let provider: any CredentialsProvider
        switch named {
        case "Environment": provider = EnvironmentCredentialsProvider(environment: environment)
        case "Ec2InstanceMetadata": provider = IMDSCredentialsProvider(environment: environment)
        case "EcsContainer": provider = ContainerCredentialsProvider(environment: environment)
        default:
            throw CredentialsError.invalidProfile("profile \(profile): credential_source must be Environment, Ec2InstanceMetadata or EcsContainer, got \(named)")
        }
        guard let creds = try await provider.load(logger: logger) else {
            throw CredentialsError.invalidProfile("profile \(profile): credential_source \(named) has no credentials")
        }
        return creds
    }

    func stsCaller(_ section: [String: String]) -> any STSCaller {
        if let sts { return sts }
        let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? section["region"] ?? "us-east-1"
        return STSClient(region: region, endpoint: environment["AWS_ENDPOINT_URL_STS"] ?? environment["AWS_ENDPOINT_URL"])
    }

    static func defaultSessionName() -> String { "switchman-\(Int(Date().timeIntervalSince1970))" }

    func staticKeys(_ profile: String, _ fromCredentials: [String: String]?, _ fromConfig: [String: String]?) throws -> AWSCredentials? {
        for section in [fromCredentials, fromConfig] {
            guard let section else { continue }
            let id = section["aws_access_key_id"], secret = section["aws_secret_access_key"]
            switch (id, secret) {
            case (let id?, let secret?) where !id.isEmpty && !secret.isEmpty:
                return AWSCredentials(accessKeyID: id, secretAccessKey: secret,
                                      sessionToken: section["aws_session_token"] ?? section["aws_security_token"])
            case (nil, nil):
                continue
            default:
                throw CredentialsError.invalidProfile("profile \(profile) has only one of aws_access_key_id / aws_secret_access_key")
            }
        }
        return nil
    }

    /// The region configured for the profile, if any (the CLI reads it from the config file).
    public func region() -> String? {
        let sections = Self.readINI(path: configPath)
        return sections[profile == "default" ? "default" : "profile \(profile)"]?["region"]
    }

    /// A deliberately small INI reader: sections, `key = value`, `#`/`;` comments. Nested
    /// (indented) sub-keys are ignored; we need none of them.
    static func readINI(path: String) -> [String: [String: String]] {
        guard let data = FileManager.default.contents(atPath: path) else { return [:] }
        return parseINI(String(decoding: data, as: UTF8.self))
    }

    static func parseINI(_ text: String) -> [String: [String: String]] {
        var result: [String: [String: String]] = [:]
        var current: String?
        for rawLine in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline) {
            if rawLine.first == " " || rawLine.first == "\t" { continue }
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let name = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                    .split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
                current = name
                if result[name] == nil { result[name] = [:] }
                continue
            }
            guard let section = current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            result[section, default: [:]][key] = value
        }
        return result
    }
}

// MARK: - IMDSv2

/// EC2 instance role credentials through IMDSv2 only: a PUT for a session token first, then
/// the role name and the role's credentials. No IMDSv1 fallback: instances we run on require
/// tokens, and silently downgrading would hide a misconfiguration.
public struct IMDSCredentialsProvider: CredentialsProvider {
    public let endpoint: String
    public let disabled: Bool
    /// Short on purpose: off EC2 nothing answers, and the chain must fail fast. Like awscli,
    /// `AWS_METADATA_SERVICE_TIMEOUT` (seconds) overrides it.
    public let timeout: TimeAmount
    public let tokenTTLSeconds: Int
    let http: HTTPClient

    public var name: String { "imds(\(endpoint))" }

    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        httpClient: HTTPClient = .shared,
        timeout: TimeAmount = .seconds(1),
        tokenTTLSeconds: Int = 21600
    ) {
        var endpoint = environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"] ?? "http://169.254.169.254"
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        self.endpoint = endpoint
        self.disabled = environment["AWS_EC2_METADATA_DISABLED"]?.lowercased() == "true"
        self.http = httpClient
        if let seconds = environment["AWS_METADATA_SERVICE_TIMEOUT"].flatMap(Double.init), seconds > 0, seconds <= 3600 {
            self.timeout = .milliseconds(Int64(seconds * 1000))
        } else {
            self.timeout = timeout
        }
        self.tokenTTLSeconds = tokenTTLSeconds
    }

    private struct RoleCredentials: Decodable {
        var Code: String?
        var AccessKeyId: String?
        var SecretAccessKey: String?
        var Token: String?
        var Expiration: String?
    }

    public func load(logger: Logger) async throws -> AWSCredentials? {
        if disabled { return nil }
        let token = try await sessionToken(ttlSeconds: tokenTTLSeconds, logger: logger)
        let tokenHeader = [("X-aws-ec2-metadata-token", token)]
        let roles = try await call("GET", "/latest/meta-data/iam/security-credentials/", headers: tokenHeader, logger: logger)
        guard let role = roles.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty else {
            throw CredentialsError.imds("no instance role attached")
        }
        let body = try await call("GET", "/latest/meta-data/iam/security-credentials/\(role)", headers: tokenHeader, logger: logger)
        let decoded: RoleCredentials
        do {
            decoded = try JSONDecoder().decode(RoleCredentials.self, from: Data(body.utf8))
        } catch {
            throw CredentialsError.imds("role credentials are not valid JSON")
        }
        guard decoded.Code == nil || decoded.Code == "Success",
              let id = decoded.AccessKeyId, let secret = decoded.SecretAccessKey
        else {
            throw CredentialsError.imds("role credentials unavailable (code \(decoded.Code ?? "?"))")
        }
        let expiration = decoded.Expiration.flatMap { ISO8601DateFormatter().date(from: $0) }
        logger.debug("loaded instance role credentials", metadata: [
            "role": "\(role)", "accessKeyID": "\(id)", "expiration": "\(expiration.map { "\($0)" } ?? "none")",
        ])
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: decoded.Token, expiration: expiration)
    }

    /// The id of the instance this process runs on (`meta-data/instance-id`), through the
    /// same IMDSv2 session as the credentials; nil when IMDS is disabled.
    public func instanceID(logger: Logger) async throws -> String? {
        if disabled { return nil }
        let token = try await sessionToken(ttlSeconds: 60, logger: logger)
        let id = try await call("GET", "/latest/meta-data/instance-id", headers: [("X-aws-ec2-metadata-token", token)], logger: logger)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard id.hasPrefix("i-"), id.count <= 32, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw CredentialsError.imds("instance-id is not an instance id: \(id.prefix(40))")
        }
        return id
    }

    /// IMDSv2's session token (a PUT); every metadata read carries it.
    private func sessionToken(ttlSeconds: Int, logger: Logger) async throws -> String {
        try await call("PUT", "/latest/api/token", headers: [("X-aws-ec2-metadata-token-ttl-seconds", String(ttlSeconds))], logger: logger)
    }

    private func call(_ method: String, _ path: String, headers: [(String, String)], logger: Logger) async throws -> String {
        var request = HTTPClientRequest(url: endpoint + path)
        request.method = HTTPMethod(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response: HTTPClientResponse
        do {
            // No logger for the HTTP client: the responses are credentials.
            response = try await http.execute(request, deadline: .now() + timeout)
        } catch {
            throw CredentialsError.imds("\(method) \(path) failed: \(error)")
        }
        let body = try await response.body.collect(upTo: 64 * 1024)
        guard response.status == .ok else {
            throw CredentialsError.imds("\(method) \(path) answered \(response.status.code)")
        }
        return String(buffer: body)
    }
}

// MARK: - the chain

/// The CLI's order: environment, shared files (credentials, then config), then IMDSv2.
/// The first source that has credentials is remembered; expiring credentials are refreshed
/// from that same source `refreshWindow` before they expire.
public actor CredentialsChain: CredentialsSource {
    public let providers: [any CredentialsProvider]
    public let refreshWindow: TimeInterval
    private let now: @Sendable () -> Date
    private var cached: (credentials: AWSCredentials, provider: Int)?
    private var inflight: Task<(AWSCredentials, Int), any Error>?
    public private(set) var loads = 0

    public init(
        providers: [any CredentialsProvider],
        refreshWindow: TimeInterval = 5 * 60,
        now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.providers = providers
        self.refreshWindow = refreshWindow
        self.now = now
    }

    public static func standard(
        environment: [String: String] = ProcessInfo.processInfo.environment,
        httpClient: HTTPClient = .shared
    ) -> CredentialsChain {
        CredentialsChain(providers: [
            EnvironmentCredentialsProvider(environment: environment),
            WebIdentityCredentialsProvider(environment: environment),
            ProfileCredentialsProvider(environment: environment),
            ContainerCredentialsProvider(environment: environment, httpClient: httpClient),
            IMDSCredentialsProvider(environment: environment, httpClient: httpClient),
        ])
    }

    /// Credentials with less than this left are refreshed before they are handed out; with
    /// more (but inside `refreshWindow`) the current ones are handed out and one refresh runs
    /// beside, so a write never waits for STS or IMDS while its credentials are still good.
    public static let mandatoryRefresh: TimeInterval = 60

    public func credentials(logger: Logger) async throws -> AWSCredentials {
        if let cached, !needsRefresh(cached.credentials) { return cached.credentials }
        if let cached, let exp = cached.credentials.expiration, exp.timeIntervalSince(now()) > Self.mandatoryRefresh {
            if inflight == nil {
                let task = startRefresh(logger: logger)
                Task { _ = try? await self.finish(task, logger: logger) }
            }
            return cached.credentials
        }
        if let inflight { return try await inflight.value.0 }
        return try await finish(startRefresh(logger: logger), logger: logger)
    }

    private func startRefresh(logger: Logger) -> Task<(AWSCredentials, Int), any Error> {
        let previous = cached
        let providers = self.providers
        let task = Task { () async throws -> (AWSCredentials, Int) in
            if let previous {
                // Refresh from the source that answered before, like the CLI does.
                if let fresh = try await providers[previous.provider].load(logger: logger) {
                    return (fresh, previous.provider)
                }
            }
            var tried: [String] = []
            for (i, provider) in providers.enumerated() {
                do {
                    if let creds = try await provider.load(logger: logger) {
                        logger.debug("credentials resolved", metadata: ["source": "\(provider.name)", "accessKeyID": "\(creds.accessKeyID)"])
                        return (creds, i)
                    }
                    tried.append("\(provider.name): not configured")
                } catch let error as CredentialsError {
                    // A source that is configured but wrong is an answer, not a reason to fall
                    // through to the next one: a named profile that is missing must never turn
                    // into the instance role without anyone noticing.
                    if error.stopsTheChain { throw error }
                    tried.append("\(provider.name): \(error)")
                } catch {
                    tried.append("\(provider.name): \(error)")
                }
            }
            throw CredentialsError.noCredentials(tried: tried)
        }
        inflight = task
        return task
    }

    private func finish(_ task: Task<(AWSCredentials, Int), any Error>, logger: Logger) async throws -> AWSCredentials {
        let previous = cached
        defer { if inflight == task { inflight = nil } }
        do {
            let (creds, index) = try await task.value
            loads += 1
            cached = (creds, index)
            return creds
        } catch {
            // A failed refresh must not stop a leader that still holds valid credentials.
            if let previous, let exp = previous.credentials.expiration, exp > now() {
                logger.warning("credentials refresh failed, using current ones until they expire",
                               metadata: ["error": "\(error)"])
                return previous.credentials
            }
            throw error
        }
    }

    /// The source that gave the current credentials (for `switchman preflight`).
    public var sourceName: String? { cached.map { providers[$0.provider].name } }

    /// Waits for a refresh that is running (tests).
    public func settle() async { _ = try? await inflight?.value }

    private func needsRefresh(_ creds: AWSCredentials) -> Bool {
        guard let exp = creds.expiration else { return false }
        return exp.timeIntervalSince(now()) <= refreshWindow
    }
}
