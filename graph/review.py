"""The reviewer and sizer interfaces the check and sizing nodes call, and what they exchange.

A `Reviewer` checks one proposed action and answers with a `Verdict`; a `Sizer` proposes how
much to invest. The LLM-backed implementations and the rule-based stand-ins live in `llm/`;
the composition root picks one per role and hands it to the run in `Context`. This module
holds types only: no I/O and no imports from the rest of the project.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

Action = Literal["buy", "sell", "hold"]
TokenCallback = Callable[[str], None]  # receives LLM text as it streams


class ReviewAborted(Exception):
    """A review that must stop the run instead of holding (a cache-only backtest's miss).

    Every other failure of a reviewer is a recorded hold; this one is raised through the graph.
    """


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """What a reviewer is shown: the ML proposal and the numbers behind it."""

    role: Literal["groq_check", "ollama_check"]
    action: Action
    market: str
    entry_probability: float | None
    exit_probability: float | None
    features: dict[str, float | None]
    position: dict[str, Any] | None  # the held position in this market, if any
    # The newest items about the market (title, source, first_seen_at, score, relevance,
    # reason, notice) when a news source is connected; empty otherwise.
    news: list[dict[str, Any]] = field(default_factory=list)
    model_id: str = ""
    bar_time: str = ""  # ISO-8601 UTC open time of the bar
    recent_closes: tuple[float, ...] = ()  # oldest first
    account: dict[str, Any] = field(default_factory=dict)  # equity, free KRW, positions held


@dataclass(frozen=True, slots=True)
class Check:
    """One rule a rule-based reviewer applied, with the number it looked at."""

    name: str
    value: float | None
    limit: float
    passed: bool


@dataclass(frozen=True, slots=True)
class Verdict:
    """A reviewer's answer."""

    verdict: Action
    confidence: float
    reasoning: str
    reviewer: str
    risks: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    error: str | None = None  # why the reviewer could not judge (then verdict is "hold")
    call: dict[str, Any] | None = None  # the LLM call behind it (prompt ref, raw answer, ...)

    def to_json(self) -> dict[str, Any]:
        """Return the verdict as plain JSON values."""
        data = asdict(self)
        data["risks"] = list(self.risks)
        data["checks"] = [asdict(c) for c in self.checks]
        return data


@dataclass(frozen=True, slots=True)
class SizingRequest:
    """What the sizer is given (the plan's list)."""

    market: str
    capital_krw: float
    cash_krw: float
    positions: dict[str, Any]
    entry_probability: float
    volatility_60m: float | None  # std of 1-minute log returns over an hour
    range_10m: float | None  # mean high-low range / close over 10 bars (an ATR proxy)
    recent_results: list[float]
    risk_level: Literal["low", "medium", "high"]
    signal_strength: Literal["strong", "medium", "weak"] = "weak"
    atr_pct: float | None = None  # range_10m in percent
    bollinger_width_pct: float | None = None  # 20-bar Bollinger band width, percent of price
    win_rate: float | None = None  # share of recent closed trades that made money
    losing_streak: int = 0
    winning_streak: int = 0
    limits: dict[str, float] = field(default_factory=dict)  # the clamps that will apply


@dataclass(frozen=True, slots=True)
class SizingProposal:
    """The plan's sizing JSON: what fraction to invest, where to stop, where to take profit."""

    investment_ratio: float
    stop_loss_pct: float
    take_profit_pct: float
    reasoning: str
    reviewer: str
    error: str | None = None  # why no usable proposal came back (numbers are then NaN)
    call: dict[str, Any] | None = None


class Reviewer(Protocol):
    """Checks one proposed action."""

    @property
    def name(self) -> str: ...

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Agree (same action), disagree (another action) or hold."""
        ...


class Sizer(Protocol):
    """Proposes the size and protections of an entry."""

    @property
    def name(self) -> str: ...

    async def size(
        self, request: SizingRequest, on_token: TokenCallback | None = None
    ) -> SizingProposal:
        """Propose the investment ratio, stop-loss and take-profit."""
        ...


def streak(results: list[float], *, losing: bool) -> int:
    """Count the latest run of losing (or winning) results.

    The sizing node fills `SizingRequest.losing_streak`/`winning_streak` with it, and the
    rule-based sizer reads the same runs from `recent_results`.
    """
    count = 0
    for value in reversed(results):
        if (value < 0) == losing and value != 0:
            count += 1
        else:
            break
    return count
