"""Bounded inputs (issue 14 item 6): the same limits and the same clear errors on SQLite and PostgreSQL; errors
carry no SQL; lock waits on SQLite are retried (item 7); migrations open cheaply (issue 15 item 2)."""
import logging, subprocess, sys, textwrap, time

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

import opsux
from opsux.store.db import RETRY_SECONDS, SQLITE_BUSY_TIMEOUT_MS, alembic_head, head_revision
from opsux.store.models import OperationRun

MAX = 2**63 - 1


def test_counts_saturate_and_later_advances_still_work(world):
    "Before: 2**63-1 then +1 stored a float on SQLite and broke every later advance on PostgreSQL."
    runs = world.ops.runs
    run = runs.start(runs.enqueue(world.contoso, "inventory.sync"))
    runs.advance(run, processed=MAX)
    r = runs.advance(run, processed=1, succeeded=1)
    assert r.summary_counts == {"processed": MAX, "succeeded": 1}
    r = runs.advance(run, processed=MAX, succeeded=MAX)
    assert r.summary_counts == {"processed": MAX, "succeeded": MAX}
    stored = runs.get(run).summary_counts
    assert type(stored["processed"]) is int and stored["processed"] == MAX
    assert runs.complete(run).outcome == "succeeded"


@pytest.mark.parametrize("bad", [2**63, -1, 1.5, True, "3"])
def test_counts_out_of_range_are_refused(world, bad):
    run = world.ops.runs.start(world.ops.runs.enqueue(world.contoso, "inventory.sync"))
    with pytest.raises(ValueError, match="integers from 0 to 2\\*\\*63-1"):
        world.ops.runs.advance(run, processed=bad)
    with pytest.raises(ValueError):
        world.ops.runs.set_total(run, bad)


@pytest.mark.parametrize("context, message", [
    ({"ratio": float("nan")}, "not JSON"), ({"x": float("inf")}, "not JSON"), ({"when": object()}, "not JSON"),
    ({"blob": "x" * 70_000}, "the limit is 65,536"), ({"nul": "a\x00b"}, "NUL"), (["not", "a", "mapping"], "mapping"),
])
def test_bad_context_is_refused_the_same_on_both_databases(world, context, message):
    "Before: NaN accepted on SQLite (and wiping the context later), refused by PostgreSQL with SQL in the error."
    with pytest.raises(ValueError, match=message):
        world.ops.runs.enqueue(world.contoso, "inventory.sync", context=context)
    with world.ops.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(OperationRun)).scalar() == 0


@pytest.mark.parametrize("field", ["identity", "job_id", "initiator_name"])
def test_long_text_is_refused_the_same_on_both_databases(world, field):
    "Before: a 1 MB identity was accepted on SQLite and refused on PostgreSQL."
    with pytest.raises(ValueError, match=f"{field} is 1,000,000 characters long; the limit is 255"):
        world.ops.runs.enqueue(world.contoso, "inventory.sync", **{field: "i" * 1_000_000})
    assert world.ops.runs.enqueue(world.contoso, "inventory.sync", **{field: "i" * 255}).id


def test_missing_tenant_or_user_is_a_lookup_error(world):
    "Before: 'the active run kept changing' (burning ids), or a raw IntegrityError with its SQL."
    runs = world.ops.runs
    with pytest.raises(LookupError, match="^tenant 999999 does not exist$"):
        runs.enqueue(999999, "inventory.sync")
    with pytest.raises(LookupError, match="^tenant 999999 does not exist$"):
        runs.enqueue(999999, "inventory.sync", identity="tenant-wide")
    with pytest.raises(LookupError, match="^user 424242 does not exist$"):
        runs.enqueue(world.contoso, "inventory.sync", user=424242)
    with pytest.raises(LookupError, match="^run 987654 does not exist$"):
        runs.advance(987654, processed=1)


def test_database_errors_carry_no_sql(world):
    "Before: PostgreSQL errors carried 1.5–1.8 KB of SQL."
    with pytest.raises(IntegrityError) as e:
        world.ops.directory.add_tenant("Contoso")  # names are unique
    msg = str(e.value)
    assert "INSERT" not in msg and "[SQL" not in msg and "parameters" not in msg.lower(), msg
    assert len(msg) < 600, len(msg)


# --- issue 14 item 7: "database is locked" is retried ----------------------------------------------------------------

HOLDER = textwrap.dedent("""
    import sqlite3, sys, time
    con = sqlite3.connect(sys.argv[1], isolation_level=None)
    con.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.execute("COMMIT")
""")


def test_a_lock_held_longer_than_the_busy_timeout_is_waited_out(tmp_path, caplog):
    "Before: the 30 s busy timeout spent the whole 30 s retry budget: a lock held a little longer failed the call."
    caplog.set_level(logging.WARNING, logger="opsux")
    assert RETRY_SECONDS >= 40 + SQLITE_BUSY_TIMEOUT_MS / 1000  # a 40 s lock is waited out (bench/faults.py)
    path = tmp_path / "opsux.sqlite"
    with opsux.connect(str(path)) as ops:
        t = ops.directory.add_tenant("Contoso")
        run = ops.runs.start(ops.runs.enqueue(t, "inventory.sync"))
        hold = SQLITE_BUSY_TIMEOUT_MS / 1000 + 3
        p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(hold)], stdout=subprocess.PIPE, text=True)
        try:
            assert p.stdout.readline().strip() == "locked"
            t0 = time.monotonic()
            r = ops.runs.advance(run, processed=1)
            waited = time.monotonic() - t0
        finally: p.wait(60)
        assert r.summary_counts == {"processed": 1}
        assert waited >= SQLITE_BUSY_TIMEOUT_MS / 1000
        assert [m for m in caplog.messages if "locked" in m and "retry 1" in m], caplog.messages


# --- issue 15 item 2: cheap to open ---------------------------------------------------------------------------------

def test_the_shipped_head_is_alembics_head():
    assert head_revision() == alembic_head()


def test_connect_to_a_migrated_database_does_not_import_alembic(db_url):
    opsux.connect(db_url).close()  # migrate once
    code = ("import sys, opsux; ops = opsux.connect(sys.argv[1]); ops.runs; ops.close(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'panel', 'bokeh')))")
    out = subprocess.run([sys.executable, "-c", code, db_url], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
