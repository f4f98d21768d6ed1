"""Record LLM token counts, cache hits and attempts; add the LLM response cache.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_calls") as batch:
        batch.add_column(sa.Column("input_tokens", sa.Integer, nullable=True))
        batch.add_column(sa.Column("output_tokens", sa.Integer, nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=True))
        batch.add_column(
            sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false())
        )
    op.create_table(
        "llm_cache",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("model", sa.String, nullable=False),
        sa.Column("prompt_ref", sa.String, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "response",
            sa.JSON(none_as_null=True).with_variant(
                postgresql.JSONB(none_as_null=True), "postgresql"
            ),
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_table("llm_cache")
    with op.batch_alter_table("llm_calls") as batch:
        for column in ("cached", "attempts", "output_tokens", "input_tokens"):
            batch.drop_column(column)
