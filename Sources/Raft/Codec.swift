/// The binary wire and disk format of Raft values.
///
/// Integers are LEB128 varints, byte strings and lists are length-prefixed, and every
/// top-level value starts with a format version byte. Decoding checks every length against
/// the bytes that remain, so malformed input throws `CodecError` and never traps or
/// allocates more than the input could describe.
public enum CodecError: Error, Sendable, Hashable, CustomStringConvertible {
    case truncated(what: String)
    case unsupportedVersion(UInt8)
    case invalidValue(what: String)
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .truncated(let what): return "truncated input while reading \(what)"
        case .unsupportedVersion(let v): return "unsupported format version \(v)"
        case .invalidValue(let what): return "invalid value for \(what)"
        case .trailingBytes(let n): return "\(n) unexpected trailing bytes"
        }
    }
}

public enum RaftCodec {
    public static let version: UInt8 = 1

    public static func encode(_ message: Message) -> [UInt8] {
        var w = ByteWriter()
        w.byte(version)
        w.message(message)
        return w.bytes
    }

    public static func decodeMessage(_ bytes: [UInt8]) throws(CodecError) -> Message {
        var r = ByteReader(bytes)
        try r.expectVersion()
        let m = try r.message()
        try r.expectEnd()
        return m
    }

    public static func encode(_ entry: Entry) -> [UInt8] {
        var w = ByteWriter()
        w.byte(version)
        w.entry(entry)
        return w.bytes
    }

    public static func decodeEntry(_ bytes: [UInt8]) throws(CodecError) -> Entry {
        var r = ByteReader(bytes)
        try r.expectVersion()
        let e = try r.entry()
        try r.expectEnd()
        return e
    }

    public static func encode(_ state: HardState) -> [UInt8] {
        var w = ByteWriter()
        w.byte(version)
        w.varint(state.term)
        w.varint(state.vote)
        w.varint(state.commit)
        return w.bytes
    }

    public static func decodeHardState(_ bytes: [UInt8]) throws(CodecError) -> HardState {
        var r = ByteReader(bytes)
        try r.expectVersion()
        let s = HardState(term: try r.varint("term"), vote: try r.varint("vote"), commit: try r.varint("commit"))
        try r.expectEnd()
        return s
    }

    public static func encode(_ membership: Membership) -> [UInt8] {
        var w = ByteWriter()
        w.byte(version)
        w.membership(membership)
        return w.bytes
    }

    public static func decodeMembership(_ bytes: [UInt8]) throws(CodecError) -> Membership {
        var r = ByteReader(bytes)
        try r.expectVersion()
        let m = try r.membership()
        try r.expectEnd()
        return m
    }

    /// The payload of a membership entry: the resulting membership, then an opaque context
    /// from the application (for example the new member's address), which may be absent.
    public static func encodeMembershipEntry(_ membership: Membership, context: [UInt8]) -> [UInt8] {
        var w = ByteWriter()
        w.byte(version)
        w.membership(membership)
        if !context.isEmpty { w.blob(context) }
        return w.bytes
    }

    public static func decodeMembershipEntry(_ bytes: [UInt8]) throws(CodecError) -> (Membership, context: [UInt8]) {
        var r = ByteReader(bytes)
        try r.expectVersion()
        let m = try r.membership()
        let context = r.remaining > 0 ? try r.blob("membership context") : []
        try r.expectEnd()
        return (m, context)
    }

    public static func encode(_ metadata: SnapshotMetadata) -> [UInt8] {
        var w = ByteWriter()
        w.byte(version)
        w.snapshotMetadata(metadata)
        return w.bytes
    }

    public static func decodeSnapshotMetadata(_ bytes: [UInt8]) throws(CodecError) -> SnapshotMetadata {
        var r = ByteReader(bytes)
        try r.expectVersion()
        let m = try r.snapshotMetadata()
        try r.expectEnd()
        return m
    }
}

/// The primitives of the format (bytes, LEB128 varints, length-prefixed blobs), public so
/// that other replicated formats (the controller's) share them rather than copy them.
public struct ByteWriter: Sendable {
    public var bytes: [UInt8] = []

    public init() {}

