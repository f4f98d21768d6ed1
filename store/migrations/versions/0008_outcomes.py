"""Add outcomes: what each decision's proposal, verdicts and trade were worth once known.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outcomes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("subject", sa.String, nullable=False),
        sa.Column("bar_ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("market", sa.String, nullable=True),
        sa.Column("action", sa.String, nullable=True),
        sa.Column("verdict", sa.String, nullable=True),
        sa.Column("horizon_minutes", sa.Integer, nullable=True),
        sa.Column("forward_return", sa.Float, nullable=True),
        sa.Column("net_return", sa.Float, nullable=True),
        sa.Column("correct", sa.Boolean, nullable=True),
        sa.Column("realised_pnl", sa.String, nullable=True),
        sa.Column(
            "details",
            sa.JSON(none_as_null=True).with_variant(
                postgresql.JSONB(none_as_null=True), "postgresql"
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("run_id", "subject", name="uq_outcomes_run_subject"),
    )
    op.create_index("ix_outcomes_bar_ts", "outcomes", ["bar_ts"])
    op.create_index("ix_outcomes_subject", "outcomes", ["subject"])


def downgrade() -> None:
    op.drop_index("ix_outcomes_subject", table_name="outcomes")
    op.drop_index("ix_outcomes_bar_ts", table_name="outcomes")
    op.drop_table("outcomes")
