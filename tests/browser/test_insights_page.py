"""Issue 18, item 4 (UI): the insight page at /operations/insights in a real browser, on SQLite and PostgreSQL.

Runs with known outcomes, durations and failure codes are seeded for Olga (tenants Contoso and Fabrikam) and for
Gus (Globex, not Olga's). The charts' column data is read from the page itself (`Bokeh.documents[0]`) and compared
with what `Insights` computes in SQL; a failure-code link leads to the filtered Operations list; the tenant scope
holds (Globex's runs never count, a `tenant=` naming Globex is ignored); the filters live in the URL; no request
leaves this machine. `OPSUX_SCREENSHOTS=1` also refreshes docs/screenshots/insights.png (SQLite run)."""
from __future__ import annotations

import os, re, sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import insert

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from browser_support import _postgres_url, _sqlite_url  # noqa: E402
from security_support import Served  # noqa: E402

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
XSS_CODE = '<img src=x onerror="window.__xss=1">auth.401'
OLGA, GUS = "olga@ops.test", "gus@globex.test"


def seed(url: str) -> dict:
    "Olga's runs in Contoso and Fabrikam and Gus's in Globex, each with a known outcome, duration and code."
    from opsux.store.ops import connect
    from opsux.store.tables import operation_runs, utcnow
    ops = connect(url)
    try:
        d = ops.directory
        contoso, fabrikam, globex = d.add_tenant("Contoso"), d.add_tenant("Fabrikam"), d.add_tenant("Globex")
        d.add_user("Olga Operator", email=OLGA, tenants=[contoso, fabrikam])
        d.add_user("Gus Globex", email=GUS, tenants=[globex])
        now = utcnow().replace(microsecond=0)

        def run(tenant, type_, outcome, seconds, minutes_ago, code=None, status="completed"):
            at = now - timedelta(minutes=minutes_ago)
            done = status == "completed"
            return dict(tenant_id=tenant.id, type=type_, status=status, outcome=outcome, created_at=at, updated_at=at,
                        started_at=at if done else None, completed_at=at + timedelta(seconds=seconds) if done else None,
                        summary_counts={}, context={}, failure_summary=[{"code": code, "message": "x"}] if code else [])
        rows = [run(contoso, "inventory.sync", "succeeded", 10, 10), run(contoso, "inventory.sync", "succeeded", 20, 130),
                run(contoso, "inventory.sync", "succeeded", 30, 190),
                run(contoso, "policy.sync", "failed", 60, 250, "graph.503"),
                run(contoso, "policy.sync", "failed", 120, 255, "graph.503"),
                run(contoso, "inventory.sync", "partially_succeeded", 40, 310, XSS_CODE),
                run(contoso, "directory_groups.sync", "cancelled", 5, 370),
                run(contoso, "inventory.sync", "pending", 0, 30, status="queued"),
                run(contoso, "policy.sync", "failed", 300, 3 * 24 * 60, "old.timeout"),        # 3 days ago: 7d only
                run(fabrikam, "inventory.sync", "succeeded", 7, 70),
                run(fabrikam, "policy.sync", "failed", 9, 140, "fab.503")]
        rows += [run(globex, "policy.sync", "failed", 500, 20 + i, "globex.secret") for i in range(5)]
        rows += [run(globex, "inventory.sync", "pending", 0, 2 * 24 * 60, status="queued")]    # 2 days queued
        with ops.engine.begin() as c: c.execute(insert(operation_runs), rows)
        return dict(contoso=contoso.id, fabrikam=fabrikam.id, globex=globex.id)
    finally:
        ops.close()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    "`opsux serve --as olga@ops.test` over a fresh database holding only the seeded runs (no demo worker)."
    tmp = tmp_path_factory.mktemp(f"insights-{request.param}")
    url = _sqlite_url(tmp) if request.param == "sqlite" else _postgres_url()
    ids = seed(url)
    srv = Served(tmp, url, "--as", OLGA, name="insights")
    srv.db_url, srv.ids = url, ids
    yield srv
    srv.stop()


