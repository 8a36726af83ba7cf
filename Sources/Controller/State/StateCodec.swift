import Raft

/// The binary form of controller commands (Raft entry payloads) and of the whole
/// `FailoverState` (Raft snapshots).
///
/// Like the Raft codec: LEB128 varints, length-prefixed strings and lists, a version byte up
/// front. Maps are written in sorted key order, so equal states encode to equal bytes on
/// every replica. Decoding checks every length and count against the bytes left, so
/// malformed input throws and never traps or allocates more than the input could describe.
public enum StateCodecError: Error, Sendable, Hashable, CustomStringConvertible {
    case truncated(what: String)
    case unsupportedVersion(UInt8)
    case badMagic
    case invalidValue(what: String)
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case .truncated(let what): return "truncated input while reading \(what)"
        case .unsupportedVersion(let v): return "unsupported controller format version \(v)"
        case .badMagic: return "not a controller snapshot"
        case .invalidValue(let what): return "invalid value for \(what)"
        case .trailingBytes(let n): return "\(n) unexpected trailing bytes"
        }
    }
}

extension StateCodecError {
    /// The shared primitives report in the Raft codec's terms; say the same in ours.
    init(_ error: CodecError) {
        switch error {
        case .truncated(let what): self = .truncated(what: what)
        case .unsupportedVersion(let v): self = .unsupportedVersion(v)
        case .invalidValue(let what): self = .invalidValue(what: what)
        case .trailingBytes(let n): self = .trailingBytes(n)
        }
    }
}

public enum StateCodec {
    /// The version of encoded commands (log entries).
    public static let version: UInt8 = 1
    /// The version of snapshots. 4 adds each tunnel's `ec2Status` and `elasticIP`, 3 each tunnel's `forwardingENI`, 2 its
    /// `upEvidenceSince`; 1 and 2 are still read
    /// (the streak then starts afresh, which only makes a failback wait one hold-down more).
    public static let stateVersion: UInt8 = 4
    /// "SWFS": tells a controller snapshot from any other blob handed to the decoder.
    static let snapshotMagic: [UInt8] = [0x53, 0x57, 0x46, 0x53]

    public static func encode(_ command: ControllerCommand) -> [UInt8] {
        var w = StateWriter()
        w.byte(version)
        w.command(command)
        return w.bytes
    }

    public static func decodeCommand(_ bytes: [UInt8]) throws(StateCodecError) -> ControllerCommand {
        var r = StateReader(bytes)
        let v = try r.byte("version")
        guard v == version else { throw .unsupportedVersion(v) }
        let c = try r.command()
        try r.expectEnd()
        return c
    }

    public static func encode(_ state: FailoverState) -> [UInt8] {
        var w = StateWriter()
        w.bytes += snapshotMagic
        w.byte(stateVersion)
        w.policy(state.policy)
        w.varint(state.now.millis)
        let names = state.tunnels.keys.sorted()
        w.varint(UInt64(names.count))
        for name in names {
            guard let t = state.tunnels[name] else { continue }
            w.string(name)
            w.byte(t.verdict.rawValue)
            w.optionalStamp(t.verdictSince)
            w.optionalStamp(t.lastDownEvidence)
            w.optionalStamp(t.upEvidenceSince)
            w.bool(t.stale)
            w.bool(t.failbackApproved)
            let replicas = t.observations.keys.sorted()
            w.varint(UInt64(replicas.count))
            for replica in replicas {
                guard let o = t.observations[replica] else { continue }
                w.varint(replica)
                w.varint(UInt64(o.healthyRun))
                w.varint(UInt64(o.unhealthyRun))
                w.optionalVarint(o.rttMillis.map(UInt64.init))
                w.varint(o.at.millis)
            }
            if let d = t.drain {
                w.bool(true)
                w.string(d.reason)
                w.string(d.by)
                w.varint(d.since.millis)
            } else {
                w.bool(false)
            }
            if let i = t.identity {
                w.bool(true)
                w.identity(i)
            } else {
                w.bool(false)
            }
            w.optionalString(t.forwardingENI)
            w.bool(t.ec2Status != nil)
            if let status = t.ec2Status { w.instanceStatus(status) }
            w.bool(t.elasticIP != nil)
            if let eip = t.elasticIP { w.elasticIP(eip) }
        }
        let tokens = state.pending.keys.sorted()
        w.varint(UInt64(tokens.count))
        for token in tokens {
            guard let p = state.pending[token] else { continue }
            w.token(token)
            w.write(p.write)
            w.varint(p.at.millis)
        }
        let keys = state.routeTargets.keys.sorted()
        w.varint(UInt64(keys.count))
        for key in keys {
            guard let target = state.routeTargets[key] else { continue }
            w.routeKey(key)
            w.target(target)
        }
        w.varint(UInt64(state.events.capacity))
        w.varint(state.events.nextSeq)
        w.varint(UInt64(state.events.events.count))
        for e in state.events.events {
            w.varint(e.seq)
            w.varint(e.at.millis)
            w.eventKind(e.kind)
        }
        return w.bytes
    }

