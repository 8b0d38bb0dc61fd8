"""Issue 18 in a real browser, on SQLite and PostgreSQL: cancel a running run from its page (asked first, cooperative:
the worker's next write stops it), retry a failed run through its hook (the chain on both pages), pick rows or all
matching runs of the list and cancel them in one bulk run, and download the filtered list as CSV."""
from __future__ import annotations

import csv, io, time
from datetime import timedelta
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from opsux.rules.status import ACTIVE_STATUSES
from opsux.store.service import RunCancelled
from opsux.store.tables import notifications, operation_runs as runs


@contextmanager
def persona(server):
    """The server's database, the demo persona and its first tenant. Runs `running` started that are still active
    at the end (the test failed half-way) are failed: left running, they kept the persona busy for every later
    test of the server (test_dashboard's `quiet_page` waits for none to be active)."""
    ops, started = server.ops(), len(_STARTED)
    try:
        who = ops.directory.get_user(server.info["persona_email"])
        yield ops, who, ops.viewer(who).tenants()[0]
    finally:
        for rid in _STARTED[started:]:
            if ops.runs.get(rid).status in ACTIVE_STATUSES: ops.runs.fail(rid, "left active by a failed test")
        del _STARTED[started:]
        ops.close()


_STARTED: list[int] = []   # ids of the runs `running` started in the current `persona` block


def running(ops, tenant, user, type_="restore.execute", total=10):
    "A run this test process works on, as a worker would (started before the demo worker can take it)."
    run = ops.runs.start(ops.runs.enqueue(tenant, type_, user=user, context={"source": "actions test"}))
    _STARTED.append(run.id)
    ops.runs.set_total(run, total); ops.runs.advance(run, processed=1, succeeded=1)
    return run


def terminal_notes(ops, run_id) -> int:
    with ops.reader.connect() as con:
        return con.execute(select(func.count()).select_from(notifications).where(notifications.c.run_id == run_id)
                           .where(notifications.c.type == "operation_run.terminal")).scalar()


def wait_for(value, why: str, timeout: float = 30.0):
    "The first truthy `value()` within `timeout` seconds."
    deadline = time.monotonic() + timeout
    while not (got := value()):
        assert time.monotonic() < deadline, why
        time.sleep(0.1)
    return got


def retry_of(ops, run_id):
    "The run that retries `run_id`, or None."
    with ops.reader.connect() as con:
        rid = con.execute(select(runs.c.id).where(runs.c.retry_of == run_id)).scalar()
    return ops.runs.get(rid) if rid is not None else None


def worker_step(ops, run_id):
    "The worker's next write: it sees the cancel request and stops (`check` raises, `track` records the cancel)."
    with pytest.raises(RunCancelled), ops.runs.track(run_id) as r:
        r.advance(processed=1, succeeded=1)
        r.check()


def test_cancel_a_running_run_from_its_page(page, server):
    with persona(server) as (ops, who, tenant):
        run = running(ops, tenant, who)
        page.goto(f"{server.base}/operations/run?id={run.id}")
        detail = page.locator(".ox-detail")
        expect(detail).to_contain_text(f"#{run.id}")
        page.locator(".ox-cancel button").click()
        confirm = page.locator(".ox-confirm")
        expect(confirm).to_contain_text(f"Cancel run #{run.id}?")
        assert ops.runs.get(run.id).cancel_requested_at is None          # nothing happens before Yes
        page.locator(".ox-confirm-yes button").click()
        expect(page.locator(".ox-toast", has_text=f"Cancel requested for run #{run.id}")).to_be_visible()
        expect(detail).to_contain_text("Cancelling…")
        expect(page.locator(".ox-cancel button")).to_be_hidden()          # asked once is enough
        worker_step(ops, run.id)
        expect(detail.locator(".ox-badge").first).to_have_text("Cancelled", timeout=20_000)
        final = ops.runs.get(run.id)
        assert (final.status, final.outcome) == ("completed", "cancelled") and terminal_notes(ops, run.id) == 1


def test_a_worker_that_ignores_the_cancel_is_cancelled_by_the_reaper(page, server):
    with persona(server) as (ops, who, tenant):
        run = running(ops, tenant, who)                 # this "worker" never looks at its cancel request
        page.goto(f"{server.base}/operations/run?id={run.id}")
        page.locator(".ox-cancel button").click()
        page.locator(".ox-confirm-yes button").click()
        detail = page.locator(".ox-detail")
        expect(detail).to_contain_text("Cancelling…")
        ops.runs.advance(run, processed=1, succeeded=1)  # it goes on writing
        reaped = ops.runs.reap(cancel_grace=timedelta(0))
        assert run.id in {r.id for r in reaped}
        expect(detail.locator(".ox-badge").first).to_have_text("Cancelled", timeout=20_000)
        expect(detail.locator(".ox-failure")).to_contain_text("did not stop")
        assert ops.runs.get(run.id).outcome == "cancelled" and terminal_notes(ops, run.id) == 1


