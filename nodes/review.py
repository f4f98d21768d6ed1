"""The reviewer interface the LLM-check and sizing nodes call, and its rule-based default.

A `Reviewer` checks one proposed action and answers with a `Verdict`; a `Sizer` proposes how
much to invest. The real Groq and Ollama providers implement the same protocols. When no
provider is configured the rule-based ones below stand in, and every verdict they produce says
`reviewer="rule-based"`, so no record can be mistaken for an LLM's judgement.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

Action = Literal["buy", "sell", "hold"]
RULE_BASED = "rule-based"
TokenCallback = Callable[[str], None]  # receives LLM text as it streams


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
    news: list[str] = field(default_factory=list)  # headlines when a news source exists
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


def _feature(features: dict[str, float | None], name: str) -> float | None:
    value = features.get(name)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def _verdict_from_checks(
    request: ReviewRequest, checks: list[Check], what: str, risks: list[str]
) -> Verdict:
    failed = [c for c in checks if not c.passed]
    if failed:
        names = ", ".join(f"{c.name}={c.value} (limit {c.limit})" for c in failed)
        return Verdict(
            verdict="hold",
            confidence=round(len(failed) / len(checks), 3),
            reasoning=f"rule-based {what}: {request.action} refused because {names}",
            reviewer=RULE_BASED,
            risks=tuple(risks),
            checks=tuple(checks),
        )
    return Verdict(
        verdict=request.action,
        confidence=1.0,
        reasoning=f"rule-based {what}: every check passed for {request.action} {request.market}",
        reviewer=RULE_BASED,
        risks=tuple(risks),
        checks=tuple(checks),
    )


def _check_at_most(name: str, value: float | None, limit: float) -> Check:
    # A missing number cannot pass a safety check.
    return Check(name, value, limit, value is not None and value <= limit)


def _check_at_least(name: str, value: float | None, limit: float) -> Check:
    return Check(name, value, limit, value is not None and value >= limit)


@dataclass
class RuleBasedMoodReviewer:
    """Stands in for the Groq mood check: no news source, so it judges the tape's mood.

    Buys pass when the last hour did not fall hard and minute volatility is not in turmoil.
    Exits always pass: leaving the market is never the risky side of a mood check.
    """

    max_hour_drop: float = -0.015  # 60-minute log return
    max_volatility_60m: float = 0.004  # std of 1-minute log returns
    name: str = RULE_BASED

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Apply the mood rules."""
        risks = ["no news source configured: sentiment unknown"]
        if request.action == "sell":
            return _verdict_from_checks(request, [], "mood check", risks)
        checks = [
            _check_at_least("ret_60", _feature(request.features, "ret_60"), self.max_hour_drop),
            _check_at_most(
                "volatility_60",
                _feature(request.features, "volatility_60"),
                self.max_volatility_60m,
            ),
        ]
        return _verdict_from_checks(request, checks, "mood check", risks)


@dataclass
class RuleBasedTechnicalReviewer:
    """Stands in for the Ollama technical check: momentum must confirm the proposal.

    A buy needs RSI below overbought and a non-negative MACD histogram; a sell is refused
    only when the market is already deeply oversold (RSI below `oversold`), where selling
    tends to lock in the bottom.
    """

    overbought: float = 70.0
    oversold: float = 25.0
    name: str = RULE_BASED

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Apply the technical rules."""
        rsi = _feature(request.features, "rsi_14")
        if request.action == "sell":
            checks = [_check_at_least("rsi_14", rsi, self.oversold)]
            return _verdict_from_checks(request, checks, "technical check", [])
        checks = [
            _check_at_most("rsi_14", rsi, self.overbought),
            _check_at_least("macd_hist", _feature(request.features, "macd_hist"), 0.0),
        ]
        return _verdict_from_checks(request, checks, "technical check", [])


@dataclass
class RuleBasedSizer:
    """Stands in for the LLM sizer with the plan's sizing principles as plain rules."""

    name: str = RULE_BASED

    async def size(
        self, request: SizingRequest, on_token: TokenCallback | None = None
    ) -> SizingProposal:
        """Map signal strength, volatility and recent results to a ratio and protections."""
        vol = request.volatility_60m if request.volatility_60m is not None else 0.002
        calm = request.volatility_60m is not None and vol < 0.0015
        if request.signal_strength == "strong" and calm:
            ratio, tier = 0.5, "strong signal, low volatility"
        elif request.signal_strength in ("strong", "medium"):
            ratio, tier = 0.3, "medium signal"
        else:
            ratio, tier = 0.1, "weak or volatile signal"
        losing_streak = streak(request.recent_results, losing=True)
        winning_streak = streak(request.recent_results, losing=False)
        if losing_streak >= 2:
            ratio, tier = min(ratio, 0.08), f"{tier}; {losing_streak} losses in a row"
        elif winning_streak >= 2:
            ratio, tier = min(ratio * 1.2, 1.0), f"{tier}; {winning_streak} wins in a row"
        ratio *= {"low": 0.5, "medium": 1.0, "high": 1.5}[request.risk_level]
        # Stop below ten minutes of typical movement, take profit at twice the stop.
        stop_loss_pct = round(max(0.5, 100 * 2.5 * vol * math.sqrt(10)), 3)
        return SizingProposal(
            investment_ratio=round(ratio, 4),
            stop_loss_pct=stop_loss_pct,
            take_profit_pct=round(2 * stop_loss_pct, 3),
            reasoning=f"rule-based sizing: {tier}; risk level {request.risk_level}",
            reviewer=RULE_BASED,
        )


def streak(results: list[float], *, losing: bool) -> int:
    """Count the latest run of losing (or winning) results."""
    count = 0
    for value in reversed(results):
        if (value < 0) == losing and value != 0:
            count += 1
        else:
            break
    return count
