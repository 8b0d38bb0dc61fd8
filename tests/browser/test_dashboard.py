"""The dashboard in a real browser: toast → live widget → terminal → notification → run detail, list filters and
paging in the URL, tenant scoping, and stored markup rendered as text.

`OPSUX_SCREENSHOTS=1 pytest tests/browser -k sqlite` also refreshes docs/screenshots/*.png for the README."""
from __future__ import annotations

import os, re, time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from browser_support import XSS

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def widget_rows(page):
    return page.locator(".ox-progress-widget .ox-row")


def bell_count(page) -> int:
    text = page.locator(".ox-bell button").inner_text()
    return int(re.search(r"(\d+)", text).group(1))


def quiet_page(page, server, path: str):
    """Open `path` once the persona has no active run left (an earlier test's run ending during this test would
    add its terminal toast above this test's), on a fresh page (no toasts yet). Asked of the database: the page's
    widget is "hidden" too while the page is still loading, which let such a run end during the test (the flaky
    toast position, y=158 or 196 instead of < 100)."""
    ops = server.ops()
    try:
        viewer = ops.viewer(ops.directory.get_user(server.info["persona_email"]))
        deadline = time.monotonic() + 60
        while (active := viewer.active_runs()) and time.monotonic() < deadline: time.sleep(0.1)
        assert not active, "an earlier test's runs are still active after 60 s"
    finally:
        ops.close()
    page.goto(server.base + path)


