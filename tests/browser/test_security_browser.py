"""Issue 12, items 3, 8 and 10 in Chromium against `opsux serve --auth basic`: sign-in never redirects to another
host; a page on another site (here: another port of the same host, which browsers treat as the same *site*) can
neither sign the victim in as someone else nor sign them out; the pages run under a Content-Security-Policy that
blocks injected scripts and framing."""
from __future__ import annotations

import http.server, sys, threading
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from playwright.sync_api import expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from security_support import ALICE, BOB, basic_world  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    yield from basic_world(tmp_path_factory, "browser-security")


@pytest.fixture(scope="module")
def attacker(served):
    "Another origin on loopback serving the attacker's pages."
    target = served.base
    pages = {
        "/login-csrf": f"""<form id=f method=post action="{target}/login">
            <input name=username value="{BOB[0]}"><input name=password value="{BOB[1]}"><input name=_csrf value=x>
            </form><script>document.getElementById('f').submit()</script>""",
        "/logout-csrf": f"""<img src="{target}/logout"><iframe src="{target}/logout"></iframe>
            <form id=f method=post action="{target}/logout" target=sink><input name=_csrf value=x></form>
            <iframe name=sink></iframe><script>document.getElementById('f').submit()</script>""",
        "/frame": f"""<iframe id=victim src="{target}/operations" width=800 height=600></iframe>""",
    }
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path, "").encode()
            self.send_response(200 if body else 404); self.send_header("Content-Type", "text/html")
            self.end_headers(); self.wfile.write(body)
        def log_message(self, *a): pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown(); srv.server_close()


def sign_in(page, base, who=ALICE, next_=None):
    page.goto(base + "/login" + (f"?next={quote(next_, safe='')}" if next_ is not None else ""))
    page.fill("#username", who[0]); page.fill("#password", who[1])
    page.click("#login-submit")


def test_sign_in_never_redirects_to_another_host(browser, served):
    for target in ("///evil.example/phish", "//evil.example/phish", "/\\evil.example/phish", "https://evil.example/",
                   "/\\/evil.example", "\u3000", "/operations/run?id=1"):
        ctx = browser.new_context()
        try:
            ctx.route(lambda url: urlsplit(url).hostname == "evil.example", lambda route: route.fulfill(body="phished"))
            page = ctx.new_page()
            sign_in(page, served.base, next_=target)
            expect(page.locator(".ox-who")).to_contain_text("Alice Archer", timeout=30_000)
            where = urlsplit(page.url)
            assert where.netloc == urlsplit(served.base).netloc, (target, page.url)
            assert where.path == ("/operations/run" if target.startswith("/operations") else "/operations"), target
        finally:
            ctx.close()


def test_a_cross_site_form_cannot_sign_the_victim_in(page, served, attacker):
    page.goto(attacker + "/login-csrf")
    page.wait_for_url(served.base + "/login")
    expect(page.locator("#login-error")).to_contain_text("expired")
    assert not any(c["name"] == "user" for c in page.context.cookies())
    page.goto(served.base + "/operations")
    expect(page.locator("#login-submit")).to_be_visible()              # not signed in as the attacker (Bob)


def test_a_cross_site_page_cannot_sign_the_victim_out(page, served, attacker):
    sign_in(page, served.base)
    expect(page.locator(".ox-who")).to_contain_text("Alice Archer", timeout=30_000)
    page.goto(attacker + "/logout-csrf")
    page.wait_for_load_state("load")
    page.goto(served.base + "/operations")
    expect(page.locator(".ox-who")).to_contain_text("Alice Archer", timeout=30_000)   # still signed in
    page.goto(served.base + "/logout")                                 # the real sign-out: the form's POST
    page.click("#logout-submit")
    expect(page.locator("#logout-message")).to_be_visible()
    page.goto(served.base + "/operations")
    expect(page.locator("#login-submit")).to_be_visible()


def test_the_pages_run_under_a_csp_that_blocks_injected_script(page, served):
    page.add_init_script("window.__violations = []; document.addEventListener('securitypolicyviolation', "
                         "e => window.__violations.push([e.effectiveDirective, e.blockedURI]))")
    sign_in(page, served.base)
    expect(page.locator(".ox-who")).to_contain_text("Alice Archer", timeout=30_000)
    expect(page.locator(".ox-table tbody tr").first).to_be_visible()
    page.locator(".ox-bell button").click()                            # the page still works: Bokeh, Panel, FAST
    expect(page.locator(".ox-inbox .ox-note").first).to_be_visible()
    scripts = [v for v in page.evaluate("window.__violations") if v[0].startswith("script")]
    assert scripts == [], scripts                                      # every script the page needs is allowed
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<img src=x onerror=\"window.__xss=1\">')")
    try: page.add_script_tag(content="window.__xss = 2")
    except Exception: pass                                             # refused by the policy
    page.wait_for_function("window.__violations.some(v => v[0].startsWith('script'))")
    assert page.evaluate("window.__xss") is None
    assert not page.errors


def test_other_sites_cannot_frame_the_dashboard(page, served, attacker):
    sign_in(page, served.base)
    expect(page.locator(".ox-who")).to_be_visible(timeout=30_000)
    page.goto(attacker + "/frame")
    page.wait_for_load_state("load")
    frame = page.frame_locator("#victim")
    expect(frame.locator(".ox-who")).to_have_count(0)
    child = next(f for f in page.frames if f is not page.main_frame)
    assert child.url in ("", "about:blank") or child.url.startswith("chrome-error://") or child.child_frames == []
    assert "Alice" not in child.content()
