"""Request and response bodies of the API (pydantic models; the viewer's only contract).

Decimals (prices, volumes, KRW amounts) travel as JSON strings so no digit is lost; times are
ISO 8601 UTC. Every error answers `{"detail": "<message>"}` (422 for a bad query or body lists
pydantic's errors under `detail` instead, each naming the field in `loc`).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "STREAM_EVENT_TYPES",
    "AccountOut",
    "AuthCheck",
    "BalanceOut",
    "DailyLimitOut",
    "EquityOut",
    "EquityPoint",
    "ErrorOut",
    "EvaluationWindowOut",
    "EventOut",
    "FillList",
    "FillOut",
    "GraphEdge",
    "GraphOut",
    "HaltRequest",
    "Health",
    "InfoOut",
    "LlmCallOut",
    "ModelStatusOut",
    "ModelsOut",
    "MonthlyCapOut",
    "NewsItemOut",
    "NewsList",
    "NewsScoreOut",
    "NewsSourceOut",
    "NewsSourcesOut",
    "OrderList",
    "OrderOut",
    "PositionList",
    "PositionOut",
    "PriceOut",
    "PricePoint",
    "PromptCheck",
    "PromptList",
    "PromptOut",
    "PromptRollback",
    "PromptSave",
    "PromptSummary",
    "PromptVersionList",
    "PromptVersionOut",
    "ReplayOut",
    "ReplayOutcome",
    "ReplayRequest",
    "ResumeRequest",
    "ReviewerDayOut",
    "ReviewerRecordOut",
    "RightWrongOut",
    "RunAccepted",
    "RunDetail",
    "RunList",
    "RunRequest",
    "RunSummary",
    "StreamEvent",
    "TradingStateOut",
    "UnprocessableOut",
    "WatchdogMarket",
    "WatchdogOut",
]

MARKET_PATTERN = r"^[A-Z]+-[A-Z0-9]+$"
PROMPT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"

# What `GET /api/stream` and `GET /api/runs/{id}/stream` send, as the SSE `event` field.
STREAM_EVENT_TYPES: dict[str, str] = {
    "run_started": "a graph run began (run_id, trigger, bar_ts)",
    "node_started": "a node began (node, run_id)",
    "node_finished": "a node returned (node, run_id)",
    "ml_signal": "the ML proposal (node, proposal)",
    "llm_start": "an LLM check or the sizer began (node, reviewer)",
    "llm_token": "streamed LLM text (node, text)",
    "verdict": "a reviewer's verdict (node, verdict, agrees, reasoning, prompt_ref)",
    "sizing": "the sizer's proposal and the clamps applied",
    "order_sending": "an order is about to leave (identifier)",
    "order": "an order's outcome (identifier, state, executed_volume, avg_price)",
    "decision": "the run's decision (action, market, reason)",
    "run_finished": "a graph run ended and was journaled (action, market, reason, duration_ms)",
    "fill": "a fill (market, side, price, volume, fee)",
    "position_closed": "a position was closed (market, return)",
    "watchdog_trigger": "the emergency watchdog fired (market, detector, price, cooldown_until)",
    "emergency_sell_failed": "a watchdog sell failed (market, error, retrying)",
    "protection": "a stop-loss or take-profit fired (market, reason)",
    "trading_state": "halt / resume / reducing (state, reason)",
    "monthly_cap_resumed": "an operator's resume cleared the monthly loss cap (cleared, "
    "start_equity)",
    "model_status": "the model set the engine started with (model_id, proven, verdict, "
    "block_entries; see ModelStatusOut)",
    "exchange_recovered": "the exchange answers again",
    "operator_sell": "the operator sold one market now (market, identifier, state, "
    "executed_volume, avg_price, reason)",
    "replay_started": "a fork of a past run began (run_id = fork id, forked_from)",
    "replay_finished": "a fork ended (run_id = fork id, action, market, reason)",
    "news": "a news item stored for the first time (source, kind, notice_kind, title, link, "
    "published_at, first_seen_at, coins, scores: market, score, relevance, reason, scorer)",
    "gap": "no id: the events after after_seq are no longer buffered (read the journal)",
    "overflow": "no id: this client fell too far behind and was dropped; reconnect",
}


class ErrorOut(BaseModel):
    """Every error response: what went wrong, in words."""

    detail: str


class UnprocessableOut(BaseModel):
    """A 422: the reason in words, or pydantic's errors (each naming the field in `loc`)."""

    detail: str | list[dict[str, Any]]


