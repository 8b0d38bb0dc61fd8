"""An open tab keeps updating after one UPDATE of 100,000 runs (issue 14 item 3): `opsux serve --read-only` (the
probe watcher, on SQLite and on PostgreSQL), a run another process enqueues after the bulk change shows up in the
tab's progress widget within 2 s, and so does its progress."""
from __future__ import annotations

import os, subprocess, sys

import pytest
from playwright.sync_api import expect
from sqlalchemy import text

from browser_support import _postgres_url, _sqlite_url, free_port, wait_ready

ROWS = 100_000
WITHIN_MS = 2000


def fill(ops, tenant_id: int, n: int) -> None:
    "Insert `n` finished runs in one statement, one a second until now."
    if ops.is_postgres:
        sql = ("INSERT INTO operation_runs (tenant_id, type, status, outcome, summary_counts, failure_summary, "
               "context, created_at, updated_at) SELECT :t, 'inventory.sync', 'completed', 'succeeded', '{}', '[]', "
               "'{}', now() - g * interval '1 second', now() - g * interval '1 second' FROM generate_series(1, :n) g")
    else:
        sql = ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
               "INSERT INTO operation_runs (tenant_id, type, status, outcome, summary_counts, failure_summary, "
               "context, created_at, updated_at, attempt) SELECT :t, 'inventory.sync', 'completed', 'succeeded', "
               "'{}', '[]', '{}', datetime('now', -i || ' seconds'), datetime('now', -i || ' seconds'), 1 FROM s")
    with ops.engine.begin() as c: c.execute(text(sql), {"t": tenant_id, "n": n})


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request, tmp_path):
    "`opsux serve --read-only --auth none --as ada@…` over a database with 100,000 runs; the writer's handle."
    from opsux.store.ops import connect
    url = _sqlite_url(tmp_path) if request.param == "sqlite" else _postgres_url()
    ops = connect(url)
    contoso = ops.directory.add_tenant("Contoso")
    ada = ops.directory.add_user("Ada Lovelace", email="ada@contoso.test", tenants=[contoso])
    fill(ops, contoso.id, ROWS)
    port = free_port()
    env = dict(os.environ, OPSUX_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "opsux.cli", "serve", "--db", url, "--port", str(port),
                             "--auth", "none", "--as", "ada@contoso.test", "--read-only"],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
        yield dict(base=f"http://127.0.0.1:{port}", ops=ops, tenant=contoso, ada=ada)
    finally:
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)
        log.close(); ops.close()


def test_an_open_tab_updates_within_2s_after_an_update_of_100000_runs(page, served):
    ops, tenant, ada = served["ops"], served["tenant"], served["ada"]
    page.goto(served["base"] + "/operations")
    expect(page.locator(".ox-table tbody tr").first).to_be_visible()
    before = ops.runs.enqueue(tenant, "inventory.sync", user=ada, identity="before")
    expect(page.locator(f'.ox-progress-widget .ox-row[data-run-id="{before.id}"]')).to_be_visible()  # live
    with ops.engine.begin() as c:  # one statement changes every run (e.g. a data fix or a backfill)
        c.execute(text("UPDATE operation_runs SET context = '{}', updated_at = CURRENT_TIMESTAMP"))
    for step in range(3):  # then normal work: each change reaches the open tab within 2 s
        run = ops.runs.enqueue(tenant, "policy.sync", user=ada, identity=f"after-{step}")
        row = page.locator(f'.ox-progress-widget .ox-row[data-run-id="{run.id}"]')
        expect(row).to_be_visible(timeout=WITHIN_MS)
        ops.runs.start(run); ops.runs.set_total(run, 4); ops.runs.advance(run, processed=1, succeeded=1)
        expect(row).to_contain_text("1 of 4", timeout=WITHIN_MS)
