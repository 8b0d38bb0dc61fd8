"""Host-database benchmark: opsux reading a Laravel-shaped PostgreSQL through the `laravel` preset, before and after
the indexes `opsux doctor` prints.

    python bench/host_db.py [--runs 1000000] [--tenants 100] [--users 1000] [--idle 30] [--db ADMIN_URL]

Builds the schema Laravel's builder makes (tests/hostdb_support.py: bigserial, varchar(255), timestamp(0) without
time zone, jsonb, `tenant_user`, uuid `notifications`), fills `--runs` runs (INSERT … SELECT generate_series; 1% running,
1% queued, stored as the host writes them, some with stray case and blanks), and reads it as a SELECT-only role. Then,
without and with the indexes, as medians of repeated calls:
  list page      `Viewer.runs(limit=50)` of a one-tenant user, beside raw SQL for the same rows
                 (target ≤ 2× raw); also the client's CPU per call of each (less moved by load)
  active runs    `Viewer.active_runs()` (the widget, every page and push; target ≤ 5 ms)
  watcher probe  the mapped probe query `opsux.store.schema.probe_query` (rows whose updated_at moved)
  idle minute    the process's real change watcher left alone for `--idle` seconds: statements and the time they
                 took, as the client saw it (an upper bound of database time), scaled to one minute (target ≤ 1 s)
Results are printed and written to bench/results/host_db.json.
"""
from __future__ import annotations

import argparse, json, os, sys, threading, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import event  # noqa: E402

import opsux  # noqa: E402
from opsux.store.schema import probe_query  # noqa: E402
import pgserver  # noqa: E402
from hostdb_support import create_laravel, dsn, laravel_hash, read_only_url  # noqa: E402
from timing import timed  # noqa: E402

COLS = ("id, tenant_id, user_id, initiator_name, type, status, outcome, started_at, completed_at, summary_counts, "
        "failure_summary, context, created_at, updated_at")


def fill(url: str, runs: int, tenants: int, users: int) -> float:
    "Tenants, users (bcrypt), memberships (one tenant each, every 10th user in three) and `runs` runs; seconds."
    t0 = time.perf_counter()
    pw = laravel_hash("bench-password")
    with psycopg.connect(dsn(url), autocommit=True) as con:
        con.execute("insert into tenants (name, created_at) select 'Tenant ' || g, now() from generate_series(1, %s) g",
                    (tenants,))
        con.execute("insert into users (name, email, password, created_at) select 'User ' || g, 'user' || g || "
                    "'@host.test', %s, now() from generate_series(1, %s) g", (pw, users))
        con.execute("insert into tenant_user (tenant_id, user_id) select (g %% %s) + 1, g from generate_series(1, %s) g",
                    (tenants, users))
        con.execute("insert into tenant_user (tenant_id, user_id) select ((g + k) %% %s) + 1, g "
                    "from generate_series(10, %s, 10) g, generate_series(1, 2) k", (tenants, users))
        con.execute("select setseed(0.42)")
        con.execute("""
            insert into operation_runs (tenant_id, user_id, initiator_name, type, status, outcome, started_at,
                completed_at, summary_counts, failure_summary, context, created_at, updated_at)
            select (uid %% %(t)s) + 1, uid, 'User ' || uid,
                   (array['inventory.sync', 'policy.sync', 'report.export'])[(g %% 3) + 1],
                   case when r < 0.01 then 'running' when r < 0.02 then 'queued'
                        when r < 0.03 then 'Completed ' else 'completed' end,
                   case when r < 0.02 then 'pending' when g %% 17 = 0 then 'failed' else 'succeeded' end,
                   ts, ts + interval '30 seconds', '{"total": 10, "processed": 10}', '[]', '{}', ts, ts
            from (select g, floor(random() * %(u)s)::int + 1 as uid, random() as r,
                         date_trunc('second', now() at time zone 'utc' - interval '90 days'
                                    + (g::float / %(n)s) * interval '90 days') as ts
                  from generate_series(1, %(n)s) g) s""", dict(t=tenants, u=users, n=runs))
        con.execute("analyze")
    return time.perf_counter() - t0


def cpu_ms(fn, reps=200, warmup=10):
    "This process's CPU milliseconds per fn() call: the client's own work (less moved by load)."
    for _ in range(warmup): fn()
    t = time.process_time()
    for _ in range(reps): fn()
    return (time.process_time() - t) * 1000 / reps


def one_tenant_user(ops):
    "A user in exactly one tenant who has an active run, and their viewer."
    with ops.reader.connect() as c:
        uid = c.exec_driver_sql("select r.user_id from operation_runs r join tenant_user m on m.user_id = r.user_id "
                                "where r.status = 'running' group by r.user_id having count(distinct m.tenant_id) = 1 "
                                "order by r.user_id limit 1").scalar()
    return ops.viewer(uid)


