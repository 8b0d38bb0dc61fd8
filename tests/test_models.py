"""The schema on both databases: JSONB, indexes, the dedupe and notification constraints, UTC datetimes, foreign keys."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import inspect, insert, select, text
from sqlalchemy.exc import IntegrityError

import opsux
from opsux.store.models import Notification, OperationRun, Tenant, User


def test_tables_and_indexes(ops):
    insp = inspect(ops.engine)
    assert {"tenants", "users", "tenant_memberships", "operation_runs", "notifications"} <= set(insp.get_table_names())
    seed_columns = ["id", "tenant_id", "user_id", "initiator_name", "type", "status", "outcome", "started_at", "completed_at",
                    "summary_counts", "failure_summary", "context", "created_at", "updated_at"]
    cols = [c["name"] for c in insp.get_columns("operation_runs")]
    assert cols[:len(seed_columns)] == seed_columns and {"identity", "heartbeat_at"} <= set(cols)
    names = {i["name"] for i in insp.get_indexes("operation_runs")}
    assert {"ix_operation_runs_tenant_id_id", "ix_operation_runs_active_user_id", "uq_operation_runs_active_identity"} <= names
    assert "ix_notifications_unread" in {i["name"] for i in insp.get_indexes("notifications")}


def test_json_columns_are_jsonb_on_postgres(ops):
    if not ops.is_postgres: pytest.skip("PostgreSQL only")
    with ops.engine.connect() as c:
        types = dict(c.execute(text("SELECT column_name, data_type FROM information_schema.columns "
                                    "WHERE table_name = 'operation_runs'")).all())
    assert {types[k] for k in ("summary_counts", "failure_summary", "context")} == {"jsonb"}
    assert types["created_at"] == "timestamp with time zone"


def test_active_identity_is_unique_in_the_schema(ops):
    with ops.engine.begin() as c:
        c.execute(insert(Tenant), [{"id": 1, "name": "Contoso"}])
        row = {"tenant_id": 1, "type": "inventory.sync", "identity": "all"}
        c.execute(insert(OperationRun), [row, {**row, "identity": None}, {**row, "identity": None}])
    with pytest.raises(IntegrityError):
        with ops.engine.begin() as c: c.execute(insert(OperationRun), [row])
    with ops.engine.begin() as c:
        c.execute(OperationRun.__table__.update().values(status="completed", outcome="succeeded"))
        c.execute(insert(OperationRun), [row])  # the identity is free once the run is terminal


def test_one_notification_per_run_user_type(ops):
    with ops.engine.begin() as c:
        c.execute(insert(Tenant), [{"id": 1, "name": "Contoso"}])
        c.execute(insert(User), [{"id": 1, "name": "Ada"}])
        c.execute(insert(OperationRun), [{"id": 1, "tenant_id": 1, "type": "inventory.sync"}])
        c.execute(insert(Notification), [{"user_id": 1, "run_id": 1, "data": {}}])
    with pytest.raises(IntegrityError):
        with ops.engine.begin() as c: c.execute(insert(Notification), [{"user_id": 1, "run_id": 1, "data": {}}])


def test_foreign_keys_are_enforced(ops):
    with pytest.raises(IntegrityError):
        with ops.engine.begin() as c: c.execute(insert(OperationRun), [{"tenant_id": 42, "type": "inventory.sync"}])


def test_datetimes_are_utc(ops):
    when = datetime(2026, 1, 18, 15, 50, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
    with ops.engine.begin() as c:
        c.execute(insert(Tenant), [{"id": 1, "name": "Contoso", "created_at": when}])
    with ops.engine.connect() as c:
        got = c.execute(select(Tenant.created_at)).scalar()
    assert got == when and got.tzinfo is not None and got.utcoffset() == timedelta(0)


def test_defaults(ops):
    with ops.engine.begin() as c:
        c.execute(insert(Tenant), [{"id": 1, "name": "Contoso"}])
        c.execute(insert(OperationRun), [{"tenant_id": 1, "type": "inventory.sync"}])
    with ops.engine.connect() as c:
        r = c.execute(select(OperationRun)).mappings().one()
    assert (r["status"], r["outcome"], r["summary_counts"], r["failure_summary"], r["context"]) == ("queued", "pending", {}, [], {})
    assert r["created_at"].tzinfo is not None


def test_text_that_is_no_date_in_a_sqlite_timestamp_reads_as_absent(tmp_path):
    "SQLite stores datetimes as text; a foreign writer's garbage must not break the list or the detail."
    from sqlalchemy import text
    ops = opsux.connect(f"sqlite:///{tmp_path}/garbage.sqlite")
    try:
        t = ops.directory.add_tenant("Contoso")
        u = ops.directory.add_user("Ada", email="ada@contoso.test", tenants=[t])
        run = ops.runs.enqueue(t, "inventory.sync", user=u)
        with ops.engine.begin() as con:
            con.execute(text("UPDATE operation_runs SET started_at = 'yesterday-ish', completed_at = '42' WHERE id = :i"),
                        {"i": run.id})
        v = ops.viewer(u)
        listed = v.runs().items[0]
        assert (listed.id, listed.started_at, listed.completed_at) == (run.id, None, None)
        assert v.run(run.id).created_at is not None
        with ops.engine.connect() as con:  # nothing was rewritten by reading
            assert con.execute(text("SELECT started_at FROM operation_runs WHERE id = :i"), {"i": run.id}).scalar() == "yesterday-ish"
    finally:
        ops.close()


def test_reads_are_utc_whatever_the_servers_time_zone(db_url):
    "PostgreSQL's `timestamptz` reads are UTC from psycopg itself (UTC session): no per-value work."
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.engine import make_url
    from opsux.store.models import PG_TIMESTAMPTZ, UtcDateTime
    from opsux.store.schema import HostDateTime
    pg = postgresql.dialect()
    pg.driver = "psycopg"
    for t in (UtcDateTime(), HostDateTime("Europe/Berlin", naive=False)):
        assert t.result_processor(pg, PG_TIMESTAMPTZ) is None
        assert t.result_processor(pg, 1114) is not None
        assert t.result_processor(sqlite.dialect(), None) is not None
    naive = datetime(2026, 3, 29, 2, 30)                  # a wall time Berlin skips (DST starts)
    for tz in ("UTC", "Europe/Berlin", "America/New_York"):
        h = HostDateTime(tz)
        for v in (naive, naive.replace(month=10, day=25), None, "2026-01-18 15:50:15", "garbage"):
            assert h.result_processor(pg, 1114)(v) == h.process_result_value(v, pg)   # same answer
    if db_url.startswith("postgresql"):   # a server whose own default is not UTC
        name = make_url(db_url).database
        with opsux.connect(db_url).engine.connect() as c:
            c.exec_driver_sql(f"ALTER DATABASE \"{name}\" SET timezone = 'America/New_York'")
            c.commit()
    ops = opsux.connect(db_url)
    try:
        t = ops.directory.add_tenant("Contoso")
        u = ops.directory.add_user("Ada", email="ada@contoso.test", tenants=[t])
        when = datetime(2026, 1, 18, 15, 50, 15, 123456, tzinfo=timezone(timedelta(hours=1)))
        run = ops.runs.enqueue(t, "inventory.sync", user=u)
        with ops.engine.begin() as c:
            c.execute(OperationRun.__table__.update().values(started_at=when))
        for r in (ops.viewer(u).runs().items[0], ops.viewer(u).run(run.id)):
            assert r.started_at == when and r.started_at.tzinfo is timezone.utc
            assert r.created_at.tzinfo is timezone.utc
    finally: ops.close()
