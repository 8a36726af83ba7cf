import SwitchmanTestSupport
import Testing
@testable import Controller

/// A state that uses every part of the format: verdicts, stale marks, drains, identities,
/// pending intents, route targets and every event kind the script produces.
func richScript() throws -> [(ControllerCommand, UInt64)] {
    let key = RouteKey(routeTable: "rtb-0a", destination: try IPv4CIDR.parse("10.1.0.0/16").get())
    let target = RouteTarget(tunnel: "vpn-a", instanceId: "i-1", eniId: "eni-1")
    var script: [(ControllerCommand, UInt64)] = []
    var t: UInt64 = 1_700_000_000_000
    func add(_ c: ControllerCommand, after ms: UInt64 = 100) {
        t += ms
        script.append((c, t))
    }
    add(.setPolicy(HealthPolicy(fall: 2, rise: 2, observationTTLMillis: 10_000, failbackHoldDownMillis: 30_000, autoFailback: true, minimumObservers: 2)))
    for tunnel in ["vpn-a", "vpn-b", "vpn-ü"] {
        add(.instanceIdentity(tunnel: tunnel, InstanceIdentity(instanceId: "i-\(tunnel)", eniId: "eni-\(tunnel)", privateIP: "10.0.0.1")))
        for r: ReplicaID in 1...3 { add(.observe(replica: r, tunnel: tunnel, healthyRun: 5, unhealthyRun: 0, rttMillis: 20 + UInt32(r))) }
    }
    add(.observe(replica: 1, tunnel: "vpn-a", healthyRun: 0, unhealthyRun: 4, rttMillis: nil), after: 2000)
    add(.observe(replica: 2, tunnel: "vpn-a", healthyRun: 0, unhealthyRun: 4, rttMillis: nil))
    add(.drain(tunnel: "vpn-b", reason: "kernel update", by: "ops"))
    add(.intent(FencingToken(term: 4, index: 40), .route(key, target: target)))
    add(.outcome(FencingToken(term: 4, index: 40), success: true, detail: "", requestId: "r-1"))
    add(.intent(FencingToken(term: 4, index: 41), .dns(zoneId: "Z", records: [DNSRecordWrite(name: "vpn-a.example", address: "10.0.0.2", ttl: 30), DNSRecordWrite(name: "vpn-b.example", address: "10.0.1.2", ttl: 60)])))
    add(.instanceIdentity(tunnel: "vpn-a", InstanceIdentity(instanceId: "i-new", eniId: "eni-new", privateIP: "10.0.0.2")))
    add(.sourceDestCheck(tunnel: "vpn-b", eniId: "eni-vpn-b", enabled: false))
    add(.intent(FencingToken(term: 4, index: 42), .disableSourceDestCheck(tunnel: "vpn-a", instanceId: "i-new", eniId: "eni-new")))
    add(.outcome(FencingToken(term: 4, index: 42), success: true, detail: "", requestId: "r-3"))
    add(.sourceDestCheck(tunnel: "vpn-ü", eniId: "eni-vpn-ü", enabled: true))
    add(.instanceStatus(tunnel: "vpn-a", InstanceStatusReport(instanceId: "i-new", impaired: true, summary: "instance impaired, system ok", events: [
        ScheduledEvent(id: "instance-event-0d59937288b749b32", code: "system-reboot", detail: "scheduled reboot",
                       notBefore: Stamp(millis: 1_790_000_000_000), notAfter: Stamp(millis: 1_790_000_600_000)),
        ScheduledEvent(id: "instance-retirement@0", code: "instance-retirement", detail: "", notBefore: nil, notAfter: nil),
    ])))
    add(.elasticIP(tunnel: "vpn-a", ElasticIPReport(allocationId: "eipalloc-1", publicIP: "203.0.113.5", eniId: nil)))
    add(.intent(FencingToken(term: 4, index: 43), .associateAddress(tunnel: "vpn-a", allocationId: "eipalloc-1", instanceId: "i-new",
                                                                     eniId: "eni-new", privateIP: "10.0.0.2")))
    add(.outcome(FencingToken(term: 4, index: 43), success: true, detail: "", requestId: "r-4"))
    add(.intent(FencingToken(term: 4, index: 44), .associateAddress(tunnel: "vpn-a", allocationId: "eipalloc-1", instanceId: "i-new",
                                                                     eniId: "eni-new", privateIP: "10.0.0.2")))
    add(.approveFailback(tunnel: "vpn-a", by: "ops"))
    add(.tick, after: 20_000)
    return script
}

/// What happens after the snapshot: recovery, failback, an undrain, more intents.
let futureScript: [(ControllerCommand, UInt64)] = {
    var script: [(ControllerCommand, UInt64)] = []
    var t: UInt64 = 1_700_000_100_000
    for step in 0..<30 {
        t += 3000
        for r: ReplicaID in 1...3 {
            script.append((.observe(replica: r, tunnel: "vpn-a", healthyRun: step > 5 ? 3 : 0, unhealthyRun: step > 5 ? 0 : 3, rttMillis: 9), t))
            script.append((.observe(replica: r, tunnel: "vpn-b", healthyRun: 3, unhealthyRun: 0, rttMillis: nil), t))
        }
        if step == 10 { script.append((.undrain(tunnel: "vpn-b", by: "ops"), t)) }
        if step == 12 { script.append((.outcome(FencingToken(term: 4, index: 41), success: false, detail: "denied", requestId: "r-2"), t)) }
        if step == 20 { script.append((.tick, t)) }
    }
    return script
}()

