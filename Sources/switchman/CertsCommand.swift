import ArgumentParser
import Controller
import Foundation
import RaftRuntime

private let layoutHelp = """
    Files in --dir (PEM; keys are 0600; nothing is overwritten without --force):
      ca.pem                 cluster CA, the transport's only trust root
      ca-key.pem             CA private key (keep it off the replicas)
      member-<id>.pem        replica: serverAuth+clientAuth, CN member-<id>,
                             SAN URI switchman://member/<id> + --host SANs
      member-<id>-key.pem    its private key
      client-<name>.pem      operator: clientAuth only,
                             SAN URI switchman://client/<name>;
                             never accepted as a replica
      client-<name>-key.pem  its private key
      sentinel-<tunnel>.pem  a VPN instance's sentinel: serverAuth only,
                             SAN DNS <tunnel>.sentinel.switchman.invalid
                             (what replicas verify), URI
                             switchman://sentinel/<tunnel>, + --dns/--ip
      sentinel-<tunnel>-key.pem  its private key
    Replicas are identified by the member id in the certificate, not by
    host name; --host values become DNS/IP SANs. See docs/TLS.md.
    """

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Create the cluster CA and the certificates replicas and operators use for mutual TLS.",
        discussion: """
            Local cluster in one go:
              switchman certs bootstrap --dir ./certs --members 1,2,3 \\
                --host 127.0.0.1 --host localhost
            Step by step:
              switchman certs init   --dir ./certs --cluster prod
              switchman certs member --dir ./certs --id 1 \\
                --host 10.0.1.10 --host node1.internal
              switchman certs client --dir ./certs --name operator
              switchman certs sentinel --dir ./certs --tunnel a-vpn1 \\
                --ip 10.0.1.20

            \(layoutHelp)
            """,
        subcommands: [Init.self, Member.self, Client.self, Sentinel.self, Bootstrap.self, Inspect.self]
    )
}

struct DirectoryOptions: ParsableArguments {
    @Option(name: .long, help: "Directory holding the cluster's certificates.")
    var dir: String

    @Flag(name: .long, help: "Replace existing files instead of refusing.")
    var force = false

    var directory: CertificateDirectory { CertificateDirectory(path: dir) }
}

private func report(_ paths: [String]) {
    for path in paths { print("wrote \(path)") }
}

