"""The worker and admin API on SQLite and PostgreSQL: lifecycle, counts, failures, notifications, track, reap."""
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from opsux.rules.catalog import UnknownOperationType
from opsux.store.db import ReadOnlyError
from opsux.store.models import Notification, OperationRun, utcnow
from opsux.store.service import MAX_STORED_FAILURES


def notes(ops, run=None):
    with ops.engine.connect() as c:
        q = select(Notification)
        if run is not None: q = q.where(Notification.run_id == run.id)
        return c.execute(q).mappings().all()


def test_directory(world):
    d = world.ops.directory
    assert [t.name for t in d.tenants()] == ["Contoso", "Fabrikam"]
    assert [u.name for u in d.users()] == ["Ada", "Bob", "Cy"]
    assert d.get_user("ADA@contoso.test").id == world.ada.id
    assert d.get_user(world.bob.id).email == "bob@fabrikam.test"
    assert d.get_user(999) is None and d.get_user("nobody@x.test") is None
    assert d.memberships(world.cy) == sorted([world.contoso.id, world.fabrikam.id])
    assert d.add_membership(world.ada, world.contoso) is False
    assert d.add_membership(world.ada, "Fabrikam") is True
    with pytest.raises(LookupError): d.add_user("Eve", tenants=["Nowhere"])


def test_passwords_are_argon2(world):
    d = world.ops.directory
    assert world.ada.password_hash.startswith("$argon2id$") and "ada-secret-pw" not in world.ada.password_hash
    assert d.verify_password("ada@contoso.test", "ada-secret-pw").id == world.ada.id
    assert d.verify_password("ada@contoso.test", "wrong") is None
    assert d.verify_password("bob@fabrikam.test", "") is None  # Bob has no password
    assert d.verify_password("nobody@x.test", "x") is None
    d.set_password(world.bob, "bob-new-password")
    assert d.verify_password("bob@fabrikam.test", "bob-new-password").id == world.bob.id


def test_enqueue_and_dedupe(world):
    runs = world.ops.runs
    r = runs.enqueue(world.contoso, "inventory.sync", user=world.ada, context={"scope": "all"}, identity="full")
    assert (r.status, r.outcome, r.initiator_name, r.deduplicated) == ("queued", "pending", "Ada", False)
    assert r.context == {"scope": "all"} and r.summary_counts == {} and r.failure_summary == []
    assert r.created_at.tzinfo is not None
    again = runs.enqueue(world.contoso.id, "inventory.sync", user=world.ada.id, identity="full")
    assert (again.id, again.deduplicated) == (r.id, True)
    other_tenant = runs.enqueue(world.fabrikam, "inventory.sync", user=world.bob, identity="full")
    other_type = runs.enqueue(world.contoso, "policy.sync", user=world.ada, identity="full")
    no_identity = [runs.enqueue(world.contoso, "inventory.sync") for _ in range(2)]
    assert len({r.id, other_tenant.id, other_type.id, *[x.id for x in no_identity]}) == 5
    assert no_identity[0].initiator_name == "System" and no_identity[0].user_id is None
    runs.complete(r)  # once terminal, the identity is free again
    fresh = runs.enqueue(world.contoso, "inventory.sync", user=world.ada, identity="full")
    assert fresh.id != r.id and not fresh.deduplicated


def test_enqueue_refuses_unknown_types(world):
    with pytest.raises(UnknownOperationType, match="nope.never"):
        world.ops.runs.enqueue(world.contoso, "nope.never")
    with world.ops.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(OperationRun)).scalar() == 0


def test_progress_counts_and_total(world):
    runs = world.ops.runs
    r = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    s = runs.start(r)
    assert s.status == "running" and s.started_at is not None and s.heartbeat_at is not None
    runs.set_total(r, 10)
    for _ in range(3): runs.advance(r, processed=1, succeeded=1)
    got = runs.advance(r.id, processed=2, failed=2, skipped=0)
    assert got.summary_counts == {"total": 10, "processed": 5, "succeeded": 3, "failed": 2}
    assert runs.set_total(r, 12).summary_counts["total"] == 12
    with pytest.raises(ValueError): runs.advance(r, processed=-1)
    with pytest.raises(ValueError): runs.advance(r, processed=True)
    with pytest.raises(ValueError): runs.advance(r, pages=1)
    with pytest.raises(LookupError): runs.advance(10_000, processed=1)


def test_advance_survives_garbage_counts(world):
    runs = world.ops.runs
    r = runs.start(runs.enqueue(world.contoso, "inventory.sync"))
    with world.ops.engine.begin() as c:
        c.execute(update(OperationRun).where(OperationRun.id == r.id).values(summary_counts={"processed": "x", "failed": [1]}))
    got = runs.advance(r, processed=1, failed=1)
    assert got.summary_counts["processed"] == 1 and got.summary_counts["failed"] == 1


def test_terminal_runs_ignore_progress(world):
    runs = world.ops.runs
    r = runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    runs.advance(r, processed=1, succeeded=1)
    runs.cancel(r)
    after = runs.advance(r, processed=5)
    assert after.summary_counts == {"processed": 1, "succeeded": 1}
    assert (after.status, after.outcome) == ("completed", "cancelled")


def test_record_failure_sanitized_and_bounded(world):
    runs = world.ops.runs
    r = runs.start(runs.enqueue(world.contoso, "policy.bulk_archive", user=world.ada))
    got = runs.record_failure(r, "Graph said no; Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig password=hunter2",
                              code="graph.401")
    assert got.failure_summary[0]["code"] == "graph.401"
    stored = got.failure_summary[0]["message"]
    assert "hunter2" not in stored and "eyJhbGci" not in stored and "Graph said no" in stored
    for i in range(MAX_STORED_FAILURES + 20): runs.record_failure(r, f"item {i} failed")
    got = runs.get(r)
    assert len(got.failure_summary) == MAX_STORED_FAILURES
    assert got.context["failures_omitted"] == 21


