import Raft
import RaftTestKit
import Testing

@Suite struct CodecTests {
    static let samples: [Message] = {
        let s = Snapshot(
            metadata: SnapshotMetadata(index: 99, term: 7, membership: Membership(voters: [1, 2, 3], learners: [9])),
            data: Array(0..<200).map { UInt8($0 % 256) })
        return [
            Message(type: .vote, from: 1, to: 2, term: 3, logTerm: 2, index: 10, context: 1),
            Message(
                type: .append, from: 1, to: 3, term: 5, logTerm: 4, index: 1 << 40,
                entries: [Entry(term: 5, index: 1 << 40 + 1, data: [1, 2, 3]), Entry(term: 5, index: 1 << 40 + 2, kind: .membership, data: [])],
                commit: 77),
            Message(type: .appendResponse, from: 3, to: 1, term: .max, index: 9, reject: true, rejectHint: 4, context: .max),
            Message(type: .snapshot, from: 1, to: 2, term: 8, snapshot: s),
            Message(type: .readIndexResponse, from: 1, to: 2, term: 1, index: 5, context: 123_456_789),
        ]
    }()

    @Test func messagesRoundTrip() throws {
        for m in Self.samples {
            #expect(try RaftCodec.decodeMessage(RaftCodec.encode(m)) == m)
        }
        for type in MessageType.allCases {
            let m = Message(type: type, from: 4, to: 5, term: 6)
            #expect(try RaftCodec.decodeMessage(RaftCodec.encode(m)) == m)
        }
    }

    @Test func otherValuesRoundTrip() throws {
        let e = Entry(term: 3, index: 4, kind: .membership, data: [9, 9])
        #expect(try RaftCodec.decodeEntry(RaftCodec.encode(e)) == e)
        let h = HardState(term: 1 << 62, vote: 3, commit: 12)
        #expect(try RaftCodec.decodeHardState(RaftCodec.encode(h)) == h)
        let m = Membership(voters: [1, 5, 1 << 50], learners: [7])
        #expect(try RaftCodec.decodeMembership(RaftCodec.encode(m)) == m)
        let meta = SnapshotMetadata(index: 5, term: 2, membership: m)
        #expect(try RaftCodec.decodeSnapshotMetadata(RaftCodec.encode(meta)) == meta)
    }

    @Test func theFormatIsCompact() {
        let heartbeat = Message(type: .heartbeat, from: 1, to: 2, term: 5, commit: 100, context: 42)
        #expect(RaftCodec.encode(heartbeat).count <= 16)
    }

    @Test func everyTruncationThrows() {
        for m in Self.samples {
            let bytes = RaftCodec.encode(m)
            for n in 0..<bytes.count {
                #expect(throws: CodecError.self) { _ = try RaftCodec.decodeMessage(Array(bytes[0..<n])) }
            }
        }
    }

    @Test func trailingBytesAndUnknownVersionsThrow() {
        var bytes = RaftCodec.encode(Self.samples[0])
        bytes.append(0)
        #expect(throws: CodecError.trailingBytes(1)) { _ = try RaftCodec.decodeMessage(bytes) }
        var v2 = RaftCodec.encode(Self.samples[0])
        v2[0] = 2
        #expect(throws: CodecError.unsupportedVersion(2)) { _ = try RaftCodec.decodeMessage(v2) }
        #expect(throws: CodecError.self) { _ = try RaftCodec.decodeMessage([]) }
    }

    @Test func forgedCountsDoNotAllocateOrTrap() {
        // version, type append, then ids/terms, then an entry count of 2^63.
        var bytes: [UInt8] = [1, MessageType.append.rawValue, 1, 2, 3, 0, 0, 0, 0, 0, 0]
        bytes += [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]
        #expect(throws: CodecError.self) { _ = try RaftCodec.decodeMessage(bytes) }
        // An over-long varint.
        let long: [UInt8] = [1, 1] + [UInt8](repeating: 0xff, count: 11)
        #expect(throws: CodecError.self) { _ = try RaftCodec.decodeMessage(long) }
    }

    @Test func randomBytesNeverCrashTheDecoder() {
        var rng = SplitMix64(seed: 2026)
        var decoded = 0
        for _ in 0..<20_000 {
            let n = Int(rng.next() % 64)
            var bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if !bytes.isEmpty && rng.next() % 2 == 0 { bytes[0] = RaftCodec.version }
            if (try? RaftCodec.decodeMessage(bytes)) != nil { decoded += 1 }
            _ = try? RaftCodec.decodeEntry(bytes)
            _ = try? RaftCodec.decodeMembership(bytes)
        }
        // Mutating valid encodings reaches deeper into the decoder.
        for m in Self.samples {
            let base = RaftCodec.encode(m)
            for _ in 0..<2_000 {
                var bytes = base
                let flips = 1 + Int(rng.next() % 4)
                for _ in 0..<flips { bytes[Int(rng.next() % UInt64(bytes.count))] = UInt8(truncatingIfNeeded: rng.next()) }
                if let d = try? RaftCodec.decodeMessage(bytes) {
                    decoded += 1
                    // Whatever decodes re-encodes to something that decodes to the same value.
                    #expect((try? RaftCodec.decodeMessage(RaftCodec.encode(d))) == d)
                }
            }
        }
        #expect(decoded > 0)
    }
}
