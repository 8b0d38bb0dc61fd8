"""Migrations bring an empty database to head (matching the models exactly); read-only mode on a foreign legacy table."""
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

import opsux
from opsux.store.db import ReadOnlyError, head_revision, upgrade
import opsux.store.authstore  # noqa: F401  (declares the auth tables of migration 0004 on Base.metadata)
import opsux.store.tokens  # noqa: F401  (declares the API tokens table of migration 0006)
from opsux.store.models import Base
from opsux.rules.status import UxStatus, normalize


def test_upgrade_empty_database_to_head(db_url):
    assert upgrade(db_url) == head_revision()
    assert upgrade(db_url) == head_revision()  # idempotent
    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
        assert diff == [], diff  # the migration builds exactly what the models declare
    finally: engine.dispose()


def test_connect_migrates_unless_told_not_to(db_url):
    ops = opsux.connect(db_url, migrate=False)
    try: assert "operation_runs" not in inspect(ops.engine).get_table_names()
    finally: ops.close()
    ops = opsux.connect(db_url)
    try: assert "operation_runs" in ops.tables
    finally: ops.close()


SEED_TABLE = {
    "sqlite": """CREATE TABLE operation_runs (id INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, user_id INTEGER,
        initiator_name TEXT, type TEXT NOT NULL, status TEXT NOT NULL, outcome TEXT, started_at TIMESTAMP,
        completed_at TIMESTAMP, summary_counts TEXT, failure_summary TEXT, context TEXT, created_at TIMESTAMP,
        updated_at TIMESTAMP)""",
    "postgresql": """CREATE TABLE operation_runs (id bigserial PRIMARY KEY, tenant_id bigint NOT NULL, user_id bigint,
        initiator_name varchar(255), type varchar(255) NOT NULL, status varchar(255) NOT NULL, outcome varchar(255),
        started_at timestamp, completed_at timestamp, summary_counts jsonb, failure_summary jsonb, context jsonb,
        created_at timestamp, updated_at timestamp)""",
}
LEGACY = [  # tenant, user, type, status, outcome, counts, failures
    (1, 7, "inventory.sync", "completed", "succeeded", '{"total": 5, "processed": 5}', "[]"),
    (1, 7, "policy.sync", "failed", "pending", '{"total": "3", "bogus": 1}', '[{"message": "Bearer abc.def.ghi boom"}]'),
    (1, 7, "legacy.unknown_type", "Completed ", "PARTIALLY_SUCCEEDED", '"not an object"', '"garbage"'),
    (1, 7, "inventory.sync", "running", "pending", '{"total": 10, "processed": 4}', "[]"),
    (1, 8, "inventory.sync", "queued", None, None, None),
    (2, 9, "inventory.sync", "completed", "succeeded", "{}", "[]"),
]


def make_foreign(url, dialect):
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text(SEED_TABLE[dialect]))
        for i, (t, u, ty, s, o, sc, fs) in enumerate(LEGACY, 1):
            c.execute(text("INSERT INTO operation_runs (tenant_id, user_id, initiator_name, type, status, outcome, "
                           "summary_counts, failure_summary, context, created_at, updated_at) VALUES "
                           f"(:t, :u, 'Legacy', :ty, :s, :o, {'CAST(:sc AS jsonb)' if dialect == 'postgresql' else ':sc'}, "
                           f"{'CAST(:fs AS jsonb)' if dialect == 'postgresql' else ':fs'}, NULL, :at, :at)"),
                      dict(t=t, u=u, ty=ty, s=s, o=o, sc=sc, fs=fs, at=f"2026-01-18 14:{i:02d}:00"))
    return engine


def test_read_only_on_a_foreign_seed_only_table(db_url):
    dialect = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    engine = make_foreign(db_url, dialect)
    before = sorted(inspect(engine).get_table_names())
    ops = opsux.connect(db_url, read_only=True)
    try:
        assert "identity" not in ops.run_columns
        v = ops.viewer(7, tenant=[1])  # no memberships table: the integrator names the tenants
        page = v.runs()
        assert [r.tenant_id for r in page] == [1] * 5
        assert [r.id for r in page] == [5, 4, 3, 2, 1]
        assert page.items[0].identity is None and page.items[0].heartbeat_at is None
        assert v.run(6) is None  # tenant 2 is not visible
        assert v.run(1).summary_counts == {"total": 5, "processed": 5}
        assert v.run(1).created_at.tzinfo is not None
        for ux in UxStatus:
            want = [i for i, row in enumerate(LEGACY, 1) if row[0] == 1 and normalize(row[3], row[4]) == ux]
            assert sorted(r.id for r in v.runs(status=ux)) == want, ux
        assert [r.id for r in v.active_runs()] == [4]
        assert v.notifications() == [] and v.unread_count() == 0 and v.mark_all_read() == 0
        assert [t.name for t in v.tenants()] == ["Tenant 1"]
        assert ops.viewer(7).runs().items == []  # no tenants named: nothing visible
        with pytest.raises(ReadOnlyError): ops.runs.enqueue(1, "inventory.sync")
        from opsux.rules.presenter import OperationUxPresenter
        p = OperationUxPresenter()
        assert p.terminal_notification(v.run(3)).status in ("warning", "neutral")
    finally: ops.close()
    assert sorted(inspect(engine).get_table_names()) == before  # nothing migrated, nothing created
    engine.dispose()


def test_read_only_postgres_sessions_cannot_write(db_url):
    if not db_url.startswith("postgresql"): pytest.skip("PostgreSQL only")
    upgrade(db_url)
    ops = opsux.connect(db_url, read_only=True)
    try:
        with pytest.raises(Exception, match="read-only"):
            with ops.engine.begin() as c: c.execute(text("INSERT INTO tenants (name, created_at) VALUES ('x', now())"))
    finally: ops.close()


def test_concurrent_first_connects_migrate_once(db_url):
    import threading
    errors, handles = [], []
    barrier = threading.Barrier(4)
    def go():
        try:
            barrier.wait()
            handles.append(opsux.connect(db_url))
        except Exception as e: errors.append(e)
    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads: t.start()
    for t in threads: t.join(60)
    try:
        assert not errors, errors
        assert len(handles) == 4 and all("operation_runs" in h.tables for h in handles)
    finally:
        for h in handles: h.close()
