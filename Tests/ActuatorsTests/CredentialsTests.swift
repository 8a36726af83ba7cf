import Foundation
import SwitchmanTestSupport
import Logging
import NIOCore
import NIOHTTP1
import Testing

@testable import Actuators

/// A fake IMDSv2: GETs without a valid session token get 401, like an instance with
/// `HttpTokens=required`.
final class FakeIMDS: Sendable {
    let requests = Locked<[String]>([])
    let keySerial = Locked(0)
    let validFor: TimeInterval
    static let token = "imds-session-token-abc"

    init(validFor: TimeInterval) { self.validFor = validFor }

    func handle(_ r: TestRequest) -> TestResponse {
        requests.withLock { $0.append("\(r.method.rawValue) \(r.uri)") }
        if r.method == .PUT && r.uri == "/latest/api/token" {
            guard r.headers.first(name: "X-aws-ec2-metadata-token-ttl-seconds") != nil else { return .respond(status: .badRequest) }
            return .respond(status: .ok, body: Array(Self.token.utf8))
        }
        guard r.headers.first(name: "X-aws-ec2-metadata-token") == Self.token else { return .respond(status: .unauthorized) }
        switch r.uri {
        case "/latest/meta-data/iam/security-credentials/":
            return .respond(status: .ok, body: Array("switchman-role\n".utf8))
        case "/latest/meta-data/iam/security-credentials/switchman-role":
            let n = keySerial.withLock { v -> Int in v += 1; return v }
            let exp = ISO8601DateFormatter().string(from: Date().addingTimeInterval(validFor))
            let json = """
                {"Code":"Success","LastUpdated":"2026-11-26T20:00:00Z","Type":"AWS-HMAC","AccessKeyId":"ASIAIMDS\(n)",
                 "SecretAccessKey":"imds-secret-\(n)","Token":"imds-session-\(n)","Expiration":"\(exp)"}
                """
            return .respond(status: .ok, body: Array(json.utf8))
        default:
            return .respond(status: .notFound)
        }
    }
}

struct CredentialsTests {
    let logger = Logger(label: "test.credentials")

    func writeFiles(_ dir: URL, credentials: String?, config: String?) throws -> [String: String] {
        var env = ["HOME": dir.path]
        if let credentials {
            let p = dir.appendingPathComponent("credentials")
            try credentials.write(to: p, atomically: true, encoding: .utf8)
            env["AWS_SHARED_CREDENTIALS_FILE"] = p.path
        }
        if let config {
            let p = dir.appendingPathComponent("config")
            try config.write(to: p, atomically: true, encoding: .utf8)
            env["AWS_CONFIG_FILE"] = p.path
        }
        return env
    }

    @Test func environmentWinsOverFilesAndIMDS() async throws {
        let imds = FakeIMDS(validFor: 3600)
        try await withTestServer({ imds.handle($0) }) { server in
            let dir = try TestPaths.makeTempDir("creds")
            var env = try writeFiles(dir, credentials: "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = filesecret\n", config: nil)
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url
            env["AWS_ACCESS_KEY_ID"] = "AKIDENV"
            env["AWS_SECRET_ACCESS_KEY"] = "envsecret"
            env["AWS_SESSION_TOKEN"] = "envtoken"
            let creds = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            #expect(creds == AWSCredentials(accessKeyID: "AKIDENV", secretAccessKey: "envsecret", sessionToken: "envtoken"))
            #expect(imds.requests.current.isEmpty)
        }
    }

