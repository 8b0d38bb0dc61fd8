"""Browser-test fixtures: a real opsux demo server in a subprocess on a free port with a fresh database,
and the system Chromium driven by Playwright (never a downloaded browser)."""
from __future__ import annotations

from pathlib import Path

import pytest

from browser_support import DemoServer, _postgres_url, _sqlite_url


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    "A running demo server (fresh database with ~300 seeded runs plus stored XSS payloads)."
    tmp = tmp_path_factory.mktemp(f"opsux-{request.param}")
    url = _sqlite_url(tmp) if request.param == "sqlite" else _postgres_url()
    srv = DemoServer(url, tmp)
    yield srv
    srv.stop()


@pytest.fixture
def page(browser):
    "A fresh browser context (own cookies) that records dialogs and page errors."
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(15000)
    pg.dialogs, pg.errors = [], []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()
