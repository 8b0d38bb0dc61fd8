"""Bulk actions and the forced cancel, on SQLite and PostgreSQL: `Actions.bulk` cancels 1,000 runs in a few statements
per batch with exactly one terminal notification per cancelled run, respects roles and tenants, selects "all matching"
exactly as the list does, marks read, retries through a hook; `reap` ends a run that ignored a cancel request."""
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event, func, insert, select

from opsux.store.actions import BULK_BATCH, Actions, register_retry, retry_hooks
from opsux.store.service import CANCEL_GRACE, FORCED_CANCEL, TERMINAL_NOTIFICATION
from opsux.store.tables import notifications, operation_runs, utcnow

TYPE = "inventory.sync"


def seed_runs(ops, tenant, user, queued: int = 0, running: int = 0, type: str = TYPE) -> list[int]:
    "Insert `queued` queued and `running` running runs in one statement; their ids (queued first)."
    now = utcnow()
    base = dict(tenant_id=tenant.id, user_id=user.id, initiator_name=user.name, type=type, outcome="pending",
                summary_counts={}, failure_summary=[], context={}, created_at=now, updated_at=now)
    rows = [dict(base, status="queued", started_at=None, heartbeat_at=None) for _ in range(queued)]
    rows += [dict(base, status="running", started_at=now, heartbeat_at=now) for _ in range(running)]
    with ops.writer.begin() as con:
        first = con.execute(select(func.coalesce(func.max(operation_runs.c.id), 0))).scalar()
        con.execute(insert(operation_runs).values(rows))
        return list(con.execute(select(operation_runs.c.id).where(operation_runs.c.id > first)
                                .order_by(operation_runs.c.id)).scalars())


def terminal_notes(ops, ids) -> Counter:
    "run id → how many terminal notifications it has."
    with ops.reader.connect() as con:
        rows = con.execute(select(notifications.c.run_id).where(notifications.c.type == TERMINAL_NOTIFICATION,
                                                                notifications.c.run_id.in_(list(ids)))).scalars()
        return Counter(rows)


def states(ops, ids) -> Counter:
    with ops.reader.connect() as con:
        rows = con.execute(select(operation_runs.c.status, operation_runs.c.outcome,
                                  operation_runs.c.cancel_requested_at.is_not(None))
                           .where(operation_runs.c.id.in_(list(ids)))).all()
    return Counter((s, o, bool(asked)) for s, o, asked in rows)


@pytest.fixture
def hook():
    def again(ops, run): return ops.runs.enqueue(run.tenant_id, run.type, user=run.user_id, context=run.context)
    register_retry(TYPE, again)
    yield again
    retry_hooks.pop(TYPE, None)


def test_bulk_cancel_of_1000_runs_in_batches(world):
    ops = world.ops
    queued = seed_runs(ops, world.contoso, world.ada, queued=600)
    running = seed_runs(ops, world.contoso, world.ada, running=400)
    theirs = seed_runs(ops, world.fabrikam, world.bob, queued=30, running=20)
    statements, events = [], []
    listen = lambda conn, cursor, stmt, params, context, many: statements.append(stmt)
    engines = {ops.engine, ops.reader}
    for e in engines: event.listen(e, "before_cursor_execute", listen)
    unsub = ops.events.subscribe(events.append)
    try: done = Actions(ops, world.ada).bulk("cancel", run_ids=queued + running + theirs, wait=True)
    finally:
        for e in engines: event.remove(e, "before_cursor_execute", listen)
        unsub()
    assert (done.type, done.status, done.outcome, done.tenant_id) == ("operations.bulk_cancel", "completed",
                                                                      "succeeded", world.contoso.id)
    assert done.summary_counts == {"total": 1050, "processed": 1050, "succeeded": 1000, "skipped": 50}
    assert states(ops, queued) == {("completed", "cancelled", False): 600}
    assert states(ops, running) == {("running", "pending", True): 400}
    assert states(ops, theirs) == {("queued", "pending", False): 30, ("running", "pending", False): 20}
    notes = terminal_notes(ops, queued + running + theirs)
    assert set(notes) == set(queued) and set(notes.values()) == {1}                 # exactly one per cancelled run
    # batches, not rows: 1,050 ids are 2 batches; each a handful of statements whatever its size
    assert len(statements) < 80, len(statements)
    batch_events = [e for e in events if e.run_id is None]
    assert 1 <= len(batch_events) <= 2 and all(e.kind == "completed" for e in batch_events), batch_events
    # again: everything already done, no second notification
    again = Actions(ops, world.ada).bulk("cancel", run_ids=queued + running, wait=True)
    assert again.summary_counts == {"total": 1000, "processed": 1000, "skipped": 1000}
    assert set(terminal_notes(ops, queued).values()) == {1}