class Health(BaseModel):
    status: str = "ok"


class ReviewerInfo(BaseModel):
    """One LLM node as the engine is configured now: an LLM, or its rule-based stand-in."""

    kind: Literal["llm", "rule_based"] = Field(
        description="rule_based: the stand-in reads no prompt; an edit changes nothing"
    )
    label: str = Field(description="how its verdicts name it: provider:model, or rule-based")
    provider: str | None = Field(description="groq or ollama; null when rule-based")
    model: str | None = Field(description="the model asked; null when rule-based")
    setting: str = Field(description="what makes this node an LLM (the setting to configure)")


class InfoOut(BaseModel):
    """What this server runs: for the viewer's header and its choice of buttons."""

    session_id: str | None = Field(description="the engine's session, None without an engine")
    mode: Literal["paper", "live", "none"] = Field(description="none: an API without an engine")
    feed: str = Field(description="where bars come from, in words")
    markets: list[str]
    can_run: bool = Field(description="POST /api/runs works here")
    can_replay: bool = Field(description="POST /api/runs/{id}/replay works here")
    token_configured: bool = Field(description="changes are possible (with the bearer token)")
    reads_need_token: bool = Field(description="true when bound beyond localhost")
    bus: Literal["in-process", "redis"]
    version: str
    reviewers: dict[str, ReviewerInfo] | None = Field(
        default=None,
        description="who answers each LLM node (groq_check, ollama_check, sizing) in the "
        "running engine; null without an engine here",
    )
    can_sell: bool = Field(
        default=False, description="POST /api/positions/{market}/sell works here"
    )


class AuthCheck(BaseModel):
    ok: bool = True


# ---- runs --------------------------------------------------------------------------------


class RunSummary(BaseModel):
    """One decision as a row of the runs table."""

    run_id: str
    session_id: str
    bar_ts: datetime
    created_at: datetime
    trigger: str = Field(description="bar (a bar close) or manual (POST /api/runs)")
    action: str = Field(description="the outcome: buy, sell or hold")
    market: str | None
    reason: str
    duration_ms: float
    reviewer_labels: dict[str, Any] = Field(default_factory=dict)


class RunList(BaseModel):
    runs: list[RunSummary]
    limit: int
    offset: int
    total: int = Field(description="decisions matching the filters, ignoring limit and offset")


class LlmCallOut(BaseModel):
    """One LLM (or rule-based) answer a run used: prompt ref, rendered request, raw response."""

    id: int
    run_id: str
    node: str
    provider: str
    model: str
    prompt_ref: str | None = Field(description="name@sha256[:8] of the prompt file used")
    request: dict[str, Any] = Field(description="system and user messages as sent")
    response: dict[str, Any] | None = Field(description="the parsed answer; `raw` is the text")
    verdict: str | None
    latency_ms: float
    created_at: datetime
    error: str | None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached: bool = False


class OrderOut(BaseModel):
    """An order; prices and volumes are exact decimals, sent as JSON strings."""

    identifier: str
    run_id: str | None
    market: str
    side: str = Field(description="bid (buy) or ask (sell)")
    ord_type: str
    price: Decimal | None
    volume: Decimal | None
    state: str
    reason: str | None
    created_at: datetime
    updated_at: datetime
    executed_volume: Decimal
    paid_fee: Decimal


