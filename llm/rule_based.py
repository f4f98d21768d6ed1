"""Rule-based stand-ins for the LLM reviewers and sizer, used where no provider is configured.

They implement the same protocols as `llm.reviewers` (`graph.review.Reviewer` and `Sizer`) and
are chosen at the same place (`app/llm.py`), one per role that has no provider. Every verdict
they produce says `reviewer="rule-based"`, so no record can be mistaken for an LLM's judgement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from graph.review import (
    Check,
    ReviewRequest,
    SizingProposal,
    SizingRequest,
    TokenCallback,
    Verdict,
    streak,
)

RULE_BASED = "rule-based"


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


def news_mood(news: list[dict[str, Any]]) -> float | None:
    """The relevance-weighted mean score of the scored items shown, or None without any."""
    scored = [
        (float(item["score"]), float(item.get("relevance") or 0.0))
        for item in news
        if isinstance(item, dict) and item.get("score") is not None
    ]
    weight = sum(relevance for _, relevance in scored)
    if weight <= 0.0:
        return None
    return round(sum(score * relevance for score, relevance in scored) / weight, 4)


@dataclass
class RuleBasedMoodReviewer:
    """Stands in for the Groq mood check: the tape's mood, and the news when there is some.

    Buys pass when the last hour did not fall hard, minute volatility is not in turmoil and,
    where the news service scored items about the coin, their relevance-weighted mean score
    is not below `min_news_score`. Exits always pass: leaving the market is never the risky
    side of a mood check.
    """

    max_hour_drop: float = -0.015  # 60-minute log return
    max_volatility_60m: float = 0.004  # std of 1-minute log returns
    min_news_score: float = -0.3  # relevance-weighted mean score of the items shown
    name: str = RULE_BASED

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Apply the mood rules."""
        mood = news_mood(request.news)
        risks = [] if mood is not None else ["no scored news about the coin: sentiment unknown"]
        if request.action == "sell":
            return _verdict_from_checks(request, [], "mood check", risks)
        checks = [] if mood is None else [_check_at_least("news_score", mood, self.min_news_score)]
        checks += [
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
