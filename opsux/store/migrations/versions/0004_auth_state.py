"""Authentication state shared by every dashboard process: login-attempt counters, per-user session epochs
(sign-out ends every session issued before it) and OIDC subject bindings (issuer + sub → user).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa

from opsux.store.models import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "opsux_login_throttle",
        sa.Column("key", sa.String(400), primary_key=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("window_start", UtcDateTime(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
    )
    op.create_table(
        "opsux_auth_epochs",
        sa.Column("identity", sa.String(320), primary_key=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_opsux_auth_epochs_updated_at", "opsux_auth_epochs", ["updated_at"])
    op.create_table(
        "opsux_oidc_subjects",
        sa.Column("issuer", sa.String(255), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("issuer", "user_id", name="uq_opsux_oidc_subjects_issuer_user"),
    )


def downgrade() -> None:
    op.drop_table("opsux_oidc_subjects")
    op.drop_index("ix_opsux_auth_epochs_updated_at", table_name="opsux_auth_epochs")
    op.drop_table("opsux_auth_epochs")
    op.drop_table("opsux_login_throttle")
