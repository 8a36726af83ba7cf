import ChaosCheck
import Testing
import SwitchmanTestSupport

typealias Op = RegisterOp<String?>

private func w(_ v: String?, _ call: Int64, _ ret: Int64?, _ token: (UInt64, UInt64)? = nil) -> Op {
    .write(v, call: call, ret: ret, token: token.map { WriteToken(term: $0.0, index: $0.1) })
}

private func r(_ v: String?, _ call: Int64, _ ret: Int64) -> Op { .read(v, call: call, ret: ret) }

private let known = RegisterChecker<String?>(initial: .known(nil))
private let unknown = RegisterChecker<String?>(initial: .unknown)

@Suite struct LinearizabilityTests {
    @Test func sequentialHistories() {
        #expect(known.check([]).isLinearizable)
        #expect(known.check([r(nil, 0, 1), w("a", 2, 3), r("a", 4, 5), w("b", 6, 7), r("b", 8, 9), w(nil, 10, 11), r(nil, 12, 13)]).isLinearizable)
        #expect(!known.check([r("a", 0, 1)]).isLinearizable, "nothing wrote a and it was not there at the start")
        #expect(unknown.check([r("a", 0, 1), r("a", 2, 3)]).isLinearizable, "an unknown initial value may be a")
        #expect(!unknown.check([r("a", 0, 1), r("b", 2, 3)]).isLinearizable, "but not a and then b")
    }

    @Test func concurrentOverlappingWrites() {
        // Either write may land last, but once a read saw one, a later read cannot see the other.
        let writes = [w("a", 0, 10), w("b", 1, 9)]
        #expect(known.check(writes + [r("a", 11, 12)]).isLinearizable)
        #expect(known.check(writes + [r("b", 11, 12)]).isLinearizable)
        #expect(known.check(writes + [r("b", 2, 3), r("a", 4, 5)]).isLinearizable, "b first, then a, both inside the writes")
        #expect(!known.check(writes + [r("a", 11, 12), r("b", 13, 14)]).isLinearizable)
    }

    @Test func aStaleReadFailsWithTheReadAsTheCounterexample() throws {
        let history = [w("a", 0, 1), w("b", 2, 3), r("a", 4, 5)]
        let v = try #require(unknown.check(history).violation)
        #expect(v.blocked.kind == .read("a"))
        #expect(v.valueKnown && v.valueAfterOrder == "b")
        // All three are needed: without the write of a, the read of a would be the problem.
        #expect(v.minimal.map(\.kind) == [.write("a"), .write("b"), .read("a")])
        let text = v.explain(value: { $0 ?? "none" }, time: { "\($0)" })
        #expect(text.contains("read a") && text.contains("held b"), "\(text)")
    }

    @Test func tokenOrderIsEnforced() {
        // Real time puts a before b; their tokens say b's intent came first.
        let inverted = [w("a", 0, 1, (2, 1)), w("b", 2, 3, (1, 5)), r("b", 4, 5)]
        #expect(!known.check(inverted).isLinearizable)
        #expect(RegisterChecker<String?>(initial: .known(nil), tokenOrder: false).check(inverted).isLinearizable)
        #expect(known.check([w("a", 0, 1, (1, 5)), w("b", 2, 3, (2, 1)), r("b", 4, 5)]).isLinearizable)
        // Concurrent writes: token order decides which one can be last.
        let concurrent = [w("a", 0, 10, (2, 1)), w("b", 0, 10, (1, 9))]
        #expect(known.check(concurrent + [r("a", 11, 12)]).isLinearizable)
        #expect(!known.check(concurrent + [r("b", 11, 12)]).isLinearizable)
        // Equal tokens are retries of one intent: unordered among themselves.
        #expect(known.check([w("a", 0, 10, (3, 4)), w("b", 0, 10, (3, 4)), r("b", 11, 12)]).isLinearizable)
        #expect(known.check([w("a", 0, 10, (3, 4)), w("b", 0, 10, (3, 4)), r("a", 11, 12)]).isLinearizable)
        // A write without a token is not constrained (a change by hand).
        #expect(known.check([w("a", 0, 1, (5, 1)), w("x", 2, 3), r("x", 4, 5)]).isLinearizable)
    }

