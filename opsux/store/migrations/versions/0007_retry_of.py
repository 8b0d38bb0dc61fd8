"""Retry chains: `operation_runs.retry_of`, the run a run retries, with a partial index to find a run's retries.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("operation_runs") as t:
        t.add_column(sa.Column("retry_of", _ID, nullable=True))  # no FK: retention deletes the runs it names
    op.create_index("ix_operation_runs_retry_of", "operation_runs", ["retry_of"],
                    sqlite_where=sa.text("retry_of IS NOT NULL"), postgresql_where=sa.text("retry_of IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_operation_runs_retry_of", table_name="operation_runs")
    with op.batch_alter_table("operation_runs") as t:
        t.drop_column("retry_of")
