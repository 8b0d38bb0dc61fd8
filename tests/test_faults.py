"""Faults, against a real PostgreSQL this module starts (and restarts) itself, and SQLite.

1. database unreachable at start-up: one clear line, non-zero exit, no traceback;
2. PostgreSQL restarted (fast, and once immediate = crash) while workers advance, fail, complete and enqueue:
   nothing lost, nothing doubled, one notification per run; ambiguous commits injected deterministically;
3. a worker process SIGKILLed mid-run: the reaper fails the run with a reason, one notification;
4. the watcher keeps delivering to its subscribers across a PostgreSQL restart; the SQLite probe across a lock.
"""
import os, signal, sqlite3, subprocess, sys, textwrap, threading, time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import func, select

import opsux
from opsux.store.db import DatabaseUnavailable, upgrade
from opsux.store.models import Notification, OperationRun

import pgserver
from support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server():
    "A private durable PostgreSQL (fsync and synchronous commit on, as in production) this module may restart."
    try:
        return pgserver.start_server(durable=True)
    except pgserver.PostgresUnavailable as e:
        if os.environ.get("OPSUX_REQUIRE_POSTGRES") == "1": pytest.fail(f"PostgreSQL unavailable: {e}", pytrace=False)
        pytest.skip(f"!!! PostgreSQL unavailable, fault tests NOT RUN: {e}")


@pytest.fixture
def pg(server):
    "A fresh database on the module's server; the server is running again when the test ends."
    url = pgserver.fresh_database(server.url)
    yield url
    try: server.start()
    except subprocess.CalledProcessError: pass  # already running


def seed_world(ops):
    t = ops.directory.add_tenant("Contoso")
    u = ops.directory.add_user("Ada", email="ada@contoso.test", tenants=[t])
    return t, u


def notifications_of(ops, run_id) -> int:
    with ops.engine.connect() as c:
        return c.execute(select(func.count()).select_from(Notification).where(Notification.run_id == run_id)).scalar()


# --- 1. unreachable at start-up ----------------------------------------------------------------------------------

def test_connect_unreachable_postgres_is_one_clear_line():
    port = free_port()  # nothing listens there
    url = f"postgresql://opsux:s3cret-pw@127.0.0.1:{port}/opsux"
    for attempt in (lambda: opsux.connect(url), lambda: upgrade(url)):
        t0 = time.monotonic()
        with pytest.raises(DatabaseUnavailable) as e:
            attempt()
        msg = str(e.value)
        assert time.monotonic() - t0 < 15
        assert "\n" not in msg and len(msg) < 400, msg
        assert msg.startswith(f"cannot reach the database postgresql+psycopg://opsux:***@127.0.0.1:{port}/opsux: "), msg
        assert "refused" in msg.lower() and "s3cret" not in msg, msg


def test_connect_missing_database_on_a_live_server(server):
    url = pgserver.with_database(server.url, "no_such_db")
    with pytest.raises(DatabaseUnavailable, match='database "no_such_db" does not exist'):
        opsux.connect(url)


def test_connect_stopped_server(server, pg):
    server.stop("fast")
    with pytest.raises(DatabaseUnavailable, match="cannot reach the database"):
        opsux.connect(pg)
    server.start()
    opsux.connect(pg).close()  # and fine again once it is back


@pytest.mark.parametrize("argv", [["db", "upgrade"], ["serve", "--port", "0"], ["reap"], ["seed", "--runs", "5"]])
def test_cli_unreachable_exits_2_with_one_line(argv):
    port = free_port()
    url = f"postgresql://opsux:s3cret-pw@127.0.0.1:{port}/opsux"
    if argv[0] == "serve": argv = ["serve", "--port", str(free_port())]
    p = subprocess.run([sys.executable, "-m", "opsux.cli", *argv, "--db", url], capture_output=True, text=True,
                       timeout=120, cwd=ROOT)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert "Traceback" not in p.stderr and len(lines) == 1, p.stderr
    assert lines[0].startswith("opsux: cannot reach the database") and f":{port}/opsux" in lines[0], lines[0]
    assert "s3cret" not in p.stderr + p.stdout


# --- 2. ambiguous commits, injected on a real connection ------------------------------------------------------------