@pytest.mark.parametrize("counts,expected", [
    ({"processed": 3, "succeeded": 3}, "succeeded"),
    ({"processed": 3, "succeeded": 2, "failed": 1}, "partially_succeeded"),
    ({"processed": 3, "failed": 3}, "failed"),
    ({}, "succeeded"),
])
def test_complete_derives_outcome(world, counts, expected):
    runs = world.ops.runs
    r = runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    if counts: runs.advance(r, **counts)
    done = runs.complete(r)
    assert (done.status, done.outcome) == ("completed", expected) and done.completed_at is not None


def test_terminal_once_with_one_notification(world):
    ops, runs = world.ops, world.ops.runs
    r = runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    runs.advance(r, processed=120, succeeded=118, failed=2)
    runs.record_failure(r, "Graph returned 503", code="graph.503")
    done = runs.complete(r)
    assert done.outcome == "partially_succeeded"
    assert runs.complete(r).outcome == "partially_succeeded"
    assert runs.fail(r, "late").outcome == "partially_succeeded"
    assert runs.cancel(r).outcome == "partially_succeeded"
    (n,) = notes(ops, r)
    assert n["user_id"] == world.ada.id and n["type"] == "operation_run.terminal" and n["read_at"] is None
    data = n["data"]
    assert data["run_id"] == r.id and data["url"].endswith(f"/operations/run?id={r.id}")
    assert data["status"] == "warning" and "Inventory sync" in data["title"]
    assert "Graph returned 503" in data["body"]


def test_no_notification_without_initiator(world):
    r = world.ops.runs.enqueue(world.contoso, "inventory.sync")
    world.ops.runs.complete(r)
    assert notes(world.ops, r) == []


def test_cancel_and_fail(world):
    runs = world.ops.runs
    c = runs.cancel(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    assert (c.status, c.outcome) == ("completed", "cancelled")
    f = runs.fail(runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada)),
                  "Connection to https://admin:s3cret@graph.example.com refused")
    assert (f.status, f.outcome) == ("completed", "failed")
    assert "s3cret" not in f.failure_summary[-1]["message"]
    assert notes(world.ops, f)[0]["data"]["status"] == "danger"


def test_track_completes(world):
    runs = world.ops.runs
    r = runs.enqueue(world.contoso, "policy.sync", user=world.ada)
    with runs.track(r) as h:
        assert runs.get(r).status == "running"
        h.set_total(3)
        for _ in range(3): h.advance(processed=1, succeeded=1)
        h.heartbeat()
    done = runs.get(r)
    assert (done.status, done.outcome, done.summary_counts["processed"]) == ("completed", "succeeded", 3)


def test_track_fails_on_exception_with_sanitized_message(world):
    runs = world.ops.runs
    r = runs.enqueue(world.contoso, "policy.sync", user=world.ada)
    with pytest.raises(ConnectionError, match="hunter2"):
        with runs.track(r) as h:
            h.advance(processed=1, succeeded=1)
            raise ConnectionError("db refused: password=hunter2")
    done = runs.get(r)
    assert (done.status, done.outcome) == ("completed", "failed")
    msg = done.failure_summary[-1]["message"]
    assert "ConnectionError" in msg and "hunter2" not in msg
    assert len(notes(world.ops, r)) == 1


def test_track_sees_cancellation(world):
    runs = world.ops.runs
    r = runs.enqueue(world.contoso, "policy.sync", user=world.ada)
    with runs.track(r) as h:
        runs.cancel(r)
        h.advance(processed=1)
        assert h.cancelled
    assert runs.get(r).outcome == "cancelled"


def test_reap(world):
    runs = world.ops.runs
    alive = runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    dead = runs.start(runs.enqueue(world.contoso, "policy.sync", user=world.ada))
    stuck = runs.enqueue(world.fabrikam, "policy.sync", user=world.bob)
    now = utcnow()
    with world.ops.engine.begin() as c:
        c.execute(update(OperationRun).where(OperationRun.id == dead.id).values(heartbeat_at=now - timedelta(minutes=12, seconds=5)))
        c.execute(update(OperationRun).where(OperationRun.id == stuck.id).values(created_at=now - timedelta(minutes=30)))
    reaped = runs.reap(timedelta(minutes=10))
    assert sorted(r.id for r in reaped) == sorted([dead.id, stuck.id])
    d = runs.get(dead)
    assert (d.status, d.outcome) == ("completed", "failed")
    assert d.failure_summary[-1] == {"code": "opsux.no_heartbeat", "message": "No heartbeat for 12 minutes; the worker probably stopped"}
    assert runs.get(stuck).failure_summary[-1]["code"] == "opsux.not_started"
    assert runs.get(stuck).failure_summary[-1]["message"].startswith("Not started after 30 minutes")
    assert runs.get(alive).status == "running"
    assert runs.reap(timedelta(minutes=10)) == []
    assert len(notes(world.ops, d)) == 1


def test_returned_objects_are_detached_plain_data(world):
    r = world.ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    world.ops.close()
    assert r.type == "inventory.sync" and r.tenant_id == world.contoso.id


def test_read_only_refuses_writes(db_url, world):
    ro = __import__("opsux").connect(db_url, read_only=True)
    try:
        with pytest.raises(ReadOnlyError): ro.runs.enqueue(world.contoso, "inventory.sync")
        with pytest.raises(ReadOnlyError): ro.directory.add_tenant("X")
        assert ro.viewer(world.ada).runs().items == []
    finally: ro.close()
