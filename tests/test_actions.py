"""Operator actions on SQLite and PostgreSQL: cancel (queued at once, running cooperatively), retry through a hook
with a chain, roles (viewer may not act), tenant scope (another tenant's run is not found)."""
import pytest
from sqlalchemy import func, select

from opsux.store.actions import Actions, NotPermitted, NotRetryable, RunNotFound, retry_hooks, register_retry
from opsux.store.service import RunCancelled
from opsux.store.tables import notifications

TYPE = "inventory.sync"


@pytest.fixture
def hook():
    "A retry hook for inventory syncs for the test's duration (the registry is process-wide)."
    def again(ops, run): return ops.runs.enqueue(run.tenant_id, run.type, user=run.user_id, context=run.context)
    register_retry(TYPE, again)
    yield again
    retry_hooks.pop(TYPE, None)


def terminal_notes(ops, run) -> int:
    with ops.reader.connect() as con:
        return con.execute(select(func.count()).select_from(notifications)
                           .where(notifications.c.run_id == run.id)
                           .where(notifications.c.type == "operation_run.terminal")).scalar()


def test_cancel_a_queued_run_ends_it_at_once_with_one_notification(world):
    ops = world.ops
    run = ops.runs.enqueue(world.contoso, TYPE, user=world.ada)
    acts = Actions(ops, world.ada)
    assert acts.can_cancel(run) and acts.may_operate(run.id)
    done = acts.cancel(run.id)
    assert (done.status, done.outcome) == ("completed", "cancelled") and terminal_notes(ops, run) == 1
    assert not acts.can_cancel(ops.runs.get(run.id))
    assert acts.cancel(run.id).outcome == "cancelled" and terminal_notes(ops, run) == 1   # again: unchanged


def test_cancel_a_running_run_asks_the_worker_which_stops(world):
    ops = world.ops
    run = ops.runs.start(ops.runs.enqueue(world.contoso, TYPE, user=world.ada))
    asked = Actions(ops, world.ada).cancel(run)
    assert asked.status == "running" and asked.cancel_requested_at is not None
    assert not Actions(ops, world.ada).can_cancel(asked)                  # requested once is enough
    with pytest.raises(RunCancelled), ops.runs.track(run) as r:
        assert r.cancelled()
        r.check()                                                          # the worker's way to stop
        raise AssertionError("check() did not stop the worker")
    final = ops.runs.get(run.id)
    assert final.outcome == "cancelled" and terminal_notes(ops, run) == 1


def test_a_viewer_may_look_but_not_act(world):
    ops = world.ops
    ops.directory.set_role(world.cy, world.contoso, "viewer")
    run = ops.runs.enqueue(world.contoso, TYPE, user=world.ada)
    cy = Actions(ops, world.cy)
    assert cy.viewer.run(run.id) is not None and not cy.may_operate(run) and not cy.can_cancel(run)
    with pytest.raises(NotPermitted): cy.cancel(run.id)
    assert ops.runs.get(run.id).status == "queued"
    other = ops.runs.enqueue(world.fabrikam, TYPE, user=world.bob)
    assert cy.may_operate(other)                                         # operator in Fabrikam still
    with pytest.raises(ValueError, match="operator"): ops.directory.set_role(world.cy, world.contoso, "admin")


def test_another_tenants_run_is_not_found(world):
    ops = world.ops
    theirs = ops.runs.enqueue(world.fabrikam, TYPE, user=world.bob)
    ada = Actions(ops, world.ada)
    assert not ada.may_operate(theirs.id)
    for act in (ada.cancel, ada.retry, ada.chain):
        with pytest.raises(RunNotFound): act(theirs.id)
    assert ops.runs.get(theirs.id).status == "queued"


def test_retry_goes_through_the_hook_links_the_runs_and_is_idempotent(world, hook):
    ops, ada = world.ops, Actions(world.ops, world.ada)
    first = ops.runs.fail(ops.runs.start(ops.runs.enqueue(world.contoso, TYPE, user=world.ada, context={"n": 1})),
                          "device offline", code="device.offline")
    assert ada.can_retry(first)
    second = ada.retry(first.id)
    assert second.id != first.id and second.retry_of == first.id and second.context == {"n": 1}
    assert ada.retry(first.id).id == second.id                            # a second click: the same retry
    third = ada.retry(ops.runs.cancel(second.id).id)
    assert [r.id for r in ada.chain(second.id)] == [first.id, second.id, third.id]
    with pytest.raises(NotRetryable, match="only failed"): ada.retry(third.id)      # still queued


def test_a_type_without_a_hook_is_not_retryable(world):
    ops, ada = world.ops, Actions(world.ops, world.ada)
    failed = ops.runs.fail(ops.runs.enqueue(world.contoso, "policy.sync", user=world.ada), "no")
    assert not ada.can_retry(failed)
    with pytest.raises(NotRetryable, match="no retry hook"): ada.retry(failed.id)
