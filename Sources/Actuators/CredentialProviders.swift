import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1

// The credentials sources beyond keys in files and the instance role, as the AWS SDKs resolve
// them: a role assumed through STS (profile `role_arn` with `source_profile` or
// `credential_source`), a web identity (EKS IRSA: AWS_WEB_IDENTITY_TOKEN_FILE), an external
// `credential_process`, and ECS/EKS container credentials.

/// What the credentials sources need from STS.
public protocol STSCaller: Sendable {
    func assumeRole(roleARN: String, sessionName: String, externalID: String?, durationSeconds: Int,
                    using source: AWSCredentials, logger: Logger) async throws -> AWSCredentials
    func assumeRoleWithWebIdentity(roleARN: String, sessionName: String, token: String, logger: Logger) async throws -> AWSCredentials
}

/// STS's Query API, regional endpoint (`sts.<region>.amazonaws.com`), or `endpoint`.
public struct STSClient: STSCaller {
    public static let apiVersion = "2011-06-15"
    public let region: String
    public let endpoint: String
    let http: HTTPClient

    public init(region: String, endpoint: String? = nil, httpClient: HTTPClient = .shared) {
        self.region = region
        var e = endpoint ?? "https://sts.\(region).\(AWSPartition(region: region).dnsSuffix)"
        while e.hasSuffix("/") { e.removeLast() }
        self.endpoint = e
        self.http = httpClient
    }

    public func assumeRole(roleARN: String, sessionName: String, externalID: String?, durationSeconds: Int,
                           using source: AWSCredentials, logger: Logger) async throws -> AWSCredentials {
        var params = [("RoleArn", roleARN), ("RoleSessionName", sessionName), ("DurationSeconds", String(durationSeconds))]
        if let externalID { params.append(("ExternalId", externalID)) }
        let transport = AWSTransport(
            service: "sts", signingRegion: region, defaultEndpoint: endpoint,
            configuration: AWSClientConfiguration(region: region, identity: CallerIdentity(nodeID: "credentials")),
            credentials: StaticCredentials(source), httpClient: http, limiter: RateLimiter(), logger: logger)
        let op = AWSOperation(
            action: "AssumeRole", method: .POST, path: "/",
            headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")],
            body: Self.form("AssumeRole", params), idempotency: .safe, fencing: nil)
        do {
            let response = try await transport.send(op, deadline: .now() + .seconds(30))
            return try Self.credentials(in: response.body, action: "AssumeRole", role: roleARN)
        } catch let error as CredentialsError {
            throw error
        } catch {
            throw CredentialsError.assumeRole("AssumeRole \(roleARN): \(error)")
        }
    }

    /// Unsigned, as STS takes it: the token is the proof.
    public func assumeRoleWithWebIdentity(roleARN: String, sessionName: String, token: String, logger: Logger) async throws -> AWSCredentials {
        var request = HTTPClientRequest(url: endpoint + "/")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded; charset=utf-8")
        request.body = .bytes(Self.form("AssumeRoleWithWebIdentity", [
            ("RoleArn", roleARN), ("RoleSessionName", sessionName), ("WebIdentityToken", token),
        ]))
        let body: [UInt8]
        let status: UInt
        do {
            let response = try await http.execute(request, deadline: .now() + .seconds(30))
            body = Array(buffer: try await response.body.collect(upTo: 1 << 20))
            status = response.status.code
        } catch {
            throw CredentialsError.assumeRole("AssumeRoleWithWebIdentity \(roleARN): \(error)")
        }
        guard (200..<300).contains(status) else {
            let error = AWSError.parse(service: "sts", action: "AssumeRoleWithWebIdentity", status: Int(status), body: body, headerRequestID: nil)
            throw CredentialsError.assumeRole("AssumeRoleWithWebIdentity \(roleARN): \(error)")
        }
        return try Self.credentials(in: body, action: "AssumeRoleWithWebIdentity", role: roleARN)
    }

