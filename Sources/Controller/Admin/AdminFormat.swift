import Foundation

/// Columns of text, each as wide as its widest cell, separated by two spaces. The last
/// column is not padded, so lines carry no trailing blanks and long free text (reasons,
/// event texts) may run on.
public struct AdminTable: Sendable, Equatable {
    public var headers: [String]?
    public var rows: [[String]]
    /// Printed under the headers when there are no rows, so an empty list is visibly empty.
    public var emptyText: String

    public init(headers: [String]?, rows: [[String]] = [], emptyText: String = "(none)") {
        self.headers = headers
        self.rows = rows
        self.emptyText = emptyText
    }

    public mutating func append(_ row: [String]) { rows.append(row) }

    public func render() -> String {
        let lines = (headers.map { [$0] } ?? []) + rows
        let columns = lines.map(\.count).max() ?? 0
        var widths = [Int](repeating: 0, count: columns)
        for line in lines {
            for (index, cell) in line.enumerated() { widths[index] = max(widths[index], cell.count) }
        }
        var out: [String] = []
        for line in lines {
            var text = ""
            for (index, cell) in line.enumerated() {
                if index == line.count - 1 {
                    text += cell
                } else {
                    text += cell + String(repeating: " ", count: widths[index] - cell.count + 2)
                }
            }
            while text.last == " " { text.removeLast() }
            out.append(text)
        }
        if rows.isEmpty { out.append(emptyText) }
        return out.joined(separator: "\n")
    }
}

/// The CLI's table output for each admin document (`--output table`, the default) and its
/// JSON output (`--output json`). Pure functions of the documents, so tests pin them down.
public enum AdminFormat {
    /// The document as `--output json` prints it: AdminJSON's encoder (sorted keys, ISO 8601
    /// dates), newline-terminated.
    public static func json<T: Encodable>(_ document: T) throws -> String {
        String(decoding: try AdminJSON.encoder().encode(document), as: UTF8.self) + "\n"
    }

    public static func render(_ status: AdminStatus) -> String {
        var header = AdminTable(headers: nil)
        header.append(["cluster", status.cluster])
        header.append(["answered by", String(status.answeredBy)])
        header.append(["leader", leader(status.leader, members: status.members)])
        header.append(["term", String(status.term)])
        header.append(["commit index", String(status.commitIndex)])
        header.append(["applied index", String(status.appliedIndex)])
        header.append(["consistency", status.consistency])
        header.append(["lease", status.leaseRemainingMillis.map { millis($0) + " left" } ?? "-"])
        return [
            header.render(),
            "MEMBERS\n" + memberTable(status.members, full: false).render(),
            "TUNNELS\n" + tunnelTable(status.tunnels).render() + drainReasons(status.tunnels),
            "ROUTES\n" + routeTable(status.routes).render() + alerts(status.routes),
        ].joined(separator: "\n\n") + "\n"
    }

    public static func render(_ document: AdminMembers) -> String {
        summary(document.cluster, document.answeredBy, document.leader, document.term, document.consistency, members: document.members)
            + memberTable(document.members, full: true).render() + "\n"
    }

    public static func render(_ document: AdminTunnels) -> String {
        summary(document.cluster, document.answeredBy, document.leader, document.term, document.consistency, members: [])
            + tunnelTable(document.tunnels).render() + drainReasons(document.tunnels) + "\n"
    }

    public static func render(_ document: AdminRoutes) -> String {
        summary(document.cluster, document.answeredBy, document.leader, document.term, document.consistency, members: [])
            + routeTable(document.routes).render() + alerts(document.routes) + "\n"
    }

    public static func render(_ document: AdminEvents) -> String {
        var table = AdminTable(headers: ["SEQ", "TIME", "KIND", "TUNNEL", "TEXT"], emptyText: "(no events)")
        for event in document.events {
            table.append([String(event.seq), timestamp(event.at), event.kind, event.tunnel ?? "-", event.text])
        }
        var head = "answered by \(document.answeredBy) (\(document.consistency))"
        if document.firstAvailableSeq > 1 { head += "; events before seq \(document.firstAvailableSeq) were evicted" }
        return head + "\n\n" + table.render() + "\n"
    }

    public static func render(_ result: AdminResult) -> String {
        var text = (result.ok ? "ok: " : "not done: ") + result.message
        switch (result.term, result.index) {
        case (let term?, let index?): text += " (term \(term), index \(index))"
        case (nil, let index?): text += " (index \(index))"
        case (let term?, nil): text += " (term \(term))"
        case (nil, nil): break
        }
        return text + "\n"
    }

    // MARK: Pieces

    static func summary(_ cluster: String, _ answeredBy: UInt64, _ leaderID: UInt64, _ term: UInt64, _ consistency: String, members: [AdminMember])
        -> String
    {
        "cluster \(cluster), leader \(leader(leaderID, members: members)), term \(term); answered by \(answeredBy) (\(consistency))\n\n"
    }

    static func leader(_ id: UInt64, members: [AdminMember]) -> String {
        guard id != 0 else { return "none" }
        if let member = members.first(where: { $0.id == id }), !member.zone.isEmpty { return "\(id) (\(member.zone))" }
        return String(id)
    }

