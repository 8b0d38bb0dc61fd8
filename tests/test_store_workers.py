"""Workers as queues run them (issue 15): forked from a parent that already used `ops`, interrupted by a job timeout
(a signal handler raising) inside a call, retried and redelivered, cancelled, looping with `r.iter`, on both databases.
"""
import logging, os, signal, sqlite3, sys, threading, time, traceback
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import event, func, select, update

import opsux
from opsux.store.models import Notification, OperationRun, utcnow
from opsux.store.service import NO_HEARTBEAT, NOT_STARTED, RunCancelled, RunEnded

import pgserver
from support import wait_until


def notes(ops, run_id) -> int:
    with ops.engine.connect() as c:
        return c.execute(select(func.count()).select_from(Notification).where(Notification.run_id == run_id)).scalar()


# --- item 1: fork ---------------------------------------------------------------------------------------------------

def fork_children(n, work) -> list[int]:
    "Fork `n` children that each run `work(i)` and exit 0 (1 on an exception); their exit codes."
    pids = []
    for i in range(n):
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try: work(i); code = 0
            except BaseException as e: print(f"child {i}: {type(e).__name__}: {e}", flush=True)
            finally: os._exit(code)
        pids.append(pid)
    return [os.waitstatus_to_exitcode(os.waitpid(p, 0)[1]) for p in pids]