def settled_box(locator, page, timeout: float = 5.0) -> dict:
    "The bounding box of `locator` once it stopped moving (its slide-in animation is over)."
    box, deadline = locator.bounding_box(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        page.wait_for_timeout(100)
        again = locator.bounding_box()
        if again == box: return box
        box = again
    return box


def shot(page, name, locator=None, server=None):
    "Save a README screenshot when OPSUX_SCREENSHOTS=1 (SQLite run only; kept small)."
    if os.environ.get("OPSUX_SCREENSHOTS") != "1": return
    if server is not None and not server.db_url.startswith("sqlite"): return
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    (locator or page).screenshot(path=str(path))
    assert path.stat().st_size < 300_000, f"{path} is too large for the README"


def test_enqueue_toast_live_widget_terminal_notification_detail(page, server):
    "The row followed is the one of the run the toast names: an earlier test's run may still be listed first."
    quiet_page(page, server, "/actions")
    button = page.get_by_role("button", name="Start inventory sync")
    expect(button).to_be_visible()
    expect(page.locator(".ox-bell button")).to_have_text(re.compile(r"\d+"))
    unread_before = bell_count(page)
    page.evaluate("window.__noReload = 'still here'")

    t0 = time.monotonic()
    button.click()
    toast = page.locator(".ox-toast").filter(has_text="Inventory sync queued")
    expect(toast).to_be_visible(timeout=1000)
    assert time.monotonic() - t0 < 1.5
    link = toast.get_by_text("View run")
    expect(link).to_have_attribute("href", re.compile(r"^/operations/run\?id=\d+$"))
    run_id = int(link.get_attribute("href").rsplit("=", 1)[1])

    row = page.locator(f'.ox-progress-widget .ox-row[data-run-id="{run_id}"]')
    expect(row).to_be_visible()
    percent = row.locator(".ox-percent")
    expect(percent).to_have_text(re.compile(r"\d+%"), timeout=10000)
    first = percent.inner_text()
    expect(percent).not_to_have_text(first, timeout=10000)            # moves without reload
    expect(row.locator(".ox-eta, .ox-elapsed").first).to_contain_text(re.compile(r"\d+s|elapsed"))
    shot(page, "widget", page.locator(".ox-progress-widget"), server)

    terminal = page.locator(f'.ox-progress-widget .ox-row[data-run-id="{run_id}"]'
                            '[data-status="succeeded"], '
                            f'.ox-progress-widget .ox-row[data-run-id="{run_id}"][data-status="partial"], '
                            f'.ox-progress-widget .ox-row[data-run-id="{run_id}"][data-status="failed"]')
    expect(terminal).to_have_count(1, timeout=30000)                  # terminal state shown briefly
    done = page.locator(".ox-toast").filter(has_text=re.compile(r"Inventory sync (completed|failed)"))
    expect(done.first).to_be_visible()                                 # and a terminal toast with its link
    expect(done.first.get_by_text("View run")).to_have_attribute("href", f"/operations/run?id={run_id}")
    expect(page.locator(f'.ox-progress-widget .ox-row[data-run-id="{run_id}"]')).to_have_count(0, timeout=20000)
    expect(page.locator(".ox-progress-widget")).to_be_hidden()         # nothing active: the widget hides
    expect(page.locator(".ox-bell button")).to_have_text(re.compile(rf"\b{unread_before + 1}\b"))
    assert page.evaluate("window.__noReload") == "still here"

    page.locator(".ox-bell button").click()
    note = page.locator(".ox-note").filter(has_text="Inventory sync").first
    expect(note).to_be_visible()
    note.get_by_text("View run").click()
    page.wait_for_url(re.compile(rf"/operations/run\?id={run_id}$"))
    detail = page.locator(".ox-detail")
    expect(detail.locator(".ox-run-title")).to_contain_text("Inventory sync")
    expect(detail.locator(".ox-badge").first).to_have_text(re.compile("Completed|Partial|Failed"))
    expect(detail).to_contain_text("Initiator")
    shot(page, "detail", None, server)
    assert not page.dialogs and not page.errors


def test_dedupe_toast_links_to_the_active_run(page, server):
    """From a quiet page: an earlier test's active Policy sync (test_actions_browser retries one) would make the
    first click a dedupe too."""
    quiet_page(page, server, "/actions")
    button = page.get_by_role("button", name="Start policy sync")
    button.click()
    first = page.locator(".ox-toast").filter(has_text="Policy sync queued")
    expect(first).to_be_visible(timeout=1000)
    href = first.get_by_text("View run").get_attribute("href")
    button.click()
    again = page.locator(".ox-toast").filter(has_text="already")
    expect(again).to_be_visible(timeout=1000)
    expect(again.get_by_text("View run")).to_have_attribute("href", href)


def test_toasts_sit_in_the_corner_and_fade_out_on_their_own(page, server):
    "Toasts are fixed to the viewport's top right; each leaves after its 6 s, also when a newer one re-renders them."
    quiet_page(page, server, "/actions")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("button", name="Start directory groups sync").click()
    first = page.locator(".ox-toast").filter(has_text=re.compile(r"Directory groups sync (queued|already)"))
    expect(first).to_be_visible(timeout=1000)
    shown = time.monotonic()
    page.wait_for_timeout(300)                                                # (it slides in)
    box = first.bounding_box()
    assert box["x"] + box["width"] > 1280 - 40 and 60 < box["y"] < 100, box   # top right, under the header
    assert first.evaluate("e => getComputedStyle(e.parentNode).position") == "fixed"
    page.wait_for_timeout(3000)
    page.get_by_role("button", name="Start restore execution").click()
    second = page.locator(".ox-toast").filter(has_text=re.compile(r"Restore execution (queued|already)"))
    expect(second).to_be_visible(timeout=1000)
    expect(first).to_be_hidden(timeout=8000)                                  # faded by the browser
    gone = time.monotonic() - shown
    assert 5.0 < gone < 7.5, gone                                             # its own 6 s, not restarted at 3 s
    expect(second).to_be_visible()


def test_a_newer_toast_never_moves_an_older_one(page, server):
    """A toast someone is about to click is not pushed down when another one arrives (here: the end of a run of the
    same user, driven by another process). Toasts stack oldest first; newest-first stacking pushed the older toast
    down by a toast's height (seen as y=196 instead of 72 when a previous test's run ended meanwhile)."""
    ops = server.ops()
    try:
        persona = ops.directory.get_user(server.info["persona_email"])
        tenant = ops.viewer(persona).tenants()[0]
        quiet_page(page, server, "/actions")
        other = ops.runs.enqueue(tenant, "restore.execute", user=persona, identity="toast-order")
        expect(page.locator(f'.ox-progress-widget .ox-row[data-run-id="{other.id}"]')).to_be_visible()
        page.get_by_role("button", name="Start bulk restore policies").click()
        first = page.locator(".ox-toast").filter(has_text=re.compile(r"Bulk restore policies (queued|already)"))
        expect(first).to_be_visible()
        before = settled_box(first, page)                                # (it slides in)
        ops.runs.start(other); ops.runs.complete(other)                  # its terminal toast arrives now
        ended = page.locator(".ox-toast").filter(has=page.locator(f'a[href="/operations/run?id={other.id}"]'))
        expect(ended).to_be_visible()
        settled_box(ended, page)
        assert abs(first.bounding_box()["y"] - before["y"]) < 1 and before["y"] < 100, (before, first.bounding_box())
        assert ended.bounding_box()["y"] > before["y"]                   # the newer one comes below
    finally:
        ops.close()


def test_list_filters_paging_and_url_state(page, server):
    page.goto(server.base + "/operations")
    rows = page.locator(".ox-table tbody tr")
    expect(rows).to_have_count(25)
    first_id = int(rows.first.get_attribute("data-run-id"))
    ids = [int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.runId)")]
    assert ids == sorted(ids, reverse=True)                           # newest first
    shot(page, "list", None, server)

    page.locator(".ox-older button").click()
    expect(page.locator(".ox-page")).to_contain_text("Page 2")
    expect(rows.first).not_to_have_attribute("data-run-id", str(first_id))
    assert int(rows.first.get_attribute("data-run-id")) < ids[-1]
    page.wait_for_function("/after=\\d+/.test(location.search)")
    page.reload()                                                      # page state survives a reload
    expect(page.locator(".ox-page")).to_contain_text("Page 2")
    page.locator(".ox-newer button").click()
    expect(rows.first).to_have_attribute("data-run-id", str(first_id))

    expect(page.locator(".ox-f-status select")).to_have_count(0)     # no filter set: only the Filters button
    page.get_by_role("button", name="Filters").click()
    page.locator(".ox-f-status select").select_option(label="Failed")
    page.wait_for_function("location.search.includes('status=failed')")
    badges = page.locator(".ox-table .ox-badge")
    expect(badges.filter(has_not_text="Failed")).to_have_count(0)     # the table is replaced as a whole
    expect(badges.first).to_have_text("Failed")
    page.reload()
    expect(badges.first).to_have_text("Failed")
    expect(badges.filter(has_not_text="Failed")).to_have_count(0)

    page.locator(".ox-f-status select").select_option(label="Partial")
    page.wait_for_function("location.search.includes('status=partial')")
    page.go_back()                                                     # back: the previous filters, on screen
    page.wait_for_function("location.search.includes('status=failed')")
    expect(page.locator(".ox-f-status select")).to_have_value("Failed")
    expect(badges.filter(has_not_text="Failed")).to_have_count(0)
    page.go_forward()
    expect(page.locator(".ox-f-status select")).to_have_value("Partial")
    page.go_back()
    expect(page.locator(".ox-f-status select")).to_have_value("Failed")

    # a detail opened from the filtered list goes back to the filtered list
    rows.first.locator("a").first.click()
    page.wait_for_url(re.compile(r"/operations/run\?id=\d+$"))
    page.locator(".ox-back").click()
    page.wait_for_url(re.compile(r"/operations\?.*status=failed"))

    page.goto(server.base + f"/operations?run_id={first_id}")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-run-id", str(first_id))

    page.goto(server.base + "/operations?since=2999-01-01")
    expect(page.locator(".ox-table")).to_contain_text("No operation runs match")


def test_other_tenants_run_reads_not_found(page, server):
    page.goto(server.base + f"/operations/run?id={server.info['evil_run_id']}")
    expect(page.locator(".ox-not-found")).to_have_text("Run not found")
    page.goto(server.base + "/operations/run?id=987654321")
    expect(page.locator(".ox-not-found")).to_have_text("Run not found")
    page.goto(server.base + f"/operations?run_id={server.info['evil_run_id']}")
    expect(page.locator(".ox-table")).to_contain_text("No operation runs match")


def test_stored_markup_is_text_and_never_runs(page, server):
    page.context.add_cookies([{"name": "opsux_persona", "value": str(server.info["mallory_id"]),
                               "url": server.base}])
    run_id = server.info["evil_run_id"]
    page.goto(server.base + "/operations")
    rows = page.locator(".ox-table tbody tr")
    expect(rows.first).to_have_attribute("data-run-id", str(run_id))
    expect(rows.first).to_contain_text(XSS["user"])                   # initiator shown literally
    expect(rows.first).to_contain_text(XSS["tenant"])                 # tenant name shown literally
    expect(page.locator(".ox-tenant select")).to_contain_text("Evil Corp")

    page.goto(server.base + f"/operations/run?id={run_id}")
    detail = page.locator(".ox-detail")
    expect(detail).to_contain_text("Graph call failed for item 42")   # the human part of the failure survives
    expect(detail.locator(".ox-context")).to_contain_text(XSS["context"])
    expect(detail.locator(".ox-context")).to_contain_text("javascript:window.__xss=1")
    assert detail.locator(".ox-context a").count() == 0               # no link from a javascript: value

    page.locator(".ox-bell button").click()
    expect(page.locator(".ox-note").first).to_be_visible()

    injected = page.evaluate("""() => {
        const found = [];
        const walk = root => root.querySelectorAll('*').forEach(el => {
            if (el.shadowRoot) walk(el.shadowRoot);
            // Bokeh's document JSON (type application/json) holds the data as inert text; any other script
            // that mentions the payload would be an injection
            if (el.tagName === 'SCRIPT' && el.type !== 'application/json' && el.textContent.includes('__xss'))
                found.push('script in ' + (el.parentNode.outerHTML || el.parentNode.host.outerHTML).slice(0, 300));
            if (el.getAttribute && el.getAttribute('onerror')) found.push('onerror');
        });
        walk(document);
        return found;
    }""")
    assert injected == []
    assert page.evaluate("window.__xss") is None
    assert not page.dialogs and not page.errors


def test_tenant_switcher_scopes_every_row(page, server):
    page.goto(server.base + "/operations")
    tenant = page.locator(".ox-tenant select")
    expect(tenant.locator("option")).to_have_count(3)
    options = tenant.locator("option").all_inner_texts()
    assert "All my tenants" in options and "Contoso" in options and "Fabrikam" in options
    assert not any("Evil Corp" in o for o in options)                  # only the user's tenants
    tenant.select_option(label="Fabrikam")                             # stored in a cookie, then a reload
    expect(tenant).to_have_value("Fabrikam")
    cells = page.locator(".ox-table tbody tr td:nth-child(4)")
    expect(cells.first).to_have_text("Fabrikam")
    assert set(cells.all_inner_texts()) == {"Fabrikam"}
    page.goto(server.base + "/operations")                             # the choice survives navigation
    expect(page.locator(".ox-tenant select")).to_have_value("Fabrikam")
    tenant = page.locator(".ox-tenant select")
    tenant.select_option(label="All my tenants")
    expect(tenant).to_have_value("All my tenants")
    expect(cells.first).to_be_visible()
    assert len(set(cells.all_inner_texts())) == 2


def test_persona_switch_changes_who_and_what_is_visible(page, server):
    page.goto(server.base + "/operations")
    expect(page.locator(".ox-who")).to_contain_text("Olivia Operator")
    persona = page.locator(".ox-persona select")
    label = next(o for o in persona.locator("option").all_inner_texts() if "mallory@evil.test" in o)
    persona.select_option(label=label)
    expect(page.locator(".ox-who")).to_contain_text("Mallory")
    rows = page.locator(".ox-table tbody tr")
    expect(rows).to_have_count(1)                                      # Mallory's one tenant has one run
    expect(rows.first).to_have_attribute("data-run-id", str(server.info["evil_run_id"]))


def test_inbox_marks_read_and_pages(page, server):
    page.context.add_cookies([{"name": "opsux_persona", "value": str(server.info["reader_id"]), "url": server.base}])
    page.goto(server.base + "/operations")
    bell = page.locator(".ox-bell button")
    expect(bell).to_have_text(re.compile(r"\d+"))
    before = bell_count(page)
    assert before >= 1                                                 # seeded notifications: 3 unread each
    bell.click()
    unread = page.locator(".ox-inbox .ox-note.ox-unread")
    expect(unread.first).to_be_visible()
    page.locator(".ox-mark-read button").first.click()
    expect(bell).to_have_text(re.compile(rf"\b{before - 1}\b"))
    page.locator(".ox-mark-all button").click()
    expect(bell).to_have_text(re.compile(r"\b0\b"))
    expect(unread).to_have_count(0)
    older = page.get_by_role("button", name="Older notifications")
    expect(older).to_be_visible()                                      # 20 seeded > one page of 10
    first_title = page.locator(".ox-inbox .ox-note").first.inner_text()
    older.click()
    expect(page.locator(".ox-inbox .ox-note").first).not_to_have_text(first_title)


def test_widget_and_detail_follow_a_run_driven_by_another_process(page, server):
    "A worker elsewhere (here: the test process) drives a run; open pages follow it without a reload."
    ops = server.ops()
    try:
        persona = ops.directory.get_user(server.info["persona_email"])
        tenant = ops.viewer(persona).tenants()[0]
        page.goto(server.base + "/operations")
        expect(page.locator(".ox-table tbody tr").first).to_be_visible()
        page.evaluate("window.__noReload = 1")
        run = ops.runs.enqueue(tenant, "restore.execute", user=persona, context={"source": "another process"})
        row = page.locator(f'.ox-progress-widget .ox-row[data-run-id="{run.id}"]')
        expect(row).to_have_attribute("data-status", "queued")            # appears by push
        expect(page.locator(".ox-table tbody tr").first).to_have_attribute("data-run-id", str(run.id))
        ops.runs.start(run); ops.runs.set_total(run, 4); ops.runs.advance(run, processed=1, succeeded=1)
        expect(row.locator(".ox-percent")).to_have_text("25%")

        detail = page.context.new_page()
        detail.goto(server.base + f"/operations/run?id={run.id}")
        expect(detail.locator(".ox-detail .ox-percent")).to_have_text("25%")
        ops.runs.advance(run, processed=2, succeeded=1, failed=1)
        ops.runs.record_failure(run, "Restore target 'Pilot devices' was deleted", code="restore.conflict")
        expect(row.locator(".ox-percent")).to_have_text("75%")
        expect(detail.locator(".ox-detail .ox-percent")).to_have_text("75%")
        ops.runs.advance(run, processed=1, succeeded=1); ops.runs.complete(run)
        expect(detail.locator(".ox-detail .ox-badge").first).to_have_text("Partial")
        expect(detail.locator(".ox-failure")).to_contain_text("Pilot devices")
        expect(row).to_have_attribute("data-status", "partial")
        expect(row).to_have_count(0, timeout=20000)
        assert page.evaluate("window.__noReload") == 1
    finally:
        ops.close()


def test_initiator_and_type_filters(page, server):
    page.goto(server.base + "/operations")
    rows = page.locator(".ox-table tbody tr")
    expect(rows).to_have_count(25)
    page.get_by_role("button", name="Filters").click()
    page.locator(".ox-f-initiator select").select_option(label="Ada Lovelace")
    page.wait_for_function("location.search.includes('initiator=Ada+Lovelace')")
    expect(rows.filter(has_not=page.locator("td:nth-child(5)", has_text="Ada Lovelace"))).to_have_count(0)
    expect(rows.first).to_be_visible()
    page.locator(".ox-f-type select").select_option(label="Inventory sync")
    page.wait_for_function("location.search.includes('type=inventory.sync')")
    expect(rows.filter(has_not=page.locator("td:nth-child(2)", has_text="Inventory sync"))).to_have_count(0)
    expect(rows.first).to_contain_text("Ada Lovelace")
    page.get_by_role("button", name="Clear filters").click()
    page.wait_for_function("location.search === ''")
    expect(rows).to_have_count(25)


def test_go_to_page_keeps_the_url_short(page, server):
    "Issue 17, item 7: a deep page is one jump away and its URL holds its cursor and number, nothing more."
    ops = server.ops()
    try:
        viewer = ops.viewer(ops.directory.get_user(server.info["persona_email"]))
        after, n = viewer.page_cursor(9, 25)
        expected = [r.id for r in viewer.runs(limit=25, after=after)]
    finally:
        ops.close()
    page.goto(server.base + "/operations")
    rows = page.locator(".ox-table tbody tr")
    expect(rows).to_have_count(25)
    page.locator(".ox-goto input").fill("9")
    page.locator(".ox-goto input").press("Enter")
    expect(page.locator(".ox-page")).to_contain_text("Page 9")
    page.wait_for_function("location.search.includes('page=9')")
    assert len(page.evaluate("location.search")) < 40, page.evaluate("location.search")
    shown = [int(x) for x in rows.evaluate_all("rs => rs.map(r => r.dataset.runId)")]
    assert shown[:5] == expected[:5]                                    # runs may have arrived since: the head
    page.locator(".ox-newer button").click()
    expect(page.locator(".ox-page")).to_contain_text("Page 8")
    page.goto(server.base + "/operations?page=3")                       # a jump by URL alone
    expect(page.locator(".ox-page")).to_contain_text("Page 3")
    expect(rows).to_have_count(25)
