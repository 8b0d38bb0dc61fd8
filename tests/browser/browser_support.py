"""Browser-test helpers (plain functions, importable by tests and benchmarks): the system Chromium's path and
flags, stored XSS payloads, free ports, and a real opsux demo server in a subprocess with a fresh database."""
from __future__ import annotations

import os, subprocess, sys, textwrap, time, urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402,F401  (re-exported for the browser tests)
XSS = {  # stored payloads; each one sets window.__xss (or opens a dialog) if it is ever rendered as markup
    "tenant": '<img src=x onerror="window.__xss=1">Evil Corp',
    "user": '<script>window.__xss=1</script>Mallory',
    "failure": '<img src=x onerror="window.__xss=1;alert(1)"> Graph call failed for item 42',
    "context": '<script>alert(document.cookie)</script>',
}


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    "Poll until `url` answers 200 (or the server process dies)."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200: return
        except OSError:
            pass
        time.sleep(0.1)  # polling a condition with a deadline
    raise TimeoutError(f"{url} did not come up within {timeout}s")


def wait_ready(base: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait until the server at `base` answers HTTP at all (or its process dies).

    It asks for `/healthz` (no session is built; an older server without it answers 404, which is as good): a
    full page would build a Bokeh session per poll, and under load a poll that times out is followed by another
    page build, which slows the server further. Any HTTP status means the routes are being served."""
    import http.client
    from urllib.parse import urlsplit
    host, port = urlsplit(base).hostname, urlsplit(base).port
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
        con = http.client.HTTPConnection(host, port, timeout=10)
        try:
            con.request("GET", "/healthz"); con.getresponse().read()
            return
        except OSError:
            pass
        finally:
            con.close()
        time.sleep(0.1)  # polling a condition with a deadline
    raise TimeoutError(f"{base} did not come up within {timeout}s")


def prepare_database(url: str, runs: int) -> dict:
    "Seed the demo data and store the XSS payloads; returns ids the tests need."
    from opsux.store.ops import connect
    from opsux.demo import prepare_demo
    ops, persona = prepare_demo(url, runs=runs)
    try:
        d = ops.directory
        evil_tenant = d.add_tenant(XSS["tenant"])
        mallory = d.add_user(XSS["user"], email="mallory@evil.test", tenants=[evil_tenant])
        run = ops.runs.enqueue(evil_tenant, "policy.sync", user=mallory,
                               context={"note": XSS["context"], "link": "javascript:window.__xss=1",
                                        XSS["context"]: XSS["tenant"]})
        ops.runs.start(run); ops.runs.set_total(run, 2)
        ops.runs.advance(run, processed=2, succeeded=1, failed=1)
        ops.runs.record_failure(run, XSS["failure"], code="<b>x</b>")
        ops.runs.complete(run)
        reader = next(u for u in d.users() if ops.viewer(u).unread_count() >= 3 and u.id != persona.id)
        for _ in range(3):   # more notifications than one inbox page (10) holds
            r = ops.runs.enqueue(ops.viewer(reader).tenants()[0], "directory_groups.sync", user=reader)
            ops.runs.start(r); ops.runs.set_total(r, 1); ops.runs.advance(r, processed=1, succeeded=1)
            ops.runs.complete(r)
        mine = {t.id for t in ops.viewer(persona).tenants()}
        assert evil_tenant.id not in mine
        return dict(url=url, persona_id=persona.id, persona_email=persona.email, mallory_id=mallory.id,
                    evil_run_id=run.id, evil_tenant_id=evil_tenant.id, reader_id=reader.id)
    finally:
        ops.close()


class DemoServer:
    def __init__(self, url: str, tmp: Path, speed: float = 6.0, runs: int = 300):
        self.db_url, self.port, self.tmp, self.speed = url, free_port(), tmp, speed
        self.base = f"http://127.0.0.1:{self.port}"
        self.info = prepare_database(url, runs)
        self.log = open(tmp / "server.log", "a")
        self.start()

    def start(self):
        "Start the demo server process on this server's port and wait until it serves."
        code = textwrap.dedent(f"""
            from opsux.demo import demo
            demo(db={self.db_url!r}, port={self.port}, speed={self.speed!r}, background=False)
        """)
        env = dict(os.environ, OPSUX_HOME=str(self.tmp), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=str(ROOT))
        try: wait_ready(self.base, self.proc)
        except Exception:
            self.stop(); raise

    def terminate(self):
        "SIGTERM the server process (what a deploy does) and wait for it to exit."
        self.proc.terminate()
        try: self.proc.wait(10)
        except subprocess.TimeoutExpired: self.proc.kill(); self.proc.wait(10)

    def ops(self):
        from opsux.store.ops import connect
        return connect(self.db_url)

    def stop(self):
        if self.proc.poll() is None: self.terminate()
        self.log.close()


def _sqlite_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'opsux.sqlite'}"


def _postgres_url() -> str:
    from pgserver import ensure_postgres, fresh_database, PostgresUnavailable
    try: return fresh_database(ensure_postgres())
    except PostgresUnavailable as e:
        if os.environ.get("OPSUX_REQUIRE_POSTGRES") == "1": raise
        pytest.skip(f"PostgreSQL unavailable: {e}")