def insights(served, window="24h", **kw):
    "What SQL says, for Olga (the same `Insights` the page uses)."
    from opsux.store.insights import Insights
    from opsux.store.ops import connect
    ops = connect(served.db_url)
    try:
        return Insights(ops.viewer(ops.directory.get_user(OLGA)), window, **kw).summary()
    finally:
        ops.close()


SOURCES = """names => {
    const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
    if (!doc) return null;
    const out = {};
    for (const name of names) {
        const m = doc.get_model_by_name(name);
        if (!m) return null;
        const data = m.data instanceof Map ? [...m.data.entries()] : Object.entries(m.data);
        out[name] = Object.fromEntries(data.map(([k, v]) => [k, Array.from(v)]));
    }
    return out;
}"""


def sources(page) -> dict:
    "The charts' column data as the browser holds it."
    page.wait_for_function(f"({SOURCES})(['ox-outcomes-data', 'ox-durations-data']) !== null")
    return page.evaluate(SOURCES, ["ox-outcomes-data", "ox-durations-data"])


def nonzero(data: dict, status: str) -> dict:
    return {b: n for b, n in zip(data["bucket"], data[status]) if n}


def open_insights(page, served, query: str = ""):
    page.goto(served.base + "/operations/insights" + query)
    expect(page.locator(".ox-insights")).to_be_visible(timeout=30_000)
    expect(page.locator(".ox-runs-total .ox-n")).to_have_text(re.compile(r"^\d+$"))


def expect_total(page, n: int):
    "The summary line's run count (waited for: a pane may re-render while the page lays out)."
    expect(page.locator(".ox-runs-total .ox-n")).to_have_text(str(n))


def shot(page, served):
    "Save the README screenshot when OPSUX_SCREENSHOTS=1 (SQLite run only; kept small)."
    if os.environ.get("OPSUX_SCREENSHOTS") != "1" or not served.db_url.startswith("sqlite"): return
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / "insights.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size < 300_000, f"{path} is too large for the README"


def test_the_charts_hold_what_sql_says(page, served):
    open_insights(page, served)
    got, want = sources(page), insights(served)
    outcomes, durations = got["ox-outcomes-data"], got["ox-durations-data"]
    for st in ("succeeded", "partial", "failed", "cancelled"):        # (an hour may turn between the two reads)
        assert nonzero(outcomes, st) == nonzero(want["outcomes"], st), st
    assert [sum(outcomes[s]) for s in ("succeeded", "partial", "failed", "cancelled")] == [4, 1, 3, 1]
    assert len(outcomes["bucket"]) == 25 and outcomes["label"][-1] == outcomes["bucket"][-1][5:]
    assert {k: durations[k] for k in ("type", "runs", "p50", "p95")} == want["durations"]
    assert durations["type"] == ["directory_groups.sync", "inventory.sync", "policy.sync"]
    assert durations["runs"] == [1, 5, 3] and durations["p50"] == [5.0, 20.0, 60.0]
    assert durations["label"] == ["Directory groups sync", "Inventory sync", "Policy sync"]

    expect_total(page, 10)                                            # 9 finished + 1 queued; none of Globex's
    expect(page.locator(".ox-throughput .ox-n")).to_have_text(str(want["throughput"]))
    assert want["throughput"] == 1
    expect(page.locator(".ox-queue .ox-n")).to_have_text("1")
    expect(page.locator(".ox-queue-age .ox-age")).to_have_text(re.compile(r"^(29|30|31)m \d\ds$"))   # not 2 days
    table = page.locator(".ox-durations table")
    expect(table.locator('tr[data-type="policy.sync"] .ox-p50')).to_have_text("1m 00s")
    expect(table.locator('tr[data-type="inventory.sync"] .ox-p95')).to_have_text("38s")

    codes = page.locator(".ox-hot-code")
    expect(codes).to_have_text([c["code"] for c in want["failure_codes"]])
    expect(codes).to_have_text(["graph.503", XSS_CODE, "fab.503"])                 # stored markup shown as text
    expect(page.locator(".ox-hot-codes td.ox-n")).to_have_text(["2", "1", "1"])
    expect(page.locator(".ox-hot-type").first).to_have_text("Policy sync")
    expect(page.locator(".ox-insights")).not_to_contain_text(re.compile("globex", re.I))
    expect(page.locator("a.ox-nav.ox-current")).to_have_text("Insights")
    page.wait_for_load_state("networkidle")
    shot(page, served)
    assert page.evaluate("window.__xss") is None and not page.dialogs and not page.errors