    public mutating func byte(_ b: UInt8) { bytes.append(b) }

    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func blob(_ b: [UInt8]) {
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    mutating func entry(_ e: Entry) {
        varint(e.term)
        varint(e.index)
        byte(e.kind.rawValue)
        blob(e.data)
    }

    mutating func idSet(_ s: Set<NodeID>) {
        varint(UInt64(s.count))
        for id in s.sorted() { varint(id) }
    }

    mutating func membership(_ m: Membership) {
        idSet(m.voters)
        idSet(m.learners)
    }

    mutating func snapshotMetadata(_ m: SnapshotMetadata) {
        varint(m.index)
        varint(m.term)
        membership(m.membership)
    }

    mutating func message(_ m: Message) {
        byte(m.type.rawValue)
        varint(m.from)
        varint(m.to)
        varint(m.term)
        varint(m.logTerm)
        varint(m.index)
        varint(m.commit)
        byte(m.reject ? 1 : 0)
        varint(m.rejectHint)
        varint(m.context)
        varint(UInt64(m.entries.count))
        for e in m.entries { entry(e) }
        if let s = m.snapshot {
            byte(1)
            snapshotMetadata(s.metadata)
            blob(s.data)
        } else {
            byte(0)
        }
    }
}

/// Reads what `ByteWriter` wrote; every length is checked against the bytes that remain.
public struct ByteReader: Sendable {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var remaining: Int { bytes.count - offset }

    mutating func expectVersion() throws(CodecError) {
        let v = try byte("version")
        guard v == RaftCodec.version else { throw .unsupportedVersion(v) }
    }

    public func expectEnd() throws(CodecError) {
        guard remaining == 0 else { throw .trailingBytes(remaining) }
    }

    public mutating func byte(_ what: String) throws(CodecError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(what: what) }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func varint(_ what: String) throws(CodecError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try byte(what)
            if shift == 63 && b > 1 { throw .invalidValue(what: what) }
            result |= UInt64(b & 0x7f) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw .invalidValue(what: what) }
        }
    }

    /// A count of items each at least `minItemSize` bytes long; bounded by what remains so a
    /// forged count cannot make us allocate.
    public mutating func count(_ what: String, minItemSize: Int) throws(CodecError) -> Int {
        let n = try varint(what)
        guard n <= UInt64(remaining / max(minItemSize, 1)) else { throw .truncated(what: what) }
        return Int(n)
    }

    public mutating func blob(_ what: String) throws(CodecError) -> [UInt8] {
        let n = try count(what, minItemSize: 1)
        defer { offset += n }
        return Array(bytes[offset..<offset + n])
    }

    mutating func entry() throws(CodecError) -> Entry {
        let term = try varint("entry term")
        let index = try varint("entry index")
        guard let kind = EntryKind(rawValue: try byte("entry kind")) else { throw .invalidValue(what: "entry kind") }
        let data = try blob("entry data")
        return Entry(term: term, index: index, kind: kind, data: data)
    }

    mutating func idSet(_ what: String) throws(CodecError) -> Set<NodeID> {
        let n = try count(what, minItemSize: 1)
        var s = Set<NodeID>(minimumCapacity: n)
        for _ in 0..<n { s.insert(try varint(what)) }
        return s
    }

    mutating func membership() throws(CodecError) -> Membership {
        let voters = try idSet("voters")
        let learners = try idSet("learners")
        guard voters.isDisjoint(with: learners) else { throw .invalidValue(what: "membership (voter is also learner)") }
        return Membership(voters: voters, learners: learners)
    }

    mutating func snapshotMetadata() throws(CodecError) -> SnapshotMetadata {
        let index = try varint("snapshot index")
        let term = try varint("snapshot term")
        return SnapshotMetadata(index: index, term: term, membership: try membership())
    }

    mutating func message() throws(CodecError) -> Message {
        guard let type = MessageType(rawValue: try byte("message type")) else { throw .invalidValue(what: "message type") }
        var m = Message(type: type, from: try varint("from"), to: try varint("to"), term: try varint("term"))
        m.logTerm = try varint("logTerm")
        m.index = try varint("index")
        m.commit = try varint("commit")
        switch try byte("reject") {
        case 0: m.reject = false
        case 1: m.reject = true
        default: throw .invalidValue(what: "reject")
        }
        m.rejectHint = try varint("rejectHint")
        m.context = try varint("context")
        let n = try count("entries", minItemSize: 4)
        m.entries.reserveCapacity(n)
        for _ in 0..<n { m.entries.append(try entry()) }
        switch try byte("snapshot flag") {
        case 0: break
        case 1:
            let meta = try snapshotMetadata()
            m.snapshot = Snapshot(metadata: meta, data: try blob("snapshot data"))
        default: throw .invalidValue(what: "snapshot flag")
        }
        return m
    }
}