def test_a_viewer_role_cancels_nothing_in_that_tenant(world):
    ops = world.ops
    ops.directory.set_role(world.cy, world.contoso, "viewer")
    contoso = seed_runs(ops, world.contoso, world.ada, queued=5, running=2)
    fabrikam = seed_runs(ops, world.fabrikam, world.bob, queued=3)
    cy = Actions(ops, world.cy)
    assert cy.matching({}) == 10
    done = cy.bulk("cancel", filters={}, wait=True)
    assert done.tenant_id == world.fabrikam.id                                        # cy's first operable tenant
    assert done.summary_counts == {"total": 10, "processed": 10, "succeeded": 3, "skipped": 7}
    assert states(ops, contoso) == {("queued", "pending", False): 5, ("running", "pending", False): 2}
    assert states(ops, fabrikam) == {("completed", "cancelled", False): 3}
    ops.directory.set_role(world.cy, world.fabrikam, "viewer")
    with pytest.raises(PermissionError, match="not an operator"): Actions(ops, world.cy).bulk("cancel", filters={})


def test_another_tenants_runs_are_untouched(world):
    ops = world.ops
    theirs = seed_runs(ops, world.fabrikam, world.bob, queued=4, running=1)
    mine = seed_runs(ops, world.contoso, world.ada, queued=2)
    ada = Actions(ops, world.ada)
    assert ada.matching({}) == 2 and ada.matching({"tenant": world.fabrikam}) == 0
    done = ada.bulk("cancel", filters={"status": ["queued", "running"]}, wait=True)
    assert done.summary_counts == {"total": 2, "processed": 2, "succeeded": 2}
    by_ids = ada.bulk("cancel", run_ids=theirs, wait=True)                            # not visible: skipped
    assert by_ids.summary_counts == {"total": 5, "processed": 5, "skipped": 5}
    assert states(ops, theirs) == {("queued", "pending", False): 4, ("running", "pending", False): 1}
    assert terminal_notes(ops, theirs) == Counter() and set(terminal_notes(ops, mine).values()) == {1}


def test_all_matching_selects_what_the_list_pages_through(world):
    ops = world.ops
    seed_runs(ops, world.contoso, world.ada, queued=30, running=5)
    other = seed_runs(ops, world.contoso, world.ada, queued=7, type="policy.sync")
    failed = ops.runs.fail(ops.runs.start(ops.runs.enqueue(world.contoso, TYPE, user=world.ada)), "down")
    ada = Actions(ops, world.ada)

    def listed(**f):
        n, after = 0, None
        while True:
            page = ada.viewer.runs(**f, limit=500, after=after)
            n += len(page)
            if page.next_after is None: return n
            after = page.next_after

    for f in ({}, {"type": TYPE}, {"status": "queued"}, {"status": ["running", "failed"]}, {"initiator": "Ada"},
              {"type": "policy.sync", "status": "queued"}, {"run_id": failed.id}, {"tenant": world.contoso},
              {"since": utcnow() - timedelta(hours=1)}, {"until": utcnow() - timedelta(hours=1)}):
        assert ada.matching(f) == listed(**f), f
    with pytest.raises(ValueError, match="unknown run filter"): ada.matching({"after": 3})
    done = ada.bulk("cancel", filters={"type": TYPE, "status": "queued"}, wait=True)
    assert done.summary_counts == {"total": 30, "processed": 30, "succeeded": 30}
    assert done.context["filters"] == {"type": TYPE, "status": "queued"}
    assert states(ops, other) == {("queued", "pending", False): 7}                   # another type: untouched
    assert ada.matching({"status": "queued"}) == 7


def test_bulk_mark_read_marks_only_the_users_notifications_of_those_runs(world):
    ops = world.ops
    mine = seed_runs(ops, world.contoso, world.cy, queued=12)
    bobs = seed_runs(ops, world.fabrikam, world.bob, queued=3)
    ops.runs.request_cancel_many(mine + bobs)
    cy = Actions(ops, world.cy)
    assert cy.viewer.unread_count() == 12
    done = cy.bulk("mark_read", run_ids=mine[:10] + bobs, wait=True)
    assert done.type == "notifications.bulk_mark_read"
    assert done.summary_counts == {"total": 13, "processed": 13, "succeeded": 10, "skipped": 3}
    unread = lambda who, ids: len([n for n in Actions(ops, who).viewer.notifications(unread_only=True, limit=500)
                                   if n.run_id in set(ids)])
    assert unread(world.cy, mine) == 2 and unread(world.bob, bobs) == 3
    assert unread(world.cy, [done.id]) == 1              # the bulk run's own end notifies its initiator, unread
    rest = cy.bulk("mark_read", filters={"status": "cancelled"}, wait=True)
    assert rest.summary_counts["succeeded"] == 2 and unread(world.cy, mine) == 0