def test_forked_children_write_exactly(world, db_url):
    "Before (PostgreSQL): a queue-free repro stored 1,569 of 1,000 advances; shared pooled connections broke."
    ops = world.ops
    run = ops.runs.start(ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    for _ in range(5): ops.runs.advance(run, processed=1)  # the parent's pools and writer state are in use
    w = ops.watcher()
    assert w.alive
    def child(i):
        assert ops.watcher().alive, "the child inherited the parent's watcher, whose thread stayed behind"
        for _ in range(100): ops.runs.advance(run, processed=1)
        ops.runs.enqueue(world.contoso, "policy.sync", context={"child": i})
    assert fork_children(4, child) == [0, 0, 0, 0]
    assert ops.runs.get(run).summary_counts == {"processed": 405}
    ops.runs.advance(run, processed=1)  # and the parent's own pool still works
    assert ops.runs.get(run).summary_counts == {"processed": 406}
    with ops.engine.connect() as c:
        ctx = c.execute(select(OperationRun.context).where(OperationRun.type == "policy.sync")).scalars().all()
    assert sorted(x["child"] for x in ctx) == [0, 1, 2, 3]


def test_children_get_their_own_writer_identity(world):
    ops = world.ops
    parent = ops.runs.writer_id
    r, wpipe = os.pipe()
    def child(i):
        os.write(wpipe, (ops.runs.writer_id + "\n").encode())
    assert fork_children(2, child) == [0, 0]
    os.close(wpipe)
    ids = os.read(r, 1000).decode().split()
    assert len(set(ids)) == 2 and parent not in ids


# --- item 1: a job timeout inside a call --------------------------------------------------------------------------

class JobTimeout(Exception):
    "What RQ's and Celery's job timeouts raise from a signal handler."


def alarm_in(seconds):
    def fire(signum, frame): raise JobTimeout("job exceeded its 0.5 s budget")
    signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def hold_row_lock(db_url, run_id):
    "Another program holds the run's row (PostgreSQL) or the write lock (SQLite), so the next write blocks."
    if db_url.startswith("sqlite"):
        con = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
        con.execute("BEGIN IMMEDIATE")
        return con
    con = psycopg.connect(pgserver._psycopg_dsn(db_url))
    con.execute("SELECT id FROM operation_runs WHERE id = %s FOR UPDATE", (run_id,))
    return con


@pytest.mark.parametrize("verb", ["advance", "complete"])
def test_timeout_inside_a_call_propagates_and_the_connection_is_discarded(world, db_url, verb, caplog):
    "Before (PostgreSQL): 19–76 retries on the broken connection, the timeout became an OperationalError."
    caplog.set_level(logging.WARNING, logger="opsux")
    ops = world.ops
    run = ops.runs.start(ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    ops.runs.advance(run, processed=1)
    holder = hold_row_lock(db_url, run.id)
    t0 = time.monotonic()
    try:
        alarm_in(0.5)
        with pytest.raises(JobTimeout, match="0.5 s budget"):
            if verb == "advance": ops.runs.advance(run, processed=1)
            else: ops.runs.complete(run)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
        holder.rollback() if hasattr(holder, "rollback") else None
        holder.close()
    assert time.monotonic() - t0 < 10
    for _ in range(20): ops.runs.advance(run, processed=1)  # pooled connections are all usable
    assert not [r for r in caplog.records if "retry" in r.getMessage()], [r.getMessage() for r in caplog.records]
    assert ops.runs.get(run).summary_counts == {"processed": 21}  # the interrupted write was not applied
    done = ops.runs.complete(run)
    assert done.outcome == "succeeded" and notes(ops, run.id) == 1


# the pool handing a connection out, or taking it back after its work was committed (or was an autocommit read);
# a timeout there is still raised unchanged, but once in a few thousand runs the connection went back to the pool
# (under investigation, docs/notes/queues2.md)
HANDING = {("connect", "engine/base.py"), ("close", "engine/base.py"), ("_checkin", "pool/base.py"),
           ("_finalize_fairy", "pool/base.py")}


def in_use(frame) -> bool:
    """True when the signal landed in SQLAlchemy while a connection was in use: not while the pool was still handing
    it out or already taking it back (it has run nothing yet / its transaction ended)."""
    inside = False
    while frame is not None:
        code = frame.f_code
        if any(code.co_name == n and code.co_filename.endswith(f) for n, f in HANDING): return False
        inside = inside or "/sqlalchemy/" in code.co_filename
        frame = frame.f_back
    return inside


def watch_pools(ops):
    "The DBAPI connections checked out now (by id), and a list that collects every checkout."
    out, checkouts = {}, []
    for pool in {id(e.pool): e.pool for e in (ops.writer, ops.reader)}.values():
        def checkout(dbapi, rec, proxy): out[id(dbapi)] = dbapi; checkouts.append(dbapi)
        event.listen(pool, "checkout", checkout)
        event.listen(pool, "checkin", lambda dbapi, rec: out.pop(id(dbapi), None))
        event.listen(pool, "invalidate", lambda dbapi, rec, exc: out.pop(id(dbapi), None))
    return out, checkouts


@pytest.mark.parametrize("verb", ["advance", "complete"])
def test_a_signal_anywhere_inside_a_call_comes_out_unchanged_and_its_connection_is_never_reused(world, verb):
    """A timeout raised by a signal handler at any point of `advance`/`complete`: the very exception object comes
    out (before: about one in four came back wrapped as sqlalchemy's StatementError, and some were swallowed by
    SQLAlchemy's cursor close or pool reset, so the job ran on past its timeout; on SQLite a connection closed under
    a live statement kept the write lock: "database is locked" for every later write), and a connection in use
    when the signal landed is never handed out again."""
    ops = world.ops
    out, checkouts = watch_pools(ops)
    seen = []  # (exception raised, connections in use then, stack, whether it landed in SQLAlchemy/psycopg itself)
    # (one landing in opsux's total rules, which catch every Exception, is theirs to lose: not counted here)
    def fire(signum, frame):
        exc = JobTimeout("job exceeded its budget")
        mine = [d for d in out.values() if any(d is c for c in checkouts)]  # not one an earlier call leaked
        in_driver = any(f"/{m}/" in frame.f_code.co_filename for m in ("sqlalchemy", "psycopg"))
        seen.append((exc, mine if in_use(frame) else [], traceback.format_stack(frame)[-4:], in_driver))
        raise exc
    old, old_hook = signal.signal(signal.SIGALRM, fire), sys.unraisablehook
    python_ate = []  # Python itself drops an exception raised inside a GC callback ("Exception ignored in")
    sys.unraisablehook = lambda u: python_ate.append(u.exc_value)
    wrong, swallowed, reused, interrupted = [], [], [], 0
    try:
        for n in range(150):
            run = ops.runs.start(ops.runs.enqueue(world.contoso, "inventory.sync"))
            more = [ops.runs.start(ops.runs.enqueue(world.contoso, "inventory.sync"))
                    for _ in range(30 if verb == "complete" else 0)]
            seen.clear(); checkouts.clear()
            try:
                signal.setitimer(signal.ITIMER_REAL, 0.0005 + (n % 13) * 0.0003)
                while not seen:
                    if verb == "advance": ops.runs.advance(run, processed=1)
                    else: ops.runs.complete(more.pop())
                if not any(e is seen[0][0] for e in python_ate) and seen[0][3]:
                    swallowed.append("".join(seen[0][2]))
            except Exception as e:
                if e is not seen[0][0]: wrong.append("".join(traceback.format_exception(e)[-4:]))
            finally: signal.setitimer(signal.ITIMER_REAL, 0)
            checkouts.clear()
            ops.runs.advance(run, processed=1)  # the next call must not get an interrupted connection
            if any(e is seen[0][0] for e in python_ate): continue  # nothing could clean up after it
            interrupted += bool(seen[0][1])
            reused += ["".join(seen[0][2]) for d in checkouts if any(d is x for x in seen[0][1])]
    finally:
        signal.signal(signal.SIGALRM, old)
        sys.unraisablehook = old_hook
    assert wrong == [] and swallowed == [], (len(wrong), wrong[:3], swallowed[:2])
    assert interrupted > 50, interrupted
    # none, ever (a signal landing in `Connection.connection` before `_using` noted the pool's connection used to
    # hand it out again: about one run in five, tolerated until 2026-12-02; docs/notes/queues2.md)
    assert reused == [], f"{len(reused)} interrupted connections were handed out again: {reused[:3]}"


# --- item 3: attempts, job ids ---------------------------------------------------------------------------------------

def test_track_on_an_ended_run_is_refused_unless_it_is_a_retry(world):
    "Before: track() on an ended run did nothing, silently (retry attempt 2's work dropped)."
    runs = world.ops.runs
    run = runs.enqueue(world.contoso, "inventory.sync", user=world.ada, job_id="rq:1")
    with pytest.raises(TimeoutError):
        with runs.track(run) as r:
            r.set_total(200)
            for _ in range(60): r.advance(processed=1, succeeded=1)
            raise TimeoutError("job timeout")
    with pytest.raises(RunEnded, match="already ended"):
        with runs.track(run): pass
    with runs.track(runs.get_by_job("rq:1"), retry=True) as r:
        r.set_total(200)
        for _ in range(200): r.advance(processed=1, succeeded=1)
    now = runs.get(run)
    assert (now.attempt, now.outcome, now.summary_counts) == (2, "succeeded", {"total": 200, "processed": 200,
                                                                             "succeeded": 200})
    assert [a["outcome"] for a in now.attempts] == ["failed"]
    assert now.attempts[0]["summary_counts"]["processed"] == 60
    assert notes(world.ops, run.id) == 1  # one notification, for the outcome that counts
    assert world.ops.viewer(world.ada).notifications()[0].data["status"] == "success"


def test_redelivery_of_a_running_run_starts_a_new_attempt(world):
    "Before: a redelivered Celery task pushed processed to 260 of 200 and still succeeded."
    runs = world.ops.runs
    run = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    runs.start(run); runs.set_total(run, 200)
    for _ in range(60): runs.advance(run, processed=1, succeeded=1)  # then the worker died: still "running"
    with runs.track(run, retry=True) as r:
        for _ in r.iter(range(200)): pass
    now = runs.get(run)
    assert (now.attempt, now.summary_counts["processed"], now.outcome) == (2, 200, "succeeded")


def test_a_run_reaped_as_not_started_is_revived_when_a_worker_picks_it_up(world):
    runs = world.ops.runs
    run = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    reaped = runs.reap(timedelta(minutes=10), now=utcnow() + timedelta(hours=1))
    assert [r.id for r in reaped] == [run.id] and runs.get(run).failure_summary[-1]["code"] == NOT_STARTED
    with runs.track(run) as r: r.advance(processed=1, succeeded=1)
    now = runs.get(run)
    assert (now.status, now.outcome, now.attempt) == ("completed", "succeeded", 2)


def test_reaper_distinguishes_queued_from_silent(world):
    runs, ops = world.ops.runs, world.ops
    waiting = runs.enqueue(world.contoso, "inventory.sync")
    silent = runs.start(runs.enqueue(world.contoso, "policy.sync"))
    later = utcnow() + timedelta(minutes=20)
    assert [r.id for r in runs.reap(timedelta(minutes=10), now=later, max_queued=timedelta(hours=1))] == [silent.id]
    assert runs.get(silent).failure_summary[-1]["code"] == NO_HEARTBEAT
    assert [r.id for r in runs.reap(timedelta(minutes=10), now=later + timedelta(hours=1) - timedelta(minutes=10),
                                    max_queued=timedelta(hours=1))] == [waiting.id]
    reason = runs.get(waiting).failure_summary[-1]
    assert reason["code"] == NOT_STARTED and reason["message"].startswith("Not started after 7"), reason


def test_worker_death_fails_at_once_with_a_code(world):
    runs = world.ops.runs
    run = runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada, job_id="celery:abc"))
    failed = runs.fail(runs.get_by_job("celery:abc"), "Worker exited prematurely: signal 9 (SIGKILL)", code="worker.lost")
    assert (failed.outcome, failed.failure_summary[-1]["code"]) == ("failed", "worker.lost")


