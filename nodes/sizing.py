"""Decide how much to buy (or that a held coin is sold whole), then clamp to hard limits."""

from __future__ import annotations

import math
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context, TradingPolicy
from graph.review import SizingProposal, SizingRequest, streak
from graph.state import Proposal, SizingView, TradeState
from nodes._common import emit, event, token_emitter

LOSING_STREAK_RATIO_CAP = 0.10  # the plan: after a losing streak, 5-10%
MEDIUM_SIGNAL_RATIO_CAP = 0.50  # the plan: medium signal, 20-50%
WEAK_SIGNAL_RATIO_CAP = 0.20  # the plan: weak or volatile signal, 5-20%
BOLLINGER_BARS = 20


def signal_tier(
    excess_bps: float | None, volatility_60m: float | None, policy: TradingPolicy
) -> tuple[str, bool]:
    """Return the signal's strength tier and whether the market is volatile.

    `excess_bps` is how far the entry's expected net return cleared the policy's entry margin.
    Unknown volatility counts as volatile and an unknown excess as weak: a missing number never
    loosens a limit.
    """
    if excess_bps is not None and excess_bps >= policy.strong_signal_bps:
        strength = "strong"
    elif excess_bps is not None and excess_bps >= policy.medium_signal_bps:
        strength = "medium"
    else:
        strength = "weak"
    volatile = volatility_60m is None or volatility_60m >= policy.high_volatility_60m
    return strength, volatile


def entry_excess_bps(proposal: Proposal) -> float | None:
    """How far the entry's expected net return cleared the entry margin (bps), if known."""
    policy = proposal.get("policy") or {}
    value, threshold = _finite(policy.get("value")), _finite(policy.get("threshold"))
    if policy.get("unit") != "bps" or value is None or threshold is None:
        return None
    return value - threshold


def bollinger_width_pct(closes: list[float]) -> float | None:
    """Width of the 20-bar Bollinger band (4 standard deviations) in percent of the mean."""
    window = closes[-BOLLINGER_BARS:]
    if len(window) < BOLLINGER_BARS:
        return None
    mean = sum(window) / len(window)
    variance = sum((c - mean) ** 2 for c in window) / len(window)
    return round(400 * math.sqrt(variance) / mean, 4) if mean > 0 else None


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clamp_proposal(
    proposal: SizingProposal,
    policy: TradingPolicy,
    recent_results: list[float],
    *,
    signal_strength: str = "strong",
    volatile: bool = False,
) -> tuple[dict[str, float] | None, list[dict[str, Any]]]:
    """Apply the deterministic limits; return the clamped numbers and one record per clamp.

    The plan's sizing principles are enforced as caps (never as floors: a limit may shrink
    what the sizer asked for, never enlarge it). Returns None for the numbers when the
    proposal is unusable (not a finite number).
    """
    raw = {
        "investment_ratio": _finite(proposal.investment_ratio),
        "stop_loss_pct": _finite(proposal.stop_loss_pct),
        "take_profit_pct": _finite(proposal.take_profit_pct),
    }
    if any(v is None for v in raw.values()):
        return None, []
    values: dict[str, float] = {k: v for k, v in raw.items() if v is not None}
    ratio_cap = policy.max_investment_ratio
    ratio_cap_rule = "max_investment_ratio"
    if signal_strength == "weak" or volatile:
        ratio_cap, ratio_cap_rule = min(ratio_cap, WEAK_SIGNAL_RATIO_CAP), "weak_or_volatile_signal"
    elif signal_strength == "medium":
        ratio_cap, ratio_cap_rule = min(ratio_cap, MEDIUM_SIGNAL_RATIO_CAP), "medium_signal"
    losses = streak(recent_results, losing=True)
    if losses >= 2:
        ratio_cap, ratio_cap_rule = min(ratio_cap, LOSING_STREAK_RATIO_CAP), "losing_streak"
    bounds = {
        "investment_ratio": (
            policy.min_investment_ratio,
            ratio_cap,
            "min_investment_ratio",
            ratio_cap_rule,
        ),
        "stop_loss_pct": (
            policy.stop_loss_floor_pct,
            policy.stop_loss_cap_pct,
            "stop_loss_floor",
            "stop_loss_cap",
        ),
        "take_profit_pct": (
            policy.take_profit_floor_pct,
            policy.take_profit_cap_pct,
            "take_profit_floor",
            "take_profit_cap",
        ),
    }
    clamps: list[dict[str, Any]] = []
    for name, (low, high, low_rule, high_rule) in bounds.items():
        value = values[name]
        if value < low:
            clamps.append({"field": name, "proposed": value, "clamped_to": low, "rule": low_rule})
            values[name] = low
        elif value > high:
            clamps.append({"field": name, "proposed": value, "clamped_to": high, "rule": high_rule})
            values[name] = high
    return values, clamps


def _refuse(reason: str, detail: str, **extra: Any) -> dict[str, Any]:
    view: SizingView = {"refused": reason, "reasoning": detail, **extra}  # type: ignore[typeddict-item]
    return {
        "sizing": view,
        "events": [event("sizing", "sizing_refused", reason=reason, detail=detail)],
    }