    static func form(_ action: String, _ params: [(String, String)]) -> [UInt8] {
        let pairs = [("Action", action), ("Version", apiVersion)] + params
        return Array(pairs.map { "\(SigV4Signer.uriEncode($0.0))=\(SigV4Signer.uriEncode($0.1))" }.joined(separator: "&").utf8)
    }

    static func credentials(in body: [UInt8], action: String, role: String) throws -> AWSCredentials {
        guard let root = try? XMLElement.parse(body), let c = root.find("Credentials"),
              let id = c.string("AccessKeyId"), let secret = c.string("SecretAccessKey")
        else { throw CredentialsError.assumeRole("\(action) \(role): no credentials in the answer") }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: c.string("SessionToken"),
                              expiration: c.string("Expiration").flatMap(parseISO8601))
    }
}

/// ISO 8601 with or without fractional seconds (STS and the container endpoints use both).
func parseISO8601(_ text: String) -> Date? {
    let plain = ISO8601DateFormatter()
    if let d = plain.date(from: text) { return d }
    let fractional = ISO8601DateFormatter()
    fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return fractional.date(from: text)
}

/// AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN (EKS IAM roles for service accounts).
public struct WebIdentityCredentialsProvider: CredentialsProvider {
    public let environment: [String: String]
    public var sts: (any STSCaller)? = nil
    public var name: String { "web-identity(\(environment["AWS_ROLE_ARN"] ?? "?"))" }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, sts: (any STSCaller)? = nil) {
        self.environment = environment
        self.sts = sts
    }

    public func load(logger: Logger) async throws -> AWSCredentials? {
        guard let tokenFile = environment["AWS_WEB_IDENTITY_TOKEN_FILE"], !tokenFile.isEmpty else { return nil }
        guard let role = environment["AWS_ROLE_ARN"], !role.isEmpty else {
            throw CredentialsError.assumeRole("AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
        }
        let region = environment["AWS_REGION"] ?? environment["AWS_DEFAULT_REGION"] ?? "us-east-1"
        let caller = sts ?? STSClient(region: region, endpoint: environment["AWS_ENDPOINT_URL_STS"] ?? environment["AWS_ENDPOINT_URL"])
        return try await Self.assume(roleARN: role, tokenFile: tokenFile, sessionName: environment["AWS_ROLE_SESSION_NAME"],
                                     sts: caller, logger: logger)
    }

    /// Reads the token afresh each time: the platform rotates it.
    static func assume(roleARN: String, tokenFile: String, sessionName: String?, sts: any STSCaller,
                       logger: Logger) async throws -> AWSCredentials {
        guard let data = FileManager.default.contents(atPath: tokenFile) else {
            throw CredentialsError.assumeRole("web identity token file \(tokenFile) cannot be read")
        }
        let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw CredentialsError.assumeRole("web identity token file \(tokenFile) is empty") }
        return try await sts.assumeRoleWithWebIdentity(
            roleARN: roleARN, sessionName: sessionName ?? ProfileCredentialsProvider.defaultSessionName(), token: token, logger: logger)
    }
}

/// A profile's `credential_process`: runs it through /bin/sh and reads its JSON
/// (`Version` 1, `AccessKeyId`, `SecretAccessKey`, optional `SessionToken`, `Expiration`).
public enum ProcessCredentialsProvider {
    struct Output: Decodable {
        var Version: Int
        var AccessKeyId: String
        var SecretAccessKey: String
        var SessionToken: String?
        var Expiration: String?
    }

