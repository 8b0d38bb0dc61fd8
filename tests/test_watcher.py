"""The probe watcher cannot stall (issue 14 item 3, issue 16 item 5), on SQLite and on PostgreSQL, through
`connect(read_only=True)` (the probe path of SQLite and of every read-only dashboard):

- one UPDATE of 100,000 runs, then normal work: the normal work is seen within 2 s;
- a writer whose clock is 60 s behind the database's is seen within 2 s;
- a row dated in the future stops nothing, and its own changes are seen;
- on a foreign table with second-precision timestamps (`timestamp(0)`), two writes in the same second both reach
  subscribers;
- what one probe reads stays bounded whatever the size of the change;
- a change that does not touch `updated_at` reaches subscribers through the fallback;
- the table and its columns are explicit inputs (`WatchSource`), so a host's own names can be mapped.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import text

import opsux
import opsux.store.service as service
from opsux.store.models import utcnow
from support import wait_until

SEEN_WITHIN = 2.0  # seconds: the bound from the write to the event


def is_pg(url): return url.startswith("postgresql")


def fill(ops, tenant_id: int, n: int) -> None:
    "Insert `n` finished runs in one statement."
    now = utcnow()
    if ops.is_postgres:
        sql = ("INSERT INTO operation_runs (tenant_id, type, status, outcome, summary_counts, failure_summary, "
               "context, created_at, updated_at) SELECT :t, 'inventory.sync', 'completed', 'succeeded', '{}', '[]', "
               "'{}', :now, :now FROM generate_series(1, :n)")
        params = dict(t=tenant_id, now=now, n=n)
    else:
        sql = ("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < :n) "
               "INSERT INTO operation_runs (tenant_id, type, status, outcome, summary_counts, failure_summary, "
               "context, created_at, updated_at, attempt) SELECT :t, 'inventory.sync', 'completed', 'succeeded', "
               "'{}', '[]', '{}', :now, :now, 1 FROM s")
        params = dict(t=tenant_id, now=now.replace(tzinfo=None).isoformat(" "), n=n)
    with ops.engine.begin() as c: c.execute(text(sql), params)


def sql_now(ops, seconds: float = 0) -> object:
    "The database's clock plus `seconds`, in the form the column stores."
    now = utcnow() + timedelta(seconds=seconds)
    return now if ops.is_postgres else now.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def open_probe(db_url):
    "A read-only handle, its watcher (a `ProbeWatcher` on both backends) and the list of what it emits."
    ro = opsux.connect(db_url, read_only=True)
    w = ro.watcher()
    assert type(w).__name__ == "ProbeWatcher" and w.ready.wait(20)
    got = []
    w.subscribe(got.append)
    return ro, w, got


@pytest.fixture
def probe(db_url, world):
    ro, w, got = open_probe(db_url)
    yield w, got
    ro.close()


def seen(got, run_id, after=0):
    "An event for `run_id`, or a `resync` (every tab re-reads), among the events from index `after` on."
    return any(e.run_id == run_id or e.kind == "resync" for e in got[after:])


def test_one_update_of_100000_runs_then_normal_work_is_seen_within_2s(db_url, world):
    fill(world.ops, world.contoso.id, 100_000)
    ro, w, got = open_probe(db_url)
    try: bulk_update_then_normal_work(world, got)
    finally: ro.close()


def bulk_update_then_normal_work(world, got):
    with world.ops.engine.begin() as c:  # one statement, 100,000 rows, one timestamp
        c.execute(text("UPDATE operation_runs SET context = '{}', updated_at = :now"), {"now": sql_now(world.ops)})
    runs = world.ops.runs
    for step in range(3):  # normal work, then more of it: each is seen promptly
        n = len(got); r = runs.enqueue(world.contoso, "inventory.sync", user=world.ada, identity=f"bulk-{step}")
        wait_until(lambda: seen(got, r.id, n), timeout=SEEN_WITHIN)
        n = len(got); runs.start(r)
        wait_until(lambda: any(e.run_id == r.id and e.kind == "progress" for e in got[n:]), timeout=SEEN_WITHIN)
    assert [e.kind for e in got].count("resync") == 1  # the bulk change itself: every tab re-reads once


def test_a_writer_whose_clock_is_60s_behind_is_seen_within_2s(world, probe, monkeypatch):
    runs = world.ops.runs
    w, got = probe
    r = runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
    wait_until(lambda: seen(got, r.id), timeout=SEEN_WITHIN)
    real = service.utcnow
    monkeypatch.setattr(service, "utcnow", lambda: real() - timedelta(seconds=60))  # the worker's clock
    for change in (lambda: runs.start(r), lambda: runs.advance(r, processed=1), lambda: runs.complete(r)):
        n = len(got); change()
        wait_until(lambda: seen(got, r.id, n), timeout=SEEN_WITHIN)
    assert got[-1].kind == "completed"


def test_a_row_dated_in_the_future_stops_nothing(world, probe):
    runs = world.ops.runs
    w, got = probe
    future = runs.enqueue(world.contoso, "inventory.sync", user=world.ada, identity="future")
    wait_until(lambda: seen(got, future.id), timeout=SEEN_WITHIN)
    with world.ops.engine.begin() as c:
        c.execute(text("UPDATE operation_runs SET updated_at = :t WHERE id = :i"),
                  {"t": sql_now(world.ops, 86400 * 365), "i": future.id})
    for step in range(3):
        n = len(got); r = runs.enqueue(world.contoso, "inventory.sync", user=world.ada, identity=f"now-{step}")
        wait_until(lambda: seen(got, r.id, n), timeout=SEEN_WITHIN)
    n = len(got)
    with world.ops.engine.begin() as c:  # the future row's own change, its date unchanged
        c.execute(text("UPDATE operation_runs SET status = 'running' WHERE id = :i"), {"i": future.id})
    wait_until(lambda: seen(got, future.id, n), timeout=SEEN_WITHIN)


LARAVEL = {  # the host's table as Laravel's schema builder makes it: second-precision naive timestamps
    "postgresql": """CREATE TABLE operation_runs (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL,
        user_id bigint, initiator_name varchar(255), type varchar(255) NOT NULL, status varchar(255) NOT NULL,
        outcome varchar(255), summary_counts jsonb, failure_summary jsonb, context jsonb,
        started_at timestamp(0) without time zone, completed_at timestamp(0) without time zone,
        created_at timestamp(0) without time zone, updated_at timestamp(0) without time zone)""",
    "sqlite": """CREATE TABLE operation_runs (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, user_id INTEGER,
        initiator_name TEXT, type TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT, summary_counts TEXT,
        failure_summary TEXT, context TEXT, started_at TEXT, completed_at TEXT, created_at TEXT, updated_at TEXT)""",
}


def test_two_writes_in_one_second_on_a_timestamp0_table_in_read_only_mode(db_url):
    from sqlalchemy import create_engine
    dialect = "postgresql" if is_pg(db_url) else "sqlite"
    host = create_engine(db_url)
    second = lambda: utcnow().replace(microsecond=0, tzinfo=None).strftime("%Y-%m-%d %H:%M:%S")  # what Laravel writes
    with host.begin() as c:
        c.execute(text(LARAVEL[dialect]))
        c.execute(text("CREATE INDEX operation_runs_updated_at_id_index ON operation_runs (updated_at, id)"))
        c.execute(text("INSERT INTO operation_runs (tenant_id, user_id, type, status, summary_counts, created_at, "
                       "updated_at) VALUES (1, 7, 'inventory.sync', 'running', '{\"processed\": 0}', :t, :t)"),
                  {"t": second()})
    ro = opsux.connect(db_url, read_only=True)
    try:
        w = ro.watcher(); assert w.ready.wait(20)
        got = []; w.subscribe(got.append)
        count = lambda: sum(e.run_id == 1 for e in got)
        for processed in (1, 2, 3):  # three writes, all stamped with the same second
            n = count()
            with host.begin() as c:
                c.execute(text("UPDATE operation_runs SET summary_counts = :sc, updated_at = :t WHERE id = 1"),
                          {"sc": f'{{"processed": {processed}}}', "t": stamp if processed > 1 else (stamp := second())})
            wait_until(lambda: count() > n, timeout=SEEN_WITHIN)
        assert {(e.tenant_id, e.user_id, e.kind) for e in got if e.run_id == 1} == {(1, 7, "progress")}
    finally:
        ro.close(); host.dispose()


def test_one_probe_reads_a_bounded_number_of_rows(world):
    from opsux.store.events import ChangeCursor
    fill(world.ops, world.contoso.id, 20_000)
    cur = ChangeCursor(batch=500)
    with world.ops.engine.connect() as con:
        cur.start(con); con.rollback()
        con2 = world.ops.engine
        with con2.begin() as c: c.execute(text("UPDATE operation_runs SET updated_at = :t"), {"t": sql_now(world.ops)})
        worst, kinds = 0, []
        for _ in range(60):
            before = cur.rows_read
            kinds += [e.kind for e in cur.probe(con)]; con.rollback()
            worst = max(worst, cur.rows_read - before)
        assert kinds == ["resync"]  # one resync for the bulk change, no event per row
        assert worst <= 3 * 500 + 1  # head + sweep + fallback pages (+ the jump), never the 20,000 rows
        assert not cur.silent  # the sweep went round the whole change (and goes on, 500 rows a probe)
        r = world.ops.runs.enqueue(world.contoso, "inventory.sync", user=world.ada)
        assert [e.run_id for e in cur.probe(con)] == [r.id]


def test_a_missing_table_or_column_is_one_clear_line(world):
    from opsux.store.events import ChangeCursor, WatchSource, WatchSourceError
    with world.ops.engine.connect() as con:
        with pytest.raises(WatchSourceError, match="^watcher: there is no table or view host_runs$"):
            ChangeCursor(WatchSource(table="host_runs")).start(con)
        with pytest.raises(WatchSourceError, match="^watcher: operation_runs has no column modified$"):
            ChangeCursor(WatchSource(updated_at="modified")).start(con)


def test_a_change_that_does_not_touch_updated_at_is_caught_by_the_fallback(world, probe):
    from opsux.store.events import FALLBACK_SECONDS
    runs = world.ops.runs
    w, got = probe
    r = runs.start(runs.enqueue(world.contoso, "inventory.sync", user=world.ada))
    wait_until(lambda: seen(got, r.id), timeout=SEEN_WITHIN)
    with world.ops.engine.begin() as c:  # dated long ago: outside the sweep's two minutes
        c.execute(text("UPDATE operation_runs SET updated_at = :t WHERE id = :i"),
                  {"t": sql_now(world.ops, -600), "i": r.id})
    wait_until(lambda: w.cursor.memo.get(r.id) and w.cursor.memo[r.id][0] < utcnow() - timedelta(minutes=5),
               timeout=FALLBACK_SECONDS + SEEN_WITHIN)  # the fallback has read it as it is now
    n = len(got)
    with world.ops.engine.begin() as c:  # counts move, updated_at stays
        c.execute(text("UPDATE operation_runs SET summary_counts = :sc WHERE id = :i"),
                  {"sc": '{"processed": 3}', "i": r.id})
    wait_until(lambda: any(e.run_id == r.id for e in got[n:]), timeout=FALLBACK_SECONDS + SEEN_WITHIN)


HOST_JOBS = ("CREATE TABLE jobs (job_id INTEGER PRIMARY KEY, org_id INTEGER NOT NULL, owner_id INTEGER, "
             "state VARCHAR(20) NOT NULL, modified {ts} NOT NULL, progress INTEGER)")


def test_the_table_and_its_columns_are_explicit_inputs(db_url):
    "A host table with its own names (what the host-database mapping passes in), read through `WatchSource`."
    from sqlalchemy import create_engine
    from opsux.store.events import ChangeCursor, WatchSource
    host = create_engine(db_url)
    pg = is_pg(db_url)
    stamp = lambda: utcnow().replace(tzinfo=None) if pg else utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")
    src = WatchSource(table="jobs", id="job_id", tenant_id="org_id", user_id="owner_id", status="state",
                      updated_at="modified", watched=("progress",), active=("pending", "working"))
    try:
        with host.begin() as c:
            c.execute(text(HOST_JOBS.format(ts="timestamp" if pg else "TEXT")))
            c.execute(text("INSERT INTO jobs VALUES (1, 5, 9, 'working', :t, 0)"), {"t": stamp()})
        with host.connect() as con:
            cur = ChangeCursor(src).start(con); con.rollback()
            with host.begin() as c:
                c.execute(text("UPDATE jobs SET progress = 1, modified = :t WHERE job_id = 1"), {"t": stamp()})
                c.execute(text("INSERT INTO jobs VALUES (2, 5, 9, 'done', :t, 4)"), {"t": stamp()})
            events = cur.probe(con)
        assert [(e.run_id, e.tenant_id, e.user_id, e.kind) for e in events] == [(1, 5, 9, "progress"),
                                                                               (2, 5, 9, "completed")]
    finally:
        host.dispose()
