"""The state one decision cycle carries through the graph; JSON-friendly values only."""

from __future__ import annotations

import operator
from typing import Annotated, Any, Literal, TypedDict

Action = Literal["buy", "sell", "hold"]
NODE_ORDER = ("ml_signal", "groq_check", "ollama_check", "sizing", "trade")


class PolicyMemory(TypedDict):
    """What the policy remembers of a market (from fills), measured at the bar close."""

    entered_at: str | None  # first buy fill of the open position (ISO-8601 UTC)
    last_exit_at: str | None  # the sell fill that last emptied a position
    held_minutes: int | None
    minutes_since_exit: int | None
    entries_today: int  # positions opened on the current KST day


class MarketSnapshot(TypedDict, total=False):
    """What the engine knows of one market at the bar close."""

    close: float
    features: dict[str, float | None] | None  # None while the feature window warms up
    blocked: str | None  # why entries are not allowed now (cooldown, ...), else None
    recent_closes: list[float]  # the last closes, oldest first (what the reviewers are shown)
    policy: PolicyMemory  # absent in runs checkpointed before the policy existed
    news: list[dict[str, Any]]  # the newest items about it first seen by the close, scored


class PositionView(TypedDict):
    volume: str  # Decimal as text
    avg_buy_price: str
    unrealized_pct: float
    stop_loss_price: str | None
    take_profit_price: str | None


class AccountView(TypedDict):
    krw: str  # free KRW, Decimal as text
    equity: str
    positions: dict[str, PositionView]


class Signal(TypedDict, total=False):
    p_buy: float
    p_sell: float
    edge: float  # p_buy - p_sell
    expected_return_bps: float | None  # over the label horizon, before costs (ml.expected)


class PolicyView(TypedDict, total=False):
    """The rule that decided the proposal and the two numbers it compared (policy.rules)."""

    rule: str
    value: float | None  # bps for return rules, minutes for the time stop
    threshold: float | None
    unit: str
    reason: str  # the comparison in words
    expected_returns_bps: dict[str, float | None]
    params: dict[str, Any]


class Proposal(TypedDict, total=False):
    action: Action
    market: str | None
    reason: str  # the rule's name (enter, no_edge, min_hold, blocked, ...) or warming_up
    entry_probability: float | None
    exit_probability: float | None
    policy: PolicyView


class VerdictView(TypedDict, total=False):
    verdict: Action
    agrees: bool
    confidence: float
    reasoning: str
    risks: list[str]
    reviewer: str  # "rule-based" or provider:model
    checks: list[dict[str, Any]]
    latency_ms: float
    error: str | None
    call: dict[str, Any] | None  # the LLM call: provider, model, prompt ref, raw answer, tokens


class SizingView(TypedDict, total=False):
    investment_ratio: float
    stop_loss_pct: float
    take_profit_pct: float
    reasoning: str
    reviewer: str
    proposed: dict[str, float]  # what the sizer asked for, before clamps
    clamps: list[dict[str, Any]]
    order_krw: str | None  # for buys: KRW to spend
    volume: str | None  # for sells: coin volume
    refused: str | None  # why no order follows (below_minimum, sizer_failed, ...)
    latency_ms: float
    signal_strength: str
    call: dict[str, Any] | None


class OrderView(TypedDict, total=False):
    identifier: str
    market: str
    side: str
    ord_type: str
    state: str
    requested_krw: str | None
    requested_volume: str | None
    executed_volume: str
    avg_price: str | None
    paid_fee: str
    stop_loss_price: str | None
    take_profit_price: str | None
    error: str | None


class Decision(TypedDict):
    action: Action
    market: str | None
    reason: str


class TradeState(TypedDict, total=False):
    """One cycle: inputs from the engine, then each node's partial update."""

    run_id: str
    trigger: str  # "bar" | "manual"
    bar_ts: str  # ISO-8601 UTC open time of the closing bar
    markets: dict[str, MarketSnapshot]
    account: AccountView
    recent_results: list[float]  # closed-trade returns after fees, oldest first
    model_id: str
    signals: dict[str, Signal]
    proposal: Proposal
    groq: VerdictView
    ollama: VerdictView
    sizing: SizingView
    order: OrderView
    decision: Decision
    events: Annotated[list[dict[str, Any]], operator.add]