class OrderList(BaseModel):
    orders: list[OrderOut] = Field(description="newest first")
    limit: int
    offset: int
    total: int


class FillOut(BaseModel):
    id: int
    order_identifier: str
    market: str
    side: str
    price: Decimal
    volume: Decimal
    fee: Decimal
    ts: datetime


class FillList(BaseModel):
    fills: list[FillOut] = Field(description="oldest first")


class EventOut(BaseModel):
    id: int
    run_id: str | None
    ts: datetime
    type: str
    payload: dict[str, Any]
    bar_ts: datetime | None = Field(
        default=None,
        description="the bar the event happened in (watchdog triggers; `ts` is the wall clock)",
    )


class RunDetail(RunSummary):
    """Everything recorded about one run."""

    nodes: dict[str, Any] = Field(
        description="each node's output (input: the account and closes the run was given)"
    )
    ml: dict[str, Any]
    verdicts: dict[str, Any]
    sizing: dict[str, Any] | None
    clamps: list[dict[str, Any]] = Field(
        default_factory=list, description="the hard limits that changed the sizer's proposal"
    )
    prompt_refs: dict[str, str | None] = Field(
        default_factory=dict, description="node -> name@sha256[:8] of the prompt it rendered"
    )
    events: list[EventOut]
    orders: list[OrderOut]
    fills: list[FillOut] = Field(default_factory=list)
    llm_calls: list[LlmCallOut]


class RunRequest(BaseModel):
    """Re-evaluate now: all markets, or one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    market: str | None = Field(
        default=None,
        max_length=32,
        pattern=MARKET_PATTERN,
        description="only this market (default: every market the engine trades)",
        examples=["KRW-BTC"],
    )


class RunAccepted(BaseModel):
    run_id: str
    market: str | None = None
    stream_url: str = Field(default="", description="the run's SSE stream")


class StreamEvent(BaseModel):
    """The JSON in an SSE frame's `data` (extra fields depend on `type`)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="; ".join(f"{k}: {v}" for k, v in STREAM_EVENT_TYPES.items()))
    seq: int | None = Field(default=None, description="the frame's id; None on gap/overflow")
    run_id: str | None = None
    node: str | None = None


# ---- replay (time travel) ----------------------------------------------------------------


class ReplayRequest(BaseModel):
    """Fork a past run before its LLM checks, optionally with other prompts or models."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompts: dict[str, str] = Field(
        default_factory=dict,
        description="prompt name -> full file text to use in the fork (validated like a save)",
        max_length=8,
    )
    groq_model: str | None = Field(
        default=None, min_length=1, max_length=200, description="another Groq model for the fork"
    )
    ollama_model: str | None = Field(
        default=None, min_length=1, max_length=200, description="another Ollama model"
    )


class ReplayOutcome(BaseModel):
    """One side of the comparison."""

    run_id: str
    action: str
    market: str | None
    reason: str
    groq: dict[str, Any] | None = Field(description="the first check's verdict")
    ollama: dict[str, Any] | None = Field(description="the second check's verdict")
    sizing: dict[str, Any] | None
    order: dict[str, Any] | None = Field(
        description="the order (original) or the order it WOULD send (fork; never sent)"
    )
    would_trade: bool = Field(description="the checks and sizing let an order through")
    prompt_refs: dict[str, str | None]
    reviewers: dict[str, str | None] = Field(description="node -> rule-based or provider:model")


class ReplayOut(BaseModel):
    run_id: str = Field(description="the run that was forked")
    fork_id: str = Field(description="the fork's own thread id")
    forked_from_checkpoint: str = Field(description="checkpoint id the fork started from")
    forked_before: list[str] = Field(description="the nodes the fork re-ran from")
    original: ReplayOutcome
    replayed: ReplayOutcome
    changed: bool = Field(description="the fork's decision differs from the original's")
    notes: list[str] = Field(default_factory=list)


# ---- prompts -----------------------------------------------------------------------------


class PromptSummary(BaseModel):
    name: str
    ref: str | None = Field(description="name@sha256[:8]; None when the file is invalid")
    sha256: str | None
    description: str | None
    variables: dict[str, str] = Field(default_factory=dict)
    valid: bool
    error: str | None = None


class PromptList(BaseModel):
    prompts: list[PromptSummary]
    directory: str


class PromptOut(PromptSummary):
    text: str = Field(description="the whole file (front matter and both templates)")
    required_variables: list[str] = Field(
        default_factory=list, description="exactly the variables the code passes to it"
    )


class PromptSave(BaseModel):
    """A new full text for a prompt file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: str = Field(min_length=1, max_length=200_000)
    base_sha256: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        pattern=r"^[0-9a-f]+$",
        description="sha256 (or a prefix) of the text the edit started from: a save over a "
        "file changed since is refused with 409",
    )
    message: str = Field(default="", max_length=500, description="why (kept with the version)")