def test_bulk_retry_calls_the_hook_per_retryable_run(world, hook):
    ops = world.ops
    failed = [ops.runs.fail(ops.runs.start(ops.runs.enqueue(world.contoso, TYPE, user=world.ada)), "down")
              for _ in range(3)]
    cancelled = ops.runs.cancel(ops.runs.enqueue(world.contoso, TYPE, user=world.ada))
    fine = ops.runs.complete(ops.runs.start(ops.runs.enqueue(world.contoso, TYPE, user=world.ada)))
    waiting = ops.runs.enqueue(world.contoso, TYPE, user=world.ada)
    nohook = ops.runs.fail(ops.runs.enqueue(world.contoso, "policy.sync", user=world.ada), "no")
    ids = [r.id for r in (*failed, cancelled, fine, waiting, nohook)]
    ada = Actions(ops, world.ada)
    done = ada.bulk("retry", run_ids=ids, wait=True)
    assert done.type == "operations.bulk_retry"
    assert done.summary_counts == {"total": 7, "processed": 7, "succeeded": 4, "skipped": 3}
    assert all(ada._retry_of(r.id) is not None for r in (*failed, cancelled))
    assert ada.bulk("retry", run_ids=ids, wait=True).summary_counts["skipped"] == 7   # already retried: once

    def broken(ops, run): raise RuntimeError("the queue is down")
    register_retry("policy.sync", broken)
    try: bad = ada.bulk("retry", run_ids=[nohook.id], wait=True)
    finally: retry_hooks.pop("policy.sync", None)
    assert (bad.outcome, bad.summary_counts) == ("failed", {"total": 1, "processed": 1, "failed": 1})
    assert bad.failure_summary[0]["code"] == "retry.hook"


def test_bulk_refuses_bad_arguments(world):
    ada = Actions(world.ops, world.ada)
    with pytest.raises(ValueError, match="unknown bulk action"): ada.bulk("archive", run_ids=[1])
    with pytest.raises(ValueError, match="either run_ids or filters"): ada.bulk("cancel")
    with pytest.raises(ValueError, match="either run_ids or filters"): ada.bulk("cancel", run_ids=[1], filters={})
    empty = ada.bulk("cancel", filters={"type": "nothing.here"}, wait=True)
    assert (empty.outcome, empty.summary_counts) == ("succeeded", {"total": 0})


def test_reap_forces_a_cancel_the_worker_did_not_obey(world):
    ops = world.ops
    run = ops.runs.start(ops.runs.enqueue(world.contoso, TYPE, user=world.ada))
    asked = ops.runs.request_cancel(run).cancel_requested_at
    assert CANCEL_GRACE == timedelta(seconds=60)
    assert ops.runs.reap(now=asked + timedelta(seconds=59)) == []
    assert ops.runs.reap(now=asked + timedelta(seconds=120), cancel_grace=timedelta(minutes=5)) == []
    forced = ops.runs.reap(now=asked + timedelta(seconds=61))
    assert [r.id for r in forced] == [run.id]
    end = ops.runs.get(run)
    assert (end.status, end.outcome) == ("completed", "cancelled")
    assert end.failure_summary[-1] == {"code": FORCED_CANCEL,
                                       "message": "The worker did not stop within 60 s of the cancel request"}
    assert terminal_notes(ops, [run.id]) == {run.id: 1}
    assert ops.runs.complete(run).outcome == "cancelled" and ops.runs.advance(run, processed=1).status == "completed"
    assert ops.runs.reap(now=asked + timedelta(hours=2)) == [] and terminal_notes(ops, [run.id]) == {run.id: 1}


def test_forced_cancel_comes_before_the_idle_reaper_and_bulk_requests_count(world):
    ops = world.ops
    ids = seed_runs(ops, world.contoso, world.ada, running=3)
    Actions(ops, world.ada).bulk("cancel", run_ids=ids, wait=True)
    later = utcnow() + timedelta(hours=1)                        # silent for an hour too: cancelled, not failed
    assert sorted(r.id for r in ops.runs.reap(now=later)) == ids
    assert states(ops, ids) == {("completed", "cancelled", True): 3}
    assert set(terminal_notes(ops, ids).values()) == {1}


