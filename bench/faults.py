"""Fault scenarios of issue 14 as a benchmark: lost / doubled / latency per scenario, re-runnable.

    flock /tmp/opsux-bench.lock python bench/faults.py [--lock-seconds 40] [--only crash,lost,locked,disk,restarts]

Scenarios (PostgreSQL: a private durable server, fsync on, that this script crashes and restarts):
- crash: 50 advances, `pg_ctl restart -m immediate`, then an enqueue (and, second case, a completion of another
  run), then one advance: expected 51 (before: 54 / 59 / 56);
- lost: 50 acknowledged advances, a crash, another worker completes the run: expected 50 (before: 41 / 44);
- locked: another process holds SQLite's write lock for `--lock-seconds` (40): does an advance wait it out?
- disk: SQLite on a 16 MB tmpfs filled up: time until the worker's write fails, what `write_health` says, and
  recovery once space is back (skipped where a tmpfs cannot be mounted);
- restarts: 6 threads advancing 3 runs while the server is restarted fast, immediately and fast again: lost,
  doubled, the longest call (the recovery time a worker sees).

OPSUX_ROOT=/work/main runs the same against another checkout ("before"); results go to bench/results/faults.json.
"""
from __future__ import annotations

import argparse, json, os, shutil, subprocess, sys, tempfile, textwrap, threading, time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
ROOT = Path(os.environ.get("OPSUX_ROOT", HERE))
sys.path.insert(0, str(HERE / "tests"))
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

import opsux  # noqa: E402
import pgserver  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def slow_wal(url: str, on: bool) -> None:
    "Hold the WAL writer back, so asynchronous commits (if any) stay in memory until the crash."
    with psycopg.connect(pgserver._psycopg_dsn(url), autocommit=True) as a:
        a.execute("ALTER SYSTEM SET wal_writer_delay = '10s'" if on else "ALTER SYSTEM RESET wal_writer_delay")
        a.execute("SELECT pg_reload_conf()")


def world(ops):
    t = ops.directory.add_tenant(f"Faults {time.monotonic_ns()}")
    return t


def processed(ops, run) -> int: return (ops.runs.get(run).summary_counts or {}).get("processed", 0)


def crash(server, next_call: str) -> dict:
    url = pgserver.fresh_database(server.url)
    slow_wal(url, True)
    try:
        with opsux.connect(url, retry_seconds=90) as ops:
            t = world(ops)
            run, other = (ops.runs.start(ops.runs.enqueue(t, "inventory.sync")) for _ in range(2))
            for _ in range(50): ops.runs.advance(run, processed=1)
            server.restart("immediate")
            t0 = time.perf_counter()
            if next_call == "enqueue": ops.runs.enqueue(t, "policy.sync")
            else: ops.runs.complete(other)
            recovered = time.perf_counter() - t0
            ops.runs.advance(run, processed=1)
            got = processed(ops, run)
    finally: slow_wal(url, False)
    return {"expected": 51, "stored": got, "lost": max(0, 51 - got), "doubled": max(0, got - 51),
            "first_call_after_crash_s": round(recovered, 2)}


def lost(server) -> dict:
    url = pgserver.fresh_database(server.url)
    slow_wal(url, True)
    try:
        with opsux.connect(url, retry_seconds=90) as a, opsux.connect(url, migrate=False, retry_seconds=90) as b:
            run = a.runs.start(a.runs.enqueue(world(a), "inventory.sync"))
            acked = sum(a.runs.advance(run, processed=1).status == "running" for _ in range(50))
            server.restart("immediate")
            done = b.runs.complete(run)
            got = done.summary_counts.get("processed", 0)
    finally: slow_wal(url, False)
    return {"acknowledged": acked, "stored": got, "lost": max(0, acked - got), "doubled": max(0, got - acked),
            "outcome": done.outcome}


HOLDER = textwrap.dedent("""
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("BEGIN IMMEDIATE"); print("locked", flush=True)
    time.sleep(float(sys.argv[2])); con.execute("COMMIT")
""")


def locked(seconds: float) -> dict:
    path = Path(tempfile.mkdtemp(prefix="opsux-faults-")) / "f.sqlite"
    with opsux.connect(str(path)) as ops:
        run = ops.runs.start(ops.runs.enqueue(world(ops), "inventory.sync"))
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        try: ops.runs.advance(run, processed=1); result = "ok"
        except Exception as e: result = f"{type(e).__name__}: {str(e)[:80]}"
        waited = time.perf_counter() - t0
        p.wait(120)
        got = processed(ops, run)
    return {"lock_held_s": seconds, "result": result, "waited_s": round(waited, 1), "stored": got,
            "lost": (1 - got) if result == "ok" else 0}


