/// The Raft position that authorised a write (DESIGN.md rule 4). Actuators never interpret it;
/// it only travels in the User-Agent so CloudTrail and the chaos checkers can order writes.
public struct FencingToken: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var term: UInt64
    public var index: UInt64

    public init(term: UInt64, index: UInt64) {
        self.term = term
        self.index = index
    }

    public static func < (lhs: FencingToken, rhs: FencingToken) -> Bool {
        (lhs.term, lhs.index) < (rhs.term, rhs.index)
    }

    public var description: String { "term/\(term) index/\(index)" }
}

/// Who is calling: the node id always rides in the User-Agent, the fencing token only on writes.
public struct CallerIdentity: Sendable, Hashable {
    public static let switchmanVersion = "0.1.0"

    public var nodeID: String
    public var version: String

    public init(nodeID: String, version: String = CallerIdentity.switchmanVersion) {
        self.nodeID = nodeID
        self.version = version
    }

    /// `switchman/<version> node/<id> term/<t> index/<i>` for writes; reads omit the token.
    public func userAgent(fencing: FencingToken?) -> String {
        var ua = "switchman/\(version) node/\(nodeID)"
        if let fencing { ua += " term/\(fencing.term) index/\(fencing.index)" }
        return ua
    }
}
