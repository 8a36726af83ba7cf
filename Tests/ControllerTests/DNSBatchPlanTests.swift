import Actuators
import Testing
@testable import Controller

@Suite struct DNSBatchPlanTests {
    func record(_ name: String, _ ip: String, ttl: Int = 30) -> DesiredRecord {
        DesiredRecord(hostedZoneId: "Z1", name: name, ttl: ttl, values: [ip])
    }

    @Test func onlyRecordsThatDifferAreWrittenComparedAsRoute53Names() {
        let current = [
            "a.example.": ResourceRecordSet(name: "a.example.", type: "A", ttl: 30, values: ["10.0.0.1"]),
            "b.example.": ResourceRecordSet(name: "b.example.", type: "A", ttl: 60, values: ["10.0.0.2"]),
            "c.example.": ResourceRecordSet(name: "c.example.", type: "A", ttl: 30, values: ["10.0.0.9"]),
        ]
        let desired = [record("A.Example", "10.0.0.1"), record("b.example", "10.0.0.2"), record("c.example.", "10.0.0.3"), record("d.example", "10.0.0.4")]
        #expect(DNSBatchPlan.outOfDate(desired, current: current).map(\.name) == ["b.example", "c.example.", "d.example"])
    }

    @Test func oneBatchPerZoneSplitOnlyByRoute53sLimitOrAfterARefusal() {
        let records = (0..<1001).reversed().map { record("r\(String(format: "%04d", $0)).example", "10.0.0.1") }
        let batches = DNSBatchPlan.batches(records, oneByOne: false)
        #expect(batches.map(\.count) == [500, 500, 1])
        #expect(batches.flatMap { $0 }.map(\.name) == records.map(\.name).sorted())
        #expect(DNSBatchPlan.batches(Array(records.prefix(3)), oneByOne: false).count == 1)
        #expect(DNSBatchPlan.batches(Array(records.prefix(3)), oneByOne: true).map(\.count) == [1, 1, 1])
        #expect(DNSBatchPlan.batches([], oneByOne: false).isEmpty)
    }
}
