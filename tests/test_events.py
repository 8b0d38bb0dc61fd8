"""Change events: in-process bus, the one watcher per process (PostgreSQL LISTEN, SQLite probe), fan-out, robustness."""
import threading

import pytest
from sqlalchemy import text

import opsux
from support import wait_until
from opsux.store.events import RunEvent


def test_bus_publishes_every_change(world):
    got = []
    world.ops.events.subscribe(got.append)
    world.ops.events.subscribe(lambda ev: 1 / 0)  # a broken subscriber must not break the worker
    runs = world.ops.runs
    r = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    runs.start(r); runs.set_total(r, 2); runs.advance(r, processed=1, succeeded=1)
    runs.record_failure(r, "oops"); runs.heartbeat(r); runs.complete(r)
    runs.complete(r)  # no change, no event
    assert [e.kind for e in got] == ["enqueued", "started", "progress", "progress", "failure", "heartbeat", "completed"]
    assert {(e.run_id, e.tenant_id, e.user_id) for e in got} == {(r.id, world.contoso.id, world.ada.id)}


def test_one_watcher_per_process_fans_out(db_url, world):
    other = opsux.connect(db_url, migrate=False)
    try:
        w = world.ops.watcher()
        assert other.watcher() is w
        assert w.ready.wait(10)
        inboxes = [[] for _ in range(20)]
        for box in inboxes: w.subscribe(box.append)
        w.subscribe(lambda ev: (_ for _ in ()).throw(RuntimeError("bad subscriber")))
        writer = opsux.connect(db_url, migrate=False)  # a change made through another engine (as another process would)
        try: r = writer.runs.enqueue(world.contoso.id, "inventory.sync", user=world.ada.id)
        finally: writer.close()
        wait_until(lambda: all(any(e.run_id == r.id for e in box) for box in inboxes))
        ev = next(e for e in inboxes[0] if e.run_id == r.id)
        assert (ev.tenant_id, ev.user_id, ev.kind) == (world.contoso.id, world.ada.id, "enqueued")
        if world.ops.is_postgres:
            with world.ops.engine.connect() as c:
                listeners = c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' "
                                           "AND datname = current_database()")).scalar()
            assert listeners == 1
    finally:
        other.close()
    assert w.alive  # still used by world.ops
    world.ops.close()
    assert not w.alive


def test_watcher_sees_progress_and_completion(db_url, world):
    w = world.ops.watcher(); assert w.ready.wait(10)
    got = []; w.subscribe(got.append)
    runs = world.ops.runs
    r = runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    runs.advance(r, processed=1)
    runs.complete(r)
    wait_until(lambda: any(e.run_id == r.id and e.kind == "completed" for e in got))


def test_postgres_watcher_reconnects_after_losing_the_database(pg_url, db_url, world):
    if not world.ops.is_postgres: pytest.skip("LISTEN is PostgreSQL's")
    w = world.ops.watcher(); assert w.ready.wait(10)
    got = []; w.subscribe(got.append)
    with world.ops.engine.begin() as c:
        c.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' "
                       "AND datname = current_database()"))
    wait_until(lambda: any(e.kind == "resync" for e in got), timeout=20)
    assert w.reconnects >= 1
    r = world.ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    wait_until(lambda: any(e.run_id == r.id for e in got), timeout=20)


def test_run_event_payload_roundtrip():
    e = RunEvent(1, 2, None, "completed")
    assert RunEvent.from_json(e.to_json()) == e
    assert RunEvent.from_json(b"\xff") is None and RunEvent.from_json("{}") is None
