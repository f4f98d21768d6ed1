"""Journal tables (SQLAlchemy Core); Alembic migrations create them, never `create_all`."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

__all__ = [
    "DecimalText",
    "UtcDateTime",
    "decisions",
    "events",
    "fills",
    "llm_cache",
    "llm_calls",
    "loss_limits",
    "metadata",
    "news_items",
    "news_scores",
    "order_intents",
    "orders",
    "outcomes",
    "positions",
    "prompt_versions",
    "trading_control",
    "utc_now",
]


def utc_now() -> datetime:
    """Return the current time, timezone-aware UTC."""
    return datetime.now(UTC)


class DecimalText(TypeDecorator[Decimal]):
    """Store a `Decimal` as its exact text so it round-trips on every backend.

    SQLite's NUMERIC affinity converts to a float and loses digits; text does not.
    """

    impl = sa.String
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if isinstance(value, float):
            raise TypeError(f"decimal columns take Decimal, int or str, not float {value!r}")
        try:
            number = Decimal(value)
        except (InvalidOperation, TypeError, ValueError) as exc:
            raise ValueError(f"not a decimal number: {value!r}") from exc
        if not number.is_finite():
            raise ValueError(f"decimal column value must be finite, got {value!r}")
        return str(number)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value)


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend; naive datetimes are refused."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} (timezone-aware UTC required)")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite has no timezone type: keep a naive UTC value that sorts as text.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _autoincrement_id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    )


metadata = sa.MetaData()

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("session_id", sa.String, nullable=False),
    sa.Column("bar_ts", UtcDateTime, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("trigger", sa.String, nullable=False),
    sa.Column("action", sa.String, nullable=False),
    sa.Column("market", sa.String, nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("reviewer_labels", _json(), nullable=False, default=dict),
    sa.Column("nodes", _json(), nullable=False, default=dict),
    sa.Column("ml", _json(), nullable=False, default=dict),
    sa.Column("verdicts", _json(), nullable=False, default=dict),
    sa.Column("sizing", _json(), nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Index("ix_decisions_bar_ts", "bar_ts"),
    sa.Index("ix_decisions_action", "action"),
    sa.Index("ix_decisions_session_id", "session_id"),
)

llm_calls = sa.Table(
    "llm_calls",
    metadata,
    _autoincrement_id(),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("node", sa.String, nullable=False),
    sa.Column("provider", sa.String, nullable=False),
    sa.Column("model", sa.String, nullable=False),
    sa.Column("prompt_ref", sa.String, nullable=True),
    sa.Column("request", _json(), nullable=False, default=dict),
    sa.Column("response", _json(), nullable=True),
    sa.Column("verdict", sa.String, nullable=True),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("input_tokens", sa.Integer, nullable=True),
    sa.Column("output_tokens", sa.Integer, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=True),
    sa.Column("cached", sa.Boolean, nullable=False, server_default=sa.false(), default=False),
    sa.Index("ix_llm_calls_run_id", "run_id"),
)

llm_cache = sa.Table(
    "llm_cache",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("provider", sa.String, nullable=False),
    sa.Column("model", sa.String, nullable=False),
    sa.Column("prompt_ref", sa.String, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("response", _json(), nullable=False),
)

orders = sa.Table(
    "orders",
    metadata,
    sa.Column("identifier", sa.String, primary_key=True),
    sa.Column("run_id", sa.String, nullable=True),
    sa.Column("market", sa.String, nullable=False),
    sa.Column("side", sa.String, nullable=False),
    sa.Column("ord_type", sa.String, nullable=False),
    sa.Column("price", DecimalText, nullable=True),
    sa.Column("volume", DecimalText, nullable=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("updated_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("executed_volume", DecimalText, nullable=False, default=Decimal(0)),
    sa.Column("paid_fee", DecimalText, nullable=False, default=Decimal(0)),
    sa.Index("ix_orders_run_id", "run_id"),
    sa.Index("ix_orders_market", "market"),
)

fills = sa.Table(
    "fills",
    metadata,
    _autoincrement_id(),
    sa.Column("order_identifier", sa.String, nullable=False),
    sa.Column("market", sa.String, nullable=False),
    sa.Column("side", sa.String, nullable=False),
    sa.Column("price", DecimalText, nullable=False),
    sa.Column("volume", DecimalText, nullable=False),
    sa.Column("fee", DecimalText, nullable=False),
    sa.Column("ts", UtcDateTime, nullable=False),
    # The exchange's id of the execution (Upbit trades[].uuid): a fill is recorded once.
    sa.Column("trade_uuid", sa.String, nullable=True),
    sa.Index("ix_fills_order_identifier", "order_identifier"),
    sa.Index("ix_fills_ts", "ts"),
    sa.Index("ix_fills_trade_uuid", "trade_uuid", unique=True),
)

positions = sa.Table(
    "positions",
    metadata,
    sa.Column("market", sa.String, primary_key=True),
    sa.Column("volume", DecimalText, nullable=False),
    sa.Column("avg_buy_price", DecimalText, nullable=False),
    sa.Column("stop_loss_price", DecimalText, nullable=True),
    sa.Column("take_profit_price", DecimalText, nullable=True),
    sa.Column("opened_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("updated_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("run_id", sa.String, nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    _autoincrement_id(),
    sa.Column("run_id", sa.String, nullable=True),
    sa.Column("ts", UtcDateTime, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("payload", _json(), nullable=False, default=dict),
    sa.Index("ix_events_run_id", "run_id"),
    # AUTOINCREMENT on SQLite: ids are never reused, so the sequence only increases.
    sqlite_autoincrement=True,
)

# The operator's trading state (halt, resume, flatten): one row, id 1. The engine reads it.
trading_control = sa.Table(
    "trading_control",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column(
        "flatten_requested", sa.Boolean, nullable=False, server_default=sa.false(), default=False
    ),
    sa.Column("updated_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("updated_by", sa.String, nullable=False),
)

# Loss limits the engine keeps across restarts: one row per limit ("monthly"), its figures
# (period, start equity, breach) as JSON; `lxa status` and the API read them from here.
loss_limits = sa.Table(
    "loss_limits",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("figures", _json(), nullable=False),
    sa.Column("updated_at", UtcDateTime, nullable=False, default=utc_now),
)

# Every saved prompt text (the API's editor, rollbacks, and the file as first seen on disk).
prompt_versions = sa.Table(
    "prompt_versions",
    metadata,
    _autoincrement_id(),
    sa.Column("name", sa.String, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("created_by", sa.String, nullable=False),
    sa.Column("message", sa.Text, nullable=False, server_default="", default=""),
    sa.Column("previous_sha256", sa.String(64), nullable=True),
    sa.Column("diff", sa.Text, nullable=False, server_default="", default=""),
    sa.Index("ix_prompt_versions_name", "name"),
    sqlite_autoincrement=True,
)

# Live orders as the order manager tracks them: written (pending) before the request leaves,
# so a crash or a timeout can always be resolved by identifier, never by sending twice.
# States: pending, sent, unknown, open, done, cancel, rejected.
order_intents = sa.Table(
    "order_intents",
    metadata,
    sa.Column("identifier", sa.String, primary_key=True),
    sa.Column("market", sa.String, nullable=False),
    sa.Column("side", sa.String, nullable=False),
    sa.Column("ord_type", sa.String, nullable=False),
    sa.Column("price", DecimalText, nullable=True),
    sa.Column("volume", DecimalText, nullable=True),
    sa.Column("time_in_force", sa.String, nullable=True),
    sa.Column("state", sa.String, nullable=False),
    sa.Column("uuid", sa.String, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("executed_volume", DecimalText, nullable=False, default=Decimal(0)),
    sa.Column("paid_fee", DecimalText, nullable=False, default=Decimal(0)),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Column("updated_at", UtcDateTime, nullable=False, default=utc_now),
    sa.Index("ix_order_intents_state", "state"),
)

# News as first seen by the news service (`news/`): one row per story, deduplicated by its
# canonical link (unique) and its normalised title within a window (sha256 keys);
# `first_seen_at` is when this process first saw it (the point-in-time key), `published_at`
# the source's own time (None if absent or unparseable), `coins` the markets it was tagged with.
news_items = sa.Table(
    "news_items",
    metadata,
    _autoincrement_id(),
    sa.Column("link_key", sa.String(64), nullable=False),
    sa.Column("title_key", sa.String(64), nullable=False),
    sa.Column("source", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("notice_kind", sa.String, nullable=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("link", sa.Text, nullable=False),
    sa.Column("summary", sa.Text, nullable=False, server_default="", default=""),
    sa.Column("published_raw", sa.String, nullable=True),
    sa.Column("published_at", UtcDateTime, nullable=True),
    sa.Column("first_seen_at", UtcDateTime, nullable=False),
    sa.Column("coins", _json(), nullable=False, default=list),
    sa.UniqueConstraint("link_key", name="uq_news_items_link_key"),
    sa.Index("ix_news_items_first_seen_at", "first_seen_at"),
    # Not unique: the same title months apart is another notice (news.items.TITLE_DEDUP_WINDOW).
    sa.Index("ix_news_items_title_key", "title_key"),
    sqlite_autoincrement=True,
)

# One score per item, market and scorer ("lexicon", later an LLM's name).
news_scores = sa.Table(
    "news_scores",
    metadata,
    _autoincrement_id(),
    sa.Column(
        "item_id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("news_items.id", name="fk_news_scores_item_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("market", sa.String, nullable=False),
    sa.Column("scorer", sa.String, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("relevance", sa.Float, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("scored_at", UtcDateTime, nullable=False, default=utc_now),
    sa.UniqueConstraint("item_id", "market", "scorer", name="uq_news_scores_item_market"),
    sa.Index("ix_news_scores_market", "market"),
)

# What each decision turned out to be worth once its window closed (`app/outcomes.py`): one
# row per run and subject ("ml": the proposal, "groq"/"ollama": a verdict, "trade": the round
# trip its order opened or closed), written next to the decision by its `run_id`.
outcomes = sa.Table(
    "outcomes",
    metadata,
    _autoincrement_id(),
    sa.Column("run_id", sa.String, nullable=False),
    sa.Column("subject", sa.String, nullable=False),
    sa.Column("bar_ts", UtcDateTime, nullable=False),
    sa.Column("window_end", UtcDateTime, nullable=False),
    sa.Column("market", sa.String, nullable=True),
    sa.Column("action", sa.String, nullable=True),
    sa.Column("verdict", sa.String, nullable=True),
    sa.Column("horizon_minutes", sa.Integer, nullable=True),
    sa.Column("forward_return", sa.Float, nullable=True),
    sa.Column("net_return", sa.Float, nullable=True),
    sa.Column("correct", sa.Boolean, nullable=True),
    sa.Column("realised_pnl", DecimalText, nullable=True),
    sa.Column("details", _json(), nullable=False, default=dict),
    sa.Column("created_at", UtcDateTime, nullable=False, default=utc_now),
    sa.UniqueConstraint("run_id", "subject", name="uq_outcomes_run_subject"),
    sa.Index("ix_outcomes_bar_ts", "bar_ts"),
    sa.Index("ix_outcomes_subject", "subject"),
)
