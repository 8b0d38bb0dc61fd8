"""Queue-worker benchmark (issue 15 item 10, store part), on SQLite and on a private durable PostgreSQL (fsync on).

    flock /tmp/opsux-bench.lock python bench/queues.py [--seconds 3] [--only connect,advance,iter,fork,timeout]

Prints, per database:
- connect: `opsux.connect()` in a fresh process on a migrated database (median of 9; target ≤ 0.5 s), beside the
  floor (the same process without opsux: SQLAlchemy, the driver, one plain connection and SELECT; alternating), with opsux's
  bytecode compiled as `pip install` leaves it (and, for comparison, compiled from source in every process): wall time,
  CPU time of the process (split: SQLAlchemy's own import, opsux's tables, the rest of opsux and the connect),
  whether Alembic (or other heavy packages) were imported, and the slowest imports (`python -X importtime`);
- advance: advances per second with 4 and 8 worker *processes*, on one run and on separate runs, plain (one
  write per call) and coalesced (`RunHandle(interval=0.25)`), with database writes per second and a check that the
  stored counts equal the counted calls;
- iter: a 1M-item `r.iter()` loop: overhead over a bare loop (target ≤ 2 s) and database writes per second per run
  (target ≤ 10);
- fork: a parent that used `ops` forks 4 children doing 250 advances each (before: 1,569 of 1,000 stored);
- timeout: a SIGALRM job timeout inside a blocked `advance` (before: 19–76 retries, OperationalError).

Set OPSUX_ROOT to import another checkout (e.g. OPSUX_ROOT=/work/main for the "before" figures; parts it lacks
are skipped). Results go to bench/results/queues.json.
"""
from __future__ import annotations

import argparse, json, os, signal, statistics, subprocess, sys, tempfile, textwrap, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("OPSUX_ROOT", HERE))
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(ROOT))

import opsux  # noqa: E402
import pgserver  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CWD = tempfile.gettempdir()  # workers must not import opsux from the current folder instead of ROOT


def fresh(kind: str, admin: str | None) -> str:
    if kind == "sqlite": return f"sqlite:///{tempfile.mkdtemp(prefix='opsux-bench-')}/q.sqlite"
    return pgserver.fresh_database(admin)


def setup(url: str, runs: int):
    ops = opsux.connect(url)
    t = ops.directory.add_tenant(f"Bench {time.monotonic_ns()}")
    ids = [ops.runs.start(ops.runs.enqueue(t, "inventory.sync")).id for _ in range(runs)]
    return ops, ids


# --- connect ----------------------------------------------------------------------------------------------------------

CONNECT = textwrap.dedent("""
    import sys, time
    cpu = time.process_time
    t0, c0 = time.perf_counter(), cpu()
    import sqlalchemy
    c1 = cpu()
    import opsux.store.tables
    c2 = cpu()
    import opsux
    ops = opsux.connect(sys.argv[1]); ops.runs
    t1, c3 = time.perf_counter(), cpu()
    heavy = [m for m in ("alembic", "sqlalchemy.orm", "tomllib", "panel", "bokeh", "psycopg", "argon2") if m in sys.modules]
    print(t1 - t0, c3, c1 - c0, c2 - c1, c3 - c2, int("alembic" in heavy), ",".join(heavy) or "-")
""")


# Two ways opsux's own modules are loaded: `pip install opsux` (and `pip install .`) compiles their bytecode at
# install, as it does SQLAlchemy's, so a worker loads .pyc files; an editable checkout run with
# PYTHONDONTWRITEBYTECODE=1 (as on these machines) compiles opsux's ~40 modules from source in every process.
FROM_SOURCE = {**ENV, "PYTHONDONTWRITEBYTECODE": "1"}


def installed_env(pycache: str) -> dict:
    "The environment of a process that loads bytecode from `pycache` (written there by its first run)."
    env = {k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": pycache}


def top_imports(url: str, env: dict, n: int = 8) -> list[str]:
    "The slowest imports of a fresh `connect()` (`python -X importtime`, cumulative, modules outside SQLAlchemy)."
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", CONNECT, url], capture_output=True, text=True,
                         env=env, cwd=CWD, check=True).stderr
    rows = [(int(l.split("|")[1]), l.split("|")[2].strip()) for l in out.splitlines()
            if l.startswith("import time:") and "|" in l and l.split("|")[1].strip().isdigit()]
    rows = [(us, m) for us, m in rows if not m.startswith(("sqlalchemy", "encodings", "site"))]
    return [f"{m} {us / 1000:.0f} ms" for us, m in sorted(rows, reverse=True)[:n]]


