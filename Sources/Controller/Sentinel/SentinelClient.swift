import AsyncHTTPClient
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOSSL

/// What a replica learns from polling one tunnel's sentinel.
public enum TunnelProbeResult: Sendable, Equatable {
    /// The sentinel answered; its report says whether the tunnel works.
    case reachable(SentinelReport)
    /// The sentinel could not be asked (no connection, TLS refused, bad answer, timeout).
    /// DESIGN's data flow counts this as the VPN instance being down.
    case unreachable(String)
}

/// How a replica asks about a tunnel; the replica's probe loop takes one, tests script it.
public protocol TunnelProber: Sendable {
    func probe(tunnel: TunnelConfig, timeout: Duration) async -> TunnelProbeResult
}

/// Polls sentinels over mutual TLS with AsyncHTTPClient.
///
/// Trust: only the cluster CA. Identity: the client connects to the tunnel's `sentinel:`
/// address but verifies the certificate as the name `<tunnel>.sentinel.switchman.invalid`
/// (AsyncHTTPClient's `dnsOverride`: request and verify one name, connect to another), so
/// only the sentinel certificate issued for *this* tunnel is accepted, whatever address or
/// DNS name the config uses. It presents the replica's member certificate (or an operator's
/// client certificate); the sentinel refuses anything else.
///
/// One `HTTPClient` per (tunnel, address), created on first use, because the override is
/// part of a client's configuration. Call `shutdown()` before dropping the client.
public final class SentinelClient: TunnelProber {
    private let tls: TLSConfiguration
    private let group: any EventLoopGroup
    private let logger: Logger
    /// `closed` and the clients under one lock, so no client is created after `shutdown()`.
    private let state = NIOLockedValueBox<(closed: Bool, clients: [String: HTTPClient])>((false, [:]))
    /// Bodies above this are refused: a report with 120 rounds of a few targets is ~50 KiB.
    public static let maximumBodyBytes = 4 << 20

    /// PEM strings: the cluster CA, and this replica's (or operator's) certificate and key.
    public init(
        caPEM: String, certificatePEM: String, keyPEM: String,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "switchman.sentinel-client")
    ) throws {
        // Full verification: chain to the CA *and* the tunnel's sentinel name (see above).
        self.tls = try ClusterClientTLS.configuration(
            caPEM: caPEM, certificatePEM: certificatePEM, keyPEM: keyPEM, verification: .fullVerification)
        self.group = eventLoopGroup
        self.logger = logger
    }

    /// Reads the three PEM files (for a replica: `tls.paths(for: memberID)` from the config).
    public convenience init(
        caFile: String, certificateFile: String, keyFile: String,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "switchman.sentinel-client")
    ) throws {
        func read(_ path: String) throws -> String {
            do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw SentinelError.unreadableFile(what: "TLS file", path: path, reason: error.localizedDescription, hint: nil)
            }
        }
        try self.init(
            caPEM: try read(caFile), certificatePEM: try read(certificateFile), keyPEM: try read(keyFile), eventLoopGroup: eventLoopGroup,
            logger: logger)
    }

    public func probe(tunnel: TunnelConfig, timeout: Duration) async -> TunnelProbeResult {
        guard SentinelIdentity.isValidTunnelName(tunnel.name) else {
            return .unreachable("tunnel name \"\(tunnel.name)\" cannot name a sentinel certificate")
        }
        guard let client = client(for: tunnel) else { return .unreachable("the sentinel client is shut down") }
        let name = SentinelIdentity.dnsName(forTunnel: tunnel.name)
        // The verdict and runs only: the round history is for people (`curl`), not for polls.
        let request = HTTPClientRequest(url: "https://\(name):\(tunnel.sentinel.port)/v1/verdict?history=0")
        let nanos = max(1, Int64(timeout.nanoseconds))
        do {
            let response = try await client.execute(request, timeout: .nanoseconds(nanos), logger: logger)
            let body = try await response.body.collect(upTo: Self.maximumBodyBytes)
            guard response.status == .ok else {
                let text = String(buffer: body).prefix(200)
                return .unreachable("sentinel at \(tunnel.sentinel) answered HTTP \(response.status.code): \(text)")
            }
            let report = try SentinelReport.makeDecoder().decode(SentinelReport.self, from: Data(body.readableBytesView))
            guard report.tunnel == tunnel.name else {
                return .unreachable("sentinel at \(tunnel.sentinel) reports on tunnel \"\(report.tunnel)\", not \"\(tunnel.name)\"")
            }
            return .reachable(report)
        } catch let error as DecodingError {
            return .unreachable("sentinel at \(tunnel.sentinel) sent an unreadable report: \(error)")
        } catch let error as HTTPClientError where error == .deadlineExceeded || error == .readTimeout || error == .connectTimeout {
            return .unreachable("no answer from the sentinel at \(tunnel.sentinel) within \(DurationParser.format(timeout))")
        } catch {
            return .unreachable("sentinel at \(tunnel.sentinel): \(LiveTargetProber.describeConnectError(error, timeout: timeout))")
        }
    }

    private func client(for tunnel: TunnelConfig) -> HTTPClient? {
        let key = "\(tunnel.name)@\(tunnel.sentinel)"
        return state.withLockedValue { state in
            if state.closed { return nil }
            if let existing = state.clients[key] { return existing }
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
            configuration.dnsOverride = [SentinelIdentity.dnsName(forTunnel: tunnel.name): tunnel.sentinel.host]
            configuration.redirectConfiguration = .disallow
            let client = HTTPClient(eventLoopGroup: group, configuration: configuration)
            state.clients[key] = client
            return client
        }
    }

    public func shutdown() async {
        let all = state.withLockedValue { state in
            defer { state = (true, [:]) }
            return Array(state.clients.values)
        }
        for client in all { try? await client.shutdown() }
    }
}