    @Test func filesWinOverIMDSAndProfilesAreHonoured() async throws {
        let imds = FakeIMDS(validFor: 3600)
        try await withTestServer({ imds.handle($0) }) { server in
            let dir = try TestPaths.makeTempDir("creds")
            var env = try writeFiles(dir, credentials: """
                # comment
                [default]
                aws_access_key_id = AKIDDEFAULT
                aws_secret_access_key = defaultsecret

                [ops]
                aws_access_key_id=AKIDOPS
                aws_secret_access_key=opssecret
                aws_session_token=opstoken
                """, config: """
                [default]
                region = eu-west-1
                [profile cfgonly]
                region = eu-central-1
                aws_access_key_id = AKIDCFG
                aws_secret_access_key = cfgsecret
                """)
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url
            let def = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            #expect(def.accessKeyID == "AKIDDEFAULT")
            env["AWS_PROFILE"] = "ops"
            let ops = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            #expect(ops == AWSCredentials(accessKeyID: "AKIDOPS", secretAccessKey: "opssecret", sessionToken: "opstoken"))
            env["AWS_PROFILE"] = "cfgonly"
            let cfg = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            #expect(cfg.accessKeyID == "AKIDCFG")
            #expect(ProfileCredentialsProvider(environment: env).region() == "eu-central-1")
            #expect(imds.requests.current.isEmpty)
        }
    }

