import Raft

/// What one controller log entry carries: a command, which replica proposed it and with
/// which request id (so the proposer can recognise it when applied, also after forwarding it
/// to the leader), and the proposer's wall-clock stamp when the proposer led.
///
/// Followers forward their observations to the leader (`RaftNode.submit`) and the leader
/// appends them as they are; such entries carry no stamp and take the time of the last
/// stamped entry, so time inside the state comes only from leaders (DESIGN rule 6).
public struct ControllerEntry: Sendable, Hashable {
    public static let version: UInt8 = 1

    public var stamp: Stamp?
    public var origin: ReplicaID
    public var requestID: UInt64
    public var command: ControllerCommand

    public init(stamp: Stamp?, origin: ReplicaID, requestID: UInt64, command: ControllerCommand) {
        self.stamp = stamp
        self.origin = origin
        self.requestID = requestID
        self.command = command
    }

    public func encoded() -> [UInt8] {
        var w = ByteWriter()
        w.byte(Self.version)
        // 0 means "no stamp"; a stamp is stored plus one so that t=0 stays representable.
        w.varint(stamp.map { $0.millis &+ 1 } ?? 0)
        w.varint(origin)
        w.varint(requestID)
        w.blob(StateCodec.encode(command))
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws -> ControllerEntry {
        var r = ByteReader(bytes)
        let v = try r.byte("entry version")
        guard v == version else { throw StateCodecError.unsupportedVersion(v) }
        let rawStamp = try r.varint("stamp")
        let origin = try r.varint("origin")
        let requestID = try r.varint("request id")
        let command = try StateCodec.decodeCommand(try r.blob("command"))
        try r.expectEnd()
        return ControllerEntry(
            stamp: rawStamp == 0 ? nil : Stamp(millis: rawStamp - 1), origin: origin, requestID: requestID, command: command)
    }
}