@contextmanager
def answer_lost(engine, hook: str, match: str = ""):
    """The statement (`execute`) or COMMIT (`commit`) reaches the server and succeeds there, then the connection
    drops before the client reads the answer: the ambiguous commit a restart or a network cut can cause."""
    dialect, fired = engine.dialect, []
    name = "do_execute" if hook == "execute" else "do_commit"
    original = getattr(dialect, name)
    def faulty(*args, **kw):
        result = original(*args, **kw)
        stmt = args[1] if hook == "execute" else ""
        if not fired and match in stmt:
            fired.append(stmt)
            dbapi_con = args[0].connection if hook == "execute" else getattr(args[0], "dbapi_connection", args[0])
            dbapi_con.close()
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return result
    setattr(dialect, name, faulty)
    try: yield fired
    finally: delattr(dialect, name)


def test_ambiguous_advance_is_applied_once(pg):
    with opsux.connect(pg) as ops:
        t, u = seed_world(ops)
        run = ops.runs.start(ops.runs.enqueue(t, "inventory.sync", user=u))
        seen = []; ops.events.subscribe(lambda ev: seen.append(ev.kind))
        with answer_lost(ops.reader, "execute", "UPDATE operation_runs") as fired:
            r = ops.runs.advance(run, processed=1, succeeded=1)
        assert fired, "the fault was not injected"
        assert r.summary_counts == {"processed": 1, "succeeded": 1}
        assert ops.runs.get(run).summary_counts == {"processed": 1, "succeeded": 1}
        assert seen == ["progress"]  # the retry publishes the event the lost answer owed, once
        with answer_lost(ops.reader, "execute", "UPDATE operation_runs") as fired:
            ops.runs.record_failure(run, "Graph returned 503", code="graph.503")
        assert fired and len(ops.runs.get(run).failure_summary) == 1


def test_ambiguous_complete_returns_the_completed_run_with_one_notification(pg):
    with opsux.connect(pg) as ops:
        t, u = seed_world(ops)
        run = ops.runs.start(ops.runs.enqueue(t, "inventory.sync", user=u))
        ops.runs.advance(run, processed=2, succeeded=2)
        seen = []; ops.events.subscribe(lambda ev: seen.append(ev.kind))
        with answer_lost(ops.engine, "commit") as fired:
            done = ops.runs.complete(run)
        assert fired
        assert (done.status, done.outcome) == ("completed", "succeeded")
        assert notifications_of(ops, run.id) == 1 and seen == ["completed"]
        other = ops.runs.start(ops.runs.enqueue(t, "policy.sync", user=u))
        with answer_lost(ops.engine, "commit") as fired:
            failed = ops.runs.fail(other, "boom")
        assert fired and failed.outcome == "failed" and notifications_of(ops, failed.id) == 1


def test_ambiguous_enqueue_creates_one_run(pg):
    with opsux.connect(pg) as ops:
        t, u = seed_world(ops)
        with answer_lost(ops.engine, "commit") as fired:
            run = ops.runs.enqueue(t, "inventory.sync", user=u, context={"n": 1})
        assert fired and not run.deduplicated
        with ops.engine.connect() as c:
            assert c.execute(select(func.count()).select_from(OperationRun)).scalar() == 1


def test_without_the_token_check_the_fault_would_double(pg):
    "The injection really commits: the write sent again under a new token (a naive retry) counts twice."
    from opsux.store.models import utcnow
    from opsux.store.service import _pg_change
    with opsux.connect(pg) as ops:
        t, u = seed_world(ops)
        run = ops.runs.start(ops.runs.enqueue(t, "inventory.sync", user=u))
        def send(writer, tok=1):
            args = {"rid": run.id, "kind": "progress", "w": writer, "tok": tok, "now": utcnow(), "add_processed": 1}
            with ops.reader.connect() as con: con.execute(_pg_change(("counts", ("processed",), ())), args)
        with answer_lost(ops.reader, "execute", "UPDATE operation_runs") as fired:
            with pytest.raises(Exception): send("naive-a")
        assert fired
        send("naive-b")  # a retry under a new identity: applied again
        assert ops.runs.get(run).summary_counts == {"processed": 2}
        send("naive-b")  # the same token once more: a no-op, which is what the protocol relies on
        send("naive-a")
        assert ops.runs.get(run).summary_counts == {"processed": 2}


