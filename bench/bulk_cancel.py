"""Bulk cancel at scale: `Actions.bulk("cancel", filters={})` of 100k queued runs on SQLite and on PostgreSQL, and
what it costs a concurrent worker's `advance`.

    python bench/bulk_cancel.py [--runs 100000] [--db ADMIN_URL] [--skip-sqlite] [--skip-postgres]

Seeds `--runs` queued runs in one tenant (each initiated by a user, so each cancel writes a terminal notification)
through opsux.store.seed's loaders (COPY on PostgreSQL), then a user bulk-cancels "all matching" while a worker in
*another process* (no shared GIL) calls `ops.runs.advance` on a running run of another tenant as fast as it can.
Prints the bulk's wall time and rate, its batch count, the checks (every run cancelled, one notification each), and
the worker's advance latency p50/p99/max before and during the bulk. Without `--db` (or OPSUX_BENCH_DATABASE_URL) a
private PostgreSQL is started (tests/pgserver.py, fsync on).
"""
from __future__ import annotations

import argparse, json, os, subprocess, sys, tempfile, textwrap, time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT))

import opsux  # noqa: E402
import pgserver  # noqa: E402
from opsux.store.actions import BULK_BATCH, Actions  # noqa: E402
from opsux.store.seed import _load_postgres, _load_sqlite, seed_directory  # noqa: E402
from opsux.store.tables import utcnow  # noqa: E402

TYPE = "inventory.sync"
WORKER = textwrap.dedent("""
    import json, os, sys, time
    import opsux
    ops = opsux.connect(sys.argv[1]); run = int(sys.argv[2]); stop = sys.argv[3]
    out = []
    while not os.path.exists(stop):
        t0 = time.perf_counter(); ops.runs.advance(run, processed=1, succeeded=1)
        out.append((time.time(), (time.perf_counter() - t0) * 1000))
        time.sleep(0.002)
    json.dump(out, sys.stdout); ops.close()
""")


def queued_rows(n: int, tenant: int, users: list[tuple[int, str]]):
    "`n` queued runs of `tenant` in COLUMNS order (the seed loaders' row shape)."
    now = utcnow()
    ctx = json.dumps({"source": "bench"})
    for i in range(n):
        uid, who = users[i % len(users)]
        created = now - timedelta(seconds=n - i)
        yield (tenant, uid, who, TYPE, "queued", "pending", None, None, "{}", "[]", ctx, created, created, None, None)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float("nan")


def bench(name: str, url: str, runs: int, before: float) -> dict:
    ops = opsux.connect(url)
    people = seed_directory(ops, tenants=2, users_per_tenant=3)
    (home, users), (other, others) = list(people.items())[:2]
    t0 = time.perf_counter()
    (_load_postgres if ops.is_postgres else _load_sqlite)(ops, queued_rows(runs, home, users), runs, lambda i: None)
    seeded = time.perf_counter() - t0
    busy = ops.runs.start(ops.runs.enqueue(other, TYPE, user=others[0][0]))    # the worker's run, elsewhere
    acts = Actions(ops, users[0][0])
    assert acts.matching({}) == runs, acts.matching({})
    stop = Path(tempfile.mkdtemp()) / "stop"
    worker = subprocess.Popen([sys.executable, "-c", WORKER, url, str(busy.id), str(stop)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    time.sleep(before)
    w0, t0 = time.time(), time.perf_counter()
    done = acts.bulk("cancel", filters={}, wait=True)
    took, w1 = time.perf_counter() - t0, time.time()
    time.sleep(0.5)
    stop.touch()
    out, _ = worker.communicate(timeout=60)
    samples = json.loads(out)
    with ops.reader.connect() as con:
        cancelled = con.exec_driver_sql("SELECT count(*) FROM operation_runs WHERE tenant_id = %d AND outcome = 'cancelled' "
                                        "AND type = '%s'" % (home, TYPE)).scalar()
        notes = con.exec_driver_sql("SELECT count(*), count(DISTINCT run_id) FROM notifications n JOIN operation_runs r "
                                    "ON r.id = n.run_id WHERE r.tenant_id = %d AND r.type = '%s'" % (home, TYPE)).one()
    ops.close()
    bef = [ms for t, ms in samples if t < w0]
    dur = [ms for t, ms in samples if w0 <= t <= w1]
    res = dict(backend=name, runs=runs, seeded_s=round(seeded, 1), bulk_s=round(took, 2), rate=round(runs / took),
               batches=-(-runs // BULK_BATCH), counts=done.summary_counts, outcome=done.outcome,
               cancelled=cancelled, notifications=notes[0], notified_runs=notes[1],
               before=dict(n=len(bef), p50=pct(bef, .5), p99=pct(bef, .99), max=max(bef, default=float("nan"))),
               during=dict(n=len(dur), p50=pct(dur, .5), p99=pct(dur, .99), max=max(dur, default=float("nan"))))
    ok = cancelled == runs and notes[0] == notes[1] == runs and done.summary_counts.get("succeeded") == runs
    print(f"{name:<10} {runs:,} queued runs seeded in {seeded:.1f} s; bulk cancel of all: {took:.2f} s "
          f"({runs / took:,.0f} runs/s, {res['batches']} batches of {BULK_BATCH}); {done.outcome} {done.summary_counts}; "
          f"cancelled {cancelled:,}, notifications {notes[0]:,} for {notes[1]:,} runs: {'OK' if ok else 'WRONG'}",
          flush=True)
    for phase in ("before", "during"):
        f = res[phase]
        print(f"{name:<10} worker advance {phase:<6}: {f['n']:>6,} calls  p50 {f['p50']:7.2f} ms  p99 {f['p99']:7.2f} ms  "
              f"max {f['max']:7.2f} ms", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--before", type=float, default=3.0, help="seconds of worker latency measured before the bulk")
    ap.add_argument("--db", default=os.environ.get("OPSUX_BENCH_DATABASE_URL"), help="admin URL of a PostgreSQL server")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--skip-postgres", action="store_true")
    args = ap.parse_args(argv)
    results = []
    if not args.skip_sqlite:
        results.append(bench("sqlite", f"sqlite:///{tempfile.mkdtemp()}/bulk.sqlite", args.runs, args.before))
    if not args.skip_postgres:
        admin = args.db or pgserver.start_postgres(durable=True)
        url = pgserver.fresh_database(admin)
        try: results.append(bench("postgresql", url, args.runs, args.before))
        finally: pgserver.drop_database(admin, url)
    print(json.dumps(results, default=str), flush=True)


if __name__ == "__main__":
    main()