def test_no_means_no(page, server):
    with persona(server) as (ops, who, tenant):
        run = running(ops, tenant, who)
        try:
            page.goto(f"{server.base}/operations/run?id={run.id}")
            page.locator(".ox-cancel button").click()
            page.locator(".ox-confirm-no button").click()
            expect(page.locator(".ox-confirm")).to_be_hidden()
            page.wait_for_timeout(500)
            assert ops.runs.get(run.id).cancel_requested_at is None
        finally:
            ops.runs.complete(run)


def test_retry_a_failed_run_shows_the_chain(page, server):
    with persona(server) as (ops, who, tenant):
        failed = ops.runs.fail(running(ops, tenant, who, "policy.sync"), "Graph said no", code="graph.403")
        page.goto(f"{server.base}/operations/run?id={failed.id}")
        expect(page.locator(".ox-cancel button")).to_be_hidden()
        page.locator(".ox-retry button").click()
        expect(page.locator(".ox-confirm")).to_contain_text(f"Retry run #{failed.id}?")
        page.locator(".ox-confirm-yes button").click()
        new = wait_for(lambda: retry_of(ops, failed.id), "no retry run was made")
        assert (new.type, new.tenant_id, new.context) == (failed.type, failed.tenant_id, failed.context)
        expect(page.locator(".ox-toast", has_text="queued").last).to_be_visible()
        chain = page.locator(".ox-detail .ox-chain")
        expect(chain).to_contain_text(f"#{failed.id}")
        expect(chain).to_contain_text(f"#{new.id}")
        expect(page.locator(".ox-retry button")).to_be_hidden()          # retried once: the chain goes on from the new run
        page.goto(f"{server.base}/operations/run?id={new.id}")
        expect(page.locator(".ox-detail .ox-chain a.ox-current")).to_have_text(f"#{new.id}")


def server_frames(page) -> list[str]:
    "The text of every websocket message the page receives from now on."
    frames = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(
        f if isinstance(f, str) else f.decode("utf-8", "replace"))))
    return frames


def test_pick_rows_and_cancel_them_in_one_bulk_run(page, server):
    frames = server_frames(page)
    with persona(server) as (ops, who, tenant):
        mine = [running(ops, tenant, who, "inventory.sync") for _ in range(3)]
        page.goto(f"{server.base}/operations?status=running")
        for r in mine:
            page.locator(f'.ox-table tr[data-run-id="{r.id}"] input.ox-pick').check()
        expect(page.locator(".ox-selection")).to_have_text("3 runs selected")
        # the server keeps the pick as the browser sent it: sent back, an older pick unticked a box ticked since
        assert not [f for f in frames if '"attr":"selected"' in f], "the server sent the pick back"
        page.locator("button.ox-bulk-cancel").click()
        expect(page.locator(".ox-confirm")).to_contain_text("Cancel 3 runs?")
        page.locator("button.ox-confirm-yes").click()
        expect(page.locator(".ox-selection")).to_have_text("No runs selected")
        wait_for(lambda: all(ops.runs.get(r.id).cancel_requested_at for r in mine),
                 "the bulk cancel did not reach every picked run")
        for r in mine: worker_step(ops, r.id)
        assert all(ops.runs.get(r.id).outcome == "cancelled" and terminal_notes(ops, r.id) == 1 for r in mine)


def test_download_the_filtered_list_as_csv(page, server):
    with persona(server) as (ops, who, tenant):
        page.goto(f"{server.base}/operations?status=failed")
        expect(page.locator(".ox-table tbody tr").first).to_be_visible()
        link = page.locator(".ox-export a.ox-export-csv")
        assert "status=failed" in link.get_attribute("href")
        with page.expect_download() as dl:
            link.click()
        rows = list(csv.DictReader(io.StringIO(open(dl.value.path(), encoding="utf-8").read())))
        expected = ops.viewer(who).runs(status="failed", limit=100_000)
        assert len(rows) == len(expected.items) > 0
        assert {int(r["id"]) for r in rows} == {r.id for r in expected.items}