# The floor: the same fresh process without opsux — SQLAlchemy, the driver and its dialect imported, one plain
# connection and one SELECT. What `connect()` costs above it is opsux's own share.
FLOOR = textwrap.dedent("""
    import sys, time
    cpu = time.process_time
    t0 = time.perf_counter()
    import sqlalchemy
    engine = sqlalchemy.create_engine(sys.argv[1])
    with engine.connect() as con: con.execute(sqlalchemy.text("SELECT 1")).all()
    print(time.perf_counter() - t0, cpu())
""")


def connect_runs(url: str, env: dict, n: int = 5, script: str = CONNECT) -> list[tuple]:
    runs = []
    for _ in range(n):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True, env=env, check=True,
                             cwd=CWD)
        runs.append((time.perf_counter() - t, *out.stdout.split()))
    return runs


def bench_connect(url: str) -> dict:
    opsux.connect(url).close()  # migrated
    installed = installed_env(tempfile.mkdtemp(prefix="opsux-pyc-"))
    connect_runs(url, installed, 1)  # writes the bytecode, as `pip install` does
    runs, floor, source = [], [], connect_runs(url, FROM_SOURCE)
    for _ in range(9):  # alternating, so that a noisy moment hits both sides
        runs += connect_runs(url, installed, 1); floor += connect_runs(url, installed, 1, FLOOR)
    med = lambda i, rs=runs: round(statistics.median(float(r[i]) for r in rs), 3)
    span = lambda rs: [round(min(float(r[2]) for r in rs), 3), round(max(float(r[2]) for r in rs), 3)]
    return {"wall_s": med(0), "import_and_connect_s": med(1), "cpu_s": med(2), "cpu_s_min_max": span(runs),
            "floor_cpu_s": med(2, floor), "floor_cpu_s_min_max": span(floor), "floor_import_and_connect_s": med(1, floor),
            "opsux_share_cpu_s": round(med(2) - med(2, floor), 3), "cpu_sqlalchemy_s": med(3),
            "cpu_tables_s": med(4), "cpu_rest_s": med(5), "cpu_s_compiling_opsux_from_source": med(2, source),
            "alembic_imported": any(r[6] == "1" for r in runs + source), "also_imported": runs[0][7],
            "slowest_imports": top_imports(url, installed)}


# --- advance throughput -------------------------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import json, sys, time
    import opsux
    url, run, seconds, coalesce = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
    ops = opsux.connect(url, migrate=False)
    writes = []
    ops.events.subscribe(lambda ev: writes.append(1))
    ops.runs.get(run)  # connections ready
    if coalesce:
        from opsux.store.service import RunHandle
        h = RunHandle(ops.runs, run, interval=0.25)
        step = lambda: h.advance(processed=1)
    else:
        step = lambda: ops.runs.advance(run, processed=1)
    print("ready", flush=True)
    sys.stdin.readline()
    n, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        step(); n += 1
    if coalesce: h.flush()
    print(json.dumps({"calls": n, "writes": len(writes)}), flush=True)
