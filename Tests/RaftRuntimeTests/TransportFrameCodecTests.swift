import NIOCore
import NIOEmbedded
import Testing

@testable import RaftRuntime

@Suite("Frame codec")
struct TransportFrameCodecTests {
    private func decoderChannel(maximumPayload: Int = 16) -> EmbeddedChannel {
        EmbeddedChannel(handler: ByteToMessageHandler(FrameDecoder(maximumPayloadSize: maximumPayload)))
    }

    private func bytes(_ values: [UInt8]) -> ByteBuffer { ByteBuffer(bytes: values) }

    @Test func exactFrameDecodes() throws {
        let channel = decoderChannel()
        try channel.writeInbound(bytes([0, 0, 0, 4, 3, 0xAA, 0xBB, 0xCC]))
        let frame = try #require(try channel.readInbound(as: Frame.self))
        #expect(frame.kind == .message)
        #expect(Array(frame.payload.readableBytesView) == [0xAA, 0xBB, 0xCC])
        #expect(try channel.readInbound(as: Frame.self) == nil)
        #expect(try channel.finish().isClean)
    }

    @Test func partialFrameWaitsForTheRest() throws {
        let channel = decoderChannel()
        let wire: [UInt8] = [0, 0, 0, 3, 4, 1, 2]
        for byte in wire.dropLast() {
            try channel.writeInbound(bytes([byte]))
            #expect(try channel.readInbound(as: Frame.self) == nil)
        }
        try channel.writeInbound(bytes([wire[wire.count - 1]]))
        let frame = try #require(try channel.readInbound(as: Frame.self))
        #expect(frame.kind == .fragment)
        #expect(Array(frame.payload.readableBytesView) == [1, 2])
        _ = try channel.finish()
    }

    @Test func severalFramesInOneRead() throws {
        let channel = decoderChannel()
        try channel.writeInbound(bytes([0, 0, 0, 1, 3, 0, 0, 0, 2, 3, 9, 0, 0, 0]))
        let first = try #require(try channel.readInbound(as: Frame.self))
        let second = try #require(try channel.readInbound(as: Frame.self))
        #expect(first.payload.readableBytes == 0)
        #expect(Array(second.payload.readableBytesView) == [9])
        #expect(try channel.readInbound(as: Frame.self) == nil)
        // Three bytes of a length prefix are left over when the connection ends.
        #expect(throws: FrameError.truncated(remainingBytes: 3)) { try channel.finish() }
    }

    @Test func frameAtTheLimitIsAccepted() throws {
        let channel = decoderChannel(maximumPayload: 16)
        try channel.writeInbound(bytes([0, 0, 0, 17, 3] + [UInt8](repeating: 7, count: 16)))
        let frame = try #require(try channel.readInbound(as: Frame.self))
        #expect(frame.payload.readableBytes == 16)
        _ = try channel.finish()
    }

    @Test func oversizedLengthIsRejectedBeforeThePayloadArrives() throws {
        let channel = decoderChannel(maximumPayload: 16)
        #expect(throws: FrameError.oversized(length: 18, maximumPayload: 16)) {
            try channel.writeInbound(bytes([0, 0, 0, 18]))
        }
        _ = try? channel.finish()
    }

    @Test func hugeLengthIsRejected() throws {
        let channel = decoderChannel(maximumPayload: 1 << 20)
        #expect(throws: FrameError.oversized(length: UInt32.max, maximumPayload: 1 << 20)) {
            try channel.writeInbound(bytes([0xFF, 0xFF, 0xFF, 0xFF, 3]))
        }
        _ = try? channel.finish()
    }

    @Test func zeroLengthIsRejected() throws {
        let channel = decoderChannel()
        #expect(throws: FrameError.zeroLength) {
            try channel.writeInbound(bytes([0, 0, 0, 0]))
        }
        _ = try? channel.finish()
    }

    @Test func unknownTypeIsRejected() throws {
        let channel = decoderChannel()
        #expect(throws: FrameError.unknownType(0x42)) {
            try channel.writeInbound(bytes([0, 0, 0, 1, 0x42]))
        }
        _ = try? channel.finish()
    }

    @Test func encoderWritesLengthTypeAndPayload() throws {
        let channel = EmbeddedChannel(handler: MessageToByteHandler(FrameEncoder()))
        try channel.writeOutbound(Frame(kind: .message, payload: bytes([1, 2, 3])))
        let wire = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(wire.readableBytesView) == [0, 0, 0, 4, 3, 1, 2, 3])
        try channel.writeOutbound(Frame(kind: .helloAccepted, payload: ByteBuffer()))
        let empty = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(Array(empty.readableBytesView) == [0, 0, 0, 1, 2])
        _ = try channel.finish()
    }

    @Test func encoderOutputRoundTripsThroughDecoder() throws {
        let encoder = EmbeddedChannel(handler: MessageToByteHandler(FrameEncoder()))
        let decoder = decoderChannel(maximumPayload: 1024)
        let payloads: [[UInt8]] = [[], [0], Array(0..<255), patternedBytes(count: 1024)]
        for payload in payloads {
            try encoder.writeOutbound(Frame(kind: .fragment, payload: bytes(payload)))
            let wire = try #require(try encoder.readOutbound(as: ByteBuffer.self))
            try decoder.writeInbound(wire)
            let frame = try #require(try decoder.readInbound(as: Frame.self))
            #expect(frame.kind == .fragment)
            #expect(Array(frame.payload.readableBytesView) == payload)
        }
        _ = try encoder.finish()
        _ = try decoder.finish()
    }

    @Test func helloRoundTrips() throws {
        let hello = Hello(memberID: 0xDEAD_BEEF_0000_0001, clusterName: "prod-eu")
        let encoded = hello.encode(allocator: ByteBufferAllocator())
        #expect(Hello.decode(encoded) == hello)
        #expect(Hello.decode(ByteBuffer(bytes: [1, 0, 0])) == nil)
        let withIncarnation = Hello(memberID: 3, incarnation: 0x0123_4567_89AB_CDEF, clusterName: "prod")
        #expect(Hello.decode(withIncarnation.encode(allocator: ByteBufferAllocator())) == withIncarnation)
        // A version-1 hello (no incarnation) still decodes, as "not said".
        let old = Hello(version: 1, memberID: 3, incarnation: 99, clusterName: "prod")
        #expect(Hello.decode(old.encode(allocator: ByteBufferAllocator())) == Hello(version: 1, memberID: 3, incarnation: 0, clusterName: "prod"))
        #expect(Hello.decode(ByteBuffer(bytes: [2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0])) == nil, "version 2 cut inside the incarnation")
    }
}
