"""Shared fixtures: every storage test runs on SQLite and on a real PostgreSQL.

`pg_url` is the admin URL of a PostgreSQL server: `OPSUX_TEST_DATABASE_URL`, or a throwaway server started from the
installed binaries (tests/pgserver.py). When none can be had, PostgreSQL tests skip with a loud reason, or fail when
`OPSUX_REQUIRE_POSTGRES=1` (CI sets it). `db_url` gives each test a fresh empty database on each backend.
"""
import os, sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import pgserver  # noqa: E402

import opsux  # noqa: E402

_pg_problem: list[str] = []


@pytest.fixture(scope="session")
def pg_url() -> str:
    try:
        return pgserver.ensure_postgres()
    except pgserver.PostgresUnavailable as e:
        msg = f"PostgreSQL unavailable, PostgreSQL tests NOT RUN: {e}"
        if os.environ.get("OPSUX_REQUIRE_POSTGRES") == "1":
            pytest.fail(msg + " (OPSUX_REQUIRE_POSTGRES=1)", pytrace=False)
        _pg_problem.append(msg)
        pytest.skip("!!! " + msg)


def pytest_terminal_summary(terminalreporter):
    if _pg_problem:
        terminalreporter.write_sep("!", "POSTGRESQL TESTS WERE SKIPPED", red=True, bold=True)
        terminalreporter.write_line(_pg_problem[0], red=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    "A fresh, empty database: a SQLite file in tmp_path, or a new PostgreSQL database."
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'opsux.sqlite'}"
        return
    admin = request.getfixturevalue("pg_url")
    url = pgserver.fresh_database(admin)
    yield url
    try: pgserver.drop_database(admin, url)
    except Exception: pass


@pytest.fixture
def ops(db_url):
    o = opsux.connect(db_url)
    yield o
    o.close()


@pytest.fixture
def world(ops):
    "Two tenants; Ada in Contoso, Bob in Fabrikam, Cy in both."
    d = ops.directory
    contoso, fabrikam = d.add_tenant("Contoso"), d.add_tenant("Fabrikam")
    ada = d.add_user("Ada", email="ada@contoso.test", tenants=[contoso], password="ada-secret-pw")
    bob = d.add_user("Bob", email="bob@fabrikam.test", tenants=[fabrikam])
    cy = d.add_user("Cy", email="cy@both.test", tenants=[contoso, fabrikam])
    return type("World", (), dict(ops=ops, contoso=contoso, fabrikam=fabrikam, ada=ada, bob=bob, cy=cy))


@pytest.fixture(scope="session")
def browser():
    "The system Chromium under Playwright, one per test session (Playwright's sync API allows one per thread)."
    from playwright.sync_api import sync_playwright
    from support import CHROMIUM, CHROMIUM_ARGS
    if not os.path.exists(CHROMIUM):
        if os.environ.get("OPSUX_REQUIRE_BROWSER") == "1": pytest.fail(f"no Chromium at {CHROMIUM}")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
