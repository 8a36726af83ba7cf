import BenchSupport
import Foundation
import Testing

@Suite struct BenchSupportTests {
    @Test func putRequestRoundTripsThroughJSONLikeEtcdsGateway() throws {
        let request = PutRequest(key: Array("k1".utf8), value: [0, 1, 2, 255])
        let json = try #require(String(validating: request.encoded(), as: UTF8.self))
        // etcd's gateway wants exactly these two base64 fields.
        #expect(json.contains("\"key\":\"azE=\""))
        #expect(json.contains("\"value\":\"AAEC\\/w==\"") || json.contains("\"value\":\"AAEC/w==\""))
        let parsed = try PutRequest.parse(request.encoded())
        #expect(parsed == request)
        let (k, v) = try parsed.decoded()
        #expect(k == Array("k1".utf8))
        #expect(v == [0, 1, 2, 255])
    }

    @Test func malformedBodiesAreRejected() {
        #expect(throws: BenchMessageError.self) { try PutRequest.parse(Array("{\"key\":1}".utf8)) }
        #expect(throws: BenchMessageError.self) { try PutRequest.parse(Array("not json".utf8)) }
        #expect(throws: BenchMessageError.invalidBase64) {
            try PutRequest.parse(Array(#"{"key":"%%%","value":""}"#.utf8)).decoded()
        }
    }

    @Test func responsesRoundTrip() throws {
        #expect(try decodeJSON(ProposeResponse.self, encodeJSON(ProposeResponse(index: 42))).index == 42)
        #expect(try decodeJSON(NotLeaderResponse.self, Array("{\"leader\":3}".utf8)).leader == 3)
        let status = NodeStatusResponse(
            id: 1, role: "leader", term: 2, leader: 1, commitIndex: 10, appliedIndex: 10, storage: "memory",
            durableWrites: 5, durableWriteSeconds: 0.5, proposalBatches: 4, batchedProposals: 9)
        #expect(try decodeJSON(NodeStatusResponse.self, encodeJSON(status)) == status)
    }

    @Test func entriesRoundTripAndTruncationIsCaught() throws {
        let e = BenchEntry.encode(key: [1, 2, 3], value: [9, 9])
        #expect(e == [0, 0, 0, 3, 1, 2, 3, 9, 9])
        let (k, v) = try BenchEntry.decode(e)
        #expect(k == [1, 2, 3] && v == [9, 9])
        #expect(throws: BenchMessageError.truncatedEntry) { try BenchEntry.decode([0, 0, 0, 5, 1]) }
        #expect(throws: BenchMessageError.truncatedEntry) { try BenchEntry.decode([0, 0]) }
    }

    @Test func nearestRankPercentiles() {
        let hundred = Array(1...100)
        #expect(percentile(hundred, 50) == 50)
        #expect(percentile(hundred, 99) == 99)
        #expect(percentile(hundred, 99.9) == 100)
        #expect(percentile(hundred, 0) == 1)
        #expect(percentile(hundred, 100) == 100)
        #expect(percentile([7], 99.9) == 7)
        #expect(percentile([Int](), 50) == nil)
        let thousand = Array(1...1000)
        #expect(percentile(thousand, 99.9) == 999)
    }

    @Test func latencySummaryIsInMilliseconds() {
        let s = LatencySummary(nanoseconds: [3_000_000, 1_000_000, 2_000_000])
        #expect(s.count == 3)
        #expect(s.p50 == 2)
        #expect(s.p99 == 3)
        #expect(s.max == 3)
        #expect(LatencySummary(nanoseconds: []).p50.isNaN)
    }

    @Test func peerListParsing() {
        #expect(parsePeerList("1=127.0.0.1:7001,2=127.0.0.1:7002") == [1: "127.0.0.1:7001", 2: "127.0.0.1:7002"])
        #expect(parsePeerList("") == nil)
        #expect(parsePeerList("0=127.0.0.1:1") == nil)
        #expect(parsePeerList("1=a:1,1=b:2") == nil)
        #expect(parsePeerList("x=a:1") == nil)
    }

    @Test func etcdStatusFromTheGateway() throws {
        let body = """
            {"header":{"cluster_id":"1","member_id":"12345","revision":"3","raft_term":"2"},\
            "version":"3.4.23","dbSize":"20480","leader":"12345","raftIndex":"8","raftTerm":"2"}
            """
        let s = try EtcdStatus.parse(Array(body.utf8))
        #expect(s.memberID == 12345 && s.leader == 12345 && s.raftIndex == 8 && s.isLeader)
        #expect(throws: BenchMessageError.self) { try EtcdStatus.parse(Array("{}".utf8)) }
    }

    @Test func prometheusSums() {
        let text = """
            # HELP etcd_disk_wal_fsync_duration_seconds x
            etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 3
            etcd_disk_wal_fsync_duration_seconds_sum 0.25
            etcd_disk_wal_fsync_duration_seconds_count 17
            etcd_disk_wal_fsync_duration_seconds_count_extra 99
            """
        #expect(prometheusValue("etcd_disk_wal_fsync_duration_seconds_count", in: text) == 17)
        #expect(prometheusValue("etcd_disk_wal_fsync_duration_seconds_sum", in: text) == 0.25)
        #expect(prometheusValue("missing", in: text) == nil)
    }
}
