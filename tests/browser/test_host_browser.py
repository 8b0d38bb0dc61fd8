"""`opsux serve --read-only --db URL` on a Laravel-shaped PostgreSQL, as its SELECT-only role, with nothing but the
URL: Ada's tab lists her tenant's runs, its widget follows a run the host writes with plain SQL (timestamp(0)
columns, two writes in one second), the inbox shows Laravel's notifications, and Dee (no tenant) is told so."""
from __future__ import annotations

import os, subprocess, sys, time
from datetime import datetime, timezone

import psycopg
import pytest
from playwright.sync_api import expect

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from browser_support import free_port, wait_ready  # noqa: E402
from hostdb_support import add_notification, add_world, create_laravel, dsn, naive, read_only_url  # noqa: E402
import pgserver  # noqa: E402

WITHIN_MS = 3000


def serve(ro, tmp_path, email, *extra):
    port = free_port()
    env = dict(os.environ, OPSUX_HOME=str(tmp_path / "home"), PYTHONUNBUFFERED="1")
    log = open(tmp_path / f"server-{email}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "opsux.cli", "serve", "--read-only", "--db", ro, "--port", str(port),
                             "--auth", "none", "--as", email, *extra], env=env, stdout=log, stderr=subprocess.STDOUT)
    wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc):
    proc.terminate()
    try: proc.wait(10)
    except subprocess.TimeoutExpired: proc.kill(); proc.wait(10)


@pytest.fixture
def host(tmp_path):
    try: admin = pgserver.ensure_postgres()
    except pgserver.PostgresUnavailable as e: pytest.skip(f"PostgreSQL unavailable: {e}")
    url = create_laravel(admin)
    yield url, read_only_url(url), add_world(url)
    pgserver.drop_database(admin, url)


def host_sql(url, sql, *args):
    with psycopg.connect(dsn(url), autocommit=True) as con: return con.execute(sql, args).fetchone()


def test_widget_follows_a_run_the_host_writes_with_plain_sql(page, host, tmp_path):
    url, ro, w = host
    add_notification(url, w["Ada"], "Inventory sync finished", body="5 items", url_="/admin/runs/1")
    proc, base = serve(ro, tmp_path, "ada@contoso.test")
    try:
        page.goto(base + "/operations")
        expect(page.locator(".ox-table tbody tr")).to_have_count(4)
        expect(page.locator(".ox-bell")).to_contain_text("Inbox (1)")
        now = naive(datetime.now(timezone.utc))
        rid = host_sql(url, "insert into operation_runs (tenant_id, user_id, initiator_name, type, status, outcome, "
                       "summary_counts, created_at, updated_at) values (%s, %s, 'Ada', 'policy.sync', 'running', "
                       "'pending', '{\"total\": 10, \"processed\": 1}', %s, %s) returning id",
                       w["Contoso"], w["Ada"], now, now)[0]
        row = page.locator(f'.ox-progress-widget .ox-row[data-run-id="{rid}"]')
        expect(row).to_be_visible(timeout=WITHIN_MS)
        expect(row).to_contain_text("1 of 10", timeout=WITHIN_MS)
        at = naive(datetime.now(timezone.utc))      # two writes within one second: the same timestamp(0) value
        for n in (4, 7):
            host_sql(url, "update operation_runs set summary_counts = %s, updated_at = %s where id = %s returning id",
                     f'{{"total": 10, "processed": {n}}}', at, rid)
        expect(row).to_contain_text("7 of 10", timeout=WITHIN_MS)
        page.locator(".ox-bell button, button.ox-bell, .ox-bell").first.click()
        expect(page.locator(".ox-inbox")).to_contain_text("Inventory sync finished")
        assert not page.errors, page.errors
    finally: stop(proc)


def test_a_user_without_tenants_is_told_so_and_no_inbox_without_a_mapping(page, host, tmp_path):
    _, ro, _ = host
    proc, base = serve(ro, tmp_path, "dee@nowhere.test")
    try:
        page.goto(base + "/operations")
        expect(page.get_by_text("Your account belongs to no tenant")).to_be_visible()
    finally: stop(proc)
    cfg = tmp_path / "opsux.toml"
    cfg.write_text('preset = "laravel"\nnotifications = "none"\n')
    proc, base = serve(ro, tmp_path, "ada@contoso.test", "--config", str(cfg))
    try:
        page.goto(base + "/operations")
        expect(page.locator(".ox-table tbody tr")).to_have_count(4)
        expect(page.locator(".ox-bell")).to_be_hidden()
    finally: stop(proc)
