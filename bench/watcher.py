"""The change watcher's probe: what one probe costs (ms, rows read) and whether normal work is still seen, before
(main at e1458f6: `updated_at >= since` look-back de-duplicated on id + updated_at, 2,000 rows a probe) and after
(`ChangeCursor`: keyset head, sweep, future rows, fallback), at 100,000 and 1,000,000 runs.

    python bench/watcher.py [--rows 100000,1000000] [--db sqlite|postgresql|both] [--probes 30]

Per database and size: a table of N finished runs dated one every 2 s until 10 minutes ago and 20 running runs.
Scenarios, each with both probes side by side on the same data:
  idle       no writes between probes
  work       5 `advance` calls between probes (the service, this machine's clock)
  bulk       one UPDATE of all N runs (one timestamp), then 1 `advance` between probes
"seen" counts probes after which the advanced run had been reported (the bulk's first probe excluded).
On PostgreSQL the cursor is also measured as a host's table would be: with only an index on (updated_at), and
with no index on updated_at at all (what `CREATE INDEX … (updated_at, id)` buys). Probe time per idle minute
is ms per probe × 120 (two probes a second).
"""
from __future__ import annotations

import argparse, statistics, sys, tempfile, time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "tests"))

from sqlalchemy import bindparam, text  # noqa: E402

import opsux  # noqa: E402
from opsux.store.events import ChangeCursor  # noqa: E402
from opsux.store.models import UtcDateTime  # noqa: E402


class OldProbe:
    "main's ProbeWatcher loop (e1458f6), one probe per call."
    q = text("SELECT id, tenant_id, user_id, status, updated_at FROM operation_runs "
             "WHERE updated_at >= :since ORDER BY updated_at LIMIT 2000"
             ).bindparams(bindparam("since", type_=UtcDateTime())).columns(updated_at=UtcDateTime())
    slack = timedelta(seconds=2)

    def start(self, con):
        latest = con.execute(text("SELECT max(updated_at) AS m FROM operation_runs").columns(m=UtcDateTime())).scalar()
        self.since, self.seen, self.rows_read = latest - self.slack, {}, 0
        for r in con.execute(self.q, {"since": self.since}): self.seen[r.id] = r.updated_at
        return self

    def probe(self, con):
        rows = con.execute(self.q, {"since": self.since}).all()
        self.rows_read += len(rows)
        out = []
        for r in rows:
            if self.seen.get(r.id) == r.updated_at: continue
            self.seen[r.id] = r.updated_at; out.append(r.id)
        if rows:
            self.since = max(r.updated_at for r in rows) - self.slack
            self.seen = {k: v for k, v in self.seen.items() if v >= self.since}
        return out


def fill(ops, tenant_id: int, n: int) -> None:
    "N finished runs, one every 2 s until 10 minutes ago, in one statement."
    if ops.is_postgres:
        sql = ("INSERT INTO operation_runs (tenant_id, type, status, outcome, summary_counts, failure_summary, context,"
               " created_at, updated_at) SELECT :t, 'inventory.sync', 'completed', 'succeeded', '{\"total\": 1}', '[]',"
               " '{}', d, d FROM (SELECT now() - interval '10 minutes' - g * interval '2 seconds' AS d "
               "FROM generate_series(1, :n) g) s")
    else:
        sql = ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
               "INSERT INTO operation_runs (tenant_id, type, status, outcome, summary_counts, failure_summary, context,"
               " created_at, updated_at, attempt) SELECT :t, 'inventory.sync', 'completed', 'succeeded', "
               "'{\"total\": 1}', '[]', '{}', d, d, 1 FROM (SELECT strftime('%Y-%m-%d %H:%M:%f', 'now', '-600 seconds',"
               " printf('-%d seconds', 2 * i)) AS d FROM s)")
    with ops.engine.begin() as c: c.execute(text(sql), {"t": tenant_id, "n": n})
    with ops.engine.begin() as c: c.execute(text("ANALYZE operation_runs" if ops.is_postgres else "ANALYZE"))


def timed(probe, con):
    t0 = time.perf_counter()
    events = probe.probe(con)
    con.rollback()
    return (time.perf_counter() - t0) * 1000, events


