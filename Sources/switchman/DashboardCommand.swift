import ArgumentParser
import Controller
import Foundation
import Logging
import ServiceLifecycle

/// `switchman dashboard`: like `kubectl proxy`, a local web server on the operator's machine
/// that talks to the cluster with the operator's certificate and shows it in a browser.
struct DashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dashboard",
        abstract: "Serve a live web page of the cluster on this machine (plain HTTP, loopback).",
        discussion: """
            Shows members, the leader and its lease, each replica's observation of each tunnel \
            and the agreed verdict, every managed route (desired vs actual, last write and its \
            fencing token) and the event timeline, refreshed every second; drain, undrain and \
            leadership transfer buttons ask for confirmation first. The dashboard reaches the \
            cluster with the same endpoints and certificate as the other commands (flags or \
            SWITCHMAN_* variables). It has no login of its own, so it listens on loopback only \
            unless --allow-remote is given. See docs/ADMIN.md, "Dashboard".
            """)

    @OptionGroup var connection: AdminConnectionOptions

    @Option(name: .long, help: ArgumentHelp("Where to serve the page (loopback unless --allow-remote).", valueName: "host:port"))
    var listen: String = DashboardListen.defaultAddress

    @Flag(name: .long, help: "Allow a non-loopback --listen address: anyone who reaches it acts on the cluster as you.")
    var allowRemote = false

    @Option(name: .long, help: ArgumentHelp("How often the page refreshes: 1s, 500ms, or seconds (default 1s).", valueName: "duration"))
    var refresh: String?

    @OptionGroup var log: LogOptions

    func validate() throws {
        guard let address = DashboardListen.parse(listen) else {
            throw ValidationError("--listen: \"\(listen)\" is not host:port (port 1-65535; IPv6 as [addr]:port)")
        }
        if !allowRemote && !DashboardListen.isLoopback(address.host) {
            throw ValidationError(DashboardListen.refusal(listen))
        }
        _ = try refreshMillis()
    }

    private func refreshMillis() throws -> Int {
        guard let refresh else { return 1000 }
        let duration: Duration
        do {
            duration = try AdminSettings.parseTimeout(refresh)
        } catch {
            throw ValidationError("--refresh: \"\(refresh)\" is not a positive duration (e.g. 1s, 500ms)")
        }
        let millis = Int(duration.components.seconds) * 1000 + Int(duration.components.attoseconds / 1_000_000_000_000_000)
        guard millis >= 250 else { throw ValidationError("--refresh: at least 250ms") }
        return millis
    }

    func run() async throws {
        let logger = log.bootstrap(label: "switchman.dashboard", default: .notice)
        let settings = try connection.settings()
        guard let address = DashboardListen.parse(listen) else { throw ValidationError("--listen: \"\(listen)\" is not host:port") }
        let client = try connection.client(settings: settings)
        let endpoints = settings.endpoints.map(\.description)
        let app = DashboardServer.make(
            backend: client,
            configuration: DashboardConfiguration(
                host: address.host, port: Int(address.port), allowRemote: allowRemote, refreshMillis: try refreshMillis(),
                endpoints: endpoints),
            logger: logger,
            onRunning: { port in
                // The one line an operator needs: where to point the browser.
                let shown = HostPort(host: address.host, port: UInt16(clamping: port))
                let line = "switchman dashboard: http://\(shown)/ (cluster endpoints: \(endpoints.joined(separator: ", ")); Ctrl-C stops it)\n"
                FileHandle.standardOutput.write(Data(line.utf8))
            })
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: [.init(service: app)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        do {
            try await group.run()
        } catch {
            await client.shutdown()
            FileHandle.standardError.write(Data("switchman dashboard: cannot serve on \(listen): \(error)\n".utf8))
            throw ExitCode.failure
        }
        await client.shutdown()
    }
}