OPERATOR, VIEWER = "olga@ops.test", "vic@ops.test"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def quiet(request, tmp_path_factory):
    """`opsux serve --as` for an operator and for a viewer of one tenant, over a fresh database and no worker at
    all: a queued run stays queued until someone acts on it."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from browser_support import _postgres_url, _sqlite_url
    from security_support import Served
    from opsux.store.ops import connect
    tmp = tmp_path_factory.mktemp(f"actions-{request.param}")
    url = _sqlite_url(tmp) if request.param == "sqlite" else _postgres_url()
    ops = connect(url)
    try:
        d = ops.directory
        acme = d.add_tenant("Acme")
        d.add_user("Olga Operator", email=OPERATOR, tenants=[acme])
        vic = d.add_user("Vic Viewer", email=VIEWER, tenants=[acme])
        d.set_role(vic, acme, "viewer")
    finally:
        ops.close()
    servers = {who: Served(tmp, url, "--as", who, name=who.split("@")[0]) for who in (OPERATOR, VIEWER)}
    for s in servers.values(): s.db_url = url
    yield servers
    for s in servers.values(): s.stop()


def test_cancel_a_queued_run_ends_it_at_once(page, quiet):
    srv = quiet[OPERATOR]
    ops = srv_ops(srv)
    try:
        olga = ops.directory.get_user(OPERATOR)
        run = ops.runs.enqueue(ops.viewer(olga).tenants()[0], "inventory.sync", user=olga)
        page.goto(f"{srv.base}/operations/run?id={run.id}")
        detail = page.locator(".ox-detail")
        expect(detail.locator(".ox-badge").first).to_have_text("Queued")
        page.locator(".ox-cancel button").click()
        page.locator(".ox-confirm-yes button").click()
        expect(page.locator(".ox-toast", has_text=f"Run #{run.id} was cancelled.")).to_be_visible()
        expect(detail.locator(".ox-badge").first).to_have_text("Cancelled")
        expect(page.locator(".ox-cancel button")).to_be_hidden()
        final = ops.runs.get(run.id)
        assert (final.status, final.outcome, final.started_at) == ("completed", "cancelled", None)
        assert terminal_notes(ops, run.id) == 1
    finally:
        ops.close()


def test_a_viewer_sees_no_actions(page, quiet):
    srv = quiet[VIEWER]
    ops = srv_ops(srv)
    try:
        olga = ops.directory.get_user(OPERATOR)
        run = ops.runs.enqueue(ops.viewer(olga).tenants()[0], "policy.sync", user=olga)
        page.goto(f"{srv.base}/operations/run?id={run.id}")
        expect(page.locator(".ox-detail")).to_contain_text(f"#{run.id}")           # visible to the viewer
        expect(page.locator(".ox-cancel button")).to_be_hidden()
        page.goto(f"{srv.base}/operations")
        expect(page.locator(f'.ox-table tr[data-run-id="{run.id}"]')).to_be_visible()
        expect(page.locator("input.ox-pick")).to_have_count(0)
        expect(page.locator("button.ox-bulk-cancel")).to_have_count(0)
        assert ops.runs.get(run.id).status == "queued"
    finally:
        ops.runs.cancel(run)
        ops.close()


def srv_ops(srv):
    from opsux.store.ops import connect
    return connect(srv.db_url)


def test_cancel_all_1000_matching_runs(page, quiet):
    "Select all matching (1,000 runs, 40 pages), one question, one bulk run: every run cancelled, one notification each."
    srv = quiet[OPERATOR]
    ops = srv_ops(srv)
    try:
        tenant = ops.viewer(ops.directory.get_user(OPERATOR)).tenants()[0]
        bulk = ops.directory.add_user(f"Bulk Tester {time.monotonic_ns()}", tenants=[tenant])
        ids = [ops.runs.enqueue(tenant, "backup_set.add_policies", user=bulk, context={"i": i}).id for i in range(1000)]
        page.goto(f"{srv.base}/operations?initiator={bulk.name.replace(' ', '+')}")
        expect(page.locator(".ox-table tbody tr")).to_have_count(25)
        page.locator("button.ox-pick-all").click()
        expect(page.locator(".ox-selection")).to_have_text("All 1,000 matching runs selected")
        page.locator("button.ox-bulk-cancel").click()
        expect(page.locator(".ox-confirm")).to_contain_text("Cancel all 1,000 runs?")
        page.locator("button.ox-confirm-yes").click()
        def cancelled():
            with ops.reader.connect() as con:
                return con.execute(select(func.count()).select_from(runs).where(runs.c.id.in_(ids))
                                   .where(runs.c.outcome == "cancelled")).scalar()
        wait_for(lambda: cancelled() == 1000, "not every matching run was cancelled", timeout=120)
        with ops.reader.connect() as con:
            notes = con.execute(select(func.count()).select_from(notifications).where(notifications.c.run_id.in_(ids))
                                .where(notifications.c.type == "operation_run.terminal")).scalar()
        assert notes == 1000
        expect(page.locator(".ox-table tbody tr .ox-badge", has_text="Cancelled")).to_have_count(25, timeout=20_000)
    finally:
        ops.close()
