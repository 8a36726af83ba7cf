import NIOCore

/// One unit on the wire:
///
///     +----------------------+----------+---------------------+
///     | length: UInt32 (BE)  | type: u8 | payload (length-1)  |
///     +----------------------+----------+---------------------+
///
/// `length` counts the type byte and the payload, so it is never zero.
public struct Frame: Equatable, Sendable {
    public enum Kind: UInt8, Sendable {
        /// First frame on a connection, client to server: protocol version, sender member id,
        /// cluster name.
        case hello = 1
        /// Server to client: the hello was accepted, messages may flow.
        case helloAccepted = 2
        /// A whole message, or the last piece of a chunked one.
        case message = 3
        /// A non-final piece of a chunked message; more pieces follow on the same connection.
        case fragment = 4
    }

    public var kind: Kind
    public var payload: ByteBuffer

    public init(kind: Kind, payload: ByteBuffer) {
        self.kind = kind
        self.payload = payload
    }

    /// Bytes before the payload: the length field and the type byte.
    public static let headerSize = 5
}

public enum FrameError: Error, Equatable, CustomStringConvertible {
    case zeroLength
    case oversized(length: UInt32, maximumPayload: Int)
    case unknownType(UInt8)
    case truncated(remainingBytes: Int)

    public var description: String {
        switch self {
        case .zeroLength: return "frame with zero length (no type byte)"
        case .oversized(let length, let maximum): return "frame length \(length) exceeds the limit of \(maximum) payload bytes"
        case .unknownType(let type): return "unknown frame type \(type)"
        case .truncated(let remaining): return "connection closed in the middle of a frame (\(remaining) bytes left over)"
        }
    }
}

/// Decodes frames, rejecting an oversized length as soon as the 4-byte prefix is in, so a
/// peer cannot make us buffer more than `maximumPayloadSize` before we notice.
public struct FrameDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = Frame

    public let maximumPayloadSize: Int

    public init(maximumPayloadSize: Int) {
        self.maximumPayloadSize = maximumPayloadSize
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> Frame? {
        guard let length = buffer.getInteger(at: buffer.readerIndex, endianness: .big, as: UInt32.self) else {
            return nil
        }
        guard length > 0 else { throw FrameError.zeroLength }
        guard UInt64(length) - 1 <= UInt64(maximumPayloadSize) else {
            throw FrameError.oversized(length: length, maximumPayload: maximumPayloadSize)
        }
        let typeIndex = buffer.readerIndex + 4
        guard let rawType = buffer.getInteger(at: typeIndex, as: UInt8.self) else { return nil }
        guard let kind = Frame.Kind(rawValue: rawType) else { throw FrameError.unknownType(rawType) }
        let payloadLength = Int(length) - 1
        guard buffer.readableBytes >= Frame.headerSize + payloadLength else { return nil }
        buffer.moveReaderIndex(forwardBy: Frame.headerSize)
        guard let payload = buffer.readSlice(length: payloadLength) else { return nil }
        return Frame(kind: kind, payload: payload)
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> Frame? {
        if let frame = try decode(buffer: &buffer) { return frame }
        if buffer.readableBytes > 0 { throw FrameError.truncated(remainingBytes: buffer.readableBytes) }
        return nil
    }
}

public struct FrameEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Frame

    public init() {}

    public func encode(data: Frame, out: inout ByteBuffer) throws {
        out.reserveCapacity(minimumWritableBytes: Frame.headerSize + data.payload.readableBytes)
        out.writeInteger(UInt32(data.payload.readableBytes + 1), endianness: .big)
        out.writeInteger(data.kind.rawValue)
        var payload = data.payload
        out.writeBuffer(&payload)
    }
}

/// The hello frame's payload: version u8, member id u64 BE, (version 2) the incarnation of
/// the sender's data directory u64 BE, cluster name UTF-8 (the rest). Version 1 has no
/// incarnation; it reads as 0, "not said".
struct Hello: Equatable {
    static let protocolVersion: UInt8 = 2
    static let oldestVersion: UInt8 = 1
    static let maximumClusterNameBytes = 255

    var version: UInt8 = Hello.protocolVersion
    var memberID: UInt64
    var incarnation: UInt64 = 0
    var clusterName: String

    func encode(allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 17 + clusterName.utf8.count)
        buffer.writeInteger(version)
        buffer.writeInteger(memberID, endianness: .big)
        if version >= 2 { buffer.writeInteger(incarnation, endianness: .big) }
        buffer.writeString(clusterName)
        return buffer
    }

    static func decode(_ payload: ByteBuffer) -> Hello? {
        var buffer = payload
        guard let version = buffer.readInteger(as: UInt8.self),
            let id = buffer.readInteger(endianness: .big, as: UInt64.self)
        else { return nil }
        var incarnation: UInt64 = 0
        if version >= 2 {
            guard let i = buffer.readInteger(endianness: .big, as: UInt64.self) else { return nil }
            incarnation = i
        }
        guard buffer.readableBytes <= maximumClusterNameBytes, let name = buffer.readString(length: buffer.readableBytes)
        else { return nil }
        return Hello(version: version, memberID: id, incarnation: incarnation, clusterName: name)
    }
}
