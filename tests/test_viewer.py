"""Viewer scoping, filters and keyset paging on SQLite and PostgreSQL."""
from datetime import timedelta

import pytest
from sqlalchemy import insert, update

from opsux.store.models import OperationRun, utcnow
from opsux.rules.status import UxStatus, normalize


def make_runs(w, n=12):
    runs = w.ops.runs
    made = []
    for i in range(n):
        tenant, user = (w.contoso, w.ada) if i % 3 else (w.fabrikam, w.bob)
        made.append(runs.enqueue(tenant, "inventory.sync" if i % 2 else "policy.sync", user=user))
    return made


def test_scoping(world):
    made = make_runs(world)
    va, vb, vc = (world.ops.viewer(u) for u in (world.ada, world.bob, world.cy))
    contoso = [r.id for r in made if r.tenant_id == world.contoso.id]
    fabrikam = [r.id for r in made if r.tenant_id == world.fabrikam.id]
    assert [r.id for r in va.runs(limit=100)] == sorted(contoso, reverse=True)
    assert [r.id for r in vb.runs(limit=100)] == sorted(fabrikam, reverse=True)
    assert len(vc.runs(limit=100)) == len(made)
    assert va.tenant_ids == (world.contoso.id,) and [t.name for t in vc.tenants()] == ["Contoso", "Fabrikam"]
    # another tenant's run reads as missing, however it is asked for
    assert va.run(fabrikam[0]) is None and va.run(10_000) is None and va.run("nonsense") is None
    assert va.runs(run_id=fabrikam[0]).items == []
    assert va.runs(tenant=world.fabrikam).items == []
    assert vb.run(contoso[0]) is None and vb.run(fabrikam[0]).id == fabrikam[0]
    # narrowing a viewer to one tenant
    vcc = world.ops.viewer(world.cy, tenant=world.fabrikam)
    assert {r.tenant_id for r in vcc.runs(limit=100)} == {world.fabrikam.id}
    assert world.ops.viewer(world.ada, tenant=world.fabrikam).runs().items == []  # not a member: sees nothing
    # a user without memberships sees nothing
    loner = world.ops.directory.add_user("Loner")
    assert world.ops.viewer(loner).runs().items == [] and world.ops.viewer(loner.id).active_runs() == []


def test_keyset_paging(world):
    for _ in range(23): world.ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    v = world.ops.viewer(world.ada)
    seen, after = [], None
    while True:
        page = v.runs(limit=5, after=after)
        seen += [r.id for r in page]
        if page.next_after is None: break
        assert page.next_after == page.items[-1].id
        after = page.next_after
    assert len(seen) == 23 and seen == sorted(seen, reverse=True)
    assert v.runs(limit=23).next_after is None


