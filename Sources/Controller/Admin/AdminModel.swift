import Foundation

// The admin API's JSON bodies (docs/ADMIN.md). Field names are a published contract: the
// CLI's `--output json` prints these same documents, and scripts read them. Add fields;
// never rename or remove one.

public struct AdminMember: Codable, Sendable, Hashable {
    public var id: UInt64
    public var zone: String
    /// leader, follower, candidate, pre-candidate, learner, or unknown (not heard from).
    public var role: String
    /// Whether the answering replica heard from it within an election timeout (the leader
    /// knows; a follower reports only itself and the leader).
    public var reachable: Bool
    public var peer: String
    public var admin: String
    public var matchIndex: UInt64?
    public var lastContactMillisAgo: UInt64?

    public init(id: UInt64, zone: String, role: String, reachable: Bool, peer: String, admin: String, matchIndex: UInt64?, lastContactMillisAgo: UInt64?) {
        self.id = id
        self.zone = zone
        self.role = role
        self.reachable = reachable
        self.peer = peer
        self.admin = admin
        self.matchIndex = matchIndex
        self.lastContactMillisAgo = lastContactMillisAgo
    }
}

public struct AdminObservation: Codable, Sendable, Hashable {
    public var replica: UInt64
    public var healthyRun: UInt32
    public var unhealthyRun: UInt32
    public var rttMillis: UInt32?
    /// Milliseconds between the observation's stamp and the state's time.
    public var ageMillis: UInt64
    public var fresh: Bool
}

public struct AdminInstance: Codable, Sendable, Hashable {
    public var instanceId: String
    public var eniId: String
    public var privateIP: String
    /// Whether the interface's source/destination check is known to be off, so routes may
    /// point at it (nil from a replica that predates the check).
    public var forwards: Bool?
    /// EC2's status checks ("instance ok, system ok"), when read; impaired keeps the tunnel
    /// from being a candidate.
    public var ec2Status: String?
    public var impaired: Bool?
    /// EC2's scheduled events for the instance ("system-reboot from …").
    public var scheduledEvents: [String]?
    /// The tunnel's Elastic IP and whether it is on this instance's interface.
    public var elasticIP: String?
    public var elasticIPHere: Bool?
}

public struct AdminTunnel: Codable, Sendable, Hashable {
    public var name: String
    /// up, down or unknown.
    public var state: String
    public var stale: Bool
    public var drained: Bool
    public var drainReason: String?
    public var drainedBy: String?
    public var since: Date?
    public var instance: AdminInstance?
    public var observations: [AdminObservation]
}

public struct AdminWrite: Codable, Sendable, Hashable {
    public var term: UInt64
    public var index: UInt64
    public var success: Bool?
    public var detail: String?
    public var requestId: String?
    public var at: Date?
}

public struct AdminRoute: Codable, Sendable, Hashable {
    public var routeTable: String
    public var destination: String
    public var region: String
    /// The tunnel the planner wants, nil when nothing qualifies and nothing is known.
    public var desired: String?
    public var desiredENI: String?
    /// The tunnel the route points at by the last successful write this cluster recorded.
    public var actual: String?
    public var reason: String
    public var alert: String?
    public var lastWrite: AdminWrite?
}

public struct AdminEvent: Codable, Sendable, Hashable {
    public var seq: UInt64
    public var at: Date
    public var kind: String
    public var tunnel: String?
    public var text: String
}

public struct AdminStatus: Codable, Sendable, Hashable {
    public var cluster: String
    /// The replica that answered.
    public var answeredBy: UInt64
    /// 0 when no leader is known.
    public var leader: UInt64
    public var term: UInt64
    public var commitIndex: UInt64
    public var appliedIndex: UInt64
    /// Whether the answer went through ReadIndex (linearizable) or is this replica's view.
    public var consistency: String
    public var leaseRemainingMillis: UInt64?
    public var members: [AdminMember]
    public var tunnels: [AdminTunnel]
    public var routes: [AdminRoute]
}

public struct AdminEvents: Codable, Sendable, Hashable {
    public var answeredBy: UInt64
    public var consistency: String
    /// Sequence numbers below this were evicted from the bounded history.
    public var firstAvailableSeq: UInt64
    public var events: [AdminEvent]
}

/// The answer to a write (drain, undrain, transfer, member change).
public struct AdminResult: Codable, Sendable, Hashable {
    public var ok: Bool
    public var message: String
    public var index: UInt64?
    public var term: UInt64?

    public init(ok: Bool, message: String, index: UInt64? = nil, term: UInt64? = nil) {
        self.ok = ok
        self.message = message
        self.index = index
        self.term = term
    }
}

/// Every error body: `code` is stable (`no_leader`, `no_quorum`, `bad_request`, `not_found`,
/// `forbidden`, `internal`), `message` is for people.
public struct AdminError: Codable, Sendable, Hashable, Error, CustomStringConvertible {
    public var code: String
    public var message: String
    public var leader: UInt64?

    public init(code: String, message: String, leader: UInt64? = nil) {
        self.code = code
        self.message = message
        self.leader = leader
    }

    public var description: String { "\(code): \(message)" }
}

public enum AdminJSON {
    public static func encoder() -> JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        e.dateEncodingStrategy = .iso8601
        return e
    }

    public static func decoder() -> JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

/// `GET /v1/members`, `/v1/tunnels`, `/v1/routes`: the same header as the status, one list.
public struct AdminMembers: Codable, Sendable, Hashable {
    public var cluster: String
    public var answeredBy: UInt64
    public var leader: UInt64
    public var term: UInt64
    public var consistency: String
    public var members: [AdminMember]
}

public struct AdminTunnels: Codable, Sendable, Hashable {
    public var cluster: String
    public var answeredBy: UInt64
    public var leader: UInt64
    public var term: UInt64
    public var consistency: String
    public var tunnels: [AdminTunnel]
}

public struct AdminRoutes: Codable, Sendable, Hashable {
    public var cluster: String
    public var answeredBy: UInt64
    public var leader: UInt64
    public var term: UInt64
    public var consistency: String
    public var routes: [AdminRoute]
}

/// Bodies of the write calls.
public struct AdminDrainRequest: Codable, Sendable, Hashable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

public struct AdminTransferRequest: Codable, Sendable, Hashable {
    /// Omitted: the most caught-up voter.
    public var to: UInt64?
    public init(to: UInt64?) { self.to = to }
}

public struct AdminMemberRequest: Codable, Sendable, Hashable {
    public var id: UInt64
    /// host:port of its Raft transport.
    public var peer: String
    /// Join as a learner (no vote) first; promote by adding again without it.
    public var learner: Bool?
    public init(id: UInt64, peer: String, learner: Bool?) {
        self.id = id
        self.peer = peer
        self.learner = learner
    }
}
