import Actuators

/// Which Route 53 ChangeBatches one reconcile pass makes for one hosted zone. Pure: the
/// reconciler reads the zone, drops the records it is backing off, and asks this.
public enum DNSBatchPlan {
    /// The records of `desired` that `current` (keyed by canonical name, as
    /// `DNSActuator.readRecords` answers) does not already hold.
    public static func outOfDate(_ desired: [DesiredRecord], current: [String: ResourceRecordSet]) -> [DesiredRecord] {
        desired.filter { record in
            guard let now = current[canonicalRecordName(record.name)] else { return true }
            return now.ttl != record.ttl || now.values.sorted() != record.values.sorted()
        }
    }

    /// One batch for the zone — Route 53 applies it whole, so a pass costs one call and one
    /// intent however many tunnels moved — split only where one batch cannot hold them all.
    /// `oneByOne` is for a zone whose last batch was refused: a record Route 53 refuses (a
    /// name the role may not change, a name outside the zone) fails every batch it is in,
    /// and writing each alone lets the others through while that one backs off.
    public static func batches(_ records: [DesiredRecord], oneByOne: Bool,
                               maxPerBatch: Int = AWSDNSActuator.maxUpsertsPerBatch) -> [[DesiredRecord]] {
        // Sorted so that the same records always make the same batches and intents.
        let sorted = records.sorted { canonicalRecordName($0.name) < canonicalRecordName($1.name) }
        let size = oneByOne ? 1 : max(1, maxPerBatch)
        return stride(from: 0, to: sorted.count, by: size).map { Array(sorted[$0..<min($0 + size, sorted.count)]) }
    }
}
