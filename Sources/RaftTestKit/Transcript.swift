import Raft

/// Runs a Raft story written as text, in the style of etcd-io/raft's `testdata/*.txt`: each
/// block is a command, a `----` line and what the command printed. `TranscriptTests`
/// replays every file and compares; a reader sees each scenario as messages and effects.
///
/// Commands:
///   cluster 1 2 3              voters of a new cluster (election timeout 10 ticks)
///   tick-election N            ticks N for two election timeouts (it campaigns)
///   tick-heartbeat N           ticks N once
///   tick N K                   ticks N K times
///   stabilize                  delivers everything queued, and what that causes
///   partition 1 | 2 3          cuts every link between the groups
///   heal                       restores every link
///   propose N DATA             node N proposes DATA
///   transfer-leadership N M    node N hands leadership to M
///   crash N / restart N        node N loses its memory / comes back from its disk
///   restart N file 2 3 4       ... with the voters of its config file (the old shell)
///   lose-disk N                node N crashes and its disk is emptied (restart: term 0)
///   start N [file 2 3 4]       a new node: with --join, or as a founder of its file
///   status                     one line per node
public final class Transcript {
    private var cluster: TestCluster?
    private var effectsSeen: [NodeID: Int] = [:]

    public init() {}

    /// Runs one command and returns what it printed, one line per event.
    public func run(_ line: String) -> [String] {
        let words = line.split(separator: " ").map(String.init)
        guard let command = words.first else { return ["error: empty command"] }
        let args = Array(words.dropFirst())
        let ids = args.compactMap { UInt64($0) }.map { NodeID($0) }
        if command == "cluster" {
            guard !ids.isEmpty else { return ["error: cluster needs voter ids"] }
            let c = TestCluster(voters: ids)
            cluster = c
            effectsSeen = c.effectLog.mapValues(\.count)
            return ["ok"]
        }
        guard let c = cluster else { return ["error: no cluster yet (start with: cluster 1 2 3)"] }
        var out: [String] = []
        let queuedBefore = c.inbox.count
        switch command {
        case "tick-election":
            guard let id = ids.first else { return ["error: tick-election N"] }
            c.tick(id, times: 2 * c.electionTicks)
        case "tick-heartbeat":
            guard let id = ids.first else { return ["error: tick-heartbeat N"] }
            c.tick(id)
        case "tick":
            guard ids.count == 2 else { return ["error: tick N K"] }
            c.tick(ids[0], times: Int(ids[1]))
        case "stabilize":
            out += stabilize(c)
        case "partition":
            let groups = args.split(separator: "|").map { Set($0.compactMap { UInt64($0) }.map { NodeID($0) }) }
            c.cut = []
            for a in groups.indices {
                for b in groups.indices where a != b {
                    for x in groups[a] { for y in groups[b] { c.cut.insert([x, y]) } }
                }
            }
        case "heal":
            c.heal()
        case "propose":
            guard let id = ids.first, args.count >= 2 else { return ["error: propose N DATA"] }
            let r = c.step(id, .propose([Array(args[1].utf8)]))
            out.append("\(id): \(r.outcome)")
        case "transfer-leadership":
            guard ids.count == 2 else { return ["error: transfer-leadership FROM TO"] }
            let r = c.step(ids[0], .transferLeadership(to: ids[1]))
            if case .rejected(let why) = r.outcome { out.append("\(ids[0]): transfer rejected: \(why)") }
        case "crash":
            guard let id = ids.first else { return ["error: crash N"] }
            c.crash(id)
            out.append("\(id): crashed (what it wrote stays)")
        case "lose-disk":
            guard let id = ids.first else { return ["error: lose-disk N"] }
            c.loseDisk(id)
            out.append("\(id): crashed, and its disk is empty")
        case "restart":
            guard let id = ids.first else { return ["error: restart N [file V...]"] }
            c.restart(id, bootstrap: fileVoters(args))
            let core = c.core(id)
            out.append("\(id): restarted term=\(core.term) vote=\(core.hardState.vote) last=\(core.lastIndex)/\(core.lastTerm)")
        case "start":
            guard let id = ids.first else { return ["error: start N [file V...]"] }
            let file = fileVoters(args)
            c.add(id, bootstrap: file ?? Membership())
            out.append("\(id): started " + (file.map { "as a founder of voters \($0.voters.sorted())" } ?? "with --join (no voters until the leader adds it)"))
        case "status":
            for id in c.cores.keys.sorted() {
                let k = c.core(id)
                out.append(
                    "\(id): \(k.role) term=\(k.term) leader=\(k.leader) commit=\(k.commitIndex) last=\(k.lastIndex)/\(k.lastTerm)")
            }
            return out
        default:
            return ["error: unknown command \(command)"]
        }
        if command != "stabilize" {
            for m in c.inbox.dropFirst(queuedBefore) { out.append("sent " + Self.describe(m)) }
        }
        out += newEffects(c)
        return out.isEmpty ? ["ok"] : out
    }

