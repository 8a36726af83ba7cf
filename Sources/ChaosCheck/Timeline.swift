import Foundation

/// timeline.svg: one picture of a run, to see at a glance what the checkers judged. Plain
/// string building: the output is read by a browser, not by code.
public enum Timeline {
    static let width = 1300.0
    static let left = 290.0
    static let right = 20.0
    static let laneHeight = 20.0
    static let laneGap = 6.0

    public static func svg(_ h: RunHistory, verdict: Verdict? = nil) -> String {
        let m = h.meta
        let stale = Checkers.noStaleWrite(h).stale
        let start = m.startMonoNs
        let lastEvent = max(m.endMonoNs, h.proxy.map { $0.doneNs ?? $0.monoNs }.max() ?? m.endMonoNs)
        let end = max(lastEvent, start + 1_000_000)
        let plot = width - left - right
        func x(_ t: Int64) -> Double { left + Double(min(max(t, start), end) - start) / Double(end - start) * plot }

        var body: [String] = []
        var y = 34.0

        // Fault bands: paired start/stop per fault name; labels stacked so they never overlap.
        var bands: [(name: String, from: Int64, to: Int64, detail: String)] = []
        var open: [String: [(Int64, String)]] = [:]
        for f in h.faults.sorted(by: { $0.monoNs < $1.monoNs }) {
            if f.event == "start" {
                open[f.fault, default: []].append((f.monoNs, f.detail ?? ""))
            } else if f.event == "stop", var q = open[f.fault], !q.isEmpty {
                let s = q.removeFirst()
                open[f.fault] = q
                bands.append((f.fault, s.0, f.monoNs, s.1))
            }
        }
        for (name, q) in open { for s in q { bands.append((name, s.0, end, s.1)) } }
        bands.sort { $0.from < $1.from }
        var labelRowsEnd: [Double] = []
        var bandLabels: [(band: Int, row: Int)] = []
        for (i, b) in bands.enumerated() {
            let text = b.detail.isEmpty ? b.name : "\(b.name) \(b.detail)"
            let x0 = x(b.from)
            let w = Double(text.count) * 6.2
            let row = labelRowsEnd.firstIndex { $0 < x0 } ?? labelRowsEnd.count
            if row == labelRowsEnd.count { labelRowsEnd.append(0) }
            labelRowsEnd[row] = x0 + w + 8
            bandLabels.append((i, row))
        }
        let bandTop = y
        y += Double(max(labelRowsEnd.count, 1)) * 14 + 6
        let lanesTop = y

        // Replica lanes.
        for id in h.replicas.keys.sorted() {
            let faked = m.fakedClock.contains(id)
            body.append(laneLabel("replica \(id)" + (faked ? " (faked clock)" : ""), y: y))
            body.append(laneBackground(y: y))
            if !faked {
                for s in roleSegments(h.replicas[id] ?? []) {
                    let x0 = x(s.from)
                    let w = max(1, x(s.to) - x0)
                    let colour = s.role == "leader" ? "#2b7bba" : s.role == "follower" ? "#a6cee3" : "#fdae61"
                    body.append(rect(x0, y, w, laneHeight, fill: colour, title: "\(s.role) term \(s.term)"))
                    if s.role == "leader", w > 18 {
                        body.append(text("T\(s.term)", x: x0 + 3, y: y + 14, size: 11, fill: "#ffffff"))
                    }
                }
            }
            y += laneHeight + laneGap
        }

        // Tunnel lanes: each agreed change as first logged by any (trusted-clock) replica.
        var tunnels = Set(m.routes.flatMap(\.candidates)).union(m.enis.values)
        var changes: [String: (monoNs: Int64, tunnel: String, from: String, to: String)] = [:]
        for (id, lines) in h.replicas where !m.fakedClock.contains(id) {
            for l in lines where l.msg == "tunnel verdict changed" {
                guard let tunnel = l.meta["tunnel"], let to = l.meta["to"] else { continue }
                tunnels.insert(tunnel)
                let key = "\(tunnel)|\(l.meta["index"] ?? "\(l.meta["from"] ?? "")>\(to)@\(l.monoNs)")"
                if let seen = changes[key], seen.monoNs <= l.monoNs { continue }
                changes[key] = (l.monoNs, tunnel, l.meta["from"] ?? "unknown", to)
            }
        }
        let ordered = changes.values.sorted { $0.monoNs < $1.monoNs }
        var flapMarks: [String] = []
        for tunnel in tunnels.sorted() {
            body.append(laneLabel("tunnel \(tunnel)", y: y))
            body.append(laneBackground(y: y))
            for w in m.flapping where w.tunnel == tunnel {
                let x0 = x(w.fromMonoNs)
                flapMarks.append(
                    "<rect x=\"\(f(x0))\" y=\"\(f(y))\" width=\"\(f(max(1, x(w.toMonoNs) - x0)))\" height=\"\(f(laneHeight))\" fill=\"none\" stroke=\"#7b3294\" stroke-width=\"2\" stroke-dasharray=\"5 3\"><title>flapping \(escape(tunnel))</title></rect>"
                )
                flapMarks.append(text("flapping", x: x0 + 3, y: y - 1, size: 9, fill: "#7b3294"))
            }
            let mine = ordered.filter { $0.tunnel == tunnel }
            var from = start
            var state = mine.first?.from ?? "unknown"
            for c in mine + [(end, tunnel, "", "")] {
                let x0 = x(from)
                let w = max(0, x(c.monoNs) - x0)
                if w > 0 {
                    let colour = state == "up" ? "#4daf4a" : state == "down" ? "#e41a1c" : "#bbbbbb"
                    body.append(rect(x0, y + 3, w, laneHeight - 6, fill: colour, title: "\(tunnel) \(state)"))
                    if state != "up", state != "down", w > 40 { body.append(text(state, x: x0 + 3, y: y + 14, size: 10, fill: "#333333")) }
                }
                from = c.monoNs
                state = c.to
            }
            y += laneHeight + laneGap
        }

        // Route lanes: which tunnel each route pointed at, from successful writes and reads.
        let palette = ["#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#386cb0"]
        let tunnelColour = Dictionary(uniqueKeysWithValues: tunnels.sorted().enumerated().map { ($1, palette[$0 % palette.count]) })
        for key in h.routeKeys {
            body.append(laneLabel("\(key.table) \(key.destination)", y: y))
            body.append(laneBackground(y: y))
            var seen: [(Int64, String?)] = []
            for c in h.proxy where c.effect == .applied {
                if c.isRouteWrite, c.routeKey == key {
                    seen.append((c.monoNs, c.action == "DeleteRoute" ? nil : c.eni))
                } else if c.isRouteRead, let routes = c.routes, let done = c.doneNs, routes.contains(where: { $0.table == key.table }) {
                    seen.append((done, routes.first { $0.table == key.table && $0.destination == key.destination && $0.isStatic }?.eni))
                }
            }
            seen.sort { $0.0 < $1.0 }
            var i = 0
            while i < seen.count {
                var j = i + 1
                while j < seen.count, seen[j].1 == seen[i].1 { j += 1 }
                let to = j < seen.count ? seen[j].0 : end
                let x0 = x(seen[i].0)
                let w = max(1, x(to) - x0)
                let tunnel = seen[i].1.flatMap { m.enis[$0] }
                let label = tunnel ?? seen[i].1 ?? "none"
                let fill = tunnel.flatMap { tunnelColour[$0] } ?? (seen[i].1 == nil ? "#ffffff" : "#999999")
                body.append(rect(x0, y + 2, w, laneHeight - 4, fill: fill, title: "\(label) (\(seen[i].1 ?? "no route"))"))
                if w > Double(label.count) * 6.5 + 4 {
                    body.append(text(label, x: x0 + 3, y: y + 14, size: 10, fill: seen[i].1 == nil ? "#333333" : "#ffffff"))
                }
                i = j
            }
            for s in stale where s.call.routeKey == key {
                let cx = x(s.call.monoNs)
                body.append(
                    "<path d=\"M\(f(cx - 5)) \(f(y - 2)) L\(f(cx + 5)) \(f(y - 2)) L\(f(cx)) \(f(y + 8)) Z\" fill=\"#d7191c\"><title>\(escape("stale: \(s.call.summary): \(s.reason)"))</title></path>"
                )
                body.append(line(cx, y, cx, y + laneHeight, stroke: "#d7191c", width: 2))
            }
            y += laneHeight + laneGap
        }
        let lanesBottom = y

        // Bands go under the lanes; drawn now that the lane area's height is known.
        var under: [String] = []
        var labels: [String] = []
        let bandColours = ["#fee08b", "#d9d9f3", "#fdd0a2", "#c7e9c0", "#f2c4de"]
        for (i, b) in bands.enumerated() {
            let colour = bandColours[(b.name.hashValueStable & Int.max) % bandColours.count]
            let x0 = x(b.from)
            under.append(rect(x0, bandTop, max(1, x(b.to) - x0), lanesBottom - bandTop, fill: colour, title: "\(b.name) \(b.detail)", opacity: 0.55))
            if let row = bandLabels.first(where: { $0.band == i })?.row {
                labels.append(text(b.detail.isEmpty ? b.name : "\(b.name) \(b.detail)", x: x0 + 2, y: bandTop + 11 + Double(row) * 14, size: 10, fill: "#333333"))
            }
        }
        // Labels after every band, so a later band never covers an earlier label.
        under += labels
        // Heal and convergence markers.
        var marks: [String] = []
        for (t, name, colour) in [(Optional(m.healedMonoNs), "healed", "#555555"), (m.convergedMonoNs, "converged", "#2b7bba")] {
            guard let t else { continue }
            marks.append(line(x(t), lanesTop - 4, x(t), lanesBottom, stroke: colour, width: 1.5, dash: true))
            marks.append(text(name, x: x(t) + 3, y: lanesBottom + 10, size: 10, fill: colour))
        }

        // Axis: seconds since the run started, at a step that gives about ten ticks.
        var axis: [String] = []
        let axisY = lanesBottom + 20
        axis.append(line(left, axisY, left + plot, axisY, stroke: "#333333", width: 1))
        let seconds = Double(end - start) / 1e9
        let step = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].first { seconds / $0 <= 12 } ?? 3600
        var s = 0.0
        while s <= seconds + 1e-9 {
            let tx = left + s / seconds * plot
            axis.append(line(tx, axisY, tx, axisY + 5, stroke: "#333333", width: 1))
            axis.append("<text x=\"\(f(tx))\" y=\"\(f(axisY + 17))\" font-size=\"11\" text-anchor=\"middle\">\(step < 1 ? String(format: "%.1f", s) : String(format: "%.0f", s))</text>")
            s += step
        }
        axis.append(text("seconds since start", x: left + plot / 2 - 50, y: axisY + 32, size: 11, fill: "#333333"))
        let height = axisY + 42

