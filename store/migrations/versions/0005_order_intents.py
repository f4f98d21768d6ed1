"""Add order intents (the live order manager's journal) and the fills' exchange trade id.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "order_intents",
        sa.Column("identifier", sa.String, primary_key=True),
        sa.Column("market", sa.String, nullable=False),
        sa.Column("side", sa.String, nullable=False),
        sa.Column("ord_type", sa.String, nullable=False),
        sa.Column("price", sa.String, nullable=True),
        sa.Column("volume", sa.String, nullable=True),
        sa.Column("time_in_force", sa.String, nullable=True),
        sa.Column("state", sa.String, nullable=False),
        sa.Column("uuid", sa.String, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("executed_volume", sa.String, nullable=False),
        sa.Column("paid_fee", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_order_intents_state", "order_intents", ["state"])
    with op.batch_alter_table("fills") as batch:
        batch.add_column(sa.Column("trade_uuid", sa.String, nullable=True))
        batch.create_index("ix_fills_trade_uuid", ["trade_uuid"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("fills") as batch:
        batch.drop_index("ix_fills_trade_uuid")
        batch.drop_column("trade_uuid")
    op.drop_index("ix_order_intents_state", table_name="order_intents")
    op.drop_table("order_intents")
