"""Initial opsux schema: tenants, users, memberships, operation_runs (seed columns + identity, heartbeat_at), notifications.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""
from alembic import op
import sqlalchemy as sa

from opsux.store.models import JSONType, UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = "status IN ('queued', 'running')"
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _partial(where: str) -> dict:
    return {"sqlite_where": sa.text(where), "postgresql_where": sa.text(where)}


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("email", sa.String(255), nullable=True, unique=True),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "tenant_memberships",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_tenant_memberships_tenant_id", "tenant_memberships", ["tenant_id"])
    op.create_table(
        "operation_runs",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("initiator_name", sa.String(255), nullable=True),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("completed_at", UtcDateTime(), nullable=True),
        sa.Column("summary_counts", JSONType, nullable=False),
        sa.Column("failure_summary", JSONType, nullable=False),
        sa.Column("context", JSONType, nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("identity", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_operation_runs_tenant_id_id", "operation_runs", ["tenant_id", "id"])
    op.create_index("ix_operation_runs_tenant_id_type_id", "operation_runs", ["tenant_id", "type", "id"])
    op.create_index("ix_operation_runs_active_user_id", "operation_runs", ["user_id", "id"], **_partial(ACTIVE))
    op.create_index("uq_operation_runs_active_identity", "operation_runs", ["tenant_id", "type", "identity"],
                    unique=True, **_partial(ACTIVE + " AND identity IS NOT NULL"))
    op.create_index("ix_operation_runs_updated_at", "operation_runs", ["updated_at"])
    op.create_table(
        "notifications",
        sa.Column("id", BIGID, primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("run_id", BIGID, sa.ForeignKey("operation_runs.id", ondelete="CASCADE"), nullable=True),
        sa.Column("data", JSONType, nullable=False),
        sa.Column("read_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("run_id", "user_id", "type", name="uq_notifications_run_user_type"),
    )
    op.create_index("ix_notifications_user_id_id", "notifications", ["user_id", "id"])
    op.create_index("ix_notifications_unread", "notifications", ["user_id", "id"], **_partial("read_at IS NULL"))


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("operation_runs")
    op.drop_table("tenant_memberships")
    op.drop_table("users")
    op.drop_table("tenants")