def test_crash_keeps_every_acknowledged_advance(server, pg):
    "An immediate stop (a crash) keeps every advance the worker was told had landed: commits are synchronous."
    with opsux.connect(pg) as ops:
        t, u = seed_world(ops)
        run = ops.runs.start(ops.runs.enqueue(t, "inventory.sync", user=u))
        with psycopg.connect(pgserver._psycopg_dsn(pg), autocommit=True) as admin:
            # hold the WAL writer back: asynchronous commits would stay in memory until the crash
            admin.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            admin.execute("SELECT pg_reload_conf()")
        try:
            for _ in range(50): ops.runs.advance(run, processed=1)
            server.restart("immediate")
            assert ops.runs.get(run).summary_counts == {"processed": 50}
            ops.runs.advance(run, processed=1)
            assert ops.runs.get(run).summary_counts == {"processed": 51}
        finally:
            with psycopg.connect(pgserver._psycopg_dsn(pg), autocommit=True) as admin:
                admin.execute("ALTER SYSTEM RESET wal_writer_delay")
                admin.execute("SELECT pg_reload_conf()")


# --- 2. real restarts while workers write ---------------------------------------------------------------------------

def test_workers_survive_postgres_restarts(server, pg, caplog):
    caplog.set_level("WARNING", logger="opsux")
    threads_per_handle, handles, per_thread, nruns = 3, 2, 240, 3
    setup = opsux.connect(pg)
    t, u = seed_world(setup)
    runs = [setup.runs.start(setup.runs.enqueue(t, "inventory.sync", user=u, context={"i": i})) for i in range(nruns)]
    for r in runs: setup.runs.set_total(r, threads_per_handle * handles * per_thread // nruns)
    setup.close()
    workers = [opsux.connect(pg, migrate=False, retry_seconds=90) for _ in range(handles)]
    done, errors, lock = [0], [], threading.Lock()
    all_advanced = threading.Barrier(threads_per_handle * handles, timeout=240)
    total_calls = threads_per_handle * handles * per_thread

    def work(ops, k):
        try:
            for i in range(per_thread):
                ops.runs.advance(runs[(i + k) % nruns], processed=1, succeeded=1)
                if i == per_thread // 2:
                    ops.runs.record_failure(runs[k % nruns], f"worker {k} saw a hiccup", code="hiccup")
                    ops.runs.enqueue(t, "policy.sync", user=u, context={"worker": k})
                    ops.runs.heartbeat(runs[k % nruns])
                with lock: done[0] += 1
            all_advanced.wait()
            for r in runs: ops.runs.complete(r)  # every worker tries; exactly one wins per run
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(workers[k % handles], k)) for k in range(threads_per_handle * handles)]
    at = []
    for th in threads: th.start()
    for fraction, mode in ((0.2, "fast"), (0.45, "immediate"), (0.7, "fast")):
        wait_until(lambda: done[0] >= fraction * total_calls or errors or not any(th.is_alive() for th in threads), timeout=120)
        at.append(done[0])
        server.restart(mode)
    for th in threads: th.join(180)
    assert not errors, errors
    assert all(0 < n < total_calls for n in at), at  # each restart hit workers mid-way
    retries = [r for r in caplog.records if r.name == "opsux.store.db" and "retry" in r.getMessage()]
    assert retries, "no worker call ever had to retry: the restarts did not hit anyone"
    replayed = [r for r in caplog.records if "lost by a database crash" in r.getMessage()]
    print(f"restarts after {at} of {total_calls} calls; {len(retries)} retried calls; {len(replayed)} crash-lost advances re-applied")
    assert not any(th.is_alive() for th in threads)
    with opsux.connect(pg) as ops:
        processed = 0
        for r in runs:
            now = ops.runs.get(r)
            assert now.status == "completed" and now.outcome == "partially_succeeded", (now.status, now.outcome)
            processed += now.summary_counts["processed"]
            assert now.summary_counts["processed"] == now.summary_counts["succeeded"] == total_calls // nruns, now.summary_counts
            assert notifications_of(ops, r.id) == 1
        assert processed == total_calls
        failures = sum(len(ops.runs.get(r).failure_summary) for r in runs)
        assert failures == threads_per_handle * handles
        with ops.engine.connect() as c:
            enqueued = c.execute(select(OperationRun.context).where(OperationRun.type == "policy.sync")).scalars().all()
        assert sorted(c["worker"] for c in enqueued) == list(range(threads_per_handle * handles))
    for w in workers: w.close()


# --- 3. a worker killed mid-run ---------------------------------------------------------------------------------------

WORKER = textwrap.dedent("""
    import sys, time, opsux
    ops = opsux.connect(sys.argv[1], migrate=False)
    with ops.runs.track(int(sys.argv[2])) as h:
        h.set_total(100)
        for i in range(10): h.advance(processed=1, succeeded=1)
        print("working", flush=True)
        time.sleep(600)
""")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path):
    if request.param == "sqlite": return f"sqlite:///{tmp_path / 'opsux.sqlite'}"
    return request.getfixturevalue("pg")