def measure(ops, probes: dict, n: int, between, target=None, skip_first=False) -> dict:
    "Run `n` rounds: `between()` then one probe of each; ms and rows per probe, and rounds where `target` was seen."
    stats = {k: {"ms": [], "rows": [], "seen": 0} for k in probes}
    cons = {k: ops.engine.connect() for k in probes}
    try:
        for i in range(n):
            between()
            for k, p in probes.items():
                before = p.rows_read
                ms, events = timed(p, cons[k])
                ids = [getattr(e, "run_id", e) for e in events]
                if i or not skip_first:
                    s = stats[k]; s["ms"].append(ms); s["rows"].append(p.rows_read - before)
                    s["seen"] += target is not None and (target in ids or None in ids)
    finally:
        for c in cons.values(): c.close()
    return stats


def line(label, name, s, n):
    ms, rows = s["ms"], s["rows"]
    seen = f"  seen {s['seen']}/{len(ms)}" if s["seen"] or label != "idle" else ""
    print(f"  {label:6} {name:22} {statistics.median(ms):8.2f} ms/probe (max {max(ms):7.2f})"
          f"  {statistics.mean(rows):8.0f} rows/probe{seen}"
          + (f"  probe time {statistics.median(ms) * 120 / 1000:.2f} s per idle min" if label == "idle" else ""))


def started(ops, probe):
    with ops.engine.connect() as con:
        probe.start(con); con.rollback()
    return probe


def bench(url: str, label: str, n_rows: int, rounds: int):
    ops = opsux.connect(url)
    try:
        t = ops.directory.add_tenant("Bench")
        t0 = time.perf_counter(); fill(ops, t.id, n_rows)
        active = [ops.runs.start(ops.runs.enqueue(t, "inventory.sync")) for _ in range(20)]
        print(f"{label}, {n_rows:,} runs (filled in {time.perf_counter() - t0:.1f} s)")
        target = active[0]
        work = lambda k: (lambda: [ops.runs.advance(target, processed=1) for _ in range(k)])
        probes = lambda: {"before (main)": started(ops, OldProbe()), "after (ChangeCursor)": started(ops, ChangeCursor())}
        for name, between in (("idle", lambda: None), ("work", work(5))):
            for k, s in measure(ops, probes(), rounds, between, target.id if name == "work" else None).items():
                line(name, k, s, rounds)
        if ops.is_postgres: host_indexes(ops, rounds, work, target.id)
        ps = probes()
        t0 = time.perf_counter()
        with ops.engine.begin() as c:
            c.execute(text("UPDATE operation_runs SET context = '{}', updated_at = :now"), {"now": _now(ops)})
        print(f"  (one UPDATE of {n_rows + 20:,} runs took {time.perf_counter() - t0:.1f} s)")
        for k, s in measure(ops, ps, rounds, work(1), target.id, skip_first=True).items(): line("bulk", k, s, rounds)
        cur = ps["after (ChangeCursor)"]
        print(f"  after the bulk: {cur.resyncs} resync, {len(cur.memo):,} fingerprints kept")
    finally:
        ops.close()


def host_indexes(ops, rounds, work, target):
    "The cursor on a host's table: with (updated_at) only, and with no index on updated_at."
    for ddl, name in (("DROP INDEX ix_operation_runs_updated_at_id; CREATE INDEX ix_h ON operation_runs (updated_at)",
                       "after, (updated_at) only"),
                      ("DROP INDEX ix_h", "after, no index")):
        with ops.engine.begin() as c:
            for stmt in ddl.split("; "): c.execute(text(stmt))
            c.execute(text("ANALYZE operation_runs"))
        for label, between in (("idle", lambda: None), ("work", work(5))):
            s = measure(ops, {name: started(ops, ChangeCursor())}, max(5, rounds // 3), between,
                        target if label == "work" else None)[name]
            line(label, name, s, rounds)
    with ops.engine.begin() as c:
        c.execute(text("CREATE INDEX ix_operation_runs_updated_at_id ON operation_runs (updated_at, id)"))


def _now(ops):
    from opsux.store.models import utcnow
    now = utcnow()
    return now if ops.is_postgres else now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="100000,1000000")
    ap.add_argument("--db", default="both", choices=["sqlite", "postgresql", "both"])
    ap.add_argument("--probes", type=int, default=30)
    a = ap.parse_args(argv)
    for n in [int(x) for x in a.rows.split(",")]:
        if a.db in ("sqlite", "both"):
            bench(f"sqlite:///{tempfile.mkdtemp(prefix='opsux-bench-')}/w.sqlite", "SQLite", n, a.probes)
        if a.db in ("postgresql", "both"):
            import pgserver
            admin = pgserver.ensure_postgres(); url = pgserver.fresh_database(admin)
            try: bench(url, "PostgreSQL", n, a.probes)
            finally: pgserver.drop_database(admin, url)


if __name__ == "__main__":
    main()