""")


def bench_advance(url: str, workers: int, separate: bool, coalesce: bool, seconds: float) -> dict:
    import inspect
    from opsux.store.service import RunHandle
    if coalesce and "interval" not in inspect.signature(RunHandle).parameters:
        raise TypeError("this version does not coalesce")
    ops, ids = setup(url, workers if separate else 1)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, str(ids[i % len(ids)]), str(seconds),
                               "1" if coalesce else "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=ENV, cwd=CWD) for i in range(workers)]
    for p in procs: assert p.stdout.readline().strip() == "ready"
    t = time.perf_counter()
    for p in procs: p.stdin.write("go\n"); p.stdin.flush()
    res = [json.loads(p.stdout.readline()) for p in procs]
    elapsed = time.perf_counter() - t
    for p in procs: p.wait(60)
    calls, writes = sum(r["calls"] for r in res), sum(r["writes"] for r in res)
    stored = sum((ops.runs.get(i).summary_counts or {}).get("processed", 0) for i in ids)
    ops.close()
    return {"advances_per_s": round(calls / elapsed), "writes_per_s": round(writes / elapsed),
            "calls": calls, "stored": stored, "exact": stored == calls}


# --- the iterator -------------------------------------------------------------------------------------------------

def bench_iter(url: str, n: int = 1_000_000) -> dict:
    from opsux.store.service import RunHandle  # noqa: F401  (absent before: skipped)
    ops, _ = setup(url, 0)
    t = ops.directory.add_tenant(f"Iter {time.monotonic_ns()}")
    t0 = time.perf_counter()
    for _ in range(n): pass
    bare = time.perf_counter() - t0
    writes = []
    run = ops.runs.enqueue(t, "inventory.sync")
    t0 = time.perf_counter()
    with ops.runs.track(run) as r:
        ops.events.subscribe(lambda ev: writes.append(ev.kind))  # the loop's writes: the total, then flushes
        for _ in r.iter(range(n)): pass
        loop = time.perf_counter() - t0
    stored = ops.runs.get(run).summary_counts
    ops.close()
    return {"items": n, "overhead_s": round(loop - bare, 3), "per_item_us": round((loop - bare) / n * 1e6, 2),
            "loop_writes": len(writes), "writes_per_s": round(len(writes) / loop, 1),
            "exact": stored.get("processed") == n}


# --- fork and timeout repros --------------------------------------------------------------------------------------

def bench_fork(url: str, children: int = 4, each: int = 250) -> dict:
    ops, (run,) = setup(url, 1)
    for _ in range(5): ops.runs.advance(run, processed=1)
    pids = []
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                for _ in range(each): ops.runs.advance(run, processed=1)
            except BaseException: code = 1
            os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]
    stored = ops.runs.get(run).summary_counts.get("processed", 0) - 5
    ops.close()
    return {"expected": children * each, "stored": stored, "failed_children": sum(c != 0 for c in codes)}


class JobTimeout(Exception): pass


def bench_timeout(url: str) -> dict:
    import logging, sqlite3
    import psycopg
    ops, (run,) = setup(url, 1)
    retries = []
    class Count(logging.Handler):
        def emit(self, record): retries.append(record.getMessage())
    logging.getLogger("opsux").addHandler(Count(logging.WARNING))
    if url.startswith("sqlite"):
        holder = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN IMMEDIATE")
    else:
        holder = psycopg.connect(pgserver._psycopg_dsn(url))
        holder.execute("SELECT 1 FROM operation_runs WHERE id = %s FOR UPDATE", (run,))
    def fire(*_): raise JobTimeout("job timeout")
    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    t0 = time.perf_counter()
    try:
        ops.runs.advance(run, processed=1); raised = "nothing"
    except BaseException as e: raised = type(e).__name__
    took = time.perf_counter() - t0
    signal.setitimer(signal.ITIMER_REAL, 0)
    holder.rollback(); holder.close()
    t1 = time.perf_counter()
    try: ops.runs.advance(run, processed=1); after = "ok"
    except Exception as e: after = f"{type(e).__name__}"
    nxt = time.perf_counter() - t1
    ops.close()
    return {"raised": raised, "interrupted_call_s": round(took, 2), "retries_logged": len(retries),
            "next_call": after, "next_call_s": round(nxt, 3)}


# --- main -----------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--only", default="connect,advance,iter,fork,timeout")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--modes", default="plain,coalesced", help="advance modes to measure")
    args = ap.parse_args()
    parts = args.only.split(",")
    admin = pgserver.start_server(durable=True).url if "postgresql" in args.db else None
    results = {"root": str(ROOT)}
    for kind in args.db.split(","):
        res = results[kind] = {}
        def step(name, fn):
            try: res[name] = fn()
            except (ImportError, AttributeError, TypeError) as e: res[name] = f"skipped: {type(e).__name__}: {e}"
            print(f"{kind:10} {name:32} {res[name]}", flush=True)
        if "connect" in parts: step("connect", lambda: bench_connect(fresh(kind, admin)))
        if "advance" in parts:
            for workers in (4, 8):
                for separate in (False, True):
                    for coalesce in [m == "coalesced" for m in args.modes.split(",")]:
                        name = f"advance {workers}w {'separate' if separate else 'one run'}{' coalesced' if coalesce else ''}"
                        step(name, lambda: bench_advance(fresh(kind, admin), workers, separate, coalesce, args.seconds))
        if "iter" in parts: step("iter 1M", lambda: bench_iter(fresh(kind, admin)))
        if "fork" in parts: step("fork 4x250", lambda: bench_fork(fresh(kind, admin)))
        if "timeout" in parts: step("timeout in advance", lambda: bench_timeout(fresh(kind, admin)))
    out = HERE / "bench" / "results"
    out.mkdir(exist_ok=True)
    path = out / ("queues.json" if ROOT == HERE else "queues-before.json")
    old = json.loads(path.read_text()) if path.exists() else {}  # runs of some parts only: keep the others
    for k, v in results.items(): old[k] = {**old.get(k, {}), **v} if isinstance(v, dict) else v
    path.write_text(json.dumps(old, indent=1))


if __name__ == "__main__":
    main()
