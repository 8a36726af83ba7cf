import Crypto
import Foundation
import Logging
import Raft

/// Whom a data directory belongs to, written once when the directory is founded or joined
/// and checked on every start. It is what keeps the voter set out of the config file: the
/// founding voters live here, every later change lives in the log.
public struct ClusterIdentity: Codable, Sendable, Equatable {
    /// `cluster.name` at founding; the peers' hello carries it too.
    public var clusterName: String
    /// Derived by every founder alike from the name and the founding voters (as etcd derives
    /// its cluster id from `--initial-cluster`), so founders agree without talking. Empty in
    /// a directory that joined: it never saw the founding.
    public var clusterID: String
    public var memberID: UInt64
    /// Random, new for every directory: a member that comes back on a fresh directory is a
    /// different incarnation of the same id.
    public var incarnation: UInt64
    /// The founding voters, sorted; empty for a directory that joined an existing cluster
    /// (it learns the membership from its leader).
    public var founding: [UInt64]

    public var joined: Bool { founding.isEmpty }

    public static func clusterID(name: String, founding: [UInt64]) -> String {
        let text = name + "\n" + founding.sorted().map(String.init).joined(separator: ",")
        return SHA256.hash(data: Data(text.utf8)).prefix(8).map { String(format: "%02x", $0) }.joined()
    }
}

/// How `switchman serve` was told to treat an empty data directory.
public enum StartMode: String, Sendable {
    /// The directory must already belong to this member of this cluster.
    case existing
    /// Found a new cluster whose voters are the config file's members (every founder alike).
    case bootstrap
    /// Join a cluster that already runs: start with no membership, learn it from the leader
    /// once an operator has added this member (`switchman member add --learner`).
    case join
}

public enum DataDirectoryError: Error, Sendable, Equatable, CustomStringConvertible {
    case empty(path: String, memberID: UInt64)
    case otherCluster(path: String, recorded: String, configured: String)
    case otherMember(path: String, recorded: UInt64, configured: UInt64)
    case notAFounder(path: String, memberID: UInt64, members: [UInt64])
    case corruptIdentity(path: String, reason: String)

    public var description: String {
        switch self {
        case .empty(let path, let id):
            return """
                data directory \(path) is empty: member \(id) has no Raft state. Start with --bootstrap only when \
                founding a new cluster (every founder alike); to (re)join a running cluster, remove the old member \
                if it is still listed (`switchman member remove \(id)`), start this one with --join and add it as a \
                learner (`switchman member add --id \(id) --peer HOST:PORT --learner`). Never found again a cluster \
                that still runs: a voter that forgot its log can help elect a leader that lacks committed entries
                """
        case .otherCluster(let path, let recorded, let configured):
            return """
                data directory \(path) belongs to cluster "\(recorded)", but cluster.name is "\(configured)": \
                point dataDir at this cluster's directory, or move the directory away and --join
                """
        case .otherMember(let path, let recorded, let configured):
            return """
                data directory \(path) belongs to member \(recorded), not \(configured): a member's log cannot be \
                reused under another id; point dataDir at member \(configured)'s directory
                """
        case .notAFounder(let path, let id, let members):
            return """
                --bootstrap for \(path): member \(id) is not among cluster.members \
                (\(members.map(String.init).joined(separator: ", "))); a founder must be one of the founding voters
                """
        case .corruptIdentity(let path, let reason):
            return "data directory \(path): the identity record does not decode (\(reason)); restore the directory from its volume snapshot"
        }
    }
}

/// Reads, checks or writes a directory's identity at start.
public enum DataDirectory {
    static let record = "identity"

    /// `fileMembers`: the member ids of the config file, used once, as the founding voters
    /// of `--bootstrap` (or of a directory written before identities existed).
    public static func open(
        _ store: LMDBLogStore, clusterName: String, memberID: UInt64, fileMembers: [UInt64], mode: StartMode,
        incarnation: UInt64 = UInt64.random(in: 1...UInt64.max), logger: Logger
    ) throws -> ClusterIdentity {
        let path = store.path
        if let bytes = try store.readRecord(record) {
            let identity: ClusterIdentity
            do {
                identity = try JSONDecoder().decode(ClusterIdentity.self, from: Data(bytes))
            } catch {
                throw DataDirectoryError.corruptIdentity(path: path, reason: "\(error)")
            }
            guard identity.memberID == memberID else {
                throw DataDirectoryError.otherMember(path: path, recorded: identity.memberID, configured: memberID)
            }
            guard identity.clusterName == clusterName else {
                throw DataDirectoryError.otherCluster(path: path, recorded: identity.clusterName, configured: clusterName)
            }
            if mode != .existing {
                logger.info(
                    "data directory already set up; --\(mode.rawValue) has nothing to do",
                    metadata: ["path": "\(path)", "founded": "\(!identity.joined)", "cluster_id": "\(identity.clusterID)"])
            }
            return identity
        }
        let state = try store.load()
        let empty = state.hardState.term == 0 && state.entries.isEmpty && state.snapshot == nil
        let founding: [UInt64]
        if !empty {
            // A directory from before identities: it ran with the file's members as its
            // founding voters, so that is what they were.
            founding = fileMembers.sorted()
            logger.notice(
                "data directory has Raft state but no identity (written before identities): recording it, founding voters from the config file",
                metadata: ["path": "\(path)", "founding": "\(founding)"])
        } else {
            switch mode {
            case .existing:
                throw DataDirectoryError.empty(path: path, memberID: memberID)
            case .bootstrap:
                guard fileMembers.contains(memberID) else {
                    throw DataDirectoryError.notAFounder(path: path, memberID: memberID, members: fileMembers)
                }
                founding = fileMembers.sorted()
            case .join:
                founding = []
            }
        }
        let identity = ClusterIdentity(
            clusterName: clusterName,
            clusterID: founding.isEmpty ? "" : ClusterIdentity.clusterID(name: clusterName, founding: founding),
            memberID: memberID, incarnation: incarnation, founding: founding)
        try store.writeRecord(record, Array(try JSONEncoder().encode(identity)))
        logger.notice(
            founding.isEmpty ? "data directory joined: no membership until the leader's log arrives" : "data directory founded",
            metadata: [
                "path": "\(path)", "cluster": "\(clusterName)", "cluster_id": "\(identity.clusterID)",
                "founding": "\(founding)", "incarnation": "\(incarnation)",
            ])
        return identity
    }
}