def test_filters(world):
    runs, v = world.ops.runs, world.ops.viewer(world.cy)
    a = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    b = runs.start(runs.enqueue(world.contoso, "policy.sync", user=world.cy))
    c = runs.complete(runs.advance(runs.start(runs.enqueue(world.fabrikam, "policy.sync", user=world.bob)), processed=2, succeeded=1, failed=1))
    d = runs.fail(runs.enqueue(world.fabrikam, "restore.execute", user=world.bob), "device offline")
    e = runs.cancel(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    ids = lambda **kw: [r.id for r in v.runs(**kw)]
    assert ids(type="policy.sync") == [c.id, b.id]
    assert ids(type=["policy.sync", "restore.execute"]) == [d.id, c.id, b.id]
    assert ids(status="queued") == [a.id] and ids(status=UxStatus.running) == [b.id]
    assert ids(status="partial") == [c.id] and ids(status="failed") == [d.id] and ids(status="cancelled") == [e.id]
    assert ids(status=["failed", "partial"]) == [d.id, c.id]
    assert ids(initiator="Bob") == [d.id, c.id]
    assert ids(tenant=world.fabrikam.id) == [d.id, c.id]
    assert ids(run_id=b.id) == [b.id]
    old = utcnow() - timedelta(days=3)
    with world.ops.engine.begin() as con:
        con.execute(update(OperationRun).where(OperationRun.id == a.id).values(created_at=old))
    assert ids(until=utcnow() - timedelta(days=1)) == [a.id]
    assert a.id not in ids(since=utcnow() - timedelta(days=1))


def test_status_filter_matches_normalize_on_legacy_values(world):
    words = [None, "", "queued", " Running", "COMPLETED", "failed", "cancelled", "done", "succeeded",
             "partially_succeeded", "pending", "garbage"]
    rows = [dict(tenant_id=world.contoso.id, type="inventory.sync", status=s, outcome=o, summary_counts={},
                 failure_summary=[], context={}, created_at=utcnow(), updated_at=utcnow())
            for s in words for o in words if s is not None and o is not None]  # seed columns are NOT NULL here
    with world.ops.engine.begin() as con:
        con.execute(insert(OperationRun), rows)
    v = world.ops.viewer(world.ada)
    everything = v.runs(limit=500).items
    assert len(everything) == len(rows)
    for ux in UxStatus:
        got = {r.id for r in v.runs(status=ux, limit=500)}
        assert got == {r.id for r in everything if normalize(r.status, r.outcome) == ux}, ux


def test_active_runs_are_the_users(world):
    runs = world.ops.runs
    mine = [runs.enqueue(world.contoso, "inventory.sync", user=world.ada) for _ in range(2)]
    runs.start(mine[1])
    runs.complete(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    runs.enqueue(world.contoso, "inventory.sync", user=world.cy)
    assert [r.id for r in world.ops.viewer(world.ada).active_runs()] == [r.id for r in mine]
    # removed from the tenant: the widget forgets the runs too
    world.ops.directory.remove_membership(world.ada, world.contoso)
    assert world.ops.viewer(world.ada).active_runs() == []


def test_notifications(world):
    runs = world.ops.runs
    done = [runs.complete(runs.enqueue(world.contoso, "inventory.sync", user=world.ada)) for _ in range(3)]
    runs.complete(runs.enqueue(world.fabrikam, "inventory.sync", user=world.bob))
    va, vb = world.ops.viewer(world.ada), world.ops.viewer(world.bob)
    inbox = va.notifications()
    assert [n.run_id for n in inbox] == [r.id for r in reversed(done)]
    assert inbox[0].data["title"] and inbox[0].data["url"].endswith(f"?id={done[-1].id}")
    assert va.unread_count() == 3 and vb.unread_count() == 1
    assert vb.mark_read(inbox[0].id) is False  # not Bob's
    assert va.mark_read(inbox[0].id) is True and va.mark_read(inbox[0].id) is False
    assert va.unread_count() == 2 and len(va.notifications(unread_only=True)) == 2
    assert [n.id for n in va.notifications(limit=1, after=inbox[0].id)] == [inbox[1].id]
    assert va.mark_all_read() == 2 and va.unread_count() == 0
    assert vb.unread_count() == 1


def test_initiators_and_types(world):
    make_runs(world)
    v = world.ops.viewer(world.ada)
    assert v.initiators() == ["Ada"]
    assert world.ops.viewer(world.cy).initiators() == ["Ada", "Bob"]
    assert v.types() == ["inventory.sync", "policy.sync"]


def test_status_predicate_is_built_once_per_statuses_and_columns(world):
    "The filtered list page reuses one predicate per set of statuses, for each mapping's columns."
    from opsux.store.viewer import status_predicate
    c = world.ops.schema.runs.c
    p = status_predicate(["failed", "partial"], c.status, c.outcome)
    assert status_predicate(("partial", UxStatus.failed), c.status, c.outcome) is p
    assert status_predicate("failed", c.status, c.outcome) is not p
    assert status_predicate(["failed", "partial"]) is not p        # the model's columns
    made = make_runs(world, 6)
    world.ops.runs.fail(made[1], "boom")
    v = world.ops.viewer(world.cy)
    for _ in range(2):                              # the second call reuses the predicate
        assert [r.id for r in v.runs(status="failed", limit=100)] == [made[1].id]


def test_first_page_reuses_its_statement_and_still_sees_new_runs(world):
    "The unfiltered page's statement is built once per limit; its rows are read afresh every call."
    made = make_runs(world, 9)
    v = world.ops.viewer(world.ada)
    assert v._first_page(5) is v._first_page(5) and v._first_page(5) is not v._first_page(6)
    page = v.runs(limit=5)
    mine = sorted((r.id for r in made if r.tenant_id == world.contoso.id), reverse=True)
    assert [r.id for r in page] == mine[:5]
    new = world.ops.runs.enqueue(world.contoso, "policy.sync", user=world.ada)
    again = v.runs(limit=5)
    assert again.items[0].id == new.id
    assert [r.id for r in again] == [r.id for r in v.runs(limit=5, type=[])]
    everything = [r.id for r in v.runs(limit=100)]
    assert [r.id for r in v.runs(limit=5, after=again.next_after)] == everything[5:10]


def test_page_statements_keep_one_plan_on_postgresql(world):
    """A page's LIMIT is written into its SQL (`written_limit`): as a parameter, PostgreSQL planned the prepared
    first page anew on each of its executions. Unfiltered pages and keyset pages (the API's, `after` a parameter
    of one statement) keep a generic plan after psycopg's five custom ones; and the API's cached statements still
    read each user's own tenants."""
    from opsux.ui.api import _json_page_stmt
    if not world.ops.is_postgres: pytest.skip("plans of prepared statements are PostgreSQL's")
    make_runs(world, 30)
    ada, bob = world.ops.viewer(world.ada), world.ops.viewer(world.bob)
    cursor = ada.runs(limit=3).next_after
    with world.ops.reader.connect() as con:
        con.exec_driver_sql("DEALLOCATE ALL")
        for _ in range(20):                          # psycopg prepares at the 6th, PostgreSQL plans 5 custom
            con.execute(ada.runs_stmt(limit=3)).all()
            con.execute(*_json_page_stmt(ada, 3, {})[:2]).all()
            con.execute(*_json_page_stmt(ada, 3, {"after": cursor})[:2]).all()
        plans = con.exec_driver_sql("SELECT generic_plans, custom_plans FROM pg_prepared_statements "
                                    "WHERE statement LIKE '%%LIMIT 4%%'").all()
        assert len(plans) == 3 and all(g >= 5 and c == 5 for g, c in plans), plans
        for v in (ada, bob):
            ids = [row[0] for row in con.execute(*_json_page_stmt(v, 3, {})[:2])]
            assert ids == [r.id for r in v.runs(limit=4)] and set(ids) <= {r.id for r in v.runs(limit=100)}
