"""Where `Viewer.runs(limit=100)` spends its time on PostgreSQL (measurement only; see docs/notes/api.md).

    python bench/viewer_runs_split.py

Seeds 100,000 runs in 4 tenants on a private PostgreSQL server, then times, interleaved in shuffled rounds
(median of 100 calls each), the same page through each layer: the raw driver with SQLAlchemy's own SQL and
parameters, SQLAlchemy Core rows with and without the `UtcDateTime` result processing, `Run.from_row`
against a plain zip, and `Viewer.runs` itself; then the same for `status="failed"`. Prints one line each.
"""
import sys, time, statistics, random
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests")); sys.path.insert(0, str(ROOT))
import psycopg
from sqlalchemy import select, type_coerce, DateTime, event
from sqlalchemy.dialects import postgresql
import opsux, pgserver
from opsux.store.seed import seed
from opsux.store.models import Run, UtcDateTime, OperationRun
from opsux.store.viewer import status_predicate
admin = pgserver.start_postgres(durable=False); url = pgserver.fresh_database(admin)
ops = opsux.connect(url); seed(ops, runs=100_000, tenants=4, random_seed=3)
dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
with psycopg.connect(dsn, autocommit=True) as c: c.execute("VACUUM ANALYZE operation_runs")
with ops.engine.connect() as c:
    uid = c.exec_driver_sql("SELECT m.user_id FROM tenant_memberships m JOIN operation_runs r ON r.tenant_id = "
                            "m.tenant_id GROUP BY m.user_id ORDER BY count(*) DESC, m.user_id LIMIT 1").scalar()
v = ops.viewer(uid); c = OperationRun.__table__.c
names = [col.name for col in v._run_cols]
def page_stmt(extra=None):
    q = v._select_runs()
    if extra is not None: q = q.where(extra)
    return q.order_by(c.id.desc()).limit(101)
plain_cols = [type_coerce(col, DateTime(timezone=True)) if isinstance(col.type, UtcDateTime) else col for col in v._run_cols]
stmt, fstmt = page_stmt(), page_stmt(status_predicate(["failed"]))
nots = select(*plain_cols).where(v._scope()).order_by(c.id.desc()).limit(101)
captured = []
def grab(conn, cursor, statement, params, context, executemany): captured.append((statement, params))
event.listen(ops.reader, "before_cursor_execute", grab)
v.runs(limit=100); v.runs(limit=100, status="failed")
event.remove(ops.reader, "before_cursor_execute", grab)
(sql, params), (fsql, fparams) = captured[-2:]
print("statements: plain", len(captured) // 2, "per call;", "failed SQL params:", len(fparams))
raw = psycopg.connect(dsn, autocommit=True)
def inreader(f):
    def g():
        with ops.reader.connect() as con: return f(con)
    return g
rows = inreader(lambda con: con.execute(stmt).all())()
V = {
 "1 raw psycopg: SA's SQL + params, fetchall": lambda: raw.execute(sql, params).fetchall(),
 "2 SA execute(stmt).all(): Rows, UtcDateTime per value": inreader(lambda con: con.execute(stmt).all()),
 "3 SA execute, no UtcDateTime (type_coerce), .all()": inreader(lambda con: con.execute(nots).all()),
 "4 today's _rows: Run.from_row(r) for r in execute(stmt)": inreader(lambda con: [Run.from_row(r) for r in con.execute(stmt)]),
 "5 Run.from_row x101 on fetched rows only": lambda: [Run.from_row(r) for r in rows],
 "6 Run(**dict(zip(names, r))) x101 only": lambda: [Run(**dict(zip(names, r))) for r in rows],
 "7 proposed: no UtcDateTime + .all() + zip": inreader(lambda con: [Run(**dict(zip(names, r))) for r in con.execute(nots).all()]),
 "8 Viewer.runs(limit=100)": lambda: v.runs(limit=100),
 "9 build select (_select_runs .. limit)": lambda: page_stmt(),
 "F1 raw psycopg: SA's failed SQL + params": lambda: raw.execute(fsql, fparams).fetchall(),
 "F2 status_predicate(['failed']) build": lambda: status_predicate(["failed"]),
 "F3 build failed stmt + its cache key (fresh object)": lambda: page_stmt(status_predicate(["failed"]))._generate_cache_key(),
 "F3b build failed stmt only": lambda: page_stmt(status_predicate(["failed"])),
 "2b SA execute(stmt), iterate rows (no Run)": inreader(lambda con: list(con.execute(stmt))),
 "F4 SA execute(prebuilt failed stmt).all()": inreader(lambda con: con.execute(fstmt).all()),
 "F5 Viewer.runs(limit=100, status='failed')": lambda: v.runs(limit=100, status="failed"),
}
for f in V.values():
    for _ in range(10): f()
T = {k: [] for k in V}
keys = list(V)
for rnd in range(25):
    random.shuffle(keys)
    for k in keys:
        for _ in range(4):
            t = time.perf_counter(); V[k](); T[k].append((time.perf_counter() - t) * 1000)
for k in sorted(V): print(f"  {k:<60} {statistics.median(T[k]):7.3f} ms")
import os; print("loadavg", os.getloadavg())
ops.close(); raw.close()
for s in list(pgserver._servers.values()): s.stop()
