/// With `aws.autoDrainOnScheduledEvent`: which tunnels to drain ahead of an EC2 scheduled
/// event of their instance, and which such drains to lift once it is over. Pure: time is the
/// state's (the latest entry stamp), so every replica would decide the same.
public enum ScheduledDrains {
    /// Who such a drain is by; a drain by anyone else (an operator) is never lifted here.
    public static let by = "ec2-scheduled-event"

    public static func commands(state: FailoverState, tunnels: [String], leadMillis: UInt64) -> [ControllerCommand] {
        var out: [ControllerCommand] = []
        for name in tunnels {
            guard let t = state.tunnels[name] else { continue }
            let due = active(t, now: state.now, leadMillis: leadMillis)
            switch (t.drain, due) {
            case (nil, let event?):
                out.append(.drain(tunnel: name, reason: "EC2 scheduled \(event) for \(t.identity?.instanceId ?? "?")", by: by))
            case (let drain?, nil) where drain.by == by:
                out.append(.undrain(tunnel: name, by: by))
            default:
                continue
            }
        }
        return out
    }

    /// The first event of the current instance whose drain window (from `leadMillis` before
    /// `notBefore` until `notAfter`) holds `now`. An event without `notAfter` (a retirement)
    /// lasts until EC2 stops listing it or the instance is replaced.
    static func active(_ t: TunnelState, now: Stamp, leadMillis: UInt64) -> ScheduledEvent? {
        guard let status = t.ec2Status, status.instanceId == t.identity?.instanceId else { return nil }
        return status.events.first { e in
            let starts = e.notBefore.map { $0.millis > leadMillis ? $0.millis - leadMillis : 0 } ?? 0
            let ends = e.notAfter?.millis ?? .max
            return now.millis >= starts && now.millis < ends
        }
    }
}