    static func memberTable(_ members: [AdminMember], full: Bool) -> AdminTable {
        var table = AdminTable(
            headers: full
                ? ["ID", "ZONE", "ROLE", "REACHABLE", "PEER", "ADMIN", "MATCH", "LAST-CONTACT"]
                : ["ID", "ZONE", "ROLE", "REACHABLE", "MATCH", "LAST-CONTACT"])
        for member in members {
            let lastContact = member.lastContactMillisAgo.map { millis($0) + " ago" } ?? "-"
            let match = member.matchIndex.map(String.init) ?? "-"
            if full {
                table.append([
                    String(member.id), dash(member.zone), member.role, yesNo(member.reachable), dash(member.peer), dash(member.admin), match,
                    lastContact,
                ])
            } else {
                table.append([String(member.id), dash(member.zone), member.role, yesNo(member.reachable), match, lastContact])
            }
        }
        return table
    }

    static func tunnelTable(_ tunnels: [AdminTunnel]) -> AdminTable {
        var table = AdminTable(headers: ["NAME", "STATE", "DRAINED", "INSTANCE", "OBSERVATIONS"])
        for tunnel in tunnels {
            let state = tunnel.stale ? "\(tunnel.state) (stale)" : tunnel.state
            let instance = tunnel.instance.map { i in
                var text = "\(i.instanceId) \(i.privateIP)"
                if i.forwards == false { text += " (source/dest check on: not a candidate)" }
                if i.impaired == true { text += " (EC2 status impaired: not a candidate)" }
                if let events = i.scheduledEvents, !events.isEmpty { text += " (scheduled: \(events.joined(separator: "; ")))" }
                if let ip = i.elasticIP { text += " EIP \(ip)" + (i.elasticIPHere == false ? " (not on this instance yet)" : "") }
                return text
            } ?? "-"
            table.append([tunnel.name, state, yesNo(tunnel.drained), instance, observations(tunnel.observations)])
        }
        return table
    }

    /// `1:up(5) 2:up(5) 3:down(2,stale)`: each replica's verdict and how many rounds in a row
    /// it has held; `stale` when the observation is too old to count.
    public static func observations(_ observations: [AdminObservation]) -> String {
        guard !observations.isEmpty else { return "-" }
        return observations.map { observation in
            let verdict: String
            let run: UInt32
            if observation.unhealthyRun > 0 {
                verdict = "down"
                run = observation.unhealthyRun
            } else if observation.healthyRun > 0 {
                verdict = "up"
                run = observation.healthyRun
            } else {
                verdict = "unknown"
                run = 0
            }
            var details = run > 0 ? [String(run)] : []
            if !observation.fresh { details.append("stale") }
            return "\(observation.replica):\(verdict)" + (details.isEmpty ? "" : "(\(details.joined(separator: ",")))")
        }.joined(separator: " ")
    }

    static func routeTable(_ routes: [AdminRoute]) -> AdminTable {
        var table = AdminTable(headers: ["TABLE", "DESTINATION", "DESIRED", "ACTUAL", "LAST-WRITE", "REASON"])
        for route in routes {
            table.append([route.routeTable, route.destination, route.desired ?? "-", route.actual ?? "-", lastWrite(route.lastWrite), dash(route.reason)])
        }
        return table
    }

    /// `term/index ok`, `term/index failed`, or `term/index pending` (intent committed, no
    /// outcome yet).
    public static func lastWrite(_ write: AdminWrite?) -> String {
        guard let write else { return "-" }
        let outcome: String
        switch write.success {
        case true?: outcome = "ok"
        case false?: outcome = "failed"
        case nil: outcome = "pending"
        }
        return "\(write.term)/\(write.index) \(outcome)"
    }

    static func alerts(_ routes: [AdminRoute]) -> String {
        let lines = routes.compactMap { route in route.alert.map { "  \(route.routeTable) \(route.destination): \($0)" } }
        return lines.isEmpty ? "" : "\n\nALERTS\n" + lines.joined(separator: "\n")
    }

    static func drainReasons(_ tunnels: [AdminTunnel]) -> String {
        let lines = tunnels.filter(\.drained).map { tunnel in
            var line = "  \(tunnel.name): \(tunnel.drainReason ?? "no reason given")"
            if let by = tunnel.drainedBy { line += " (by \(by))" }
            return line
        }
        return lines.isEmpty ? "" : "\n\nDRAINED\n" + lines.joined(separator: "\n")
    }

    /// `850ms`, `12.3s`, `4m05s`, `2h10m`.
    public static func millis(_ value: UInt64) -> String {
        if value < 1000 { return "\(value)ms" }
        if value < 60_000 {
            let tenths = (value + 50) / 100
            return tenths % 10 == 0 ? "\(tenths / 10)s" : "\(tenths / 10).\(tenths % 10)s"
        }
        let seconds = value / 1000
        if seconds < 3600 { return String(format: "%llum%02llus", seconds / 60, seconds % 60) }
        return String(format: "%lluh%02llum", seconds / 3600, (seconds % 3600) / 60)
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        return formatter.string(from: date)
    }

    static func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }
    static func dash(_ text: String) -> String { text.isEmpty ? "-" : text }
}