async def sizing(state: TradeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Size a buy through the sizer and clamps; a sell exits the whole position."""
    context = runtime.context
    policy = context.policy
    proposal = state["proposal"]
    market = proposal["market"]
    assert market is not None, "sizing is only reached with a buy or sell proposal"
    account = state["account"]
    close = Decimal(str(state["markets"][market]["close"]))
    if proposal["action"] == "sell":
        position = account["positions"][market]
        volume = Decimal(position["volume"])
        if volume * close < policy.min_order_krw:
            return _refuse("below_minimum", f"position worth {volume * close:.0f} KRW is dust")
        view: SizingView = {
            "investment_ratio": 1.0,
            "reasoning": "exit: sell the whole position",
            "reviewer": "deterministic",
            "volume": str(volume),
            "order_krw": None,
            "clamps": [],
            "refused": None,
        }
        return {"sizing": view, "events": [event("sizing", "sizing", market=market, **view)]}

    snapshot = state["markets"][market]
    features = snapshot["features"] or {}
    equity = Decimal(account["equity"])
    cash = Decimal(account["krw"])
    entry_probability = float(proposal.get("entry_probability") or 0.0)
    volatility = _finite(features.get("volatility_60"))
    strength, volatile = signal_tier(entry_excess_bps(proposal), volatility, policy)
    results = list(state.get("recent_results", []))
    range_10m = _finite(features.get("range_pct_mean_10"))
    request = SizingRequest(
        market=market,
        capital_krw=float(equity),
        cash_krw=float(cash),
        positions=dict(account["positions"]),
        entry_probability=entry_probability,
        volatility_60m=volatility,
        range_10m=range_10m,
        recent_results=results,
        risk_level=policy.risk_level,
        signal_strength=strength,  # type: ignore[arg-type]
        atr_pct=None if range_10m is None else round(100 * range_10m, 4),
        bollinger_width_pct=bollinger_width_pct(list(snapshot.get("recent_closes", []))),
        win_rate=round(sum(r > 0 for r in results) / len(results), 3) if results else None,
        losing_streak=streak(results, losing=True),
        winning_streak=streak(results, losing=False),
        limits={
            "min_investment_ratio": policy.min_investment_ratio,
            "max_investment_ratio": policy.max_investment_ratio,
            "stop_loss_cap_pct": policy.stop_loss_cap_pct,
            "take_profit_cap_pct": policy.take_profit_cap_pct,
        },
    )
    emit({"type": "llm_start", "node": "sizing", "reviewer": context.sizer.name})
    started = time.perf_counter()
    try:
        sized = await context.sizer.size(request, on_token=token_emitter("sizing"))
    except Exception as exc:  # a failed sizer is a recorded hold, never a default size
        return _refuse(
            "sizer_failed",
            f"{type(exc).__name__}: {exc}",
            reviewer=context.sizer.name,
            latency_ms=round((time.perf_counter() - started) * 1000, 3),
        )
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    if sized.error is not None:
        return _refuse(
            "sizer_failed",
            sized.error,
            reviewer=sized.reviewer,
            call=sized.call,
            latency_ms=latency_ms,
        )
    values, clamps = clamp_proposal(
        sized, policy, request.recent_results, signal_strength=strength, volatile=volatile
    )
    if values is None:
        return _refuse(
            "sizer_invalid",
            f"non-numeric sizing output: {sized!r}",
            reviewer=sized.reviewer,
            call=sized.call,
            latency_ms=latency_ms,
        )
    budget = equity * Decimal(str(values["investment_ratio"]))
    spendable = cash / (1 + policy.fee_rate)
    order_krw = min(budget, spendable).quantize(Decimal(1), rounding=ROUND_DOWN)
    events = [event("sizing", "clamp", market=market, **clamp) for clamp in clamps]
    if order_krw < policy.min_order_krw:
        refused = _refuse(
            "below_minimum",
            f"{order_krw} KRW is under Upbit's minimum order of {policy.min_order_krw} KRW",
            reviewer=sized.reviewer,
            clamps=clamps,
            call=sized.call,
            latency_ms=latency_ms,
        )
        refused["events"] = events + refused["events"]
        return refused
    view = {
        "investment_ratio": values["investment_ratio"],
        "stop_loss_pct": values["stop_loss_pct"],
        "take_profit_pct": values["take_profit_pct"],
        "reasoning": sized.reasoning,
        "reviewer": sized.reviewer,
        "proposed": {
            "investment_ratio": sized.investment_ratio,
            "stop_loss_pct": sized.stop_loss_pct,
            "take_profit_pct": sized.take_profit_pct,
        },
        "clamps": clamps,
        "order_krw": str(order_krw),
        "volume": None,
        "refused": None,
        "latency_ms": latency_ms,
        "signal_strength": strength if not volatile else f"{strength}, volatile",
        "call": sized.call,
    }
    events.append(
        event(
            "sizing",
            "sizing",
            market=market,
            investment_ratio=view["investment_ratio"],
            stop_loss_pct=view["stop_loss_pct"],
            take_profit_pct=view["take_profit_pct"],
            order_krw=view["order_krw"],
            reviewer=view["reviewer"],
            clamps=len(clamps),
        )
    )
    return {"sizing": view, "events": events}
