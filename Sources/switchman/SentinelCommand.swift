import Actuators
import ArgumentParser
import Controller
import Foundation
import Logging
import NIOPosix
import ServiceLifecycle

struct SentinelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sentinel",
        abstract: "Probe this VPN instance's tunnel and serve the verdict to the replicas over mutual TLS.",
        discussion: """
            Runs on the VPN instance of tunnel NAME. Every health.probeInterval it probes \
            the tunnel's `probes:` targets (ICMP echo, TCP connect, HTTP GET) through the \
            tunnel, each within health.probeTimeout; a round is healthy when all of them \
            (require: all, the default) or one of them (require: any) answered. Replicas and \
            operators read the verdict, run counters and the last rounds at \
            GET https://<sentinel>/v1/verdict with their member or client certificate.

            TLS files come from the config: tls.ca, and tls.sentinelCert / tls.sentinelKey \
            with {tunnel} replaced (default: sentinel-{tunnel}.pem and \
            sentinel-{tunnel}-key.pem beside tls.ca). Create them with
              switchman certs sentinel --dir DIR --tunnel NAME --ip ADDRESS

            ICMP needs the unprivileged ping socket (net.ipv4.ping_group_range must include \
            the process's group) or CAP_NET_RAW.

            Stops cleanly on SIGTERM or SIGINT. Exits 1 when it cannot start (invalid \
            config, unknown tunnel, missing or wrong certificate, address in use). \
            See docs/SENTINEL.md.
            """
    )

    @Option(name: .long, help: "The YAML config file (the same file the replicas read).")
    var config: String

    @Option(name: .long, help: "The tunnel whose VPN instance this is.")
    var tunnel: String

    @Option(name: .long, help: "Listen here instead of the tunnel's `sentinel:` address (host:port; port 0 picks one).")
    var listen: String?

    @Option(name: .long, help: ArgumentHelp(
        "The EC2 instance this sentinel runs on (default: SWITCHMAN_INSTANCE_ID, else IMDSv2).",
        discussion: "Replicas count this sentinel's verdict only while the tunnel's current instance is this one, so a replacement earns its own."))
    var instanceId: String?

    @OptionGroup var log: LogOptions

    func validate() throws {
        if let listen, Self.parseListen(listen) == nil {
            throw ValidationError("--listen expects host:port, got \"\(listen)\"")
        }
    }

    /// Like the config's host:port, but port 0 is allowed (tests and ad-hoc runs).
    static func parseListen(_ text: String) -> HostPort? {
        if let hostPort = HostPort.parse(text) { return hostPort }
        if text.hasSuffix(":0"), let hostPort = HostPort.parse(String(text.dropLast()) + "1") {
            return HostPort(host: hostPort.host, port: 0)
        }
        return nil
    }

    func run() async throws {
        let logger = log.bootstrap(label: "switchman.sentinel")

        let loaded = ConfigLoader.load(contentsOf: config)
        guard let settings = loaded.config else {
            for diagnostic in loaded.diagnostics { fail(diagnostic.description) }
            fail("\(config): \(loaded.errors.count) error(s); check it with `switchman config check \(config)`")
            throw ExitCode.failure
        }
        guard let tunnelConfig = settings.tunnel(named: tunnel) else {
            fail("unknown tunnel \"\(tunnel)\" in \(config); it declares: \(settings.tunnels.map(\.name).joined(separator: ", "))")
            throw ExitCode.failure
        }
        let paths = settings.tls.sentinelPaths(for: tunnel)
        guard !paths.ca.contains("{id}") else {
            fail("tls.ca (\(paths.ca)) contains {id}; a sentinel belongs to no member, so it needs one CA path for all")
            throw ExitCode.failure
        }
        let credentials: SentinelCredentials
        do {
            credentials = try SentinelCredentials(tunnel: tunnel, caFile: paths.ca, certificateFile: paths.cert, keyFile: paths.key)
        } catch {
            fail("\(error)")
            throw ExitCode.failure
        }

        let instance = await Self.instanceID(flag: instanceId, environment: ProcessInfo.processInfo.environment, logger: logger)

        let icmpTargets = tunnelConfig.probes.filter { if case .icmp = $0 { return true } else { return false } }.count
        // One thread per ICMP target: their blocking polls run side by side within a round.
        let threadPool = NIOThreadPool(numberOfThreads: max(2, icmpTargets))
        threadPool.start()
        let prober = LiveTargetProber(eventLoopGroup: MultiThreadedEventLoopGroup.singleton, threadPool: threadPool)
        let sentinel = Sentinel(
            tunnel: tunnelConfig, health: settings.health, prober: prober, credentials: credentials,
            listen: listen.flatMap(Self.parseListen), instanceId: instance, logger: logger)
        do {
            try await sentinel.start()
        } catch {
            fail("\(error)")
            await prober.shutdown()
            try? await threadPool.shutdownGracefully()
            throw ExitCode.failure
        }
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: sentinel)],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        do {
            try await group.run()
        } catch {
            logger.error("sentinel failed", metadata: ["error": "\(error)"])
            await prober.shutdown()
            try? await threadPool.shutdownGracefully()
            throw ExitCode.failure
        }
        await prober.shutdown()
        try? await threadPool.shutdownGracefully()
    }

    /// The flag, then SWITCHMAN_INSTANCE_ID, then IMDSv2. Without any, the sentinel still
    /// serves, and replicas cannot tell it from a sentinel on another instance of the tunnel.
    static func instanceID(flag: String?, environment: [String: String], logger: Logger) async -> String? {
        if let flag, !flag.isEmpty { return flag }
        if let env = environment["SWITCHMAN_INSTANCE_ID"], !env.isEmpty { return env }
        do {
            if let id = try await IMDSCredentialsProvider(environment: environment).instanceID(logger: logger) { return id }
        } catch {
            logger.warning("the instance id is unknown (no --instance-id, no SWITCHMAN_INSTANCE_ID, IMDSv2 did not answer): replicas cannot tell this sentinel from one on a replaced instance", metadata: ["error": "\(error)"])
        }
        return nil
    }

    private func fail(_ message: String) {
        FileHandle.standardError.write(Data(("switchman sentinel: " + message + "\n").utf8))
    }
}