def test_a_failure_code_leads_to_the_filtered_list(page, served):
    open_insights(page, served)
    page.locator('.ox-hot-code[data-code="graph.503"]').click()
    page.wait_for_url(re.compile(r"/operations\?code=graph\.503&since=\d{4}-\d\d-\d\d$"))
    rows = page.locator(".ox-table tbody tr")
    expect(rows).to_have_count(2)                                     # the hotspot's 2 runs, not all failed ones
    expect(page.locator(".ox-table .ox-badge").filter(has_not_text="Failed")).to_have_count(0)
    expect(page.locator(".ox-f-code input")).to_have_value("graph.503")
    open_insights(page, served)
    page.locator(".ox-hot-code").filter(has_text="auth.401").click()  # a stored markup code: a query value, as text
    page.wait_for_url(re.compile(r"/operations\?code=%3C.+&since="))
    expect(rows).to_have_count(1)
    expect(page.locator(".ox-table .ox-badge")).to_have_text("Partial")
    expect(page.locator(".ox-f-code input")).to_have_value(XSS_CODE)
    assert page.evaluate("window.__xss") is None
    open_insights(page, served)
    page.locator('.ox-hot-type[data-type="policy.sync"]').click()
    page.wait_for_url(re.compile(r"/operations\?status=failing&since=[\d-]+&type=policy\.sync$"))
    expect(rows).to_have_count(3)                                     # its failing runs: what the hotspot counts
    expect(page.locator(".ox-table tbody tr td:nth-child(2)")).to_have_text(["Policy sync"] * 3)
    expect(page.locator(".ox-f-status select")).to_have_value("Failed or partial")


def test_the_tenant_scope_holds(page, served):
    ids = served.ids
    open_insights(page, served, f"?tenant={ids['fabrikam']}")
    expect_total(page, 2)
    want = insights(served, tenant=ids["fabrikam"])
    got = sources(page)["ox-outcomes-data"]
    assert nonzero(got, "failed") == nonzero(want["outcomes"], "failed") and sum(got["failed"]) == 1
    expect(page.locator(".ox-hot-code")).to_have_text(["fab.503"])
    expect(page.locator(".ox-i-tenant select")).to_have_value("Fabrikam")   # (Bokeh selects hold labels)

    open_insights(page, served, f"?tenant={ids['globex']}")           # not Olga's tenant: ignored
    expect_total(page, 10)
    expect(page.locator(".ox-hot")).not_to_contain_text("globex.secret")
    expect(page.locator(".ox-i-tenant select")).to_have_value("All my tenants")

    page.locator(".ox-i-tenant select").select_option(label="Contoso")      # in place, and into the URL
    page.wait_for_function(f"location.search.includes('tenant={ids['contoso']}')")
    expect_total(page, 8)
    page.wait_for_function(f"({SOURCES})(['ox-outcomes-data'])['ox-outcomes-data'].failed.reduce((a, b) => a + b) === 2")

    page.context.add_cookies([{"name": "opsux_tenant", "value": str(ids["fabrikam"]), "url": served.base}])
    open_insights(page, served)                                       # the header's tenant scopes the page
    expect_total(page, 2)
    expect(page.locator(".ox-i-tenant")).to_have_count(0)             # one tenant in scope: no tenant filter


