"""Storage benchmark on PostgreSQL: opsux's queries beside raw SQL for the same rows, in the same run.

    python bench/storage.py [--runs 1000000] [--tenants 100] [--small 10000] [--db ADMIN_URL]

Seeds `--runs` runs across `--tenants` tenants with `opsux.store.seed.seed` (COPY), then measures, as medians over
repeated calls (each beside a raw psycopg query returning the same rows, and its target):
first list page and a page 200 pages deep (≤ 20 ms and ≤ 2× raw), active_runs (≤ 5 ms, and at most 20% slower
than on a `--small` database of the same shape), unread count, `advance` throughput with 8 workers on one run
(≥ 1,000/s, zero lost) and seeding time (≤ 60 s for 1M; raw baseline: INSERT … SELECT of the same rows into an
identically indexed table). Without `--db` (or OPSUX_BENCH_DATABASE_URL) it starts a private PostgreSQL with
production durability settings (fsync on). Results are printed and written to bench/results/storage.json.
"""
from __future__ import annotations

import argparse, json, os, statistics, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

import opsux  # noqa: E402
from opsux.store.seed import seed  # noqa: E402
import pgserver  # noqa: E402
from timing import samples  # noqa: E402

COLS = ("id, tenant_id, user_id, initiator_name, type, status, outcome, started_at, completed_at, summary_counts, "
        "failure_summary, context, created_at, updated_at, identity, heartbeat_at")


def timed(fn, reps=50, warmup=5):
    "Median and p95 milliseconds of fn() over reps calls (after warmup calls)."
    ts = samples(fn, reps, warmup)
    return statistics.median(ts), ts[int(len(ts) * 0.95) - 1]


def dsn(url: str) -> str: return url.replace("postgresql+psycopg://", "postgresql://", 1)


def bench_user(ops):
    "A user who has an active run (so the widget query returns something), and their viewer."
    with ops.engine.connect() as c:
        uid = c.exec_driver_sql("SELECT user_id FROM operation_runs WHERE status IN ('queued','running') "
                                "AND user_id IS NOT NULL ORDER BY id LIMIT 1").scalar()
    return uid, ops.viewer(uid)


def measure_active(ops, raw):
    uid, v = bench_user(ops)
    tids = list(v.tenant_ids)
    ours = timed(v.active_runs, reps=200)
    q = (f"SELECT {COLS} FROM operation_runs WHERE tenant_id = ANY(%s) AND user_id = %s "
         "AND status IN ('queued','running') ORDER BY id LIMIT 200")
    base = timed(lambda: raw.execute(q, (tids, uid)).fetchall(), reps=200)
    assert len(v.active_runs()) == len(raw.execute(q, (tids, uid)).fetchall()) >= 1
    return ours, base


def advance_throughput(url, run_id, workers=8, per_worker=500):
    handles = [opsux.connect(url, migrate=False) for _ in range(workers)]
    try: return per_second(handles, lambda h: h.runs.advance(run_id, processed=1, succeeded=1), per_worker)
    finally:
        for h in handles: h.close()


def per_second(clients, call, per_client):
    "Calls per second when every client runs `call(client)` `per_client` times in its own thread, all at once."
    barrier = threading.Barrier(len(clients) + 1)
    def work(c):
        barrier.wait()
        for _ in range(per_client): call(c)
    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads: t.start()
    barrier.wait(); t0 = time.perf_counter()
    for t in threads: t.join()
    return len(clients) * per_client / (time.perf_counter() - t0)


