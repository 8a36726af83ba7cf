import Foundation
import Logging
import NIOCore
import Testing

@testable import Actuators

/// Collects every log line (message and metadata) at trace level.
struct CapturingLogHandler: LogHandler {
    let lines: Locked<[String]>
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    init(_ lines: Locked<[String]>) { self.lines = lines }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        lines.withLock { $0.append("\(event.level) \(event.message) \(all) \(event.error.map { "\($0)" } ?? "")") }
    }
}

struct LoggingTests {
    /// Errors are logged with their request id; secrets and tokens never appear.
    @Test func awsErrorsAreLoggedWithRequestIDAndWithoutSecrets() async throws {
        let lines = Locked<[String]>([])
        let logger = Logger(label: "capture") { _ in CapturingLogHandler(lines) }
        let imds = FakeIMDS(validFor: 3600)
        try await withTestServer({ r in
            if r.uri.hasPrefix("/latest/") { return imds.handle(r) }
            return .respond(status: .badRequest, body: Array("""
                <Response><Errors><Error><Code>InvalidRouteTableID.NotFound</Code><Message>no such table</Message></Error></Errors><RequestID>req-1234-abcd</RequestID></Response>
                """.utf8))
        }) { server in
            // A generous metadata timeout: on a loaded machine the fake can take more than the 1 s default.
            let chain = CredentialsChain.standard(environment: ["HOME": "/nonexistent", "AWS_EC2_METADATA_SERVICE_ENDPOINT": server.url,
                                                                "AWS_METADATA_SERVICE_TIMEOUT": "60"])
            let config = AWSClientConfiguration(region: "us-east-1", endpointOverride: server.url, identity: CallerIdentity(nodeID: "n9"))
            let ec2 = EC2Client(configuration: config, credentials: chain, logger: logger)
            let actuator = AWSRouteActuator(ec2: ec2, logger: logger)
            let outcome = try? await actuator.ensureRoute(
                DesiredRoute(routeTableId: "rtb-1", destination: "10.0.0.0/8", target: .instance("i-1")),
                fencing: FencingToken(term: 1, index: 1), deadline: .now() + .seconds(30))
            #expect(outcome == nil)
            do {
                try await ec2.replaceRoute(routeTableId: "rtb-1", destination: "10.0.0.0/8", target: .instance("i-1"),
                                           fencing: FencingToken(term: 1, index: 2), deadline: .now() + .seconds(30))
                Issue.record("expected an error")
            } catch let error as AWSError {
                #expect(error.requestID == "req-1234-abcd")
                #expect(!"\(error)".contains("imds-secret"))
            }
        }
        let log = lines.current.joined(separator: "\n")
        #expect(log.contains("req-1234-abcd"))
        #expect(log.contains("InvalidRouteTableID.NotFound"))
        #expect(log.contains("ASIAIMDS1"))  // the key id is fine to log
        for secret in ["imds-secret-1", "imds-session-1", FakeIMDS.token] {
            #expect(!log.contains(secret), "\(secret) leaked into the log")
        }
    }
}