def test_killed_worker_is_reaped_with_a_reason_and_one_notification(any_db):
    with opsux.connect(any_db) as ops:
        t, u = seed_world(ops)
        run = ops.runs.enqueue(t, "inventory.sync", user=u)
        p = subprocess.Popen([sys.executable, "-c", WORKER, any_db, str(run.id)], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "working"
            assert ops.runs.get(run).status == "running"
            p.send_signal(signal.SIGKILL); p.wait(30)
        finally:
            if p.poll() is None: p.kill()
        assert ops.runs.reap(max_idle=timedelta(minutes=10)) == []  # a fresh heartbeat is not reaped
        reaped = wait_until(lambda: ops.runs.reap(max_idle=timedelta(seconds=1)), timeout=20, interval=0.2)
        assert [r.id for r in reaped] == [run.id]
        assert ops.runs.reap(max_idle=timedelta(seconds=1)) == []  # once
        now = ops.runs.get(run)
        assert (now.status, now.outcome) == ("completed", "failed")
        assert now.summary_counts == {"total": 100, "processed": 10, "succeeded": 10}
        reason = now.failure_summary[-1]
        assert reason["code"] == "opsux.no_heartbeat"
        assert reason["message"].startswith("No heartbeat for ") and "the worker probably stopped" in reason["message"]
        notes = ops.viewer(u).notifications()
        assert len(notes) == 1 and notes[0].run_id == run.id
        assert "the worker probably stopped" in notes[0].data["body"] and notes[0].data["status"] == "danger"


# --- 4. the watcher ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_listen_watcher_survives_a_restart(server, pg, mode):
    with opsux.connect(pg) as ops, opsux.connect(pg, migrate=False) as worker:
        t, u = seed_world(ops)
        run = worker.runs.start(worker.runs.enqueue(t, "inventory.sync", user=u))
        w = ops.watcher()
        got = []
        unsubscribe = w.subscribe(got.append)
        try:
            assert w.ready.wait(10)
            worker.runs.advance(run, processed=1)
            wait_until(lambda: any(e.run_id == run.id and e.kind == "progress" for e in got))
            reconnects = w.reconnects
            server.restart(mode)
            wait_until(lambda: w.reconnects > reconnects and w.ready.is_set(), timeout=30)
            assert any(e.kind == "resync" for e in got)  # subscribers learn they may have missed something
            got.clear()
            worker.runs.advance(run, processed=1)  # the worker's pool finds its connections dead and retries
            wait_until(lambda: any(e.run_id == run.id and e.kind == "progress" for e in got), timeout=15)
            worker.runs.complete(run)
            wait_until(lambda: any(e.run_id == run.id and e.kind == "completed" for e in got), timeout=15)
            assert w.alive
        finally: unsubscribe()


def test_sqlite_probe_survives_a_locked_file(tmp_path):
    path = tmp_path / "opsux.sqlite"
    with opsux.connect(str(path)) as ops, opsux.connect(str(path), migrate=False) as worker:
        t, u = seed_world(ops)
        run = worker.runs.start(worker.runs.enqueue(t, "inventory.sync", user=u))
        ops.engine.dispose(); worker.engine.dispose()
        # another program takes the file exclusively: even readers must wait until it lets go
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        holder.execute("PRAGMA locking_mode = EXCLUSIVE"); holder.execute("BEGIN EXCLUSIVE")
        holder.execute("UPDATE tenants SET name = name"); holder.execute("COMMIT")
        w = ops.watcher(interval=0.05)
        got = []
        unsubscribe = w.subscribe(got.append)
        try:
            assert not w.ready.wait(1.0)  # blocked by the lock, not dead
            assert w.alive
            holder.close()  # the lock goes away
            assert w.ready.wait(30)
            worker.runs.advance(run, processed=1)
            wait_until(lambda: any(e.run_id == run.id for e in got))
            # and a writer holding the write lock for a while does not stop the probe (WAL readers never wait)
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE"); blocker.execute("UPDATE tenants SET name = name")
            got.clear()
            stamp = threading.Thread(target=worker.runs.advance, args=(run,), kwargs={"processed": 1})
            stamp.start()
            assert w.ready.is_set() and w.alive
            blocker.execute("COMMIT"); blocker.close()
            stamp.join(30)
            wait_until(lambda: any(e.run_id == run.id for e in got))
            assert worker.runs.get(run).summary_counts == {"processed": 2}
        finally: unsubscribe()