def test_a_worker_that_returns_normally_after_a_cancel_request_succeeds(world):
    "What the code does (documented in 12_service): a normal exit from track completes by the counts."
    ops = world.ops
    run = ops.runs.enqueue(world.contoso, TYPE, user=world.ada)
    with ops.runs.track(run) as r:
        r.advance(processed=1, succeeded=1)
        ops.runs.request_cancel(run)
        r.heartbeat()
        assert r.cancelled()
    end = ops.runs.get(run)
    assert (end.outcome, end.cancel_requested_at is not None) == ("succeeded", True)
    assert terminal_notes(ops, [run.id]) == {run.id: 1}
    assert ops.runs.reap(now=utcnow() + timedelta(hours=1)) == []                    # ended: nothing to force


def test_batches_are_keyset_pages_of_bulk_batch(world, monkeypatch):
    import opsux.store.actions as actions
    monkeypatch.setattr(actions, "BULK_BATCH", 7)
    ops = world.ops
    ids = seed_runs(ops, world.contoso, world.ada, queued=20)
    seen = []
    real = Actions._step
    def spy(self, action, batch, handle):
        seen.append(len(batch)); return real(self, action, batch, handle)
    monkeypatch.setattr(Actions, "_step", spy)
    done = Actions(ops, world.ada).bulk("cancel", filters={}, wait=True)
    assert seen == [7, 7, 6] and done.summary_counts["succeeded"] == 20 and BULK_BATCH == 1000
    assert states(ops, ids) == {("completed", "cancelled", False): 20}


def test_a_cancel_request_on_the_bulk_run_stops_it_between_batches(world, monkeypatch):
    import opsux.store.actions as actions
    monkeypatch.setattr(actions, "BULK_BATCH", 5)
    ops = world.ops
    ids = seed_runs(ops, world.contoso, world.ada, queued=20)
    real = Actions._step
    def step_then_cancel(self, action, batch, handle):
        out = real(self, action, batch, handle)
        ops.runs.request_cancel(handle.id)                      # someone cancels the bulk itself
        return out
    monkeypatch.setattr(Actions, "_step", step_then_cancel)
    done = Actions(ops, world.ada).bulk("cancel", filters={"type": TYPE}, wait=True)
    assert (done.outcome, done.summary_counts) == ("cancelled", {"total": 20, "processed": 5, "succeeded": 5})
    assert states(ops, ids) == {("completed", "cancelled", False): 5, ("queued", "pending", False): 15}


def test_a_bulk_cancel_writes_the_notification_a_single_cancel_writes(world):
    ops = world.ops
    one = ops.runs.cancel(ops.runs.enqueue(world.contoso, TYPE, user=world.ada))
    many = seed_runs(ops, world.contoso, world.ada, queued=3)
    Actions(ops, world.ada).bulk("cancel", run_ids=many, wait=True)
    with ops.reader.connect() as con:
        rows = {r.run_id: r for r in con.execute(select(notifications).where(
            notifications.c.run_id.in_([one.id, *many])))}
    strip = lambda d: {k: v for k, v in d.items() if k not in ("url", "run_id")}
    assert all(strip(rows[i].data) == strip(rows[one.id].data) for i in many)
    assert [rows[i].data["run_id"] for i in many] == many and all(str(i) in rows[i].data["url"] for i in many)
    assert all(rows[i].read_at is None and rows[i].user_id == world.ada.id for i in many)
    ended = ops.runs.get(many[0])
    assert rows[many[0]].created_at == ended.completed_at


def test_postgres_one_notify_per_batch(world):
    ops = world.ops
    if not ops.is_postgres: pytest.skip("NOTIFY is PostgreSQL's")
    import psycopg
    from opsux.store.events import CHANNEL, RunEvent
    ids = seed_runs(ops, world.contoso, world.ada, queued=BULK_BATCH + 50, running=10)
    url = ops.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listen:
        listen.execute(f"LISTEN {CHANNEL}")
        done = Actions(ops, world.ada).bulk("cancel", run_ids=ids, wait=True)
        got = [RunEvent.from_json(n.payload) for n in listen.notifies(timeout=1.0)]
    batch = [e for e in got if e.run_id is None]
    assert batch == [RunEvent(None, world.contoso.id, world.ada.id, "completed")] * 2, batch
    assert {e.run_id for e in got if e.run_id is not None} == {done.id}        # the rest: the bulk run's own progress
    assert len(got) < 12, got