def test_window_and_type_live_in_the_url(page, served):
    open_insights(page, served)
    page.locator(".ox-i-window select").select_option(label="Last 7 days")
    page.wait_for_function("location.search.includes('window=7d')")
    page.wait_for_function(f"(({SOURCES})(['ox-outcomes-data'])['ox-outcomes-data'].bucket || []).length === 8")
    got, want = sources(page)["ox-outcomes-data"], insights(served, "7d")
    assert nonzero(got, "failed") == nonzero(want["outcomes"], "failed") and sum(got["failed"]) == 4
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", b) for b in got["bucket"])     # day buckets
    expect(page.locator(".ox-hot-code").filter(has_text="old.timeout")).to_have_count(1)
    page.reload()
    expect(page.locator(".ox-i-window select")).to_have_value("Last 7 days")
    page.locator(".ox-i-type select").select_option(label="Restore execution")
    page.wait_for_function("location.search.includes('type=restore.execute')")
    expect(page.locator(".ox-insights-empty")).to_have_text("No runs in this window.")
    expect(page.locator(".ox-outcomes")).to_be_hidden()
    q = parse_qs(urlsplit(page.url).query)
    assert q == {"window": ["7d"], "type": ["restore.execute"]}
    page.goto(served.base + "/operations/insights?window=30d&type=policy.sync")
    expect_total(page, 4)
    assert sources(page)["ox-durations-data"]["type"] == ["policy.sync"]


def test_the_page_asks_nothing_of_another_host(page, served):
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    open_insights(page, served)
    page.wait_for_load_state("networkidle")
    outside = [u for u in urls if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != "127.0.0.1"]
    assert outside == [], outside
    names = [urlsplit(u).path.rsplit("/", 1)[-1] for u in urls]
    assert "bokeh.min.js" in names and not [n for n in names if "mathjax" in n or "bokeh-gl" in n], names
    assert not page.errors


def test_the_page_needs_a_sign_in(tmp_path_factory):
    "With a login (`--auth basic`), /operations/insights is gated like every other page."
    from security_support import ALICE, Client, basic_world
    srv = next(basic_world(tmp_path_factory, "insights-basic"))
    try:
        c = Client(srv.base)
        status, headers, _ = c.get("/operations/insights")
        assert status == 302 and "/login" in headers["Location"], (status, headers)
        assert c.sign_in(*ALICE)[0] == 302
        status, _, body = c.get("/operations/insights")
        assert status == 200 and "bokeh" in body.lower()
    finally:
        srv.stop()


def test_the_figures_follow_new_runs_without_a_reload(page, served):
    """A run that ends while the page is open shows in its figures within seconds (read at most every 5 s); the run
    is deleted again afterwards, so the other tests' counts hold whatever the order."""
    from sqlalchemy import delete
    from opsux.store.ops import connect
    from opsux.store.tables import notifications, operation_runs
    open_insights(page, served)
    expect_total(page, 10)
    page.evaluate("window.__noReload = 'still here'")
    ops = connect(served.db_url)
    run = None
    try:
        run = ops.runs.enqueue(served.ids["contoso"], "policy.sync")
        ops.runs.start(run); ops.runs.fail(run, "Graph returned 503", code="live.503")
        expect(page.locator(".ox-runs-total .ox-n")).to_have_text("11", timeout=15_000)   # ≥ 5 s after the first read
        expect(page.locator(".ox-hot-code").filter(has_text="live.503")).to_have_count(1, timeout=15_000)
        page.wait_for_function(f"({SOURCES})(['ox-outcomes-data'])['ox-outcomes-data'].failed.reduce((a, b) => a + b) === 4")
        assert page.evaluate("window.__noReload") == "still here" and not page.errors
    finally:
        if run is not None:
            with ops.writer.begin() as con:
                con.execute(delete(notifications).where(notifications.c.run_id == run.id))
                con.execute(delete(operation_runs).where(operation_runs.c.id == run.id))
        ops.close()
