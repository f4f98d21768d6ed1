"""Decide how much to buy (or that a held coin is sold whole), then clamp to hard limits."""

from __future__ import annotations

import math
import time
from decimal import ROUND_DOWN, Decimal
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context, TradingPolicy
from graph.state import SizingView, TradeState
from nodes._common import emit, event
from nodes.review import SizingProposal, SizingRequest, streak

LOSING_STREAK_RATIO_CAP = 0.10  # the plan: after a losing streak, 5-10%


def _finite(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def clamp_proposal(
    proposal: SizingProposal, policy: TradingPolicy, recent_results: list[float]
) -> tuple[dict[str, float] | None, list[dict[str, Any]]]:
    """Apply the deterministic limits; return the clamped numbers and one record per clamp.

    Returns None for the numbers when the proposal is unusable (not a finite number).
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

    features = state["markets"][market]["features"] or {}
    equity = Decimal(account["equity"])
    cash = Decimal(account["krw"])
    request = SizingRequest(
        market=market,
        capital_krw=float(equity),
        cash_krw=float(cash),
        positions=dict(account["positions"]),
        entry_probability=float(proposal["entry_probability"] or 0.0),
        volatility_60m=_finite(features.get("volatility_60")),
        range_10m=_finite(features.get("range_pct_mean_10")),
        recent_results=list(state.get("recent_results", [])),
        risk_level=policy.risk_level,
    )
    emit({"type": "llm_start", "node": "sizing", "reviewer": context.sizer.name})
    started = time.perf_counter()
    try:
        sized = await context.sizer.size(request)
    except Exception as exc:  # a failed sizer is a recorded hold, never a default size
        return _refuse("sizer_failed", f"{type(exc).__name__}: {exc}", reviewer=context.sizer.name)
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    values, clamps = clamp_proposal(sized, policy, request.recent_results)
    if values is None:
        return _refuse(
            "sizer_invalid", f"non-numeric sizing output: {sized!r}", reviewer=sized.reviewer
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