    public static func decodeState(_ bytes: [UInt8]) throws(StateCodecError) -> FailoverState {
        var r = StateReader(bytes)
        for m in snapshotMagic { guard try r.byte("magic") == m else { throw .badMagic } }
        let v = try r.byte("version")
        guard v >= 1 && v <= stateVersion else { throw .unsupportedVersion(v) }
        var state = FailoverState(policy: try r.policy())
        state.now = Stamp(millis: try r.varint("now"))
        let tunnelCount = try r.count("tunnels", minBytesEach: 8)
        for _ in 0..<tunnelCount {
            let name = try r.string("tunnel name")
            guard state.tunnels[name] == nil else { throw .invalidValue(what: "duplicate tunnel \(name)") }
            var t = TunnelState()
            guard let verdict = TunnelVerdict(rawValue: try r.byte("verdict")) else { throw .invalidValue(what: "verdict") }
            t.verdict = verdict
            t.verdictSince = try r.optionalStamp("verdictSince")
            t.lastDownEvidence = try r.optionalStamp("lastDownEvidence")
            if v >= 2 { t.upEvidenceSince = try r.optionalStamp("upEvidenceSince") }
            t.stale = try r.bool("stale")
            t.failbackApproved = try r.bool("failbackApproved")
            let observationCount = try r.count("observations", minBytesEach: 5)
            for _ in 0..<observationCount {
                let replica = try r.varint("replica")
                guard t.observations[replica] == nil else { throw .invalidValue(what: "duplicate observation") }
                t.observations[replica] = Observation(
                    healthyRun: try r.varint32("healthyRun"), unhealthyRun: try r.varint32("unhealthyRun"),
                    rttMillis: try r.optionalVarint32("rtt"), at: Stamp(millis: try r.varint("observed at")))
            }
            if try r.bool("drain") {
                t.drain = Drain(reason: try r.string("drain reason"), by: try r.string("drain by"), since: Stamp(millis: try r.varint("drain since")))
            }
            if try r.bool("identity") { t.identity = try r.identity() }
            if v >= 3 { t.forwardingENI = try r.optionalString("forwarding eni") }
            if v >= 4 {
                if try r.bool("ec2 status") { t.ec2Status = try r.instanceStatus() }
                if try r.bool("elastic ip") { t.elasticIP = try r.elasticIP() }
            }
            state.tunnels[name] = t
        }
        let pendingCount = try r.count("pending intents", minBytesEach: 4)
        for _ in 0..<pendingCount {
            let token = try r.token()
            guard state.pending[token] == nil else { throw .invalidValue(what: "duplicate intent") }
            state.pending[token] = PendingIntent(token: token, write: try r.write(), at: Stamp(millis: try r.varint("intent at")))
        }
        let routeCount = try r.count("route targets", minBytesEach: 8)
        for _ in 0..<routeCount {
            let key = try r.routeKey()
            guard state.routeTargets[key] == nil else { throw .invalidValue(what: "duplicate route target") }
            state.routeTargets[key] = try r.target()
        }
        let capacity = try r.varint("event capacity")
        guard capacity >= 1, capacity <= 1_000_000 else { throw .invalidValue(what: "event capacity") }
        let nextSeq = try r.varint("next event seq")
        let eventCount = try r.count("events", minBytesEach: 3)
        guard eventCount <= capacity else { throw .invalidValue(what: "event count") }
        var events: [Event] = []
        events.reserveCapacity(eventCount)
        for _ in 0..<eventCount {
            events.append(Event(seq: try r.varint("event seq"), at: Stamp(millis: try r.varint("event at")), kind: try r.eventKind()))
        }
        state.events = EventLog(capacity: Int(capacity), events: events, nextSeq: nextSeq)
        try r.expectEnd()
        return state
    }
}