        var title = "\(m.scenario) seed \(m.seed)"
        if let verdict {
            let failed = verdict.checkers.filter { !$0.ok }.map(\.name)
            title += failed.isEmpty ? " — all checkers ok" : " — FAIL: " + failed.joined(separator: ", ")
        }
        var out = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\">\n"
        out += "<rect x=\"0\" y=\"0\" width=\"\(Int(width))\" height=\"\(Int(height))\" fill=\"#ffffff\"/>\n"
        out += text(title, x: 10, y: 20, size: 14, fill: verdict.map { $0.ok ? "#1a7f37" : "#d7191c" } ?? "#000000", bold: true) + "\n"
        for part in [under, body, flapMarks, marks, axis] { out += part.joined(separator: "\n") + "\n" }
        out += "</svg>\n"
        return out
    }

    struct RoleSegment {
        var role: String
        var term: String
        var from: Int64
        var to: Int64
    }

    /// A role lasts until the next change, or until the last line its process wrote (a
    /// restart begins with `switchman serve starting`): killed replicas show as gaps.
    static func roleSegments(_ lines: [LogLine]) -> [RoleSegment] {
        var out: [RoleSegment] = []
        var current: (role: String, term: String, from: Int64)? = nil
        var lastMono: Int64? = nil
        for l in lines {
            if l.msg == "switchman serve starting" {
                if let c = current, let lastMono { out.append(RoleSegment(role: c.role, term: c.term, from: c.from, to: lastMono)) }
                current = nil
            } else if l.msg == "role changed", let role = l.meta["role"] {
                if let c = current { out.append(RoleSegment(role: c.role, term: c.term, from: c.from, to: l.monoNs)) }
                current = (role, l.meta["term"] ?? "?", l.monoNs)
            }
            lastMono = l.monoNs
        }
        if let c = current, let lastMono { out.append(RoleSegment(role: c.role, term: c.term, from: c.from, to: lastMono)) }
        return out
    }

    static func f(_ v: Double) -> String { String(format: "%.1f", v) }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String, title: String, opacity: Double = 1) -> String {
        let op = opacity < 1 ? " fill-opacity=\"\(opacity)\"" : ""
        return "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(w))\" height=\"\(f(h))\" fill=\"\(fill)\"\(op)><title>\(escape(title))</title></rect>"
    }

    static func text(_ s: String, x: Double, y: Double, size: Int, fill: String, bold: Bool = false) -> String {
        "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(size)\" fill=\"\(fill)\"\(bold ? " font-weight=\"bold\"" : "")>\(escape(s))</text>"
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double, dash: Bool = false) -> String {
        "<line x1=\"\(f(x1))\" y1=\"\(f(y1))\" x2=\"\(f(x2))\" y2=\"\(f(y2))\" stroke=\"\(stroke)\" stroke-width=\"\(width)\"\(dash ? " stroke-dasharray=\"4 3\"" : "")/>"
    }

    static func laneLabel(_ s: String, y: Double) -> String {
        "<text x=\"\(f(left - 8))\" y=\"\(f(y + 14))\" font-size=\"12\" text-anchor=\"end\">\(escape(s))</text>"
    }

    static func laneBackground(y: Double) -> String {
        "<rect x=\"\(f(left))\" y=\"\(f(y))\" width=\"\(f(width - left - right))\" height=\"\(f(laneHeight))\" fill=\"#f4f4f4\" fill-opacity=\"0.6\"/>"
    }
}

extension String {
    /// `hashValue` is seeded per process; band colours should not change between renders.
    var hashValueStable: Int { unicodeScalars.reduce(5381) { ($0 &* 33) &+ Int($1.value) } }
}