    @Test func openEndedWritesMayOrMayNotTakeEffect() {
        let base = [w("a", 0, 1), w("b", 2, nil)]
        #expect(known.check(base + [r("a", 3, 4), r("a", 5, 6)]).isLinearizable, "never took effect")
        #expect(known.check(base + [r("a", 3, 4), r("b", 5, 6)]).isLinearizable, "took effect late")
        #expect(known.check(base + [r("b", 3, 4)]).isLinearizable)
        #expect(!known.check(base + [r("b", 3, 4), r("a", 5, 6)]).isLinearizable, "took effect, then undone by nothing")
        #expect(!known.check([w("a", 5, nil), r("a", 0, 1)]).isLinearizable, "not before it was called")
        // An unanswered write of an older intent that never took effect does not block a
        // newer one; but it cannot take effect after the newer one either.
        let fenced = [w("a", 0, nil, (1, 1)), w("b", 5, 6, (2, 1)), r("b", 7, 8)]
        #expect(known.check(fenced).isLinearizable)
        #expect(!known.check(fenced + [r("a", 9, 10)]).isLinearizable)
        #expect(known.check([w("a", 0, nil, (1, 1)), r("a", 1, 2), w("b", 5, 6, (2, 1)), r("b", 7, 8)]).isLinearizable)
    }

    @Test func eachKeyIsCheckedOnItsOwn() {
        let x = [w("1", 0, 1), r("1", 2, 3)]
        let y = [w("2", 0, 1), r("2", 2, 3)]
        // As one register these contradict each other; as two they are both fine.
        #expect(!known.check(x + y).isLinearizable)
        let outcomes = known.check(byKey: ["x": x, "y": y])
        #expect(outcomes.count == 2 && outcomes.values.allSatisfy(\.isLinearizable))
        let broken = known.check(byKey: ["x": x, "y": y + [r("1", 4, 5)]])
        #expect(broken["x"]?.isLinearizable == true)
        #expect(broken["y"]?.isLinearizable == false)
    }

    @Test(arguments: 0..<24) func randomValidHistoriesPassAndOneBadReadFails(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let history = simulate(&rng, ops: 160)
        let checker = RegisterChecker<String?>(initial: .known(nil), tokenOrder: true, maxStates: 5_000_000)
        #expect(checker.check(history).isLinearizable, "seed \(seed): a simulated history failed")
        let reads = history.indices.filter { !history[$0].isWrite }
        try #require(!reads.isEmpty, "seed \(seed)")
        var mutated = history
        let victim = reads[Int(rng.next() % UInt64(reads.count))]
        mutated[victim].kind = .read("never-written")
        let violation = try #require(checker.check(mutated).violation, "seed \(seed): a read of a value nobody wrote passed")
        // Without that read the history is linearizable, so any failing subset holds it.
        #expect(violation.minimal.contains { $0.kind == .read("never-written") }, "seed \(seed)")
    }
}

/// A register driven by overlapping clients: every op takes effect at a random instant
/// inside its window, reads return what the register holds then, and tokens grow in the
/// order writes take effect (with retries sharing a token). Some writes never answer; half
/// of those never take effect either.
func simulate(_ rng: inout SplitMix64, ops count: Int) -> [Op] {
    struct Planned {
        var op: Op
        var at: Int64?
    }
    var planned: [Planned] = []
    for _ in 0..<count {
        let call = Int64(rng.next() % 10_000)
        let length = Int64(1 + rng.next() % 300)
        let at = call + Int64(rng.next() % UInt64(length))
        if rng.next() % 2 == 0 {
            let values: [String?] = ["a", "b", "c", "d", nil]
            let v = values[Int(rng.next() % UInt64(values.count))]
            let pending = rng.next() % 8 == 0
            let applied = !pending || rng.next() % 2 == 0
            planned.append(Planned(op: .write(v, call: call, ret: pending ? nil : call + length), at: applied ? at : nil))
        } else {
            planned.append(Planned(op: .read(nil, call: call, ret: call + length), at: at))
        }
    }
    // Replay in effect order to fill in reads and tokens.
    var value: String? = nil
    var token = WriteToken(term: 1, index: 1)
    var lastToken = token
    for i in planned.indices.filter({ planned[$0].at != nil }).sorted(by: { (planned[$0].at ?? 0) < (planned[$1].at ?? 0) }) {
        switch planned[i].op.kind {
        case .write(let v):
            value = v
            if rng.next() % 4 != 0 {  // else: a retry of the previous intent
                token = rng.next() % 5 == 0 ? WriteToken(term: token.term + 1, index: token.index + 1) : WriteToken(term: token.term, index: token.index + 1)
            }
            planned[i].op.token = token
            lastToken = token
        case .read:
            planned[i].op.kind = .read(value)
        }
    }
    // A write that never took effect carries some earlier intent's token (a stale attempt).
    for i in planned.indices where planned[i].at == nil {
        planned[i].op.token = WriteToken(term: 1, index: UInt64(1 + rng.next() % lastToken.index))
    }
    return planned.map(\.op)
}

