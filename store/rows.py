"""The rows the journal's write methods take, and the trading-control row it reads back.

One `TypedDict` per table a caller writes, keyed by the table's column names (`store.schema`),
so mypy checks every caller's keys and values. A key is required when its column is NOT NULL
without a default; a column with a default, or a nullable one, may be left out. Rows that
update an existing row by its key (orders, positions, intent changes) need only the key.

Types only: this module imports nothing from the project, so the exchange's journal
protocols (`exchange.orders.OrderJournal`) can name these rows without importing the store.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, NotRequired, Required, TypedDict

__all__ = [
    "DecisionRow",
    "EventRow",
    "FillRow",
    "LlmCallRow",
    "NewsItemRow",
    "NewsScoreRow",
    "OrderIntentChanges",
    "OrderIntentRow",
    "OrderRow",
    "OutcomeRow",
    "PositionRow",
    "TradingControlRow",
]

# A JSON column's value: an object, encoded with `store.journal.json_default` (Decimal,
# datetime) and with NaN and infinities stored as null.
JsonObject = dict[str, Any]


class DecisionRow(TypedDict):
    """One graph run's decision (`decisions`): `record_decision`, `record_run`."""

    run_id: str
    session_id: str
    bar_ts: datetime
    trigger: str  # "bar", "manual", ...
    action: str  # "buy", "sell", "hold"
    market: NotRequired[str | None]
    reason: str
    duration_ms: float
    created_at: NotRequired[datetime]
    reviewer_labels: NotRequired[JsonObject]
    nodes: NotRequired[JsonObject]  # what each node was given and returned ("input", ...)
    ml: NotRequired[JsonObject]
    verdicts: NotRequired[JsonObject]
    sizing: NotRequired[JsonObject | None]


class LlmCallRow(TypedDict):
    """One reviewer's or sizer's call (`llm_calls`): `record_llm_call`, `record_run`.

    `run_id` may be left out in `record_run`, which gives the call its decision's.
    """

    run_id: NotRequired[str]
    node: str
    provider: str
    model: str
    prompt_ref: NotRequired[str | None]
    request: NotRequired[JsonObject]
    response: NotRequired[JsonObject | None]
    verdict: NotRequired[str | None]
    latency_ms: float
    created_at: NotRequired[datetime]
    error: NotRequired[str | None]
    input_tokens: NotRequired[int | None]
    output_tokens: NotRequired[int | None]
    attempts: NotRequired[int | None]
    cached: NotRequired[bool]


class EventRow(TypedDict):
    """One event of a run (`events`): `record_run` (without `run_id`: the decision's)."""

    run_id: NotRequired[str | None]
    type: str
    payload: NotRequired[JsonObject]
    ts: datetime


class OrderRow(TypedDict, total=False):
    """An order as the engine journals it (`orders`): `record_order`.

    A new order needs market, side, ord_type and state; a known identifier updates only the
    columns given (its `created_at` is kept).
    """

    identifier: Required[str]
    run_id: str | None
    market: str
    side: str  # "bid", "ask"
    ord_type: str  # "limit", "price", "market", "best"
    price: Decimal | None  # the limit price, or the KRW amount of a market buy
    volume: Decimal | None
    state: str
    reason: str | None
    created_at: datetime
    updated_at: datetime
    executed_volume: Decimal
    paid_fee: Decimal


class FillRow(TypedDict):
    """One execution of an order (`fills`): `record_fill`, once per `trade_uuid`."""

    order_identifier: str
    market: str
    side: str  # "bid", "ask"
    price: Decimal
    volume: Decimal
    fee: Decimal
    ts: datetime
    trade_uuid: NotRequired[str | None]  # the exchange's id of the execution


class PositionRow(TypedDict, total=False):
    """A held coin (`positions`): `upsert_position`.

    A new position needs volume and avg_buy_price; a known market updates only the columns
    given (its `opened_at` is kept).
    """

    market: Required[str]
    volume: Decimal
    avg_buy_price: Decimal
    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None
    opened_at: datetime
    updated_at: datetime
    run_id: str | None


class OrderIntentRow(TypedDict):
    """A live order before it is sent (`order_intents`): `record_order_intent`, `claim_...`."""

    identifier: str
    market: str
    side: str  # "bid", "ask"
    ord_type: str
    state: str  # one of store.journal.INTENT_STATES
    price: NotRequired[Decimal | None]
    volume: NotRequired[Decimal | None]
    time_in_force: NotRequired[str | None]
    uuid: NotRequired[str | None]
    reason: NotRequired[str | None]
    attempts: NotRequired[int]
    executed_volume: NotRequired[Decimal]
    paid_fee: NotRequired[Decimal]
    created_at: NotRequired[datetime]
    updated_at: NotRequired[datetime]


class OrderIntentChanges(TypedDict, total=False):
    """The columns `update_order_intent` changes (the identifier is the one it is given)."""

    market: str
    side: str
    ord_type: str
    state: str  # one of store.journal.INTENT_STATES
    price: Decimal | None
    volume: Decimal | None
    time_in_force: str | None
    uuid: str | None
    reason: str | None
    attempts: int
    executed_volume: Decimal
    paid_fee: Decimal
    created_at: datetime
    updated_at: datetime


class NewsItemRow(TypedDict):
    """One news item as first seen (`news_items`): `record_news`, once per link (and title).

    `link_key` and `title_key` are the item's dedup keys (`news.items`); `first_seen_at` is
    the point-in-time key a backtest filters on; `published_at` None when the source gave none.
    """

    link_key: str
    title_key: str
    source: str
    kind: str  # "news", "notice"
    notice_kind: NotRequired[str | None]  # notices: "warning", "delisting", "suspension", "other"
    title: str
    link: str
    summary: NotRequired[str]
    published_raw: NotRequired[str | None]
    published_at: NotRequired[datetime | None]
    first_seen_at: datetime
    coins: NotRequired[list[str]]  # markets: ["KRW-BTC", ...]


class NewsScoreRow(TypedDict):
    """One item's score for one market by one scorer (`news_scores`), once per the three.

    `item_id` may be left out in `record_news`, which gives the scores its new item's.
    """

    item_id: NotRequired[int]
    market: str
    scorer: str  # "lexicon", or an LLM's name
    score: float  # -1 .. 1
    relevance: float  # 0 .. 1
    reason: str
    scored_at: NotRequired[datetime]


class TradingControlRow(TypedDict):
    """The operator's trading state (`trading_control`), as `read_trading_control` returns it.

    Before anyone wrote one: active, no reason, `updated_at` and `updated_by` None.
    """

    state: str  # "active", "reducing", "halted"
    reason: str
    flatten_requested: bool
    updated_at: datetime | None
    updated_by: str | None  # "cli", "api", "engine"


class OutcomeRow(TypedDict):
    """What a decision turned out to be worth (`outcomes`): `record_outcomes`, once per
    run and subject ("ml", "groq", "ollama", "trade")."""

    run_id: str
    subject: str
    bar_ts: datetime
    window_end: datetime  # when it became known: the horizon's bar closed, or the trip did
    market: NotRequired[str | None]
    action: NotRequired[str | None]  # the ML's proposal ("buy", "sell")
    verdict: NotRequired[str | None]  # a reviewer's verdict
    horizon_minutes: NotRequired[int | None]
    forward_return: NotRequired[float | None]
    net_return: NotRequired[float | None]  # of following the proposal, after fees
    correct: NotRequired[bool | None]
    realised_pnl: NotRequired[Decimal | None]  # KRW, a closed round trip's, from its fills
    details: NotRequired[JsonObject]
    created_at: NotRequired[datetime]