extension Certs {
    struct Init: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Create the cluster CA (ca.pem, ca-key.pem).",
            discussion: layoutHelp
        )

        @OptionGroup var options: DirectoryOptions

        @Option(name: .long, help: "Cluster name, recorded in the CA and every certificate's organization.")
        var cluster = "switchman"

        @Option(name: .long, help: "Validity in days.")
        var days = 3650

        func run() throws {
            report(try options.directory.initCA(clusterName: cluster, validityDays: days, force: options.force))
        }
    }

    struct Member: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "member",
            abstract: "Issue a replica certificate (member-<id>.pem, member-<id>-key.pem), signed by the CA in --dir.",
            discussion: layoutHelp
        )

        @OptionGroup var options: DirectoryOptions

        @Option(name: .long, help: "Member id (the Raft node id, a positive integer).")
        var id: UInt64

        @Option(name: .long, help: "DNS name or IP address the replica is reached at (repeatable).")
        var host: [String] = []

        @Option(name: .long, help: "Validity in days.")
        var days = 825

        func validate() throws {
            guard id > 0 else { throw ValidationError("--id must be a positive integer") }
        }

        func run() throws {
            report(try options.directory.issueMember(id: id, hosts: host, validityDays: days, force: options.force))
        }
    }

    struct Client: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "client",
            abstract: "Issue an operator certificate (client-<name>.pem, client-<name>-key.pem).",
            discussion: layoutHelp
        )

        @OptionGroup var options: DirectoryOptions

        @Option(name: .long, help: "Client name: 1-64 of A-Z a-z 0-9 . _ -")
        var name: String

        @Option(name: .long, help: "Validity in days.")
        var days = 825

        func run() throws {
            report(try options.directory.issueClient(name: name, validityDays: days, force: options.force))
        }
    }

    struct Sentinel: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "sentinel",
            abstract: "Issue a sentinel certificate (sentinel-<tunnel>.pem, sentinel-<tunnel>-key.pem) for a VPN instance.",
            discussion: """
                Copy the two files and ca.pem (never ca-key.pem) to the VPN instance of the \
                tunnel. Replicas verify the name <tunnel>.sentinel.switchman.invalid, not the \
                address, so --dns/--ip are only needed for other tools (curl, openssl). \
                See docs/SENTINEL.md.

                \(layoutHelp)
                """
        )

        @OptionGroup var options: DirectoryOptions

        @Option(name: .long, help: "Tunnel name, as in the config's tunnels[].name.")
        var tunnel: String

        @Option(name: .long, help: "DNS name the sentinel is reached at (repeatable).")
        var dns: [String] = []

        @Option(name: .long, help: "IP address the sentinel is reached at (repeatable).")
        var ip: [String] = []

        @Option(name: .long, help: "Validity in days.")
        var days = 825

        func validate() throws {
            guard SentinelIdentity.isValidTunnelName(tunnel) else {
                throw ValidationError("\(SentinelCertificateError.invalidTunnelName(tunnel))")
            }
        }

        func run() throws {
            report(
                try options.directory.issueSentinel(
                    tunnel: tunnel, dnsNames: dns, ipAddresses: ip, validityDays: days, force: options.force))
        }
    }

    struct Bootstrap: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "bootstrap",
            abstract: "Create the CA (unless present), member certificates and an operator certificate in one go.",
            discussion: """
                Reuses an existing CA in --dir; --force creates a new CA and
                replaces every file. Without --force nothing is written when
                any member or client file already exists.

                \(layoutHelp)
                """
        )

        @OptionGroup var options: DirectoryOptions

        @Option(name: .long, help: "Cluster name for a new CA.")
        var cluster = "switchman"

        @Option(name: .long, help: "Comma-separated member ids, e.g. 1,2,3.")
        var members: String

        @Option(name: .long, help: "DNS name or IP address put in every member certificate (repeatable).")
        var host: [String] = []

        @Option(name: .long, help: "Client certificate to create (repeatable).")
        var client: [String] = ["operator"]

        func memberIDs() throws -> [UInt64] {
            let parts = members.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let ids = try parts.map { part -> UInt64 in
                guard let id = UInt64(part), id > 0 else {
                    throw ValidationError("--members: \"\(part)\" is not a positive integer")
                }
                return id
            }
            guard !ids.isEmpty else { throw ValidationError("--members needs at least one id") }
            guard Set(ids).count == ids.count else { throw ValidationError("--members lists an id twice") }
            return ids
        }

        func validate() throws {
            _ = try memberIDs()
        }

        func run() throws {
            report(
                try options.directory.bootstrap(
                    clusterName: cluster,
                    members: try memberIDs(),
                    hosts: host,
                    clients: client,
                    force: options.force
                )
            )
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "inspect",
            abstract: "Show the identity, names and validity of a certificate file."
        )

        @Argument(help: "PEM certificate file.")
        var file: String

        func run() throws {
            let summary = try CertificateSummary(pem: try String(contentsOfFile: file, encoding: .utf8))
            print("subject:     \(summary.subject)")
            print("issuer:      \(summary.issuer)")
            print("not before:  \(summary.notValidBefore)")
            print("not after:   \(summary.notValidAfter)")
            if summary.isCertificateAuthority {
                print("identity:    certificate authority")
            } else {
                switch summary.identity {
                case .success(let identity): print("identity:    \(identity)")
                case .failure(let error): print("identity:    none (\(error))")
                }
            }
            for name in summary.alternativeNames { print("name:        \(name)") }
        }
    }
}