/// The controller's values on top of the Raft codec's primitives.
struct StateWriter {
    private var raw = ByteWriter()

    var bytes: [UInt8] {
        get { raw.bytes }
        set { raw.bytes = newValue }
    }

    mutating func byte(_ b: UInt8) { raw.byte(b) }
    mutating func bool(_ b: Bool) { raw.byte(b ? 1 : 0) }
    mutating func varint(_ value: UInt64) { raw.varint(value) }
    mutating func string(_ s: String) { raw.blob(Array(s.utf8)) }

    mutating func optionalVarint(_ v: UInt64?) {
        if let v {
            bool(true)
            varint(v)
        } else {
            bool(false)
        }
    }

    mutating func optionalStamp(_ s: Stamp?) { optionalVarint(s?.millis) }

    mutating func policy(_ p: HealthPolicy) {
        varint(UInt64(p.fall))
        varint(UInt64(p.rise))
        varint(p.observationTTLMillis)
        varint(p.failbackHoldDownMillis)
        bool(p.autoFailback)
        varint(UInt64(p.minimumObservers))
    }

    mutating func identity(_ i: InstanceIdentity) {
        string(i.instanceId)
        string(i.eniId)
        string(i.privateIP)
    }

    mutating func instanceStatus(_ s: InstanceStatusReport) {
        string(s.instanceId)
        bool(s.impaired)
        string(s.summary)
        varint(UInt64(s.events.count))
        for e in s.events { scheduledEvent(e) }
    }

    mutating func scheduledEvent(_ e: ScheduledEvent) {
        string(e.id)
        string(e.code)
        string(e.detail)
        optionalStamp(e.notBefore)
        optionalStamp(e.notAfter)
    }

    mutating func elasticIP(_ e: ElasticIPReport) {
        string(e.allocationId)
        string(e.publicIP)
        optionalString(e.eniId)
    }

    mutating func token(_ t: FencingToken) {
        varint(t.term)
        varint(t.index)
    }

    mutating func routeKey(_ k: RouteKey) {
        string(k.routeTable)
        varint(UInt64(k.destination.address))
        byte(k.destination.prefixLength)
    }

    mutating func optionalString(_ v: String?) {
        if let v {
            bool(true)
            string(v)
        } else {
            bool(false)
        }
    }

    mutating func target(_ t: RouteTarget) {
        string(t.tunnel)
        string(t.instanceId)
        string(t.eniId)
    }

    mutating func write(_ w: ActuationWrite) {
        switch w {
        case .route(let key, let target):
            byte(1)
            routeKey(key)
            self.target(target)
        case .dns(let zoneId, let records):
            // Kind 2 was one record per write; it is still read (logs written before batches).
            byte(3)
            string(zoneId)
            varint(UInt64(records.count))
            for record in records {
                string(record.name)
                string(record.address)
                varint(UInt64(record.ttl))
            }
        case .disableSourceDestCheck(let tunnel, let instance, let eni):
            byte(4)
            string(tunnel)
            string(instance)
            string(eni)
        case .associateAddress(let tunnel, let allocation, let instance, let eni, let ip):
            byte(5)
            string(tunnel)
            string(allocation)
            string(instance)
            string(eni)
            string(ip)
        }
    }

    mutating func command(_ c: ControllerCommand) {
        switch c {
        case .setPolicy(let p):
            byte(1)
            policy(p)
        case .observe(let replica, let tunnel, let healthyRun, let unhealthyRun, let rtt, let instance):
            // Kind 2 without the instance, so a log read by a replica of the last version
            // stays readable until an observation names one.
            byte(instance == nil ? 2 : 12)
            varint(replica)
            string(tunnel)
            varint(UInt64(healthyRun))
            varint(UInt64(unhealthyRun))
            optionalVarint(rtt.map(UInt64.init))
            if let instance { string(instance) }
        case .tick:
            byte(3)
        case .drain(let tunnel, let reason, let by):
            byte(4)
            string(tunnel)
            string(reason)
            string(by)
        case .undrain(let tunnel, let by):
            byte(5)
            string(tunnel)
            string(by)
        case .approveFailback(let tunnel, let by):
            byte(6)
            string(tunnel)
            string(by)
        case .instanceIdentity(let tunnel, let i):
            byte(7)
            string(tunnel)
            identity(i)
        case .intent(let t, let w):
            byte(8)
            token(t)
            write(w)
        case .outcome(let t, let success, let detail, let requestId):
            byte(9)
            token(t)
            bool(success)
            string(detail)
            string(requestId)
        case .routeNotWritten(let key, let reason):
            byte(10)
            routeKey(key)
            string(reason)
        case .sourceDestCheck(let tunnel, let eni, let enabled):
            byte(11)
            string(tunnel)
            string(eni)
            bool(enabled)
        case .instanceStatus(let tunnel, let report):
            byte(13)
            string(tunnel)
            instanceStatus(report)
        case .elasticIP(let tunnel, let report):
            byte(14)
            string(tunnel)
            elasticIP(report)
        }
    }