    /// `file 2 3 4` after a node id: the voters a shell read from that node's config file.
    private func fileVoters(_ args: [String]) -> Membership? {
        guard let k = args.firstIndex(of: "file") else { return nil }
        return Membership(voters: Set(args[(k + 1)...].compactMap { UInt64($0) }.map { NodeID($0) }))
    }

    /// Replays a transcript; returns the file with every command's output as it is now.
    public func replay(_ text: String) -> String {
        var result: [String] = []
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)[...]
        while let line = lines.popFirst() {
            if line.isEmpty || line.hasPrefix("#") {
                result.append(line)
                continue
            }
            result.append(line)
            result.append("----")
            if lines.first == "----" {
                lines.removeFirst()
                while let next = lines.first, !next.isEmpty { lines.removeFirst() }
            }
            result += run(line)
        }
        return result.joined(separator: "\n")
    }

    private func stabilize(_ c: TestCluster) -> [String] {
        var out: [String] = []
        var rounds = 0
        while !c.inbox.isEmpty && rounds < 10_000 {
            rounds += 1
            out += newEffects(c)
            let m = c.inbox.removeFirst()
            if c.isCut(m) {
                out.append("dropped " + Self.describe(m) + " (partition)")
                continue
            }
            guard c.cores[m.to] != nil else {
                out.append("dropped " + Self.describe(m) + " (node down)")
                continue
            }
            out.append(Self.describe(m))
            c.step(m.to, .receive(m))
        }
        return out
    }

    /// The effects a reader follows: role changes, leases, applied entries.
    private func newEffects(_ c: TestCluster) -> [String] {
        var out: [String] = []
        for id in c.effectLog.keys.sorted() {
            let log = c.effectLog[id] ?? []
            let seen = min(effectsSeen[id] ?? 0, log.count)
            for e in log[seen...] {
                switch e {
                case .roleChanged(let role, let term, let leader):
                    out.append("  \(id) is \(role) in term \(term)" + (leader != 0 && role != .leader ? " (leader \(leader))" : ""))
                case .quorumAcknowledged(let tick, let term):
                    out.append("  \(id) holds a lease in term \(term) from its round of tick \(tick)")
                case .leaseForfeited(let term):
                    out.append("  \(id) drops its lease of term \(term)")
                case .apply(let entries):
                    out.append("  \(id) applies " + entries.map { "\($0.index)/\($0.term)" }.joined(separator: " "))
                default:
                    break
                }
            }
            effectsSeen[id] = log.count
        }
        return out
    }

    static func describe(_ m: Message) -> String {
        var s = "\(m.from)->\(m.to) \(m.type) term=\(m.term)"
        switch m.type {
        case .vote, .preVote:
            s += " last=\(m.index)/\(m.logTerm)" + (m.context != 0 ? " (transfer)" : "")
        case .voteResponse, .preVoteResponse:
            s += m.reject ? " rejected" : " granted"
        case .append:
            s += " prev=\(m.index)/\(m.logTerm) commit=\(m.commit)"
            if !m.entries.isEmpty { s += " entries=" + m.entries.map { "\($0.index)/\($0.term)" }.joined(separator: ",") }
        case .appendResponse:
            s += m.reject ? " rejected hint=\(m.rejectHint)" : " index=\(m.index)"
        case .heartbeat:
            s += " commit=\(m.commit)"
        default:
            break
        }
        return s
    }
}
