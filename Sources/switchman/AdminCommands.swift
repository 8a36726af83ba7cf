import ArgumentParser
import Controller
import Foundation
import Logging

// The operator commands: thin wrappers around AdminClient (Sources/Controller/Admin) that
// print its documents as tables or JSON and map failures to the exit codes of docs/ADMIN.md.

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case table, json
}

private let exitCodesHelp = """
    Exit codes: 0 ok; 1 error (also when no endpoint could be reached at all); 2 usage \
    (bad flags, missing endpoints or certificates); 3 a replica answered that the cluster \
    has no leader or no quorum (HTTP 503 no_leader/no_quorum). See docs/ADMIN.md.
    """

/// Where to connect and with which certificate: the operator commands and `dashboard`.
struct AdminConnectionOptions: ParsableArguments {
    @Option(
        name: .long,
        help: ArgumentHelp(
            "Admin endpoints, tried in turn until one answers (else $\(AdminSettings.endpointsVariable)).", valueName: "host:port,..."))
    var endpoints: String?

    @Option(name: .long, help: ArgumentHelp("Cluster CA certificate, PEM (else $\(AdminSettings.caVariable)).", valueName: "file"))
    var ca: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Operator certificate from 'switchman certs client', PEM (else $\(AdminSettings.certificateVariable)).", valueName: "file"))
    var cert: String?

    @Option(name: .long, help: ArgumentHelp("Its private key, PEM (else $\(AdminSettings.keyVariable)).", valueName: "file"))
    var key: String?

    @Option(name: .long, help: ArgumentHelp("Per-request timeout: 10s, 500ms, or seconds (default 10s).", valueName: "duration"))
    var timeout: String?

    /// Flags and environment, checked before anything connects. Usage errors exit 2.
    func settings() throws -> AdminSettings {
        do {
            return try AdminSettings.resolve(endpoints: endpoints, ca: ca, cert: cert, key: key, timeout: timeout)
        } catch {
            throw ValidationError(error.message)
        }
    }

    func validate() throws {
        _ = try settings()
    }

    /// The client for these settings; unreadable certificate files are reported by name and
    /// end the process with the usage exit code.
    func client(settings: AdminSettings) throws -> AdminClient {
        do {
            var logger = Logger(label: "switchman.admin-client")
            logger.logLevel = .warning
            return try AdminClient(
                endpoints: settings.endpoints, caFile: settings.caFile, certificateFile: settings.certificateFile, keyFile: settings.keyFile,
                timeout: settings.timeout, logger: logger)
        } catch let error as AdminUsageError {
            // Not a ValidationError: thrown from run(), that would print the root command's
            // usage instead of this one's; the message names the flag already.
            FileHandle.standardError.write(Data("switchman: \(error.message)\n".utf8))
            throw ExitCode(AdminExitStatus.usage.rawValue)
        }
    }
}

/// Where to connect and how to print: every operator command takes these.
struct AdminOptions: ParsableArguments {
    @OptionGroup var connection: AdminConnectionOptions

    @Option(name: .long, help: "table: aligned, for people; json: the API's document (docs/ADMIN.md), for scripts.")
    var output: OutputFormat = .table

    /// Connects, runs `call`, prints its answer; any failure is reported on stderr and ends
    /// the process with its exit code.
    func run<Document: Encodable & Sendable>(
        render: (Document) -> String, _ call: @Sendable (AdminClient) async throws -> Document
    ) async throws {
        let client = try connection.client(settings: try connection.settings())
        let outcome: Result<Document, any Error>
        do {
            outcome = .success(try await call(client))
        } catch {
            outcome = .failure(error)
        }
        await client.shutdown()
        switch outcome {
        case .success(let document):
            switch output {
            case .table: print(render(document), terminator: "")
            case .json: print(try AdminFormat.json(document), terminator: "")
            }
        case .failure(let error):
            // Scripts asking for JSON get the server's error document on stdout too; people
            // get the message on stderr either way.
            if output == .json, let clientError = error as? AdminClientError, case .server(let body, _) = clientError,
                let json = try? AdminFormat.json(body)
            {
                print(json, terminator: "")
            }
            FileHandle.standardError.write(Data("switchman: \(error)\n".utf8))
            throw ExitCode(AdminExitStatus.of(error).rawValue)
        }
    }
}

/// `--stale` for the read commands.
struct ReadOptions: ParsableArguments {
    @Flag(name: .long, help: "Answer from the contacted replica's own state at once (no ReadIndex; works without a quorum).")
    var stale = false
}

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the cluster: leader, term, indexes, members, tunnels and routes.",
        discussion: """
            JSON (--output json) is the AdminStatus document of docs/ADMIN.md: cluster, \
            answeredBy, leader, term, commitIndex, appliedIndex, consistency, \
            leaseRemainingMillis, members[], tunnels[], routes[].

            \(exitCodesHelp)
            """)

    @OptionGroup var options: AdminOptions
    @OptionGroup var read: ReadOptions

    func run() async throws {
        let stale = read.stale
        try await options.run(render: AdminFormat.render(_:)) { try await $0.status(stale: stale) as AdminStatus }
    }
}

