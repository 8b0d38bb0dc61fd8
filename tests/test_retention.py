"""Retention on SQLite and PostgreSQL: `opsux.store.retention.prune` deletes old finished runs (and their notifications)
in short batches, keeps active runs however old, and never holds up a worker advancing an active run."""
import threading, time
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

import opsux
import pgserver
from opsux.store.models import Notification, OperationRun, utcnow
from opsux.store.retention import prune

DAY = timedelta(days=1)


def backdate(ops, run, days, *, completed=True):
    "Make `run` look `days` old: created then, and (when `completed`) finished then too."
    when = utcnow() - days * DAY
    values = dict(created_at=when, updated_at=when) | (dict(completed_at=when) if completed else {})
    with ops.engine.begin() as con:
        con.execute(update(OperationRun).where(OperationRun.id == run.id).values(**values))


def add_rows(ops, world, n, *, days, status="completed", outcome="succeeded", completed=True, notify=False):
    "Insert `n` runs `days` old directly (fast, and able to hold legacy values); returns their ids."
    if n == 0: return []
    when = utcnow() - days * DAY
    row = dict(tenant_id=world.contoso.id, user_id=world.ada.id, initiator_name="Ada", type="inventory.sync",
               status=status, outcome=outcome, created_at=when, updated_at=when,
               completed_at=when if completed else None, summary_counts={}, failure_summary=[], context={})
    with ops.engine.begin() as con:
        ids = list(con.scalars(insert(OperationRun).returning(OperationRun.id, sort_by_parameter_order=True),
                               [row] * n))
        if notify:
            con.execute(insert(Notification), [dict(user_id=world.ada.id, type="operation_run.terminal", run_id=i,
                                                    data={"run_id": i}, created_at=when) for i in ids])
    return ids


def run_ids(ops):
    with ops.engine.connect() as con: return set(con.scalars(select(OperationRun.id)))


def notified_run_ids(ops):
    with ops.engine.connect() as con: return set(con.scalars(select(Notification.run_id)))


def finished(world, kind="complete", *args):
    "A run taken through the real service to a terminal state (which stores the initiator's notification)."
    runs = world.ops.runs
    run = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    runs.start(run)
    getattr(runs, kind)(run, *args)
    return runs.get(run.id)


def test_prunes_only_old_finished_runs(world):
    ops, runs = world.ops, world.ops.runs
    old_done, old_failed, old_cancelled = finished(world), finished(world, "fail", "boom"), finished(world, "cancel")
    recent_done = finished(world)
    started_long_ago_finished_recently = finished(world)
    for run in (old_done, old_failed, old_cancelled): backdate(ops, run, 120)
    backdate(ops, started_long_ago_finished_recently, 120, completed=False)
    legacy = add_rows(ops, world, 2, days=120, status=" FAILED ", outcome="pending")  # legacy terminal status
    no_completed_at = add_rows(ops, world, 1, days=120, completed=False)                # age falls back to created_at
    unknown_status = add_rows(ops, world, 1, days=120, status="processing", outcome="pending")  # never guessed at

    figures = prune(ops, timedelta(days=90))

    expected_gone = {old_done.id, old_failed.id, old_cancelled.id, *legacy, *no_completed_at}
    assert figures["deleted_runs"] == len(expected_gone)
    assert run_ids(ops) == {recent_done.id, started_long_ago_finished_recently.id, *unknown_status}
    assert set(figures) == {"deleted_runs", "deleted_notifications", "batches", "seconds"}
    assert figures["batches"] == 1 and figures["seconds"] >= 0


def test_keeps_active_runs_however_old(world):
    ops, runs = world.ops, world.ops.runs
    queued = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    running = runs.enqueue(world.contoso, "policy.sync", user=world.ada)
    runs.start(running); runs.advance(running, processed=1, succeeded=1)
    for run in (queued, running): backdate(ops, run, 3650, completed=False)
    odd_active = add_rows(ops, world, 2, days=3650, status=" Running ", outcome="succeeded")  # outcome says done, status doesn't
    odd_active += add_rows(ops, world, 1, days=3650, status="QUEUED", outcome="pending")
    old = add_rows(ops, world, 3, days=3650)

    figures = prune(ops, timedelta(days=1))

    assert figures["deleted_runs"] == 3
    assert run_ids(ops) == {queued.id, running.id, *odd_active}
    runs.advance(running, processed=1, succeeded=1)  # the worker carries on undisturbed
    assert runs.get(running.id).summary_counts["processed"] == 2


