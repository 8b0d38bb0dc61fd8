"""Issue 17, item 4: the first rows show before the application has started. The page's HTML itself holds its
header, sidebar and first rows (or the run's facts), BokehJS loads deferred behind them, and the live page takes
their place without a frame in which both are shown. Real server (the demo, SQLite and PostgreSQL), real Chromium."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from browser_support import XSS

HOLD_APP = "**/panel.min.js*"          # without Panel's bundle no live page can start: the first view stays


def test_the_list_shows_its_first_rows_from_the_html_alone(page, server):
    page.route(HOLD_APP, lambda route: route.abort())
    page.context.add_cookies([{"name": "opsux_persona", "value": str(server.info["mallory_id"]), "url": server.base}])
    page.goto(server.base + "/operations")
    first = page.locator("#ox-first")
    rows = first.locator("table.ox-runs tbody tr")
    expect(rows).to_have_count(1)                                # Mallory's one tenant has one run
    expect(rows.first).to_have_attribute("data-run-id", str(server.info["evil_run_id"]))
    expect(first.locator(".ox-first-note")).to_have_text("Starting the live view…")
    expect(first.locator(".ox-first-who")).to_have_text("Signed in as " + XSS["user"])   # shown as text
    expect(rows.first).to_contain_text(XSS["tenant"])
    expect(first.get_by_role("link", name="Operations")).to_have_attribute("href", "/operations")
    assert page.evaluate("window.__xss") is None and page.dialogs == []
    assert page.locator(".ox-table").count() == 0                # no live page: Panel's bundle never came


def test_the_run_detail_shows_its_facts_from_the_html_alone(page, server):
    page.route(HOLD_APP, lambda route: route.abort())
    page.context.add_cookies([{"name": "opsux_persona", "value": str(server.info["mallory_id"]), "url": server.base}])
    page.goto(f"{server.base}/operations/run?id={server.info['evil_run_id']}")
    facts = page.locator("#ox-first .ox-facts").first
    expect(facts).to_be_visible()
    expect(page.locator("#ox-first .ox-run-title")).to_contain_text(f"#{server.info['evil_run_id']}")
    expect(facts).to_contain_text(XSS["tenant"])
    assert page.evaluate("window.__xss") is None and page.dialogs == []


def test_the_page_loads_its_scripts_behind_the_first_view(page, server):
    html = page.request.get(server.base + "/operations").text()
    scripts = re.findall(r"<script[^>]*\bsrc=[^>]*>", html)
    assert scripts and all(" defer " in s for s in scripts), scripts
    assert html.index('id="ox-first"') < html.index('id="ox-live"')


def test_the_live_page_replaces_the_first_view_and_no_frame_shows_both(page, server):
    # every animation frame, from the first: is the first view still there while the live page is in its root?
    page.add_init_script("""
        window.__both = 0; window.__first_frames = 0;
        (function tick() {
            const first = document.getElementById("ox-first"), root = document.querySelector("[data-root-id]");
            if (first) window.__first_frames++;
            if (first && root && root.childElementCount) window.__both++;
            requestAnimationFrame(tick);
        })();""")
    page.goto(server.base + "/operations")
    live = page.locator(".ox-table tbody tr")
    expect(live.first).to_be_visible(timeout=30_000)
    expect(page.locator("#ox-first")).to_have_count(0)
    assert page.evaluate("window.__both") == 0
    assert live.count() == page.locator("table.ox-runs tbody tr").count()   # one table: the live one
    assert page.errors == [], page.errors