def raw_advance_throughput(url, run_id, workers=8, per_worker=500, durable=False):
    "The same increments as bare autocommit UPDATEs (by default with opsux's synchronous_commit=off for progress)."
    sql = ("" if durable else "SET synchronous_commit = off; ") + ("UPDATE operation_runs SET summary_counts = summary_counts || jsonb_build_object('processed', "
           "COALESCE((summary_counts->>'processed')::bigint, 0) + 1), updated_at = now() "
           "WHERE id = %s AND status IN ('queued','running')")
    cons = [psycopg.connect(dsn(url), autocommit=True) for _ in range(workers)]
    stmt = sql.replace("%s", str(int(run_id)))
    try: return per_second(cons, lambda c: c.execute(stmt), per_worker)
    finally:
        for c in cons: c.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--db", default=os.environ.get("OPSUX_BENCH_DATABASE_URL"), help="admin URL of a PostgreSQL server")
    args = ap.parse_args(argv)
    admin = args.db or pgserver.start_postgres(durable=True)
    rows = []
    def report(name, ours, raw, target, ok, unit="ms"):
        rows.append(dict(name=name, opsux=round(ours, 3), raw=round(raw, 3), unit=unit, target=target, ok=bool(ok)))
        print(f"{name:<34} {ours:>10.2f} {unit:<6} raw {raw:>10.2f} {unit:<6} target {target:<24} {'OK' if ok else 'MISSED'}", flush=True)

    # --- the small database first: active_runs at --small runs -------------------------------------------
    small_url = pgserver.fresh_database(admin)
    small = opsux.connect(small_url)
    seed(small, runs=args.small, tenants=args.tenants, random_seed=1)
    with psycopg.connect(dsn(small_url), autocommit=True) as raw:
        (small_active, _), _ = measure_active(small, raw)
    small.close()

    # --- the big database --------------------------------------------------------------------------------
    url = pgserver.fresh_database(admin)
    ops = opsux.connect(url)
    t0 = time.perf_counter()
    figures = seed(ops, runs=args.runs, tenants=args.tenants, progress=True, random_seed=2)
    seed_secs = time.perf_counter() - t0
    with psycopg.connect(dsn(url), autocommit=True) as raw:
        raw.execute("CREATE TABLE runs_copy (LIKE operation_runs INCLUDING ALL)")
        t0 = time.perf_counter()
        raw.execute("INSERT INTO runs_copy SELECT * FROM operation_runs")
        raw_seed_secs = time.perf_counter() - t0
        raw.execute("DROP TABLE runs_copy")
        raw.execute("VACUUM ANALYZE operation_runs")
        print(f"\nPostgreSQL, {args.runs:,} runs across {args.tenants} tenants ({figures})\n", flush=True)
        report("seed (COPY)", seed_secs, raw_seed_secs, f"<= 60 s for 1M", seed_secs <= 60 * args.runs / 1_000_000, "s")

        uid, v = bench_user(ops)
        tids = list(v.tenant_ids)
        n_visible = raw.execute("SELECT count(*) FROM operation_runs WHERE tenant_id = ANY(%s)", (tids,)).fetchone()[0]
        first_q = f"SELECT {COLS} FROM operation_runs WHERE tenant_id = ANY(%s) ORDER BY id DESC LIMIT 51"
        (ours, _), (base, _) = timed(lambda: v.runs(limit=50)), timed(lambda: raw.execute(first_q, (tids,)).fetchall())
        assert [r.id for r in v.runs(limit=50)] == [r[0] for r in raw.execute(first_q, (tids,)).fetchall()[:50]]
        report(f"list: first page ({n_visible:,} visible)", ours, base, "<= 20 ms and <= 2x raw", ours <= 20 and ours <= 2 * base)

        deep = raw.execute("SELECT id FROM operation_runs WHERE tenant_id = ANY(%s) ORDER BY id DESC OFFSET %s LIMIT 1",
                           (tids, min(199 * 50, n_visible) - 1)).fetchone()[0]
        deep_q = f"SELECT {COLS} FROM operation_runs WHERE tenant_id = ANY(%s) AND id < %s ORDER BY id DESC LIMIT 51"
        (ours, _) = timed(lambda: v.runs(limit=50, after=deep))
        (base, _) = timed(lambda: raw.execute(deep_q, (tids, deep)).fetchall())
        assert [r.id for r in v.runs(limit=50, after=deep)] == [r[0] for r in raw.execute(deep_q, (tids, deep)).fetchall()[:50]]
        report("list: page 200 (keyset)", ours, base, "<= 20 ms and <= 2x raw", ours <= 20 and ours <= 2 * base)

        (ours, _) = timed(lambda: v.runs(limit=50, status="failed"))
        fq = (f"SELECT {COLS} FROM operation_runs WHERE tenant_id = ANY(%s) AND (status = 'failed' OR outcome = 'failed') "
              "ORDER BY id DESC LIMIT 51")
        (base, _) = timed(lambda: raw.execute(fq, (tids,)).fetchall())
        report("list: status=failed, first page", ours, base, "(informational)", True)

        (active, _), (active_raw, _) = measure_active(ops, raw)
        ratio = active / small_active
        report("active_runs", active, active_raw, "<= 5 ms", active <= 5)
        rows.append(dict(name=f"active_runs at {args.runs:,} / at {args.small:,}", opsux=round(ratio, 3), raw=None,
                         unit="ratio", target="<= 1.2", ok=ratio <= 1.2))
        print(f"{'active_runs, big vs small db':<34} {active:>10.2f} ms     at {args.small:,} runs {small_active:.2f} ms "
              f"= {ratio:.2f}x  target <= 1.2x  {'OK' if ratio <= 1.2 else 'MISSED'}", flush=True)

        un_q = "SELECT count(*) FROM notifications WHERE user_id = %s AND read_at IS NULL"
        (ours, _), (base, _) = timed(v.unread_count, reps=200), timed(lambda: raw.execute(un_q, (uid,)).fetchone(), reps=200)
        assert v.unread_count() == raw.execute(un_q, (uid,)).fetchone()[0]
        report("unread_count", ours, base, "(informational)", True)

        run = ops.runs.start(ops.runs.enqueue(tids[0], "inventory.sync", user=uid))
        rate = advance_throughput(url, run.id)
        got = ops.runs.get(run).summary_counts
        lost = 8 * 500 - got.get("processed", 0)
        raw_run = ops.runs.start(ops.runs.enqueue(tids[0], "policy.sync", user=uid))
        raw_rate = raw_advance_throughput(url, raw_run.id)
        report("advance: 8 workers, one run", rate, raw_rate, ">= 1,000/s, 0 lost", rate >= 1000 and lost == 0, "/s")
        durable_run = ops.runs.start(ops.runs.enqueue(tids[0], "policy.sync", user=uid))
        durable_rate = raw_advance_throughput(url, durable_run.id, durable=True)
        print(f"{'  (raw with synchronous_commit on)':<34} {durable_rate:>10.2f} /s", flush=True)
        print(f"{'advance: lost updates':<34} {lost:>10}", flush=True)
    ops.close()
    out = ROOT / "bench" / "results"; out.mkdir(parents=True, exist_ok=True)
    (out / "storage.json").write_text(json.dumps({"runs": args.runs, "tenants": args.tenants, "results": rows,
                                                 "advance_lost": lost}, indent=2))
    return 0 if all(r["ok"] for r in rows) and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
