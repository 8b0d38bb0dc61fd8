"""Per-user API tokens: the SHA-256 of each token (never the token), its name, creation, last use and revocation.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

from opsux.store.models import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "opsux_api_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("hint", sa.String(16), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("token_hash", name="uq_opsux_api_tokens_token_hash"),
    )
    op.create_index("ix_opsux_api_tokens_user_id", "opsux_api_tokens", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_opsux_api_tokens_user_id", table_name="opsux_api_tokens")
    op.drop_table("opsux_api_tokens")
