"""Attempts, queue job ids, cancel requests on runs; the write-health table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

from opsux.store.models import JSONType, UtcDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operation_runs") as b:
        b.add_column(sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("1")))
        b.add_column(sa.Column("attempts", JSONType, nullable=True))
        b.add_column(sa.Column("job_id", sa.String(255), nullable=True))
        b.add_column(sa.Column("cancel_requested_at", UtcDateTime(), nullable=True))
    op.create_index("ix_operation_runs_job_id", "operation_runs", ["job_id"],
                    sqlite_where=sa.text("job_id IS NOT NULL"), postgresql_where=sa.text("job_id IS NOT NULL"))
    op.create_table(
        "opsux_write_health",
        sa.Column("source", sa.String(255), primary_key=True),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(500), nullable=True),
        sa.Column("failed_at", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("opsux_write_health")
    op.drop_index("ix_operation_runs_job_id", table_name="operation_runs")
    with op.batch_alter_table("operation_runs") as b:
        for c in ("cancel_requested_at", "job_id", "attempts", "attempt"): b.drop_column(c)
