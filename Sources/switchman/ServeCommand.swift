import ArgumentParser
import Controller
import Foundation
import Logging
import RaftRuntime
import ServiceLifecycle

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run one controller replica.",
        discussion: """
            The replica runs as member --id of the Raft cluster of --config: it polls every \
            tunnel's sentinel, proposes what it sees, and — while it leads and holds its lease — \
            points the managed routes at healthy VPN instances and keeps their DNS records \
            current. Logs go to standard error. On SIGTERM or SIGINT a leader hands leadership \
            to another replica before it exits.

            An empty data directory needs --bootstrap (founding a new cluster: the voters are \
            the file's cluster.members) or --join (a member added to a running cluster). After \
            that the voters come from the directory and the Raft log, never from the file; a \
            directory of another cluster or member is refused.
            """
    )

    @Option(name: .long, help: "The YAML config file (check it with `switchman config check`).")
    var config: String

    @Option(name: .long, help: "This replica's member id (default: $SWITCHMAN_ID).")
    var id: UInt64?

    @Flag(name: .long, help: ArgumentHelp(
        "Found a new cluster if the data directory is empty: the voters are cluster.members of --config. Give it to every founder alike, only when creating the cluster; on a directory already set up it does nothing."))
    var bootstrap = false

    @Flag(name: .long, help: ArgumentHelp(
        "Join a running cluster if the data directory is empty: start with no membership and wait for the leader (add this member there with `switchman member add --learner`). On a directory already set up it does nothing."))
    var join = false

    @OptionGroup var log: LogOptions

    func validate() throws {
        if bootstrap && join { throw ValidationError("--bootstrap and --join exclude each other: found a new cluster, or join one") }
        guard id != nil || ProcessInfo.processInfo.environment["SWITCHMAN_ID"].flatMap(UInt64.init) != nil else {
            throw ValidationError("give the member id with --id N or SWITCHMAN_ID=N")
        }
    }

    func run() async throws {
        let registry = AdminServer.bootstrapMetrics()
        let memberID = id ?? ProcessInfo.processInfo.environment["SWITCHMAN_ID"].flatMap(UInt64.init) ?? 0
        var logger = log.bootstrap(label: "switchman.replica")
        logger[metadataKey: "member"] = "\(memberID)"

        let loaded = ConfigLoader.load(contentsOf: config)
        for d in loaded.diagnostics { logger.log(level: d.severity == .error ? .error : .warning, "\(d)") }
        guard let cfg = loaded.config else {
            FileHandle.standardError.write(Data("\(config): \(loaded.errors.count) config error(s); see `switchman config check \(config)`\n".utf8))
            throw ExitCode.failure
        }
        let paths = cfg.tls.paths(for: memberID)
        let prober = try SentinelClient(caFile: paths.ca, certificateFile: paths.cert, keyFile: paths.key, logger: logger)
        let assembly: ReplicaAssembly
        do {
            assembly = try await ReplicaAssembly.make(
                id: memberID, config: cfg, configFile: config, checker: SentinelTunnelChecker(prober: prober),
                start: bootstrap ? .bootstrap : join ? .join : .existing, logger: logger)
        } catch {
            await prober.shutdown()
            FileHandle.standardError.write(Data("switchman serve: \(error)\n".utf8))
            throw ExitCode.failure
        }
        guard let member = cfg.cluster.members.first(where: { $0.id == memberID }) else { throw ExitCode.failure }
        let admin: any Service
        do {
            let credentials = try PeerTLSCredentials(caFile: paths.ca, certificateFile: paths.cert, privateKeyFile: paths.key)
            let adminLogger = logger
            admin = try AdminServer.make(
                replica: assembly.replica, credentials: credentials, host: member.admin.host, port: Int(member.admin.port),
                registry: registry, logger: logger,
                onRunning: { port in adminLogger.notice("admin API listening (mTLS)", metadata: ["address": "\(member.admin.host):\(port)"]) })
        } catch {
            FileHandle.standardError.write(Data("switchman serve: admin API: \(error)\n".utf8))
            throw ExitCode.failure
        }
        logger.notice("replica starting", metadata: [
            "cluster": "\(cfg.cluster.name)", "members": "\(cfg.cluster.members.count)", "tunnels": "\(cfg.tunnels.count)",
            "routes": "\(cfg.routes.count)", "pid": "\(getpid())",
        ])
        // Shut down in reverse: the admin API, then the replica's loops, then the Raft node
        // hands leadership over and closes its log.
        let group = ServiceGroup(
            services: [assembly.node, assembly.replica, admin], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch {
            logger.error("replica stopped", metadata: ["error": "\(error)"])
        }
        await assembly.transport.shutdown()
        await prober.shutdown()
        assembly.store.close()
        logger.notice("replica stopped")
    }
}