class PromptCheck(BaseModel):
    """Validation without saving."""

    valid: bool
    error: str | None
    ref: str | None
    diff: str = Field(description="unified diff against the current file")


class PromptRollback(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version_id: int = Field(
        ge=1, le=2**62, description="the version to restore (saved as a new version)"
    )
    message: str = Field(default="", max_length=500)


class PromptVersionOut(BaseModel):
    id: int
    name: str
    sha256: str
    ref: str
    created_at: datetime
    created_by: str = Field(description="api, rollback or file (first seen on disk)")
    message: str
    previous_sha256: str | None
    diff: str = Field(description="unified diff against the previous version")
    text: str | None = Field(default=None, description="the version's text (single reads only)")


class PromptVersionList(BaseModel):
    name: str
    versions: list[PromptVersionOut] = Field(description="newest first; texts left out")


# ---- account, watchdog, control ----------------------------------------------------------


class PositionOut(BaseModel):
    market: str
    volume: Decimal
    avg_buy_price: Decimal
    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None
    opened_at: datetime | None
    updated_at: datetime | None
    run_id: str | None
    mark_price: float | None = Field(default=None, description="latest close (engine only)")
    unrealized_pct: float | None = Field(default=None, description="at mark_price, before fees")


class PositionList(BaseModel):
    positions: list[PositionOut]
    source: Literal["engine", "journal"]


class BalanceOut(BaseModel):
    currency: str
    balance: Decimal
    locked: Decimal = Decimal(0)
    avg_buy_price: Decimal | None = None
    value_krw: Decimal | None = Field(default=None, description="at the latest close")


class AccountOut(BaseModel):
    krw: Decimal = Field(description="free KRW")
    equity: Decimal = Field(description="KRW plus coins at the latest closes")
    balances: list[BalanceOut]
    as_of: datetime | None = Field(description="the latest bar the marks come from")


class EquityPoint(BaseModel):
    ts: datetime
    equity: Decimal
    buy_and_hold: Decimal | None = Field(
        description="the first point's equity split evenly over the markets, held (after fee)"
    )
    run_id: str


class EquityOut(BaseModel):
    session_id: str | None
    points: list[EquityPoint] = Field(description="oldest first, one per decision (thinned)")
    note: str = ""


class PricePoint(BaseModel):
    ts: datetime = Field(description="the bar's time (a bucket's first bar when downsampled)")
    close: Decimal = Field(description="the bar's close, as the run was given it")
    open: Decimal | None = Field(default=None, description="a bucket's first close")
    high: Decimal | None = Field(default=None, description="a bucket's highest close")
    low: Decimal | None = Field(default=None, description="a bucket's lowest close")
    bars: int = Field(default=1, description="how many bars the point stands for")


class PriceOut(BaseModel):
    market: str
    points: list[PricePoint] = Field(
        description="oldest first, one per bar, or per bucket of bars when the range holds "
        "more than `max_points` (the whole range, downsampled)"
    )
    bars: int = Field(default=0, description="bars in the range before downsampling")


class CandlePoint(BaseModel):
    """One candle: a bar, or a bucket of consecutive bars folded into one."""

    ts: datetime = Field(description="the bucket's start (bar time, UTC)")
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = Field(description="coins traded; null when only closes are known")
    bars: int = Field(description="how many bars the candle folds")


class CandleOut(BaseModel):
    """A market's candles over a range, in buckets sized to fit `max_points`."""

    market: str
    source: Literal["bars", "closes"] = Field(
        description="bars: the OHLCV the engine was given; closes: the journaled closes "
        "only (open is the previous close, no volume)"
    )
    bucket_minutes: int = Field(description="minutes per candle, chosen from the span")
    bars: int = Field(description="bars in the range before folding")
    since: datetime | None = Field(description="the range asked for (or the session's first bar)")
    until: datetime | None = Field(description="the range's end, exclusive")
    first_bar: datetime | None = Field(description="the session's first bar (for zooming out)")
    last_bar: datetime | None = Field(description="the session's last bar")
    candles: list[CandlePoint]


class WatchdogMarket(BaseModel):
    market: str
    cooldown_until: datetime | None
    cooldown_detector: str | None
    last_trigger: EventOut | None


class WatchdogOut(BaseModel):
    enabled: bool
    source: Literal["engine", "journal"]
    config: dict[str, Any] = Field(default_factory=dict)
    exchange_healthy: bool | None
    consecutive_failures: int | None
    markets: list[WatchdogMarket]
    recent_triggers: list[EventOut] = Field(description="newest first")


class GraphEdge(BaseModel):
    source: str
    target: str
    conditional: bool


class GraphOut(BaseModel):
    mermaid: str
    nodes: list[str] = Field(description="the graph's nodes in order, without __start__/__end__")
    edges: list[GraphEdge] = Field(description="every edge, with __start__ and __end__ ones")


class HaltRequest(BaseModel):
    """Stop trading: no order of any kind except cancels (and selling all, with `flatten`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=200, description="why trading stops")
    flatten: bool = Field(default=False, description="also sell every position at market")


class SellRequest(BaseModel):
    """The operator's exit from one market now: the whole free volume at market."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(
        default="sold from the viewer", min_length=1, max_length=200, description="why"
    )