def test_keep_failed_keeps_failed_and_partial_runs(world):
    ops = world.ops
    failed = [finished(world, "fail", "Graph returned 503").id]
    failed += add_rows(ops, world, 1, days=0, status="failed", outcome="pending")      # legacy failed status
    failed += add_rows(ops, world, 1, days=0, status="completed", outcome=" Failed")
    partial = add_rows(ops, world, 2, days=0, status="completed", outcome="partially_succeeded")
    succeeded = [finished(world).id, *add_rows(ops, world, 2, days=0)]
    cancelled = [finished(world, "cancel").id,
                 *add_rows(ops, world, 1, days=0, status="cancelled", outcome="partially_succeeded")]
    later = utcnow() + 100 * DAY

    figures = prune(ops, timedelta(days=90), keep_failed=True, now=later)
    assert figures["deleted_runs"] == len(succeeded) + len(cancelled)
    assert run_ids(ops) == {*failed, *partial}

    figures = prune(ops, timedelta(days=90), now=later)  # without the flag they go too
    assert figures["deleted_runs"] == len(failed) + len(partial)
    assert run_ids(ops) == set()


def test_notifications_of_pruned_runs_go_with_them(world):
    ops = world.ops
    old, recent = finished(world), finished(world)
    backdate(ops, old, 200)
    assert notified_run_ids(ops) == {old.id, recent.id}  # the service stored one per terminal run
    bulk = add_rows(ops, world, 7, days=200, notify=True)
    with ops.engine.begin() as con:  # a notification that belongs to no run is not prune's business
        con.execute(insert(Notification).values(user_id=world.ada.id, type="welcome", run_id=None, data={},
                                                created_at=utcnow() - 300 * DAY))

    figures = prune(ops, timedelta(days=90), batch_size=3)

    assert (figures["deleted_runs"], figures["deleted_notifications"]) == (8, 8)
    assert notified_run_ids(ops) == {recent.id, None}
    assert not (set(bulk) | {old.id}) & run_ids(ops)


@pytest.mark.parametrize("n, batch_size, batches", [(23, 5, 5), (20, 5, 4), (4, 5, 1), (0, 5, 0), (12, 1, 12)])
def test_batch_count(world, n, batch_size, batches):
    ops = world.ops
    add_rows(ops, world, n, days=100, notify=True)
    keep = add_rows(ops, world, 3, days=10)
    seen = []
    figures = prune(ops, timedelta(days=90), batch_size=batch_size, progress=lambda f, done: seen.append((f, done)))
    assert (figures["deleted_runs"], figures["deleted_notifications"], figures["batches"]) == (n, n, batches)
    assert [(f["batches"], f["deleted_runs"]) for f, done in seen if not done] == [
        (i, min(n, i * batch_size)) for i in range(1, batches + 1)]
    assert seen[-1] == (figures, True)
    assert run_ids(ops) == set(keep)


def test_sparse_history_and_id_gaps(world):
    """Prunable runs scattered among kept ones, and a huge gap in the ids: each batch looks at a window of rows (not
    of id values), so every prunable run goes, every kept one stays, and the gap costs nothing."""
    ops = world.ops
    old, kept = [], []
    for _ in range(30):
        old += add_rows(ops, world, 1, days=100, notify=True)
        kept += add_rows(ops, world, 2, days=10)
    far = old[-1] + 10**12
    with ops.engine.begin() as con:
        con.execute(insert(OperationRun).values(
            id=far, tenant_id=world.contoso.id, type="inventory.sync", status="completed", outcome="succeeded",
            created_at=utcnow() - 100 * DAY, completed_at=utcnow() - 100 * DAY, updated_at=utcnow(),
            summary_counts={}, failure_summary=[], context={}))
    kept += add_rows(ops, world, 3, days=10)  # after the gap

    started = time.perf_counter()
    figures = prune(ops, timedelta(days=90), batch_size=4)
    assert time.perf_counter() - started < 30
    assert (figures["deleted_runs"], figures["deleted_notifications"]) == (31, 30)
    assert 8 <= figures["batches"] <= 31
    assert run_ids(ops) == set(kept)


def test_second_prune_deletes_nothing(world):
    ops = world.ops
    add_rows(ops, world, 11, days=100, notify=True)
    first = prune(ops, timedelta(days=90), batch_size=4)
    again = prune(ops, timedelta(days=90), batch_size=4)
    assert (first["deleted_runs"], first["batches"]) == (11, 3)
    assert (again["deleted_runs"], again["deleted_notifications"], again["batches"]) == (0, 0, 0)


