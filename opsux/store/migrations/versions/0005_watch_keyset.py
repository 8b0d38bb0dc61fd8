"""The change watcher's keyset: index `operation_runs (updated_at, id)` replaces `(updated_at)`, so the probe's
`(updated_at, id) > (:u, :id) ORDER BY updated_at, id LIMIT n` reads n index entries however many rows share one
`updated_at` (e.g. after one UPDATE of 100,000 runs).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_operation_runs_updated_at_id", "operation_runs", ["updated_at", "id"])
    op.drop_index("ix_operation_runs_updated_at", table_name="operation_runs")


def downgrade() -> None:
    op.create_index("ix_operation_runs_updated_at", "operation_runs", ["updated_at"])
    op.drop_index("ix_operation_runs_updated_at_id", table_name="operation_runs")
