"""Insight queries (opsux.store.insights) at scale: each statement timed as a median over repeated calls.

    python bench/insights.py [--runs 1000000] [--sqlite-runs 100000] [--tenants 100] [--db ADMIN_URL] [--explain]

Seeds PostgreSQL with `--runs` runs (COPY through `opsux.store.seed.seed`, the history of bench/storage.py) and a
SQLite file with `--sqlite-runs`, then times every insight query for a one-tenant user and for a user in every
tenant, window 24h / 7d / 30d. Target: <= 200 ms per query on PostgreSQL at 1M runs. The load average is printed
with each block (the figures are wall-clock medians: a busy machine inflates them); `--explain` also prints the
PostgreSQL plan of every statement for the all-tenants user at 30 days. Results: docs/notes/insights_speed.md.
"""
from __future__ import annotations

import argparse, os, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))

import opsux  # noqa: E402
import pgserver  # noqa: E402
from opsux.store.insights import Insights  # noqa: E402
from opsux.store.seed import seed  # noqa: E402
from storage import timed  # noqa: E402

QUERIES = {"outcomes": lambda i: i.outcomes(), "durations p50/p95": lambda i: i.durations(),
           "failure codes": lambda i: i.failure_codes(), "failing types": lambda i: i.failing_types(),
           "throughput (60 min)": lambda i: i.throughput(60), "queue age": lambda i: i.queue()}


def _all_user(ops):
    with ops.engine.connect() as c: tids = [r[0] for r in c.exec_driver_sql("SELECT id FROM tenants")]
    return ops.directory.add_user("All", email="bench.all@insights.test", tenants=tids)


def one_tenant_user(ops):
    with ops.engine.connect() as c:
        return c.exec_driver_sql("SELECT user_id FROM tenant_memberships ORDER BY user_id LIMIT 1").scalar()


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def explain(ops, uid):
    "EXPLAIN ANALYZE of every statement for `uid` at 30 days (PostgreSQL)."
    from sqlalchemy.dialects import postgresql
    ins = Insights(ops.viewer(uid), "30d")
    with ops.engine.connect() as c:
        c.exec_driver_sql("SET jit = off")
        for name in ("outcomes", "durations", "failure_codes", "failing_types", "throughput", "queue"):
            sql = str(getattr(ins, name + "_stmt")().compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            print(f"--- EXPLAIN {name} (all tenants, 30d)")
            for (line,) in c.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql.replace("%", "%%")): print("   ", line[:160])


def measure(name, ops, target, reps, plans=False):
    users = {"1 tenant": one_tenant_user(ops), "all tenants": _all_user(ops).id}
    worst = 0.0
    if plans: explain(ops, users["all tenants"])
    for who, uid in users.items():
        v = ops.viewer(uid)
        print(f"{name} {who}: {load()}", flush=True)
        for window in ("24h", "7d", "30d"):
            ins = Insights(v, window)
            for q, call in QUERIES.items():
                med, p95 = timed(lambda: call(ins), reps=reps, warmup=2)
                worst = max(worst, med)
                ok = "" if target is None else ("OK" if med <= target else f"MISSED by {med - target:.0f} ms")
                print(f"{name:<10} {who:<12} {window:<4} {q:<22} median {med:8.2f} ms  p95 {p95:8.2f} ms  {ok}", flush=True)
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--sqlite-runs", type=int, default=100_000)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--db", default=os.environ.get("OPSUX_BENCH_DATABASE_URL"), help="admin URL of a PostgreSQL server")
    ap.add_argument("--explain", action="store_true", help="print the PostgreSQL plans (all tenants, 30 days)")
    args = ap.parse_args(argv)
    admin = args.db or pgserver.start_postgres(durable=True)
    url = pgserver.fresh_database(admin)
    ops = opsux.connect(url)
    t0 = time.perf_counter()
    seed(ops, runs=args.runs, tenants=args.tenants, random_seed=3)
    with ops.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.exec_driver_sql("VACUUM ANALYZE operation_runs")
    print(f"PostgreSQL: {args.runs:,} runs across {args.tenants} tenants seeded in {time.perf_counter() - t0:.1f} s", flush=True)
    worst_pg = measure("postgresql", ops, 200, args.reps, plans=args.explain)
    ops.close()
    lite = opsux.connect(f"sqlite:///{tempfile.mkdtemp()}/insights.sqlite")
    seed(lite, runs=args.sqlite_runs, tenants=args.tenants, random_seed=3)
    print(f"SQLite: {args.sqlite_runs:,} runs", flush=True)
    worst_lite = measure("sqlite", lite, None, args.reps)
    print(f"\nworst median: PostgreSQL {worst_pg:.1f} ms (target 200 ms: {'OK' if worst_pg <= 200 else 'MISSED'}); "
          f"SQLite {worst_lite:.1f} ms; {load()}", flush=True)


if __name__ == "__main__":
    main()
