"""Add news: items as first seen (deduplicated by link and title) and their scores per coin.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


def upgrade() -> None:
    op.create_table(
        "news_items",
        _id(),
        sa.Column("link_key", sa.String(64), nullable=False),
        sa.Column("title_key", sa.String(64), nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("notice_kind", sa.String, nullable=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("link", sa.Text, nullable=False),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("published_raw", sa.String, nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("coins", _json(), nullable=False),
        sa.UniqueConstraint("link_key", name="uq_news_items_link_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_news_items_first_seen_at", "news_items", ["first_seen_at"])
    op.create_index("ix_news_items_title_key", "news_items", ["title_key"])
    op.create_table(
        "news_scores",
        _id(),
        sa.Column("item_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("market", sa.String, nullable=False),
        sa.Column("scorer", sa.String, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("relevance", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"], ["news_items.id"], name="fk_news_scores_item_id", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("item_id", "market", "scorer", name="uq_news_scores_item_market"),
    )
    op.create_index("ix_news_scores_market", "news_scores", ["market"])


def downgrade() -> None:
    op.drop_index("ix_news_scores_market", table_name="news_scores")
    op.drop_table("news_scores")
    op.drop_index("ix_news_items_title_key", table_name="news_items")
    op.drop_index("ix_news_items_first_seen_at", table_name="news_items")
    op.drop_table("news_items")