    public static func run(_ command: String, timeout: Duration = .seconds(60), logger: Logger) async throws -> AWSCredentials {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw CredentialsError.process("cannot start \(command): \(error)")
        }
        // Read while it runs: a full pipe would block the process.
        async let stdout = Task.detached { out.fileHandleForReading.readDataToEndOfFile() }.value
        async let stderr = Task.detached { err.fileHandleForReading.readDataToEndOfFile() }.value
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            if ContinuousClock.now >= deadline {
                process.terminate()
                throw CredentialsError.process("\(command) did not finish in \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        let (output, errors) = await (stdout, stderr)
        guard process.terminationStatus == 0 else {
            let said = String(decoding: errors.prefix(500), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw CredentialsError.process("\(command) exited \(process.terminationStatus): \(said)")
        }
        let parsed: Output
        do {
            parsed = try JSONDecoder().decode(Output.self, from: output)
        } catch {
            throw CredentialsError.process("\(command) did not print credentials JSON (Version, AccessKeyId, SecretAccessKey)")
        }
        guard parsed.Version == 1 else { throw CredentialsError.process("\(command) printed Version \(parsed.Version); only 1 is known") }
        return AWSCredentials(accessKeyID: parsed.AccessKeyId, secretAccessKey: parsed.SecretAccessKey,
                              sessionToken: parsed.SessionToken, expiration: parsed.Expiration.flatMap(parseISO8601))
    }
}

/// ECS task roles (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, from 169.254.170.2) and EKS Pod
/// Identity or other agents (AWS_CONTAINER_CREDENTIALS_FULL_URI with a token or token file).
public struct ContainerCredentialsProvider: CredentialsProvider {
    public let environment: [String: String]
    let http: HTTPClient
    public var name: String { "container(\(url ?? "not configured"))" }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, httpClient: HTTPClient = .shared) {
        self.environment = environment
        self.http = httpClient
    }

    var url: String? {
        if let relative = environment["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"], !relative.isEmpty {
            return "http://169.254.170.2" + (relative.hasPrefix("/") ? relative : "/" + relative)
        }
        return environment["AWS_CONTAINER_CREDENTIALS_FULL_URI"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The SDKs allow plain HTTP only to loopback and the ECS/EKS agent addresses.
    static func allowed(_ url: String) -> Bool {
        guard let parsed = URL(string: url), let scheme = parsed.scheme, let host = parsed.host else { return false }
        if scheme == "https" { return true }
        guard scheme == "http" else { return false }
        let bare = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        return bare == "localhost" || bare.hasPrefix("127.") || bare == "::1"
            || ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"].contains(bare)
    }

    struct Answer: Decodable {
        var AccessKeyId: String?
        var SecretAccessKey: String?
        var Token: String?
        var Expiration: String?
    }

    public func load(logger: Logger) async throws -> AWSCredentials? {
        guard let url else { return nil }
        guard Self.allowed(url) else {
            throw CredentialsError.container("\(url) is neither https nor a loopback or container-agent address")
        }
        var request = HTTPClientRequest(url: url)
        if let file = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], !file.isEmpty {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CredentialsError.container("authorization token file \(file) cannot be read")
            }
            request.headers.add(name: "Authorization", value: String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
        } else if let token = environment["AWS_CONTAINER_AUTHORIZATION_TOKEN"], !token.isEmpty {
            request.headers.add(name: "Authorization", value: token)
        }
        let seconds = environment["AWS_METADATA_SERVICE_TIMEOUT"].flatMap(Double.init).map { max(0.1, min($0, 3600)) } ?? 2
        let body: ByteBuffer
        let status: UInt
        do {
            let response = try await http.execute(request, deadline: .now() + .milliseconds(Int64(seconds * 1000)))
            body = try await response.body.collect(upTo: 64 * 1024)
            status = response.status.code
        } catch {
            throw CredentialsError.container("GET \(url) failed: \(error)")
        }
        guard status == 200 else { throw CredentialsError.container("GET \(url) answered \(status)") }
        guard let answer = try? JSONDecoder().decode(Answer.self, from: Data(body.readableBytesView)),
              let id = answer.AccessKeyId, let secret = answer.SecretAccessKey
        else { throw CredentialsError.container("GET \(url) did not answer credentials JSON") }
        return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: answer.Token,
                              expiration: answer.Expiration.flatMap(parseISO8601))
    }
}
