"""Writes table: each writer's last applied token, so a retried write after a lost connection is applied once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

from opsux.store.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "operation_run_writes",
        sa.Column("writer", sa.String(64), primary_key=True),
        sa.Column("token", BIGID, nullable=False),
        sa.Column("run_id", BIGID, nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("operation_run_writes")
