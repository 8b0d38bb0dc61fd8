"""Issue 11, item 2: the pages are complete offline. Chromium records every request the login, list and run-detail
pages make (`page.on("request")`) against `opsux serve --auth basic`; none may leave 127.0.0.1 (no font CDN, no
Panel/Bokeh CDN), not even for the parts built on first use (the filters, the inbox: the Content-Security-Policy
would refuse such a stylesheet, and say so in the console), and the pages still show their rows styled by what the
server itself serves."""
from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from security_support import ALICE, basic_world  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from basic_world(tmp_path_factory, "browser-offline")


def outside(urls) -> list[str]:
    "The requested URLs that are not on this machine's server (data: and blob: URLs stay in the page)."
    return [u for u in urls if urlsplit(u).scheme not in ("data", "blob") and urlsplit(u).hostname != "127.0.0.1"]


def test_no_page_asks_anything_of_another_host(page, served):
    urls, failed, console = [], [], []
    page.on("console", lambda m: console.append(m.text))
    page.on("request", lambda r: urls.append(r.url))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.goto(served.base + "/login")
    expect(page.locator("#login-submit")).to_be_visible()
    page.fill("#username", ALICE[0]); page.fill("#password", ALICE[1])
    page.click("#login-submit")
    row = page.locator(".ox-table tbody tr").first
    expect(row).to_be_visible(timeout=30_000)                                  # the list
    page.wait_for_load_state("networkidle")
    page.get_by_role("button", name="Filters").click()         # parts built on first use: the filters, the inbox
    expect(page.locator(".ox-f-status select")).to_be_visible()
    page.locator(".ox-bell button").click()
    expect(page.locator(".ox-inbox-card")).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(500)
    assert not [m for m in console if "Content Security Policy" in m and "stylesheet" in m], console   # on a CDN
    run_id = row.get_attribute("data-run-id")
    page.goto(f"{served.base}/operations/run?id={run_id}")
    expect(page.locator(".ox-detail")).to_contain_text(f"#{run_id}", timeout=30_000)   # the detail
    page.wait_for_load_state("networkidle")
    assert any("/static/" in u for u in urls)                                  # Bokeh and Panel came from us
    assert outside(urls) == [], outside(urls)
    assert outside(failed) == [] and not page.errors, (failed, page.errors)


def test_the_page_loads_only_the_bundles_it_uses_compressed_and_cached(page, served):
    "Issue 17, item 1: no MathJax, WebGL or FAST; scripts brotli/gzip-compressed; versioned URLs cached a year."
    responses = []
    page.on("response", lambda r: responses.append(r))
    page.goto(served.base + "/login")
    page.fill("#username", ALICE[0]); page.fill("#password", ALICE[1])
    page.click("#login-submit")
    expect(page.locator(".ox-table tbody tr").first).to_be_visible(timeout=30_000)
    page.wait_for_load_state("networkidle")
    names = [urlsplit(r.url).path.rsplit("/", 1)[-1] for r in responses]
    assert "bokeh.min.js" in names and "panel.min.js" in names, names
    assert not [n for n in names if "mathjax" in n or "bokeh-gl" in n or "fast" in n], names
    scripts = [r for r in responses if r.url.split("?")[0].endswith(".js") and "/static/" in r.url]
    for r in scripts:
        assert r.headers.get("content-encoding") in ("br", "gzip"), (r.url, r.headers)
        if "?v=" in r.url: assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    page_html = next(r for r in responses if urlsplit(r.url).path == "/operations" and r.status == 200)
    assert page_html.headers.get("content-encoding") == "gzip"