def disk() -> dict:
    mnt = Path(tempfile.mkdtemp(prefix="opsux-disk-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True).returncode:
        return {"skipped": "cannot mount a tmpfs"}
    try:
        with opsux.connect(str(mnt / "d.sqlite")) as ops, opsux.connect(str(mnt / "d.sqlite"), migrate=False) as dash:
            t = world(ops)
            run = ops.runs.start(ops.runs.enqueue(t, "inventory.sync"))
            try:
                with open(mnt / "ballast", "wb") as f: f.write(b"\0" * (shutil.disk_usage(mnt).free - 65536))
            except OSError: pass
            t0, calls, error = time.perf_counter(), 0, None
            try:
                for i in range(100_000):
                    ops.runs.enqueue(t, "policy.sync", context={"pad": "y" * 60_000}); calls += 1
            except Exception as e: error = f"{type(e).__name__}: {str(e)[:80]}"
            failed_after = time.perf_counter() - t0
            try:
                from opsux.store.health import write_health
                health = write_health(dash)
            except ImportError: health = "no write_health in this version"
            (mnt / "ballast").unlink()
            t1 = time.perf_counter()
            ops.runs.advance(run, processed=1)
            recovered = time.perf_counter() - t1
            after = write_health(dash, probe_every=0) if not isinstance(health, str) else health
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    return {"calls_before_error": calls, "error": error, "error_after_s": round(failed_after, 2),
            "dashboard_health_while_full": health, "health_after": after, "recovery_s": round(recovered, 3)}


def restarts(server) -> dict:
    url = pgserver.fresh_database(server.url)
    setup = opsux.connect(url)
    t = world(setup)
    runs = [setup.runs.start(setup.runs.enqueue(t, "inventory.sync")).id for _ in range(3)]
    setup.close()
    handles = [opsux.connect(url, migrate=False, retry_seconds=120) for _ in range(2)]
    calls, longest, errors, lock = [0] * 6, [0.0], [], threading.Lock()
    stop = threading.Event()
    def work(k):
        h = handles[k % 2]
        while not stop.is_set():
            t0 = time.perf_counter()
            try: h.runs.advance(runs[k % 3], processed=1)
            except Exception as e: errors.append(repr(e)[:100]); continue
            calls[k] += 1
            with lock: longest[0] = max(longest[0], time.perf_counter() - t0)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for th in threads: th.start()
    for mode in ("fast", "immediate", "fast"):
        time.sleep(2); server.restart(mode)
    time.sleep(2); stop.set()
    for th in threads: th.join(180)
    with opsux.connect(url, migrate=False) as ops:
        stored = [processed(ops, r) for r in runs]
    for h in handles: h.close()
    expected = [sum(calls[k] for k in range(6) if k % 3 == i) for i in range(3)]
    return {"calls": sum(calls), "stored": sum(stored), "lost": sum(max(0, e - s) for e, s in zip(expected, stored)),
            "doubled": sum(max(0, s - e) for e, s in zip(expected, stored)), "errors": len(errors),
            "longest_call_s": round(longest[0], 2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lock-seconds", type=float, default=40)
    ap.add_argument("--only", default="crash,lost,locked,disk,restarts")
    args = ap.parse_args()
    parts, out = args.only.split(","), {"root": str(ROOT)}
    server = pgserver.start_server(durable=True) if {"crash", "lost", "restarts"} & set(parts) else None
    def step(name, fn):
        try: out[name] = fn()
        except Exception as e: out[name] = f"error: {type(e).__name__}: {str(e)[:200]}"
        print(f"{name:24} {out[name]}", flush=True)
    if "crash" in parts:
        step("crash, then enqueue", lambda: crash(server, "enqueue"))
        step("crash, then complete", lambda: crash(server, "complete"))
    if "lost" in parts: step("crash, other completes", lambda: lost(server))
    if "locked" in parts: step("sqlite locked", lambda: locked(args.lock_seconds))
    if "disk" in parts: step("sqlite disk full", disk)
    if "restarts" in parts: step("pg restarts", lambda: restarts(server))
    res = HERE / "bench" / "results"
    res.mkdir(exist_ok=True)
    (res / ("faults.json" if ROOT == HERE else "faults-before.json")).write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
