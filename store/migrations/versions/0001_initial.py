"""Create the journal tables: decisions, llm_calls, orders, fills, positions, events.

Revision ID: 0001
Revises:
Create Date: 2026-01-01

Self-contained on purpose: later edits to store/schema.py must not change what this revision
creates. Decimals are TEXT (exact on SQLite too); datetimes are timezone-aware (UTC).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _id() -> sa.Column:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("run_id", sa.String(), primary_key=True),
        sa.Column("session_id", sa.String(), nullable=False),
        _ts("bar_ts"),
        _ts("created_at"),
        sa.Column("trigger", sa.String(), nullable=False),
        sa.Column("action", sa.String(), nullable=False),
        sa.Column("market", sa.String(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("reviewer_labels", _json(), nullable=False),
        sa.Column("nodes", _json(), nullable=False),
        sa.Column("ml", _json(), nullable=False),
        sa.Column("verdicts", _json(), nullable=False),
        sa.Column("sizing", _json(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
    )
    op.create_index("ix_decisions_bar_ts", "decisions", ["bar_ts"])
    op.create_index("ix_decisions_action", "decisions", ["action"])
    op.create_index("ix_decisions_session_id", "decisions", ["session_id"])

    op.create_table(
        "llm_calls",
        _id(),
        sa.Column("run_id", sa.String(), nullable=False),
        sa.Column("node", sa.String(), nullable=False),
        sa.Column("provider", sa.String(), nullable=False),
        sa.Column("model", sa.String(), nullable=False),
        sa.Column("prompt_ref", sa.String(), nullable=True),
        sa.Column("request", _json(), nullable=False),
        sa.Column("response", _json(), nullable=True),
        sa.Column("verdict", sa.String(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        _ts("created_at"),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_llm_calls_run_id", "llm_calls", ["run_id"])

    op.create_table(
        "orders",
        sa.Column("identifier", sa.String(), primary_key=True),
        sa.Column("run_id", sa.String(), nullable=True),
        sa.Column("market", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("ord_type", sa.String(), nullable=False),
        sa.Column("price", sa.String(), nullable=True),
        sa.Column("volume", sa.String(), nullable=True),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("executed_volume", sa.String(), nullable=False),
        sa.Column("paid_fee", sa.String(), nullable=False),
    )
    op.create_index("ix_orders_run_id", "orders", ["run_id"])
    op.create_index("ix_orders_market", "orders", ["market"])

    op.create_table(
        "fills",
        _id(),
        sa.Column("order_identifier", sa.String(), nullable=False),
        sa.Column("market", sa.String(), nullable=False),
        sa.Column("side", sa.String(), nullable=False),
        sa.Column("price", sa.String(), nullable=False),
        sa.Column("volume", sa.String(), nullable=False),
        sa.Column("fee", sa.String(), nullable=False),
        _ts("ts"),
    )
    op.create_index("ix_fills_order_identifier", "fills", ["order_identifier"])
    op.create_index("ix_fills_ts", "fills", ["ts"])

    op.create_table(
        "positions",
        sa.Column("market", sa.String(), primary_key=True),
        sa.Column("volume", sa.String(), nullable=False),
        sa.Column("avg_buy_price", sa.String(), nullable=False),
        sa.Column("stop_loss_price", sa.String(), nullable=True),
        sa.Column("take_profit_price", sa.String(), nullable=True),
        _ts("opened_at"),
        _ts("updated_at"),
        sa.Column("run_id", sa.String(), nullable=True),
    )

    op.create_table(
        "events",
        _id(),
        sa.Column("run_id", sa.String(), nullable=True),
        _ts("ts"),
        sa.Column("type", sa.String(), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_run_id", "events", ["run_id"])


def downgrade() -> None:
    for table in ("events", "positions", "fills", "orders", "llm_calls", "decisions"):
        op.drop_table(table)