    mutating func eventKind(_ k: EventKind) {
        switch k {
        case .tunnelDown(let tunnel, let saysDown, let fresh):
            byte(1)
            string(tunnel)
            varint(UInt64(saysDown))
            varint(UInt64(fresh))
        case .tunnelUp(let tunnel, let saysUp, let fresh, let failback):
            byte(2)
            string(tunnel)
            varint(UInt64(saysUp))
            varint(UInt64(fresh))
            bool(failback)
        case .observationsStale(let tunnel, let fresh):
            byte(3)
            string(tunnel)
            varint(UInt64(fresh))
        case .observationsFresh(let tunnel, let fresh):
            byte(4)
            string(tunnel)
            varint(UInt64(fresh))
        case .drained(let tunnel, let reason, let by):
            byte(5)
            string(tunnel)
            string(reason)
            string(by)
        case .undrained(let tunnel, let by):
            byte(6)
            string(tunnel)
            string(by)
        case .failbackApproved(let tunnel, let by):
            byte(7)
            string(tunnel)
            string(by)
        case .instanceDiscovered(let tunnel, let i):
            byte(8)
            string(tunnel)
            identity(i)
        case .instanceReplaced(let tunnel, let old, let new):
            byte(9)
            string(tunnel)
            identity(old)
            identity(new)
        case .intent(let t, let w):
            byte(10)
            token(t)
            write(w)
        case .outcome(let t, let success, let detail, let requestId):
            byte(11)
            token(t)
            bool(success)
            string(detail)
            string(requestId)
        case .outcomeWithoutIntent(let t, let success):
            byte(12)
            token(t)
            bool(success)
        case .intentAbandoned(let t):
            byte(13)
            token(t)
        case .policyChanged(let p):
            byte(14)
            policy(p)
        case .routeNotWritten(let key, let reason):
            byte(15)
            routeKey(key)
            string(reason)
        case .sourceDestCheck(let tunnel, let eni, let enabled):
            byte(16)
            string(tunnel)
            string(eni)
            bool(enabled)
        case .instanceStatus(let tunnel, let instance, let impaired, let summary):
            byte(17)
            string(tunnel)
            string(instance)
            bool(impaired)
            string(summary)
        case .scheduledEvent(let tunnel, let instance, let event):
            byte(18)
            string(tunnel)
            string(instance)
            scheduledEvent(event)
        case .elasticIP(let tunnel, let allocation, let ip, let eni):
            byte(19)
            string(tunnel)
            string(allocation)
            string(ip)
            optionalString(eni)
        }
    }
}

struct StateReader {
    private var raw: ByteReader

    init(_ bytes: [UInt8]) { raw = ByteReader(bytes) }

    var remaining: Int { raw.remaining }

    mutating func byte(_ what: String) throws(StateCodecError) -> UInt8 {
        do { return try raw.byte(what) } catch { throw StateCodecError(error) }
    }

    mutating func bool(_ what: String) throws(StateCodecError) -> Bool {
        switch try byte(what) {
        case 0: return false
        case 1: return true
        default: throw .invalidValue(what: what)
        }
    }

    mutating func varint(_ what: String) throws(StateCodecError) -> UInt64 {
        do { return try raw.varint(what) } catch { throw StateCodecError(error) }
    }

    mutating func varint32(_ what: String) throws(StateCodecError) -> UInt32 {
        let v = try varint(what)
        guard let small = UInt32(exactly: v) else { throw .invalidValue(what: what) }
        return small
    }

    mutating func optionalVarint32(_ what: String) throws(StateCodecError) -> UInt32? {
        try bool(what) ? try varint32(what) : nil
    }

    mutating func optionalString(_ what: String) throws(StateCodecError) -> String? {
        try bool(what) ? try string(what) : nil
    }

    mutating func optionalStamp(_ what: String) throws(StateCodecError) -> Stamp? {
        try bool(what) ? Stamp(millis: try varint(what)) : nil
    }