def test_progress_true_prints_to_stderr(world, capsys):
    add_rows(world.ops, world, 6, days=100)
    prune(world.ops, timedelta(days=90), batch_size=2, progress=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[0].startswith("opsux prune: 2 runs and 0 notifications deleted in 1 batch (")
    assert err.splitlines()[-1].startswith("opsux prune: 6 runs and 0 notifications deleted in 3 batches (")


def test_read_only_is_refused(db_url, world):
    add_rows(world.ops, world, 2, days=100)
    ro = opsux.connect(db_url, read_only=True)
    try:
        with pytest.raises(PermissionError, match="read-only"):
            prune(ro, timedelta(days=90))
    finally:
        ro.close()
    assert len(run_ids(world.ops)) == 2


def test_bad_arguments_are_refused_before_deleting(world):
    add_rows(world.ops, world, 2, days=100)
    for bad in (dict(older_than=90), dict(older_than=timedelta(0)), dict(older_than=-DAY),
                dict(older_than=DAY, batch_size=0), dict(older_than=DAY, batch_size=True)):
        with pytest.raises(ValueError):
            prune(world.ops, **bad)
    assert len(run_ids(world.ops)) == 2


def test_worker_advancing_an_active_run_is_not_held_up(world):
    """A worker advances an active run while 20,000 old runs are pruned in batches of 500: every increment lands,
    and no single advance waits longer than a generous bound (one batch takes milliseconds)."""
    ops, runs = world.ops, world.ops.runs
    add_rows(ops, world, 20_000, days=365, notify=True)
    run = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    runs.start(run)
    stop, errors, latencies, pruning = threading.Event(), [], [], threading.Event()
    during = []

    def worker():
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                runs.advance(run, processed=1, succeeded=1)
                took = time.perf_counter() - t0
                latencies.append(took)
                if pruning.is_set(): during.append(took)
        except Exception as e:  # surfaced by the assertions below
            errors.append(e)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    while len(latencies) < 20 and thread.is_alive(): time.sleep(0.01)  # the worker is up and running
    pruning.set()
    figures = prune(ops, timedelta(days=90), batch_size=500)
    pruning.clear()
    stop.set(); thread.join(timeout=30)

    assert not thread.is_alive() and errors == []
    assert (figures["deleted_runs"], figures["deleted_notifications"], figures["batches"]) == (20_000, 20_000, 40)
    assert len(during) >= 5, f"the worker advanced only {len(during)} times during the prune"
    assert runs.get(run.id).summary_counts["processed"] == len(latencies)  # no lost increments
    assert max(during) < 2.0, f"an advance waited {max(during):.2f}s during the prune"
    assert runs.get(run.id).status == "running"


@pytest.fixture
def pg_ops(pg_url):
    "An opsux database on PostgreSQL only (for behaviour SQLite has no equivalent of)."
    url = pgserver.fresh_database(pg_url)
    o = opsux.connect(url)
    yield o
    o.close()
    pgserver.drop_database(pg_url, url)


def test_rows_locked_by_others_are_skipped_not_waited_for(pg_ops):
    """PostgreSQL: a transaction holding an old finished run (say, a slow report) neither blocks prune nor is blocked
    by it; that one run is left for the next prune."""
    ops = pg_ops
    world = type("W", (), dict(contoso=ops.directory.add_tenant("Contoso"), ada=ops.directory.add_user("Ada")))
    ids = add_rows(ops, world, 10, days=100, notify=True)
    holder = ops.engine.connect()
    tx = holder.begin()
    holder.execute(select(OperationRun.id).where(OperationRun.id == ids[3]).with_for_update())
    result = {}
    pruner = threading.Thread(target=lambda: result.update(prune(ops, timedelta(days=90), batch_size=5)), daemon=True)
    try:
        pruner.start(); pruner.join(timeout=20)
        assert not pruner.is_alive(), "prune waited for a row lock held by another transaction"
        assert (result["deleted_runs"], result["deleted_notifications"]) == (9, 9)
        assert run_ids(ops) == {ids[3]}
    finally:
        tx.rollback(); holder.close()
        pruner.join(timeout=20)
    again = prune(ops, timedelta(days=90), batch_size=5)
    assert (again["deleted_runs"], again["deleted_notifications"]) == (1, 1)
    assert run_ids(ops) == set()