    @Test func imdsV2IsUsedLastWithATokenPUTFirst() async throws {
        let imds = FakeIMDS(validFor: 3600)
        try await withTestServer({ imds.handle($0) }) { server in
            let dir = try TestPaths.makeTempDir("creds")
            // A generous timeout: on a loaded machine the fake can take more than the 1 s default.
            let env = ["HOME": dir.path, "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.url, "AWS_METADATA_SERVICE_TIMEOUT": "60"]
            let creds = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            #expect(creds.accessKeyID == "ASIAIMDS1")
            #expect(creds.sessionToken == "imds-session-1")
            #expect(creds.expiration != nil)
            let log = imds.requests.current
            #expect(log.first == "PUT /latest/api/token")
            #expect(log.count == 3)
        }
    }

    @Test func expiringCredentialsAreRefreshedBeforeExpiry() async throws {
        // Credentials valid for 10 minutes, refresh window 5 minutes; a fake clock moves on.
        let imds = FakeIMDS(validFor: 600)
        try await withTestServer({ imds.handle($0) }) { server in
            let clock = Locked(Date())
            let provider = IMDSCredentialsProvider(environment: [
                "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.url, "AWS_METADATA_SERVICE_TIMEOUT": "60",
            ])
            let chain = CredentialsChain(providers: [provider], refreshWindow: 300, now: { clock.current })
            let first = try await chain.credentials(logger: logger)
            let again = try await chain.credentials(logger: logger)
            #expect(first == again)
            #expect(imds.keySerial.current == 1)
            // Move to 200 s before the served expiry: inside the refresh window, not expired. Measured
            // from the expiry itself, because the fake stamps it with the real clock after some delay.
            let expiry = try #require(first.expiration)
            clock.withLock { $0 = expiry.addingTimeInterval(-200) }
            // Still good for 200 s: handed out at once, one refresh runs beside (off the write
            // path), and its result is what comes next.
            let meanwhile = try await chain.credentials(logger: logger)
            #expect(meanwhile == first)
            var refreshed = meanwhile
            let deadline = ContinuousClock.now + .seconds(60)
            while refreshed.accessKeyID != "ASIAIMDS2" && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(10))
                refreshed = try await chain.credentials(logger: logger)
            }
            #expect(refreshed.accessKeyID == "ASIAIMDS2")
            #expect(imds.keySerial.current == 2)
            // Under a minute left: the caller waits for the refresh.
            let second = try #require(refreshed.expiration)
            clock.withLock { $0 = second.addingTimeInterval(-30) }
            let mandatory = try await chain.credentials(logger: logger)
            #expect(mandatory.accessKeyID == "ASIAIMDS3")
        }
    }

    @Test func metadataTimeoutComesFromTheEnvironmentLikeAwscli() {
        #expect(IMDSCredentialsProvider(environment: [:]).timeout == .seconds(1))
        #expect(IMDSCredentialsProvider(environment: ["AWS_METADATA_SERVICE_TIMEOUT": "2.5"]).timeout == .milliseconds(2500))
        #expect(IMDSCredentialsProvider(environment: ["AWS_METADATA_SERVICE_TIMEOUT": "soon"]).timeout == .seconds(1))
    }

    @Test func missingIMDSFailsFast() async throws {
        let port = try LoopbackPorts.unused()
        let dir = try TestPaths.makeTempDir("creds")
        let env = ["HOME": dir.path, "AWS_EC2_METADATA_SERVICE_ENDPOINT": "http://127.0.0.1:\(port)"]
        let chain = CredentialsChain.standard(environment: env)
        await #expect(throws: CredentialsError.self) { try await chain.credentials(logger: logger) }
        let disabled = CredentialsChain.standard(environment: ["HOME": dir.path, "AWS_EC2_METADATA_DISABLED": "true"])
        await #expect(throws: CredentialsError.self) { try await disabled.credentials(logger: logger) }
    }

    @Test func imdsThatNeverAnswersIsBoundedByTheShortTimeout() async throws {
        try await withTestServer({ _ in .hang }) { server in
            let provider = IMDSCredentialsProvider(environment: ["AWS_EC2_METADATA_SERVICE_ENDPOINT": server.url],
                                                   timeout: .milliseconds(300))
            await #expect(throws: CredentialsError.self) { _ = try await provider.load(logger: logger) }
        }
    }

    @Test func iniParsing() {
        let ini = ProfileCredentialsProvider.parseINI("""
            [ default ]
            a = 1
            ; comment
            [profile  x]
            b=2
            s3 =
              nested = ignored
            """)
        #expect(ini["default"]?["a"] == "1")
        #expect(ini["profile x"]?["b"] == "2")
        #expect(ini["profile x"]?["nested"] == nil)
    }

    // MARK: sources beyond keys and the instance role

    /// A named profile that is missing is an error naming it, never the instance role.
    @Test func aNamedProfileThatDoesNotExistIsAnErrorAndNothingElseIsTried() async throws {
        let imds = FakeIMDS(validFor: 3600)
        try await withTestServer({ imds.handle($0) }) { server in
            let dir = try TestPaths.makeTempDir("creds")
            var env = try writeFiles(dir, credentials: "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s\n", config: "[default]\n")
            env["AWS_EC2_METADATA_SERVICE_ENDPOINT"] = server.url
            env["AWS_PROFILE"] = "prodd"
            await #expect {
                _ = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            } throws: { error in
                guard case CredentialsError.profileNotFound(let name, let searched) = error else { return false }
                return name == "prodd" && searched.count == 2 && "\(error)".contains("prodd")
            }
            #expect(imds.requests.current.isEmpty, "the instance role was not tried")
        }
    }

    /// `role_arn` + `source_profile` (with `external_id`), assumed through STS (moto's), and
    /// a web identity from AWS_WEB_IDENTITY_TOKEN_FILE.
    @Test func rolesAreAssumedThroughSTS() async throws {
        try await withMoto(signatureChecking: false) { moto in
            let dir = try TestPaths.makeTempDir("creds")
            var env = try writeFiles(dir, credentials: """
                [base]
                aws_access_key_id = AKIDBASE
                aws_secret_access_key = basesecret
                """, config: """
                [profile ops]
                role_arn = arn:aws:iam::123456789012:role/switchman
                source_profile = base
                external_id = ext-1
                role_session_name = replica-1
                [profile loop]
                role_arn = arn:aws:iam::123456789012:role/a
                source_profile = loop2
                [profile loop2]
                role_arn = arn:aws:iam::123456789012:role/b
                source_profile = loop
                """)
            env["AWS_ENDPOINT_URL_STS"] = moto.endpoint
            env["AWS_EC2_METADATA_DISABLED"] = "true"
            env["AWS_PROFILE"] = "ops"
            let assumed = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            #expect(assumed.accessKeyID != "AKIDBASE")
            #expect(assumed.sessionToken != nil)
            #expect(assumed.expiration != nil)

            env["AWS_PROFILE"] = "loop"
            await #expect {
                _ = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            } throws: { "\($0)".contains("loop") }

            let token = dir.appendingPathComponent("token")
            try "eyJhbGciOiJSUzI1NiJ9.e30.c2ln".write(to: token, atomically: true, encoding: .utf8)
            let web = [
                "HOME": dir.path, "AWS_WEB_IDENTITY_TOKEN_FILE": token.path, "AWS_ROLE_ARN": "arn:aws:iam::123456789012:role/irsa",
                "AWS_ROLE_SESSION_NAME": "replica-2", "AWS_ENDPOINT_URL_STS": moto.endpoint, "AWS_EC2_METADATA_DISABLED": "true",
            ]
            let fromToken = try await CredentialsChain.standard(environment: web).credentials(logger: logger)
            #expect(fromToken.sessionToken != nil)
            #expect(fromToken.expiration != nil)
        }
    }

    @Test func credentialProcessIsRunAndItsFailuresAreReported() async throws {
        let dir = try TestPaths.makeTempDir("creds")
        let good = dir.appendingPathComponent("good.sh")
        try """
            printf '{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": "procsecret", "SessionToken": "proctoken", "Expiration": "2099-01-01T00:00:00Z"}'
            """.write(to: good, atomically: true, encoding: .utf8)
        let bad = dir.appendingPathComponent("bad.sh")
        try "echo 'sso session expired' >&2; exit 3".write(to: bad, atomically: true, encoding: .utf8)
        var env = try writeFiles(dir, credentials: nil, config: """
            [profile proc]
            credential_process = /bin/sh \(good.path)
            [profile broken]
            credential_process = /bin/sh \(bad.path)
            """)
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        env["AWS_PROFILE"] = "proc"
        let creds = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
        #expect(creds == AWSCredentials(accessKeyID: "AKIDPROC", secretAccessKey: "procsecret", sessionToken: "proctoken",
                                        expiration: ISO8601DateFormatter().date(from: "2099-01-01T00:00:00Z")))
        env["AWS_PROFILE"] = "broken"
        await #expect {
            _ = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
        } throws: { error in
            guard case CredentialsError.process(let why) = error else { return false }
            return why.contains("exited 3") && why.contains("sso session expired")
        }
    }

    /// ECS/EKS container credentials: the full URI with its authorization token (file).
    @Test func containerCredentialsUseTheAuthorizationToken() async throws {
        let seen = Locked<[String]>([])
        try await withTestServer({ r in
            seen.withLock { $0.append(r.headers.first(name: "Authorization") ?? "none") }
            guard r.uri == "/v1/credentials", r.headers.first(name: "Authorization") == "pod-token" else { return .respond(status: .forbidden) }
            return .respond(status: .ok, body: Array(#"{"AccessKeyId":"ASIAPOD","SecretAccessKey":"podsecret","Token":"podtoken","Expiration":"2099-01-01T00:00:00Z"}"#.utf8))
        }) { server in
            let dir = try TestPaths.makeTempDir("creds")
            let tokenFile = dir.appendingPathComponent("token")
            try "pod-token\n".write(to: tokenFile, atomically: true, encoding: .utf8)
            let env = ["HOME": dir.path, "AWS_CONTAINER_CREDENTIALS_FULL_URI": server.url + "/v1/credentials",
                       "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": tokenFile.path, "AWS_EC2_METADATA_DISABLED": "true",
                       "AWS_METADATA_SERVICE_TIMEOUT": "60"]
            let creds = try await CredentialsChain.standard(environment: env).credentials(logger: logger)
            #expect(creds.accessKeyID == "ASIAPOD")
            #expect(creds.sessionToken == "podtoken")
            #expect(seen.current == ["pod-token"])
        }
        #expect(!ContainerCredentialsProvider.allowed("http://10.0.0.5/creds"))
        #expect(ContainerCredentialsProvider.allowed("http://169.254.170.23/v1/credentials"))
        #expect(ContainerCredentialsProvider.allowed("https://agent.example/creds"))
    }
}