def idle_minute(ro: str, seconds: float) -> dict:
    "Statements and their client-side time while the watcher of a fresh process-wide handle idles, per minute."
    ops = opsux.connect(ro, read_only=True)
    spent, lock, by = [0, 0.0], threading.Lock(), {}
    def before(conn, cur, stmt, params, ctx, many): conn.info["t0"] = time.perf_counter()
    def after(conn, cur, stmt, params, ctx, many):
        dt = time.perf_counter() - conn.info.pop("t0", time.perf_counter())
        key = " ".join(stmt.split())[:90]
        with lock:
            spent[0] += 1; spent[1] += dt
            n, t = by.get(key, (0, 0.0)); by[key] = (n + 1, t + dt)
    for e in {ops.engine, ops.reader}:
        event.listen(e, "before_cursor_execute", before); event.listen(e, "after_cursor_execute", after)
    try:
        w = ops.watcher()
        w.ready.wait(30)
        time.sleep(2)                                     # start-up reads are not idle time
        with lock: spent[:] = [0, 0.0]; by.clear()
        time.sleep(seconds)
        with lock: n, t, top = *spent, sorted(by.items(), key=lambda kv: -kv[1][1])[:3]
    finally: ops.close()
    return {"statements_per_min": round(n * 60 / seconds), "db_seconds_per_min": round(t * 60 / seconds, 3),
            "watcher": type(w).__name__,
            "top_statements": [f"{c}× {1000 * s / c:.2f} ms: {k}" for k, (c, s) in top]}


def measure(ro: str, raw, idle: float) -> dict:
    ops = opsux.connect(ro, read_only=True)
    try:
        v = one_tenant_user(ops)
        tid = v.tenant_ids[0]
        q = f"select {COLS} from operation_runs where tenant_id = %s order by id desc limit 51"
        assert [r.id for r in v.runs(limit=50)] == [row[0] for row in raw.execute(q, (tid,)).fetchall()][:50]
        out = {"list_ms": timed(lambda: v.runs(limit=50)),
               "list_raw_ms": timed(lambda: raw.execute(q, (tid,)).fetchall()),
               "list_cpu_ms": cpu_ms(lambda: v.runs(limit=50)),
               "list_raw_cpu_ms": cpu_ms(lambda: raw.execute(q, (tid,)).fetchall()),
               "active_ms": timed(v.active_runs, reps=50),
               "active_rows": len(v.active_runs())}
        def probe():
            with ops.reader.connect() as c: c.execute(probe_query(ops.schema)).all()
        out["probe_ms"] = timed(probe, reps=50)
    finally: ops.close()
    out.update(idle_minute(ro, idle))
    out["list_ratio"] = round(out["list_ms"] / out["list_raw_ms"], 2)
    out["list_cpu_ratio"] = round(out["list_cpu_ms"] / out["list_raw_cpu_ms"], 2)
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in out.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--tenants", type=int, default=100)
    ap.add_argument("--users", type=int, default=1000)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle watcher per phase")
    ap.add_argument("--db", default=os.environ.get("OPSUX_BENCH_DATABASE_URL"))
    a = ap.parse_args()
    admin = a.db or pgserver.start_postgres(durable=True)
    url = create_laravel(admin)
    ro = read_only_url(url)
    try:
        seconds = fill(url, a.runs, a.tenants, a.users)
        print(f"filled {a.runs:,} runs, {a.tenants} tenants, {a.users} users in {seconds:.1f} s")
        with psycopg.connect(dsn(ro), autocommit=True) as raw:
            before = measure(ro, raw, a.idle)
            print("without doctor's indexes:", json.dumps(before))
            from opsux.store.ops import doctor
            lines, code = doctor(ro, measure=False)
            stmts = [l.strip() for l in lines if l.strip().startswith("CREATE INDEX")]
            t0 = time.perf_counter()
            with psycopg.connect(dsn(url), autocommit=True) as con:
                for st in stmts: con.execute(st)
                con.execute("analyze")
            built = time.perf_counter() - t0
            print(f"built {len(stmts)} index(es) in {built:.1f} s:\n  " + "\n  ".join(stmts))
            after = measure(ro, raw, a.idle)
            print("with doctor's indexes:   ", json.dumps(after))
        targets = {"list ≤ 2× raw": after["list_ratio"] <= 2, "active runs ≤ 5 ms": after["active_ms"] <= 5,
                   "idle database time ≤ 1 s/min": after["db_seconds_per_min"] <= 1}
        for name, key in (("list page", "list_ms"), ("active runs", "active_ms"), ("watcher probe", "probe_ms"),
                          ("idle db s/min", "db_seconds_per_min"), ("idle statements/min", "statements_per_min")):
            b, x = before[key], after[key]
            print(f"{name:22s} {b:>10} → {x:<10} ({b / x:.0f}× less)" if x else f"{name:22s} {b} → {x}")
        for name, ok in targets.items(): print(f"{'PASS' if ok else 'FAIL'}  {name}")
        res = ROOT / "bench" / "results"; res.mkdir(exist_ok=True)
        (res / "host_db.json").write_text(json.dumps({"runs": a.runs, "tenants": a.tenants, "users": a.users,
                                                      "fill_s": round(seconds, 1), "index_build_s": round(built, 1),
                                                      "without": before, "with": after,
                                                      "targets": targets}, indent=2))
    finally:
        pgserver.drop_database(admin, url)


if __name__ == "__main__":
    main()
