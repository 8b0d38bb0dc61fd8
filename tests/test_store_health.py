"""Write failures are visible (issue 14 item 8): disk full and read-only databases show in `write_health`, for the
worker's own process and for another process (the dashboard); `ping()` answers readiness (issue 15 item 8)."""
import os, shutil, subprocess, sys, tempfile, textwrap, uuid
from pathlib import Path

import psycopg
import pytest

import opsux
from opsux.store.health import write_health

import pgserver


@pytest.fixture
def small_disk():
    "A real 16 MB file system (tmpfs) that the postgres user can reach too, unmounted afterwards."
    mnt = Path(tempfile.mkdtemp(prefix="opsux-small-"))
    mnt.chmod(0o755)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0: pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    mnt.chmod(0o755)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
    shutil.rmtree(mnt, ignore_errors=True)


def fill(folder: Path, leave: int) -> None:
    "Fill the file system of `folder` up to `leave` bytes."
    free = shutil.disk_usage(folder).free
    try:
        with open(folder / "ballast", "wb") as f: f.write(b"\0" * max(0, free - leave))
    except OSError: pass  # full


def test_sqlite_disk_full_is_visible_to_worker_and_dashboard(small_disk):
    "Before: workers failed, the page showed the last good data."
    path = small_disk / "opsux.sqlite"
    worker, dashboard = opsux.connect(str(path)), opsux.connect(str(path), migrate=False)
    try:
        t = worker.directory.add_tenant("Contoso")
        run = worker.runs.start(worker.runs.enqueue(t, "inventory.sync"))
        assert write_health(dashboard) == (True, "writes ok")
        fill(small_disk, 64 * 1024)
        with pytest.raises(Exception, match="disk is full"):
            for i in range(10_000):
                worker.runs.record_failure(run, f"item {i}: " + "x" * 3000)
                worker.runs.enqueue(t, "policy.sync", context={"pad": "y" * 60_000})
        ok, detail = write_health(worker)
        assert not ok and detail.startswith("disk full"), detail
        ok, detail = write_health(dashboard)  # another handle, as the dashboard process has
        assert not ok and "disk full" in detail, detail
        (small_disk / "ballast").unlink()
        worker.runs.advance(run, processed=1)  # the next good write clears the worker's note
        assert write_health(worker, probe_every=0) == (True, "writes ok")
    finally:
        worker.close(); dashboard.close()


WORKER = textwrap.dedent("""
    import sys, opsux
    ops = opsux.connect(sys.argv[1], migrate=False)
    try: ops.runs.advance(int(sys.argv[2]), processed=1)
    except Exception as e: print(type(e).__name__, str(e)[:200], flush=True)
""")


def test_postgres_read_only_is_visible(pg_url):
    url = pgserver.fresh_database(pg_url)
    name = url.rsplit("/", 1)[1]
    try:
        with opsux.connect(url) as ops:
            t = ops.directory.add_tenant("Contoso")
            run = ops.runs.start(ops.runs.enqueue(t, "inventory.sync"))
            with psycopg.connect(pgserver._psycopg_dsn(pg_url), autocommit=True) as admin:
                admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        with opsux.connect(url, migrate=False) as worker, opsux.connect(url, migrate=False) as dashboard:
            with pytest.raises(Exception, match="read-only"):
                worker.runs.advance(run, processed=1)
            ok, detail = write_health(worker)
            assert not ok and detail.startswith("database is read-only"), detail
            ok, detail = write_health(dashboard)
            assert not ok and "default_transaction_read_only is on" in detail, detail
    finally:
        pgserver.drop_database(pg_url, url)


def test_postgres_disk_full_in_a_worker_process_is_seen_by_the_dashboard(pg_url, small_disk):
    "The worker notes the failure in opsux_write_health (its table space has room); the dashboard reads it."
    url = pgserver.fresh_database(pg_url)
    space = f"small_{uuid.uuid4().hex[:8]}"
    shutil.chown(small_disk, "postgres")
    try:
        with psycopg.connect(pgserver._psycopg_dsn(pg_url), autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE {space} LOCATION '{small_disk}'")
        with opsux.connect(url) as dashboard:
            t = dashboard.directory.add_tenant("Contoso")
            run = dashboard.runs.start(dashboard.runs.enqueue(t, "inventory.sync"))
            with dashboard.engine.begin() as c:
                c.exec_driver_sql(f"ALTER TABLE operation_runs SET TABLESPACE {space}")
            fill(small_disk, 0)
            with pytest.raises(Exception):
                for i in range(100_000): dashboard.runs.record_failure(run, f"item {i} " + "z" * 2000)
            out = subprocess.run([sys.executable, "-c", WORKER, url, str(run.id)], capture_output=True, text=True,
                                 timeout=120)
            ok, detail = write_health(dashboard)
            assert not ok and "disk full" in detail and "seen by" in detail, (detail, out.stdout, out.stderr)
    finally:
        pgserver.drop_database(pg_url, url)
        with psycopg.connect(pgserver._psycopg_dsn(pg_url), autocommit=True) as admin:
            admin.execute(f"DROP TABLESPACE IF EXISTS {space}")


def test_ping(db_url):
    with opsux.connect(db_url) as ops: assert ops.ping() == (True, "ok")


def test_ping_reports_an_unreachable_database(pg_url):
    url = pgserver.fresh_database(pg_url)
    ops = opsux.connect(url)
    try:
        assert ops.ping() == (True, "ok")
        with psycopg.connect(pgserver._psycopg_dsn(pg_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        ok, detail = ops.ping()
        assert not ok and detail.startswith("database unreachable: ") and "\n" not in detail, detail
    finally: ops.close()