class SellOut(BaseModel):
    """The operator's sell as the exchange answered it (journaled; the trade's exit reason
    is `flatten`, the operator's)."""

    market: str
    identifier: str = Field(description="the sell order's client identifier")
    state: str = Field(description="the order's state (done, or why not)")
    volume: Decimal = Field(description="coins asked to sell (the whole free volume)")
    executed_volume: Decimal
    avg_price: Decimal | None = Field(description="KRW per coin; null when nothing filled")
    reason: str
    exit_reason: Literal["operator"] = "operator"
    cooldown_until: datetime | None = Field(
        default=None,
        description="no entry into the market before this bar time (the watchdog's cooldown)",
    )


class ResumeRequest(BaseModel):
    """Trade again (reducing, exits only, while today's daily loss limit is breached)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(min_length=1, max_length=200, description="why trading resumes")


class MonthlyCapOut(BaseModel):
    """The monthly loss cap as the engine last wrote it (equity vs the month's first equity)."""

    month: str = Field(description="the calendar month (KST) counted, YYYY-MM")
    start_equity: Decimal | None = Field(description="KRW equity the month is counted from")
    last_equity: Decimal | None = Field(description="KRW equity at the engine's last look")
    loss_pct: float | None = Field(description="loss since start_equity in % (negative: a gain)")
    cap_pct: float | None = Field(description="entries stop once loss_pct reaches this")
    breached: bool = Field(description="entries are stopped for the month")
    reason: str | None = Field(description="why entries stopped; None while not breached")
    breached_at: datetime | None = Field(description="the bar at which the cap was breached")
    resumed_at: datetime | None = Field(description="when an operator's resume last cleared it")
    resumed_by: str | None = Field(description="cli or api: who cleared it last")
    resume_pending: bool = Field(
        description="a resume was written after the breach; the engine clears it at its next bar"
    )
    clears_on: date | None = Field(description="the first day (KST) of the next month")
    how_to_clear: str | None = Field(description="what ends a breach; None while not breached")
    updated_at: datetime = Field(description="when the engine wrote these figures")


class DailyLimitOut(BaseModel):
    """The daily loss limit as the running engine holds it (it is not journaled)."""

    trading_day: date | None = Field(description="the trading day (KST) counted")
    start_equity: Decimal | None = Field(description="KRW equity the day is counted from")
    last_equity: Decimal | None
    loss_pct: float | None = Field(description="loss since start_equity in % (negative: a gain)")
    limit_pct: float
    breached: bool = Field(description="entries are stopped for the rest of the day")


class TradingStateOut(BaseModel):
    """The operator's trading state as the journal holds it, and what the engine applies.

    `state`/`reason` are the operator's choice (halt, resume). `effective_state` adds the loss
    limits to it as the engine does: halted, else reducing (the operator's choice, the daily
    limit, the monthly cap), else active.
    """

    state: str = Field(description="the operator's choice: active, reducing (exits only), halted")
    reason: str
    flatten_requested: bool = Field(description="a flatten was asked for and is not done yet")
    updated_at: datetime | None = Field(description="None until the state was first set")
    updated_by: str | None = Field(description="cli, api or engine; None until first set")
    effective_state: Literal["active", "reducing", "halted"] = Field(
        description="what the engine applies: the operator's state with the loss limits"
    )
    effective_reason: str = Field(
        description="why the effective state is what it is, or why entries are refused "
        "(an unproven model trading live); empty when entries are allowed"
    )
    entries_allowed: bool = Field(
        description="whether the engine may open positions now (exits are always allowed, "
        "except while halted)"
    )
    monthly: MonthlyCapOut | None = Field(
        description="the monthly loss cap; null before an engine ever ran on this journal"
    )
    daily: DailyLimitOut | None = Field(
        description="the daily loss limit; null where no engine runs in this process"
    )


class EvaluationWindowOut(BaseModel):
    """The hold-out stretch the model set's policy was tested on (no model saw it)."""

    first_ts: datetime | None = None
    last_ts: datetime | None = None
    bars: int | None = None
    markets: list[str] = Field(default_factory=list)


class ModelStatusOut(BaseModel):
    """The model set the engine trades with, and whether its policy has shown an edge.

    A set is unproven when its own out-of-sample policy result (meta.json `policy_evaluation`)
    is not positive after fees: live trading then refuses entries unless the operator set
    `--allow-unproven-model` (LXA_ALLOW_UNPROVEN_MODEL); paper trading goes on.
    """

    model_id: str | None
    proven: bool = Field(description="the policy made money after fees on its hold-out window")
    verdict: str = Field(description="why the set is proven or not, in words")
    live: bool = Field(description="the engine trades real money")
    allow_unproven_model: bool = Field(description="the operator's override for live entries")
    block_entries: bool = Field(description="entries are refused: unproven, live, no override")
    evaluation_window: EvaluationWindowOut | None
    evaluation_return: float | None = Field(description="the policy's return there (0.01 = 1%)")
    evaluation_entries: int | None = Field(description="positions the policy opened there")
    buy_and_hold_return: float | None = Field(description="holding every market there instead")
    recorded_at: datetime = Field(description="when the engine announced it (at its start)")
    created_at: datetime | None = Field(default=None, description="when the set was trained")
    max_age_days: float | None = Field(
        default=None, description="LXA_MODEL_MAX_AGE_DAYS: older sets are flagged stale"
    )
    age_days: float | None = Field(default=None, description="days since the set was trained")
    stale: bool = Field(default=False, description="older than max_age_days: retrain it")
    switched_from: str | None = Field(
        default=None, description="the set it replaced between bars (a new champion)"
    )


class NewsScoreOut(BaseModel):
    """One coin's score of a news item."""

    market: str
    scorer: str = Field(description="who scored it: lexicon, or provider:model for an LLM")
    score: float = Field(description="-1 (bad for the coin) to 1 (good)")
    relevance: float = Field(description="0 to 1: how much the item is about the coin")
    reason: str = Field(description="one line a person can check")
    scored_at: datetime


class NewsItemOut(BaseModel):
    """A news item as the journal stored it, with its per-coin scores."""

    id: int
    source: str = Field(description="the source's name (LXA_NEWS_SOURCES)")
    kind: str = Field(description="news, or notice (Upbit's own notices)")
    notice_kind: str | None = Field(
        description="for a notice: warning, delisting, suspension, ... (else null)"
    )
    title: str
    link: str
    published_at: datetime | None = Field(description="as the source gave it (null: none)")
    first_seen_at: datetime = Field(description="when the service first saw it")
    coins: list[str]
    scores: list[NewsScoreOut]


class NewsList(BaseModel):
    """Items newest first (by first seen)."""

    items: list[NewsItemOut]
    market: str | None
    since: datetime | None
    limit: int


class NewsSourceOut(BaseModel):
    """One source the running news service polls, and what polling it has done."""

    model_config = ConfigDict(extra="allow")

    name: str
    kind: str
    url: str
    polls: int
    fetched: int
    not_modified: int
    items: int
    new_items: int
    errors: dict[str, int]
    consecutive_errors: int
    last_error: str | None
    last_polled_at: datetime | None
    last_ok_at: datetime | None


class NewsSourcesOut(BaseModel):
    """The running news service's sources; `running` false (and no sources) without one."""

    running: bool
    note: str
    sources: list[NewsSourceOut]


class ModelsOut(BaseModel):
    """The model registry: versions newest first, the champion and the promotion decisions."""

    model_config = ConfigDict(extra="allow")

    available: bool = Field(description="false when this server was handed no registry")
    note: str | None = Field(default=None, description="why nothing is listed, when so")
    models_dir: str | None
    champion: str | None = Field(description="the set the engine trades with")
    champion_pointer: dict[str, Any] | None = Field(
        description="champion.json: model_id, since, by, reason"
    )
    pinned: str | None = Field(description="LXA_MODEL_DIR when a set is pinned")
    versions: list[dict[str, Any]] = Field(
        description="each: model_id, created_at, kind, status, reason, training_window, "
        "until, weights, evaluation, judged (promote, reason, champion, challenger)"
    )
    history: list[dict[str, Any]] = Field(description="the champions before, newest first")
    decisions: list[dict[str, Any]] = Field(
        description="promotion decisions, newest first: each judged version's verdict and "
        "figures, and the journal's model_promoted / model_rollback events"
    )
    retrain: dict[str, Any] = Field(description="the daily retrain's memory (retrain.json)")


class RightWrongOut(BaseModel):
    """How often a reviewer was right or wrong (outcome known), and how many wait."""

    right: int
    wrong: int
    pending: int = Field(description="asked, but the outcome's window has not closed")
    accuracy: float | None = Field(description="right / (right + wrong); null with none")


class ReviewerDayOut(BaseModel):
    """One KST day of the record."""

    day: date
    reviewers: dict[str, RightWrongOut]


class ReviewerRecordOut(BaseModel):
    """Each reviewer's right/wrong record per KST day (the veto ledger's rule)."""

    days: int
    since: datetime
    until: datetime
    horizon_minutes: int
    totals: dict[str, RightWrongOut]
    series: list[ReviewerDayOut]
    from_outcomes: int = Field(description="verdicts judged by the outcome job (outcomes table)")
    from_ledger: int = Field(
        description="verdicts judged here from the journaled closes (no outcome row yet)"
    )
