/// What one replica has seen of each tunnel, round by round, and when that is worth an
/// observation entry (issue #17 item 6: the pure part of the probe loop). No clock: the
/// caller passes the instant of each round and of each submission.
struct ObservationTracker: Sendable {
    let replica: ReplicaID
    let fall: UInt32
    let rise: UInt32
    /// An observation is sent again after this long even when nothing changed.
    let refresh: Duration

    struct Runs: Sendable, Equatable {
        var healthy: UInt32 = 0
        var unhealthy: UInt32 = 0
        var sentOpinion: Int8? = nil
        var sentAt: ContinuousClock.Instant? = nil
        /// The term in which it was sent: a forwarded observation dies with a leader that
        /// crashed before appending it, so a new term means sending again.
        var sentTerm: UInt64 = 0
        /// The tunnel's instance these runs were counted for.
        var instance: String? = nil

        /// What the state machine will read from the runs: up (1), down (−1) or nothing yet.
        func opinion(fall: UInt32, rise: UInt32) -> Int8 { healthy >= rise ? 1 : (unhealthy >= fall ? -1 : 0) }
    }

    /// One round's result for one tunnel, as the probe loop acts on it.
    struct Round: Sendable, Equatable {
        /// The check as counted: a healthy answer from another instance's sentinel counts
        /// as a failure.
        var check: TunnelCheck
        /// The observation to submit, nil when the last one still says the same and is fresh.
        var observation: ControllerCommand?
        var opinion: Int8
        /// The first failed round of a run (worth a log line).
        var firstFailure: Bool
        /// A healthy answer from a sentinel that does not say which instance it runs on.
        var unidentified: Bool
    }

    private(set) var runs: [String: Runs] = [:]

    init(replica: ReplicaID, fall: UInt32, rise: UInt32, refresh: Duration) {
        self.replica = replica
        self.fall = max(1, fall)
        self.rise = max(1, rise)
        self.refresh = refresh
    }

    /// Counts one round of `tunnel`, whose current instance (as the state knows it) is
    /// `instance`, in Raft term `term`.
    mutating func record(_ tunnel: String, _ answer: TunnelCheck, instance: String?, term: UInt64,
                         now: ContinuousClock.Instant) -> Round {
        var check = answer
        var r = runs[tunnel] ?? Runs()
        if r.instance != instance {
            // A replacement earns its verdict from its own sentinel's rounds: what was
            // counted for the instance before says nothing about this one.
            r = Runs()
            r.instance = instance
        }
        if check.healthy, let instance, let answering = check.instanceId, answering != instance {
            check = TunnelCheck(
                healthy: false, rttMillis: check.rttMillis,
                detail: "the sentinel answering runs on \(answering), not on the tunnel's instance \(instance)", instanceId: answering)
        }
        let unidentified = check.healthy && check.instanceId == nil && instance != nil
        if check.healthy {
            r.healthy = r.healthy &+ 1
            r.unhealthy = 0
        } else {
            r.unhealthy = r.unhealthy &+ 1
            r.healthy = 0
        }
        let opinion = r.opinion(fall: fall, rise: rise)
        let due = r.sentAt.map { now - $0 >= refresh } ?? true || r.sentTerm != term
        runs[tunnel] = r
        let observation: ControllerCommand? = opinion != r.sentOpinion || due
            ? .observe(replica: replica, tunnel: tunnel, healthyRun: r.healthy, unhealthyRun: r.unhealthy, rttMillis: check.rttMillis,
                       instanceId: check.instanceId)
            : nil
        return Round(check: check, observation: observation, opinion: opinion, firstFailure: !check.healthy && r.unhealthy == 1,
                     unidentified: unidentified)
    }

    /// The round's observation reached a leader: the next one waits for a change or the refresh.
    mutating func submitted(_ tunnel: String, opinion: Int8, term: UInt64, at now: ContinuousClock.Instant) {
        runs[tunnel]?.sentOpinion = opinion
        runs[tunnel]?.sentAt = now
        runs[tunnel]?.sentTerm = term
    }
}
