#!/usr/bin/env python3
"""Prints an AdminStatus (docs/ADMIN.md, GET /v1/status) read from stdin as tables.

Used by cluster/up and cluster/status when this build of switchman has no `switchman
status` yet. Standard library only.
"""
import json
import sys


def table(headers, rows):
    rows = [[("-" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
    print(line(headers))
    for r in rows:
        print(line(r))


def main():
    s = json.load(sys.stdin)
    print("cluster %s  leader %s  term %s  commit %s  (answered by %s, %s)" % (
        s.get("cluster"), s.get("leader") or "none", s.get("term"), s.get("commitIndex"),
        s.get("answeredBy"), s.get("consistency")))
    print()
    table(["MEMBER", "ZONE", "ROLE", "REACHABLE", "PEER", "ADMIN"],
          [[m.get("id"), m.get("zone"), m.get("role"), "yes" if m.get("reachable") else "no", m.get("peer"), m.get("admin")]
           for m in s.get("members", [])])
    print()
    table(["TUNNEL", "STATE", "DRAINED", "INSTANCE", "ENI", "IP"],
          [[t.get("name"), t.get("state") + (" (stale)" if t.get("stale") else ""), "yes" if t.get("drained") else "no",
            (t.get("instance") or {}).get("instanceId"), (t.get("instance") or {}).get("eniId"),
            (t.get("instance") or {}).get("privateIP")]
           for t in s.get("tunnels", [])])
    print()
    table(["ROUTE TABLE", "DESTINATION", "DESIRED", "ACTUAL", "REASON"],
          [[r.get("routeTable"), r.get("destination"), r.get("desired"), r.get("actual"), r.get("reason")]
           for r in s.get("routes", [])])


if __name__ == "__main__":
    main()