# --- item 5/6: the iterator, coalescing, heartbeat, cancellation ----------------------------------------------------

def count_writes(ops):
    "Number of progress/heartbeat writes published by this handle."
    seen = []
    ops.events.subscribe(lambda ev: seen.append(ev.kind))
    return seen


def test_iter_coalesces_and_counts_exactly(world):
    "Before: one transaction per item (a 1M-item loop would be 1M transactions)."
    ops = world.ops
    seen = count_writes(ops)
    run = ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    n = 50_000
    with ops.runs.track(run) as r:
        for i in r.iter(range(n)):
            if i % 10_000 == 7: r.fail_item(i, "device offline")
    now = ops.runs.get(run)
    assert now.summary_counts == {"total": n, "processed": n, "succeeded": n - 5, "failed": 5}
    assert len(now.failure_summary) == 5 and now.outcome == "partially_succeeded"
    assert seen.count("progress") < 60, seen.count("progress")  # writes per interval, not per item


def test_iter_sees_a_cancel_request_and_stops(world):
    ops = world.ops
    run = ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    reached = []
    with pytest.raises(RunCancelled):
        with ops.runs.track(run) as r:
            for i in r.iter(range(10**9), interval=0.01):
                if i == 100: ops.runs.request_cancel(run)
                reached.append(i)
    assert len(reached) < 10**6
    now = ops.runs.get(run)
    assert (now.status, now.outcome) == ("completed", "cancelled") and now.cancel_requested_at is not None
    assert r.cancelled and r.cancelled()