    /// A list length that the remaining bytes could actually hold, so a forged count cannot
    /// make the decoder reserve or loop beyond the input.
    mutating func count(_ what: String, minBytesEach: Int) throws(StateCodecError) -> Int {
        do { return try raw.count(what, minItemSize: minBytesEach) } catch { throw StateCodecError(error) }
    }

    mutating func string(_ what: String) throws(StateCodecError) -> String {
        let utf8: [UInt8]
        do { utf8 = try raw.blob(what) } catch { throw StateCodecError(error) }
        guard let s = String(validating: utf8, as: UTF8.self) else { throw .invalidValue(what: what) }
        return s
    }

    func expectEnd() throws(StateCodecError) {
        do { try raw.expectEnd() } catch { throw StateCodecError(error) }
    }

    mutating func policy() throws(StateCodecError) -> HealthPolicy {
        let fall = try varint32("fall")
        let rise = try varint32("rise")
        let ttl = try varint("observationTTL")
        let holdDown = try varint("failbackHoldDown")
        let auto = try bool("autoFailback")
        let minimum = try varint32("minimumObservers")
        guard fall >= 1, rise >= 1, minimum >= 1 else { throw .invalidValue(what: "health policy") }
        return HealthPolicy(fall: fall, rise: rise, observationTTLMillis: ttl, failbackHoldDownMillis: holdDown, autoFailback: auto, minimumObservers: minimum)
    }

    mutating func identity() throws(StateCodecError) -> InstanceIdentity {
        InstanceIdentity(instanceId: try string("instance id"), eniId: try string("eni id"), privateIP: try string("private ip"))
    }

    mutating func instanceStatus() throws(StateCodecError) -> InstanceStatusReport {
        let instance = try string("instance id")
        let impaired = try bool("impaired")
        let summary = try string("status summary")
        // Each event is at least three length bytes and two absent stamps.
        let count = try count("scheduled events", minBytesEach: 5)
        var events: [ScheduledEvent] = []
        for _ in 0..<count { events.append(try scheduledEvent()) }
        return InstanceStatusReport(instanceId: instance, impaired: impaired, summary: summary, events: events)
    }

    mutating func scheduledEvent() throws(StateCodecError) -> ScheduledEvent {
        ScheduledEvent(id: try string("event id"), code: try string("event code"), detail: try string("event detail"),
                       notBefore: try optionalStamp("not before"), notAfter: try optionalStamp("not after"))
    }

    mutating func elasticIP() throws(StateCodecError) -> ElasticIPReport {
        ElasticIPReport(allocationId: try string("allocation id"), publicIP: try string("public ip"), eniId: try optionalString("eni id"))
    }

    mutating func token() throws(StateCodecError) -> FencingToken {
        FencingToken(term: try varint("term"), index: try varint("index"))
    }

    mutating func routeKey() throws(StateCodecError) -> RouteKey {
        let table = try string("route table")
        let address = try varint("destination")
        let length = try byte("prefix length")
        guard let a = UInt32(exactly: address), length <= 32 else { throw .invalidValue(what: "destination") }
        let cidr = IPv4CIDR(address: a, prefixLength: length)
        guard a & ~cidr.mask == 0 else { throw .invalidValue(what: "destination host bits") }
        return RouteKey(routeTable: table, destination: cidr)
    }

    mutating func target() throws(StateCodecError) -> RouteTarget {
        RouteTarget(tunnel: try string("target tunnel"), instanceId: try string("target instance"), eniId: try string("target eni"))
    }

    mutating func write() throws(StateCodecError) -> ActuationWrite {
        switch try byte("write kind") {
        case 1:
            return .route(try routeKey(), target: try target())
        case 2:
            let zone = try string("zone id")
            return .dns(zoneId: zone, records: [
                DNSRecordWrite(name: try string("record name"), address: try string("address"), ttl: try varint32("ttl")),
            ])
        case 3:
            let zone = try string("zone id")
            // Each record is at least two length bytes and a ttl byte.
            let count = try count("record count", minBytesEach: 3)
            var records: [DNSRecordWrite] = []
            for _ in 0..<count {
                records.append(DNSRecordWrite(name: try string("record name"), address: try string("address"), ttl: try varint32("ttl")))
            }
            return .dns(zoneId: zone, records: records)
        case 4:
            return .disableSourceDestCheck(tunnel: try string("tunnel"), instanceId: try string("instance id"), eniId: try string("eni id"))
        case 5:
            return .associateAddress(tunnel: try string("tunnel"), allocationId: try string("allocation id"),
                                     instanceId: try string("instance id"), eniId: try string("eni id"), privateIP: try string("private ip"))
        default:
            throw .invalidValue(what: "write kind")
        }
    }