@Suite struct StateCodecTests {
    func build() throws -> FailoverState {
        var state = FailoverState(eventCapacity: 50)
        for (c, t) in try richScript() { state.apply(c, stamp: Stamp(millis: t)) }
        return state
    }

    @Test func snapshotRoundTripIsIdenticalAndBehavesIdentically() throws {
        let original = try build()
        #expect(original.tunnels.count == 3)
        #expect(!original.pending.isEmpty && !original.routeTargets.isEmpty && original.tunnels["vpn-b"]?.drain != nil)
        #expect(original.tunnels["vpn-a"]?.forwardingENI == "eni-new" && original.tunnels["vpn-b"]?.forwardingENI == "eni-vpn-b")
        #expect(original.tunnels["vpn-a"]?.ec2Status?.events.count == 2 && original.tunnels["vpn-a"]?.elasticIP?.eniId == "eni-new")
        let bytes = StateCodec.encode(original)
        var restored = try StateCodec.decodeState(bytes)
        #expect(restored == original)
        #expect(StateCodec.encode(restored) == bytes)

        var live = original
        for (c, t) in futureScript {
            let a = live.apply(c, stamp: Stamp(millis: t))
            let b = restored.apply(c, stamp: Stamp(millis: t))
            #expect(a == b)
        }
        #expect(live == restored)
        #expect(StateCodec.encode(live) == StateCodec.encode(restored))
        #expect(live.verdict(of: "vpn-a") == .up)
    }

    @Test func equalStatesEncodeToEqualBytes() throws {
        // Dictionaries iterate in a per-process random order; the encoding must not.
        let a = try build()
        let b = try build()
        #expect(StateCodec.encode(a) == StateCodec.encode(b))
    }

    @Test func everyCommandRoundTrips() throws {
        let commands = try richScript().map(\.0) + futureScript.map(\.0) + [
            .observe(replica: .max, tunnel: "", healthyRun: .max, unhealthyRun: .max, rttMillis: .max),
            .undrain(tunnel: "x", by: "y"),
            .observe(replica: 2, tunnel: "vpn-a", healthyRun: 3, unhealthyRun: 0, rttMillis: nil, instanceId: "i-0abc"),
        ]
        for c in commands {
            #expect(try StateCodec.decodeCommand(StateCodec.encode(c)) == c)
        }
    }

    /// Logs written before DNS writes were batched hold one record per intent (write kind 2).
    @Test func aSingleRecordDNSIntentOfTheOldFormatStillDecodes() throws {
        let token = FencingToken(term: 4, index: 41)
        let record = DNSRecordWrite(name: "vpn-a.example", address: "10.0.0.2", ttl: 30)
        let batch = StateCodec.encode(.intent(token, .dns(zoneId: "Z", records: [record])))
        // version, intent, term, index, kind 3, "Z", one record, then the record itself.
        try #require(Array(batch[0..<8]) == [1, 8, 4, 41, 3, 1, UInt8(ascii: "Z"), 1])
        let legacy = Array(batch[0..<4]) + [2] + Array(batch[5..<7]) + Array(batch[8...])
        #expect(try StateCodec.decodeCommand(legacy) == .intent(token, .dns(zoneId: "Z", records: [record])))
    }

    @Test func everyTruncationThrows() throws {
        let bytes = StateCodec.encode(try build())
        for n in 0..<bytes.count {
            #expect(throws: StateCodecError.self) { try StateCodec.decodeState(Array(bytes[0..<n])) }
        }
        let command = StateCodec.encode(.outcome(FencingToken(term: 1, index: 2), success: true, detail: "d", requestId: "r"))
        for n in 0..<command.count {
            #expect(throws: StateCodecError.self) { try StateCodec.decodeCommand(Array(command[0..<n])) }
        }
    }

    @Test func malformedBytesThrow() throws {
        let bytes = StateCodec.encode(try build())
        #expect(throws: StateCodecError.trailingBytes(1)) { try StateCodec.decodeState(bytes + [0]) }
        #expect(throws: StateCodecError.badMagic) { try StateCodec.decodeState([0x53, 0x57, 0x46, 0x00, 1]) }
        var wrongVersion = bytes
        wrongVersion[4] = 9
        #expect(throws: StateCodecError.unsupportedVersion(9)) { try StateCodec.decodeState(wrongVersion) }
        #expect(throws: StateCodecError.self) { try StateCodec.decodeCommand([1, 99]) }
        #expect(throws: StateCodecError.self) { try StateCodec.decodeCommand([1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]) }
        // A forged huge list count must fail fast, not allocate.
        #expect(throws: StateCodecError.self) { try StateCodec.decodeCommand([1, 4, 0xff, 0xff, 0xff, 0xff, 0x0f]) }
        // Invalid UTF-8 in a string.
        #expect(throws: StateCodecError.self) { try StateCodec.decodeCommand([1, 5, 1, 0xff, 0]) }
    }

    @Test func randomCorruptionNeverCrashes() throws {
        let bytes = StateCodec.encode(try build())
        var rng = SplitMix64(seed: 42)
        var decoded = 0
        for _ in 0..<3000 {
            var b = bytes
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if var s = try? StateCodec.decodeState(b) {
                decoded += 1
                // Whatever decoded must still be safe to run.
                for (c, t) in futureScript.prefix(20) { s.apply(c, stamp: Stamp(millis: t)) }
                _ = Planner.plan(state: s, routes: [])
            }
        }
        for _ in 0..<3000 {
            let junk = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            _ = try? StateCodec.decodeCommand(junk)
            _ = try? StateCodec.decodeState(junk)
        }
        #expect(decoded < 3000)
    }
}
