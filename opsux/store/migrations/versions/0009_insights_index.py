"""Insight page indexes (issue 18 item 4): the figures of a 30-day window over every tenant of 1M runs in <= 200 ms.

- `(tenant_id, created_at) INCLUDE (type, status, outcome, started_at, completed_at)`: a window's runs for the
  outcome chart, duration percentiles and failing types, read from the index alone (INCLUDE is PostgreSQL only);
- `(tenant_id, completed_at)`: throughput, runs completed in the last minutes;
- `(tenant_id, created_at) WHERE status <> 'completed' OR outcome <> 'succeeded'`: failure hotspots read only the
  runs that did not simply succeed (every failing run is one of them);
- `(tenant_id, created_at) WHERE lower(trim(status)) = 'queued'`: the queue's count and oldest run.
Measured figures: docs/notes/insights_speed.md.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""
from alembic import op
import sqlalchemy as sa

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_UNSUCCEEDED = "status <> 'completed' OR outcome <> 'succeeded'"
_QUEUED = "lower(trim(status)) = 'queued'"


def upgrade() -> None:
    op.create_index("ix_operation_runs_tenant_id_created_at", "operation_runs", ["tenant_id", "created_at"],
                    postgresql_include=["type", "status", "outcome", "started_at", "completed_at"])
    op.create_index("ix_operation_runs_tenant_id_completed_at", "operation_runs", ["tenant_id", "completed_at"])
    op.create_index("ix_operation_runs_unsucceeded", "operation_runs", ["tenant_id", "created_at"],
                    sqlite_where=sa.text(_UNSUCCEEDED), postgresql_where=sa.text(_UNSUCCEEDED))
    op.create_index("ix_operation_runs_queued", "operation_runs", ["tenant_id", "created_at"],
                    sqlite_where=sa.text(_QUEUED), postgresql_where=sa.text(_QUEUED))


def downgrade() -> None:
    for name in ("ix_operation_runs_queued", "ix_operation_runs_unsucceeded", "ix_operation_runs_tenant_id_completed_at",
                 "ix_operation_runs_tenant_id_created_at"):
        op.drop_index(name, table_name="operation_runs")