    mutating func command() throws(StateCodecError) -> ControllerCommand {
        switch try byte("command kind") {
        case 1:
            return .setPolicy(try policy())
        case 2:
            return .observe(
                replica: try varint("replica"), tunnel: try string("tunnel"), healthyRun: try varint32("healthyRun"),
                unhealthyRun: try varint32("unhealthyRun"), rttMillis: try optionalVarint32("rtt"))
        case 3:
            return .tick
        case 4:
            return .drain(tunnel: try string("tunnel"), reason: try string("reason"), by: try string("by"))
        case 5:
            return .undrain(tunnel: try string("tunnel"), by: try string("by"))
        case 6:
            return .approveFailback(tunnel: try string("tunnel"), by: try string("by"))
        case 7:
            return .instanceIdentity(tunnel: try string("tunnel"), try identity())
        case 8:
            return .intent(try token(), try write())
        case 9:
            return .outcome(try token(), success: try bool("success"), detail: try string("detail"), requestId: try string("request id"))
        case 10:
            return .routeNotWritten(try routeKey(), reason: try string("reason"))
        case 11:
            return .sourceDestCheck(tunnel: try string("tunnel"), eniId: try string("eni id"), enabled: try bool("enabled"))
        case 12:
            return .observe(
                replica: try varint("replica"), tunnel: try string("tunnel"), healthyRun: try varint32("healthyRun"),
                unhealthyRun: try varint32("unhealthyRun"), rttMillis: try optionalVarint32("rtt"), instanceId: try string("instance id"))
        case 13:
            return .instanceStatus(tunnel: try string("tunnel"), try instanceStatus())
        case 14:
            return .elasticIP(tunnel: try string("tunnel"), try elasticIP())
        default:
            throw .invalidValue(what: "command kind")
        }
    }

    mutating func eventKind() throws(StateCodecError) -> EventKind {
        switch try byte("event kind") {
        case 1:
            return .tunnelDown(tunnel: try string("tunnel"), saysDown: try varint32("saysDown"), fresh: try varint32("fresh"))
        case 2:
            return .tunnelUp(tunnel: try string("tunnel"), saysUp: try varint32("saysUp"), fresh: try varint32("fresh"), failback: try bool("failback"))
        case 3:
            return .observationsStale(tunnel: try string("tunnel"), fresh: try varint32("fresh"))
        case 4:
            return .observationsFresh(tunnel: try string("tunnel"), fresh: try varint32("fresh"))
        case 5:
            return .drained(tunnel: try string("tunnel"), reason: try string("reason"), by: try string("by"))
        case 6:
            return .undrained(tunnel: try string("tunnel"), by: try string("by"))
        case 7:
            return .failbackApproved(tunnel: try string("tunnel"), by: try string("by"))
        case 8:
            return .instanceDiscovered(tunnel: try string("tunnel"), try identity())
        case 9:
            return .instanceReplaced(tunnel: try string("tunnel"), old: try identity(), new: try identity())
        case 10:
            return .intent(try token(), try write())
        case 11:
            return .outcome(try token(), success: try bool("success"), detail: try string("detail"), requestId: try string("request id"))
        case 12:
            return .outcomeWithoutIntent(try token(), success: try bool("success"))
        case 13:
            return .intentAbandoned(try token())
        case 14:
            return .policyChanged(try policy())
        case 15:
            return .routeNotWritten(try routeKey(), reason: try string("reason"))
        case 16:
            return .sourceDestCheck(tunnel: try string("tunnel"), eniId: try string("eni id"), enabled: try bool("enabled"))
        case 17:
            return .instanceStatus(tunnel: try string("tunnel"), instanceId: try string("instance id"), impaired: try bool("impaired"),
                                   summary: try string("status summary"))
        case 18:
            return .scheduledEvent(tunnel: try string("tunnel"), instanceId: try string("instance id"), try scheduledEvent())
        case 19:
            return .elasticIP(tunnel: try string("tunnel"), allocationId: try string("allocation id"), publicIP: try string("public ip"),
                              eniId: try optionalString("eni id"))
        default:
            throw .invalidValue(what: "event kind")
        }
    }
}
