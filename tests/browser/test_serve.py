"""`opsux serve` (not the demo): password sign-in with `--auth basic`, and a read-only dashboard."""
from __future__ import annotations

import os, re, subprocess, sys

import pytest
from playwright.sync_api import expect

from browser_support import free_port, wait_http

SECRET = "x" * 48


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    "`opsux serve --auth basic --read-only` over a small SQLite database with two tenants."
    from opsux.store.ops import connect
    tmp = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{tmp}/serve.sqlite"
    ops = connect(url)
    contoso, fabrikam = ops.directory.add_tenant("Contoso"), ops.directory.add_tenant("Fabrikam")
    ada = ops.directory.add_user("Ada Lovelace", email="ada@contoso.test", tenants=[contoso], password="correct horse battery")
    eve = ops.directory.add_user("Eve", email="eve@fabrikam.test", tenants=[fabrikam])
    mine = ops.runs.enqueue(contoso, "inventory.sync", user=ada)
    ops.runs.start(mine); ops.runs.set_total(mine, 1); ops.runs.advance(mine, processed=1, succeeded=1)
    ops.runs.complete(mine)
    theirs = ops.runs.enqueue(fabrikam, "policy.sync", user=eve)
    ops.close()
    port = free_port()
    env = dict(os.environ, OPSUX_COOKIE_SECRET=SECRET, OPSUX_HOME=str(tmp / "home"))
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "opsux.cli", "serve", "--db", url, "--port", str(port),
                             "--auth", "basic", "--read-only"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/login", proc)
        yield dict(base=base, mine=mine.id, theirs=theirs.id)
    finally:
        proc.terminate(); proc.wait(10); log.close()


def test_sign_in_then_dashboard_scoped_to_the_user(page, served):
    base = served["base"]
    page.goto(base + "/operations")
    page.wait_for_url(re.compile(r"/login"))
    page.fill("#username", "ada@contoso.test"); page.fill("#password", "correct horse battery")
    page.click("#login-submit")
    page.goto(base + "/operations")
    expect(page.locator(".ox-who")).to_contain_text("Ada Lovelace")
    rows = page.locator(".ox-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", str(served["mine"]))
    page.goto(base + f"/operations/run?id={served['theirs']}")
    expect(page.locator(".ox-not-found")).to_have_text("Run not found")


def test_read_only_dashboard_offers_no_writes(page, served):
    base = served["base"]
    page.goto(base + "/login")
    page.fill("#username", "ada@contoso.test"); page.fill("#password", "correct horse battery")
    page.click("#login-submit")
    page.goto(base + "/operations")
    expect(page.locator(".ox-table tbody tr")).to_have_count(1)
    assert page.locator("a.ox-nav", has_text="Actions").count() == 0
    page.locator(".ox-bell button").click()
    expect(page.locator(".ox-inbox .ox-note").first).to_be_visible()   # the run's terminal notification
    assert page.locator(".ox-mark-read").count() == 0
    assert page.request.get(base + "/actions").status == 404