def test_iter_catch_counts_the_failing_item_and_completes_from_counts(world):
    ops = world.ops
    run = ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    with pytest.raises(KeyError):
        with ops.runs.track(run) as r:
            for i in r.iter(range(10), catch=KeyError):
                if i == 6: raise KeyError("laptop-6")
    now = ops.runs.get(run)
    assert now.summary_counts == {"total": 10, "processed": 7, "succeeded": 6, "failed": 1}
    assert now.outcome == "partially_succeeded" and "KeyError" in now.failure_summary[-1]["message"]


def test_background_heartbeat_keeps_a_slow_item_alive(world):
    ops = world.ops
    run = ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    with ops.runs.track(run, heartbeat=0.2) as r:
        first = ops.runs.get(run).heartbeat_at
        wait_until(lambda: ops.runs.get(run).heartbeat_at > first, timeout=10)  # one slow item, no writes of ours
    assert not [t for t in threading.enumerate() if t.name.startswith("opsux-pulse")]


def test_buffered_increments_are_flushed_by_the_pulse_when_an_item_is_slow(world):
    ops = world.ops
    run = ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    with ops.runs.track(run, interval=0.1) as r:
        r.advance(processed=1)
        r.advance(processed=1)
        wait_until(lambda: ops.runs.get(run).summary_counts.get("processed") == 2, timeout=10)
    assert ops.runs.get(run).summary_counts == {"processed": 2}


def test_fail_item_inside_iter_counts_the_current_item_once_whatever_its_label(world):
    "Before: a label that was not the yielded object itself counted the item twice (processed 220 of 200)."
    ops = world.ops
    run = ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    with ops.runs.track(run) as r:
        for i in r.iter(range(10)):
            if i == 3: r.fail_item(f"device-{i}", "offline")
            if i == 5:  # two reasons for one item: both recorded, the item counted once
                r.fail_item(f"laptop {i}", "offline")
                r.fail_item(f"device-{i}", "and its disk is full")
        r.fail_item("the summary report", "could not be sent")  # outside the loop: counts as one more item
    now = ops.runs.get(run)
    assert now.summary_counts == {"total": 10, "processed": 11, "succeeded": 8, "failed": 3}, now.summary_counts
    assert [f["message"] for f in now.failure_summary] == [
        "device-3: offline", "laptop 5: offline", "device-5: and its disk is full",
        "the summary report: could not be sent"]


def test_between_attempts_the_run_is_queued_not_failed(world):
    "Before: a failed attempt the queue retries was stored as failed (with a notification) until the retry began."
    ops, runs = world.ops, world.ops.runs
    run = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    with pytest.raises(ConnectionError):
        with runs.track(run, will_retry=lambda exc: isinstance(exc, ConnectionError)) as r:
            for i in r.iter(range(10)):
                if i == 4: raise ConnectionError("inventory API reset the connection")
    waiting = runs.get(run)
    assert (waiting.status, waiting.outcome, waiting.attempt, waiting.summary_counts) == ("queued", "pending", 2, {})
    assert [(a["outcome"], a["summary_counts"].get("processed"), a["failure_summary"][-1]["code"])
            for a in waiting.attempts] == [("failed", 4, "exception")]
    assert notes(ops, run.id) == 0
    # the reaper counts the wait from the requeue, not from the first enqueue
    assert runs.reap(timedelta(minutes=10), now=utcnow() + timedelta(minutes=5)) == []
    with runs.track(runs.get(run)) as r:  # the retry: the next delivery finds it queued
        for _ in r.iter(range(10)): pass
    done = runs.get(run)
    assert (done.outcome, done.attempt, done.summary_counts["processed"]) == ("succeeded", 2, 10)
    assert notes(ops, run.id) == 1
