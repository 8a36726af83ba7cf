// The dashboard's page, style and script, served by the binary itself: the operator's
// machine may have no internet access while the cluster is on fire, and a page that loads
// from a CDN would also leak who looks at which cluster. So: no external URL anywhere here
// (DashboardTests checks), one dark theme with high contrast for the 3 a.m. incident.

enum DashboardPage {
    /// The page. `initialJSON` (already made safe by `DashboardServer.embeddable`) is the
    /// status and events at load time: the script renders them before its first poll, so
    /// the page shows data at once (and `chromium --dump-dom` sees it).
    static func html(initialJSON: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="color-scheme" content="dark">
        <title>Switchman dashboard</title>
        <link rel="stylesheet" href="/dashboard.css">
        </head>
        <body>
        <header>
          <h1>Switchman <span id="cluster" class="muted"></span></h1>
          <dl id="summary"></dl>
          <div id="connection" class="muted">loading…</div>
        </header>
        <div id="banner" class="banner" hidden></div>
        <div id="notice" class="notice" hidden></div>
        <noscript><div class="banner">This page needs JavaScript to show the cluster; `switchman status` shows the same in a terminal.</div></noscript>
        <main>
          <section id="tunnels-section">
            <h2>Tunnels × replicas <span class="hint">each replica's latest observation (run length); the verdict is the majority of fresh ones</span></h2>
            <table id="tunnels"></table>
          </section>
          <section id="routes-section">
            <h2>Routes <span class="hint">desired (planner) vs actual (last successful write); fencing token term/index</span></h2>
            <table id="routes"></table>
          </section>
          <section id="members-section">
            <h2>Members <span class="hint" id="members-hint"></span></h2>
            <table id="members"></table>
            <p><button type="button" id="transfer-any" class="action">Transfer leadership…</button></p>
          </section>
          <section id="events-section">
            <h2>Events <label class="hint"><input type="checkbox" id="show-writes" checked> route writes</label></h2>
            <ol id="events"></ol>
          </section>
        </main>
        <script type="application/json" id="initial-data">\(initialJSON)</script>
        <script src="/dashboard.js"></script>
        </body>
        </html>
        """
    }

    static let style = """
        :root {
          --bg: #0b0f14; --panel: #121922; --line: #243040; --text: #e8eef5; --muted: #9aa8b8;
          --up: #4ade80; --down: #ff6b6b; --warn: #fbbf24; --info: #7cc4ff; --accent: #c4a7ff;
          color-scheme: dark;
        }
        * { box-sizing: border-box; }
        html, body { margin: 0; background: var(--bg); color: var(--text);
          font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
        header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 8px 24px;
          padding: 12px 20px; border-bottom: 1px solid var(--line); background: var(--panel); }
        h1 { font-size: 20px; margin: 0; }
        h2 { font-size: 15px; margin: 0 0 8px; letter-spacing: .02em; }
        .hint { font-size: 12px; font-weight: normal; color: var(--muted); margin-left: 8px; }
        .muted { color: var(--muted); }
        dl#summary { display: flex; flex-wrap: wrap; gap: 4px 18px; margin: 0; }
        dl#summary div { display: flex; gap: 6px; }
        dl#summary dt { color: var(--muted); }
        dl#summary dd { margin: 0; font-weight: 600; }
        #connection { margin-left: auto; font-size: 12px; }
        main { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 16px; padding: 16px 20px; }
        section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; overflow-x: auto; }
        /* The two wide tables get the full width; members and events share a row below. */
        #tunnels-section, #routes-section { grid-column: 1 / -1; }
        table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
        th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; white-space: nowrap; }
        th { color: var(--muted); font-weight: 600; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
        td.wrap { white-space: normal; }
        code, .mono { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 13px; }
        .pill { display: inline-block; padding: 0 8px; border-radius: 999px; font-weight: 700; font-size: 12px; border: 1px solid currentColor; }
        .up { color: var(--up); } .down { color: var(--down); } .unknown { color: var(--warn); }
        .leader { color: var(--accent); font-weight: 700; }
        .stale { opacity: .55; font-style: italic; }
        .mismatch { color: var(--warn); font-weight: 700; }
        .alert { color: var(--down); }
        .ok { color: var(--up); } .failed { color: var(--down); } .pending { color: var(--warn); }
        .banner { margin: 12px 20px 0; padding: 10px 14px; border-radius: 8px; border: 1px solid var(--down);
          background: #2a1215; color: #ffd7d7; font-weight: 600; }
        .notice { margin: 12px 20px 0; padding: 8px 14px; border-radius: 8px; border: 1px solid var(--info); background: #0f2233; }
        .notice.error { border-color: var(--down); background: #2a1215; }
        button.action { background: #1c2836; color: var(--text); border: 1px solid #3b4d63; border-radius: 6px;
          padding: 3px 10px; font: inherit; font-size: 12px; cursor: pointer; }
        button.action:hover, button.action:focus-visible { border-color: var(--info); outline: none; }
        button.armed { border-color: var(--warn); color: var(--warn); }
        ol#events { list-style: none; margin: 0; padding: 0; max-height: 360px; overflow-y: auto; }
        ol#events li { display: grid; grid-template-columns: 70px 160px 70px 1fr; gap: 10px; padding: 4px 2px; border-bottom: 1px solid var(--line); }
        ol#events.hide-writes li.k-write { display: none; }
        .kind { font-weight: 700; overflow: hidden; text-overflow: ellipsis; }
        .k-failover .kind { color: var(--down); } .k-recovery .kind { color: var(--up); }
        .k-drain .kind { color: var(--warn); } .k-instance .kind { color: var(--info); }
        .k-election .kind { color: var(--accent); } .k-write .kind { color: var(--muted); }
        @media (max-width: 700px) { main { grid-template-columns: 1fr; } ol#events li { grid-template-columns: 80px 1fr; } }
        """

    static let script = #"""
        "use strict";
        // Renders the cluster from the data embedded in the page, then polls the dashboard's
        // own JSON endpoints. Every text from the cluster goes into text nodes, never HTML.
        (function () {
          const initial = JSON.parse(document.getElementById("initial-data").textContent || "{}");
          const refresh = Math.max(250, initial.refreshMillis || 1000);
          const maxEvents = 500;
          let events = [];        // the cluster's events and the dashboard's own election notes
          let lastSeq = 0;
          let lastLeader = null;  // {leader, term} of the previous status, for election notes
          let electionNotes = 0;

          function h(tag, attrs, ...children) {
            const el = document.createElement(tag);
            for (const [k, v] of Object.entries(attrs || {})) {
              if (v === null || v === undefined || v === false) continue;
              if (k === "class") el.className = v; else el.setAttribute(k, v === true ? "" : String(v));
            }
            for (const c of children.flat()) {
              if (c === null || c === undefined) continue;
              el.append(c instanceof Node ? c : document.createTextNode(String(c)));
            }
            return el;
          }
          const byId = (id) => document.getElementById(id);
          const fill = (id, ...nodes) => byId(id).replaceChildren(...nodes.flat());

          function duration(ms) {
            if (ms === null || ms === undefined) return "-";
            if (ms < 1000) return ms + "ms";
            if (ms < 60000) return (ms / 1000).toFixed(1) + "s";
            const m = Math.floor(ms / 60000), s = Math.round((ms % 60000) / 1000);
            if (m < 60) return m + "m " + s + "s";
            return m < 2880 ? Math.floor(m / 60) + "h " + (m % 60) + "m" : Math.floor(m / 1440) + "d";
          }
          function clock(iso) {
            const d = new Date(iso);
            return isNaN(d) ? "-" : d.toLocaleTimeString([], { hour12: false });
          }
          function ago(iso) {
            const d = new Date(iso);
            return isNaN(d) ? "" : duration(Math.max(0, Date.now() - d.getTime())) + " ago";
          }

          function renderStatus(ds) {
            const s = ds.status;
            const banner = byId("banner");
            if (ds.error) {
              banner.hidden = false;
              banner.textContent = (s ? "Showing replica " + s.answeredBy + "'s own (stale) view: " : "No cluster data: ")
                + ds.error.code + ": " + ds.error.message;
            } else {
              banner.hidden = true;
              banner.textContent = "";
            }
            fill("connection", "updated " + clock(ds.fetchedAt) + " via " + (ds.endpoints || []).join(", "));
            if (!s) return;
            noteElection(s, ds.fetchedAt);
            byId("cluster").textContent = s.cluster;
            const leaderMember = s.members.find((m) => m.id === s.leader);
            const leaderText = s.leader === 0 ? "none" : s.leader + (leaderMember && leaderMember.zone ? " (" + leaderMember.zone + ")" : "");
            const item = (label, value, attrs) => h("div", null, h("dt", null, label), h("dd", attrs || null, value));
            fill("summary",
              item("leader", leaderText, { id: "leader", "data-leader": s.leader, class: s.leader === 0 ? "down" : "leader" }),
              item("term", s.term, { id: "term" }),
              item("lease", s.leaseRemainingMillis !== null && s.leaseRemainingMillis !== undefined
                ? duration(s.leaseRemainingMillis) + " left" : (s.answeredBy === s.leader ? "none" : "- (ask the leader)"), { id: "lease" }),
              item("commit / applied", s.commitIndex + " / " + s.appliedIndex),
              item("answered by", s.answeredBy),
              item("read", s.consistency, { class: s.consistency === "stale" ? "unknown" : null }));
            renderMembers(s);
            renderTunnels(s);
            renderRoutes(s);
          }

          function renderMembers(s) {
            byId("members-hint").textContent = "as seen by replica " + s.answeredBy
              + (s.answeredBy === s.leader ? " (the leader hears everyone)" : " (a follower hears mostly the leader)");
            const rows = s.members.map((m) => {
              const canLead = s.leader !== 0 && m.id !== s.leader && m.role !== "learner";
              return h("tr", { "data-member": m.id, "data-role": m.role },
                h("td", { class: m.id === s.leader ? "leader" : null }, m.id),
                h("td", null, m.zone || "-"),
                h("td", { class: m.role === "leader" ? "leader" : (m.role === "unknown" ? "unknown" : null) }, m.role),
                h("td", { class: m.reachable ? "up" : "down" }, m.reachable ? "yes" : "no"),
                h("td", null, m.matchIndex !== null && m.matchIndex !== undefined ? m.matchIndex : "-"),
                h("td", null, m.lastContactMillisAgo !== null && m.lastContactMillisAgo !== undefined ? duration(m.lastContactMillisAgo) + " ago" : "-"),
                h("td", null, canLead ? button("Make leader", "transfer-" + m.id, () =>
                  act("/api/leader/transfer", { to: m.id }, "Hand leadership from member " + s.leader + " to member " + m.id + "?")) : null));
            });
            fill("members", h("thead", null, h("tr", null, ["ID", "Zone", "Role", "Reachable", "Match", "Last contact", ""].map((t) => h("th", null, t)))),
              h("tbody", null, rows));
          }

          function observationCell(o) {
            if (!o) return h("td", { class: "muted" }, "-");
            const healthy = o.healthyRun > 0, down = o.unhealthyRun > 0;
            const word = healthy ? "up" : (down ? "down" : "?");
            const run = healthy ? o.healthyRun : o.unhealthyRun;
            const title = "replica " + o.replica + ": " + word + " for " + run + " round(s), " + duration(o.ageMillis) + " old"
              + (o.rttMillis !== null && o.rttMillis !== undefined ? ", rtt " + o.rttMillis + "ms" : "") + (o.fresh ? "" : ", stale");
            return h("td", { class: (healthy ? "up" : (down ? "down" : "unknown")) + (o.fresh ? "" : " stale"), title: title,
              "data-replica": o.replica, "data-observation": word },
              word + " (" + run + ")" + (o.fresh ? "" : " stale"));
          }

          function renderTunnels(s) {
            const replicas = [...new Set(s.members.map((m) => m.id).concat(s.tunnels.flatMap((t) => t.observations.map((o) => o.replica))))].sort((a, b) => a - b);
            const head = h("tr", null, h("th", null, "Tunnel"), h("th", null, "Verdict"),
              replicas.map((r) => h("th", null, "replica " + r)), h("th", null, "Instance"), h("th", null, "Drained"), h("th", null, ""));
            const rows = s.tunnels.map((t) => {
              const verdict = t.state + (t.stale ? " (stale)" : "");
              const drain = t.drained
                ? button("Undrain", "undrain-" + t.name, () => act("/api/tunnels/" + encodeURIComponent(t.name) + "/undrain", {}, "Put " + t.name + " back into service?"))
                : button("Drain…", "drain-" + t.name, () => {
                    const reason = window.prompt("Drain " + t.name + "? Routes move off it until it is undrained.\nReason:", "maintenance");
                    if (reason === null || reason.trim() === "") return;
                    act("/api/tunnels/" + encodeURIComponent(t.name) + "/drain", { reason: reason.trim() }, null);
                  });
              return h("tr", { "data-tunnel": t.name, "data-state": t.state, "data-drained": t.drained ? "yes" : "no" },
                h("td", { class: "mono" }, t.name),
                h("td", null, h("span", { class: "pill " + t.state + (t.stale ? " stale" : "") }, verdict),
                  // A verdict that never changed carries the epoch as its time: nothing to say.
                  t.since && new Date(t.since).getFullYear() > 2000 ? h("span", { class: "muted", title: t.since }, " since " + clock(t.since)) : null),
                replicas.map((r) => observationCell(t.observations.find((o) => o.replica === r))),
                h("td", { class: "mono" }, t.instance ? t.instance.instanceId + " " + t.instance.privateIP : "-"),
                h("td", { class: t.drained ? "unknown wrap" : "wrap" }, t.drained ? "yes: " + (t.drainReason || "") + (t.drainedBy ? " (" + t.drainedBy + ")" : "") : "no"),
                h("td", null, drain));
            });
            fill("tunnels", h("thead", null, head), h("tbody", null, rows));
          }

          function renderRoutes(s) {
            const rows = s.routes.flatMap((r) => {
              const w = r.lastWrite;
              const outcome = w ? (w.success === true ? "ok" : (w.success === false ? "failed" : "pending")) : null;
              const row = h("tr", { "data-table": r.routeTable, "data-destination": r.destination, "data-desired": r.desired || "", "data-actual": r.actual || "" },
                h("td", { class: "mono" }, r.routeTable),
                h("td", { class: "mono" }, r.destination),
                h("td", { class: "mono" }, r.desired || "-"),
                h("td", { class: "mono" + (r.desired !== r.actual ? " mismatch" : "") }, r.actual || "-"),
                h("td", null, w ? [h("span", { class: outcome }, outcome), " ", h("span", { class: "mono", title: "fencing token term/index" }, w.term + "/" + w.index),
                  w.at ? h("span", { class: "muted", title: w.at }, " " + clock(w.at) + " (" + ago(w.at) + ")") : null,
                  w.detail ? h("div", { class: "muted wrap" }, w.detail) : null] : "-"),
                h("td", { class: "wrap" }, r.reason || ""));
              return r.alert ? [row, h("tr", { class: "alert" }, h("td", { colspan: 6 }, "⚠ " + r.alert))] : [row];
            });
            fill("routes", h("thead", null, h("tr", null, ["Table", "Destination", "Desired", "Actual", "Last write", "Reason"].map((t) => h("th", null, t)))),
              h("tbody", null, rows));
          }

          function category(kind) {
            switch (kind) {
              case "tunnelDown": return "failover";
              case "tunnelUp": case "failbackApproved": return "recovery";
              case "drained": case "undrained": return "drain";
              case "instanceDiscovered": case "instanceReplaced": return "instance";
              case "intent": case "outcome": case "outcomeWithoutIntent": case "intentAbandoned": return "write";
              case "election": return "election";
              default: return "other";
            }
          }

          // Elections are not in the cluster's event history; the dashboard notes the leader
          // and term changes it sees between polls.
          function noteElection(s, at) {
            const now = { leader: s.leader, term: s.term };
            if (lastLeader && (lastLeader.leader !== now.leader || lastLeader.term !== now.term)) {
              electionNotes += 1;
              events.push({ key: "e" + electionNotes, at: at, kind: "election", tunnel: null,
                text: now.leader === 0 ? "no leader known (term " + now.term + ")"
                  : "member " + now.leader + " leads in term " + now.term + (lastLeader.leader ? " (was " + lastLeader.leader + ", term " + lastLeader.term + ")" : "") });
              renderEvents();
            }
            lastLeader = now;
          }

          function addEvents(doc) {
            if (!doc || !doc.events) return;
            for (const e of doc.events) {
              if (e.seq <= lastSeq) continue;
              lastSeq = e.seq;
              events.push({ key: "s" + e.seq, seq: e.seq, at: e.at, kind: e.kind, tunnel: e.tunnel, text: e.text });
            }
            if (events.length > maxEvents) events = events.slice(events.length - maxEvents);
            renderEvents();
          }

          function renderEvents() {
            const sorted = events.slice().sort((a, b) => new Date(b.at) - new Date(a.at) || (b.seq || 0) - (a.seq || 0));
            fill("events", sorted.map((e) => h("li", { class: "k-" + category(e.kind), "data-kind": e.kind, "data-seq": e.seq || null },
              h("span", { class: "muted mono", title: e.at }, clock(e.at)),
              h("span", { class: "kind" }, e.kind),
              h("span", { class: "mono" }, e.tunnel || ""),
              h("span", null, e.text))));
          }

          // Buttons that act on the cluster ask first (a confirm dialog, or the drain's
          // reason prompt), then POST to the dashboard with the header its CSRF check wants.
          function button(label, id, onClick) {
            const b = h("button", { type: "button", class: "action", id: id }, label);
            b.addEventListener("click", onClick);
            return b;
          }
          async function act(path, body, question) {
            if (question !== null && !window.confirm(question)) return;
            notice("sending…", false);
            try {
              const r = await fetch(path, { method: "POST", cache: "no-store", credentials: "same-origin",
                headers: { "Content-Type": "application/json", "X-Switchman-Dashboard": "1" }, body: JSON.stringify(body) });
              const doc = await r.json().catch(() => ({}));
              if (r.ok) notice("ok: " + (doc.message || "done") + (doc.term ? " (term " + doc.term + (doc.index ? ", index " + doc.index : "") + ")" : ""), false);
              else notice("failed (HTTP " + r.status + "): " + (doc.code ? doc.code + ": " : "") + (doc.message || ""), true);
            } catch (err) {
              notice("failed: the dashboard did not answer (" + err + ")", true);
            }
            poll();
          }
          function notice(text, isError) {
            const n = byId("notice");
            n.hidden = false;
            n.className = "notice" + (isError ? " error" : "");
            n.textContent = text;
          }

          async function pollStatus() {
            try {
              const r = await fetch("/api/status", { cache: "no-store" });
              renderStatus(await r.json());
            } catch (err) {
              byId("connection").textContent = "the dashboard itself is not answering (" + err + "); retrying";
              byId("connection").className = "down";
              return;
            }
            byId("connection").className = "muted";
          }
          async function pollEvents() {
            try {
              const r = await fetch("/api/events?since=" + lastSeq + "&limit=1000", { cache: "no-store" });
              if (r.ok) addEvents(await r.json());
            } catch (err) { /* shown by pollStatus */ }
          }
          let polling = false;
          async function poll() {
            if (polling) return;
            polling = true;
            try { await Promise.all([pollStatus(), pollEvents()]); } finally { polling = false; }
          }
          async function loop() {
            await poll();
            setTimeout(loop, refresh);
          }

          byId("show-writes").addEventListener("change", (e) => byId("events").classList.toggle("hide-writes", !e.target.checked));
          byId("transfer-any").addEventListener("click", () =>
            act("/api/leader/transfer", {}, "Hand leadership to the most caught-up other member?"));
          if (initial.status) renderStatus(initial.status);
          addEvents(initial.events);
          setTimeout(loop, refresh);
        })();
        """#
}