struct MembersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "members", abstract: "List the Raft members: role, reachability, replication progress.", discussion: exitCodesHelp)

    @OptionGroup var options: AdminOptions
    @OptionGroup var read: ReadOptions

    func run() async throws {
        let stale = read.stale
        try await options.run(render: AdminFormat.render(_:)) { try await $0.members(stale: stale) as AdminMembers }
    }
}

struct TunnelsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tunnels", abstract: "List the tunnels: agreed state, drains, instances, each replica's observation.",
        discussion: exitCodesHelp)

    @OptionGroup var options: AdminOptions
    @OptionGroup var read: ReadOptions

    func run() async throws {
        let stale = read.stale
        try await options.run(render: AdminFormat.render(_:)) { try await $0.tunnels(stale: stale) as AdminTunnels }
    }
}

struct RoutesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "routes", abstract: "List the managed routes: desired and actual target, last write.", discussion: exitCodesHelp)

    @OptionGroup var options: AdminOptions
    @OptionGroup var read: ReadOptions

    func run() async throws {
        let stale = read.stale
        try await options.run(render: AdminFormat.render(_:)) { try await $0.routes(stale: stale) as AdminRoutes }
    }
}

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Show the cluster's recent events (failovers, drains, writes), oldest first.",
        discussion: exitCodesHelp)

    @OptionGroup var options: AdminOptions
    @OptionGroup var read: ReadOptions

    @Option(name: .long, help: "Only events with a sequence number above this.")
    var since: UInt64?

    @Option(name: .long, help: "At most this many events (server default 100).")
    var limit: Int?

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let (stale, since, limit) = (read.stale, since, limit)
        try await options.run(render: AdminFormat.render(_:)) { try await $0.events(since: since, limit: limit, stale: stale) as AdminEvents }
    }
}

struct DrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Take a tunnel out of service: the planner routes around it until undrained.",
        discussion: exitCodesHelp)

    @OptionGroup var options: AdminOptions

    @Argument(help: "Tunnel name, as in the config's tunnels[].name.")
    var tunnel: String

    @Option(name: .long, help: "Why (recorded in the replicated state and shown by 'tunnels').")
    var reason: String

    func validate() throws {
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--reason must not be empty") }
    }

    func run() async throws {
        let (tunnel, reason) = (tunnel, reason)
        try await options.run(render: AdminFormat.render(_:)) { try await $0.drain(tunnel: tunnel, reason: reason) }
    }
}

struct UndrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "undrain", abstract: "Put a drained tunnel back into service.", discussion: exitCodesHelp)

    @OptionGroup var options: AdminOptions

    @Argument(help: "Tunnel name.")
    var tunnel: String

    func run() async throws {
        let tunnel = tunnel
        try await options.run(render: AdminFormat.render(_:)) { try await $0.undrain(tunnel: tunnel) }
    }
}

struct TransferLeaderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transfer-leader",
        abstract: "Hand leadership to another member (e.g. before maintenance on the leader's host).",
        discussion: "Sent to the leader (a follower's 409 not_leader is followed once).\n\n" + exitCodesHelp)

    @OptionGroup var options: AdminOptions

    @Option(name: .long, help: "Member id to hand over to (default: the most caught-up voter).")
    var to: UInt64?

    func validate() throws {
        if to == 0 { throw ValidationError("--to must be a positive member id") }
    }

    func run() async throws {
        let to = to
        try await options.run(render: AdminFormat.render(_:)) { try await $0.transferLeader(to: to) }
    }
}

struct MemberCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "member",
        abstract: "Change the Raft membership (one member at a time).",
        subcommands: [Add.self, Remove.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a member, as a learner first (--learner) or as a voter (also promotes a learner).",
            discussion: "Sent to the leader (a follower's 409 not_leader is followed once).\n\n" + exitCodesHelp)

        @OptionGroup var options: AdminOptions

        @Option(name: .long, help: "The new member's id (its certificate's member id).")
        var id: UInt64

        @Option(name: .long, help: ArgumentHelp("Its Raft transport address.", valueName: "host:port"))
        var peer: String

        @Flag(name: .long, help: "Join without a vote; add again without --learner to promote.")
        var learner = false

        func validate() throws {
            guard id > 0 else { throw ValidationError("--id must be a positive integer") }
            guard HostPort.parse(peer) != nil else { throw ValidationError("--peer: \"\(peer)\" is not host:port") }
        }

        func run() async throws {
            let (id, peer, learner) = (id, peer, learner)
            try await options.run(render: AdminFormat.render(_:)) { try await $0.addMember(id: id, peer: peer, learner: learner) }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a member.",
            discussion: "Sent to the leader (a follower's 409 not_leader is followed once).\n\n" + exitCodesHelp)

        @OptionGroup var options: AdminOptions

        @Option(name: .long, help: "The member's id.")
        var id: UInt64

        func validate() throws {
            guard id > 0 else { throw ValidationError("--id must be a positive integer") }
        }

        func run() async throws {
            let id = id
            try await options.run(render: AdminFormat.render(_:)) { try await $0.removeMember(id: id) }
        }
    }
}
