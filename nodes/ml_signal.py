"""Score every market with the ML model and propose at most one action."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import Proposal, Signal, TradeState
from nodes._common import emit, event


def _hold(reason: str) -> Proposal:
    return {
        "action": "hold",
        "market": None,
        "reason": reason,
        "entry_probability": None,
        "exit_probability": None,
    }


def choose_action(
    signals: dict[str, Signal],
    held: set[str],
    blocked: dict[str, str],
    context: Context,
) -> Proposal:
    """Exit a held coin whose sell probability is high enough, else enter the best candidate.

    The candidate is the unheld, unblocked market with the largest edge (P(buy) - P(sell))
    among those whose P(buy) clears the entry threshold: a coin the model also expects to fall
    is a less stable upside than one it does not.
    """
    policy = context.policy
    exits = [
        (sig["p_sell"], market)
        for market, sig in signals.items()
        if market in held and sig["p_sell"] >= policy.exit_probability_min
    ]
    if exits:
        p_sell, market = max(exits)
        return {
            "action": "sell",
            "market": market,
            "reason": f"P(sell)={p_sell:.3f} >= {policy.exit_probability_min} on a held coin",
            "entry_probability": signals[market]["p_buy"],
            "exit_probability": p_sell,
        }
    eligible = [
        (sig["edge"], market)
        for market, sig in signals.items()
        if market not in held and sig["p_buy"] >= policy.entry_probability_min
    ]
    candidates = [(edge, market) for edge, market in eligible if market not in blocked]
    if eligible and not candidates:
        return _hold("blocked")  # the signal is there, but a cooldown or the trading state bars it
    if not candidates:
        return _hold("no_signal")
    if len(held) >= policy.max_open_positions:
        return _hold("max_positions")
    edge, market = max(candidates)
    if edge <= 0:
        return _hold("no_signal")
    return {
        "action": "buy",
        "market": market,
        "reason": (
            f"P(buy)={signals[market]['p_buy']:.3f} >= {policy.entry_probability_min}, "
            f"best edge {edge:.3f}"
        ),
        "entry_probability": signals[market]["p_buy"],
        "exit_probability": signals[market]["p_sell"],
    }


async def ml_signal(state: TradeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Predict P(buy) and P(sell) for every warmed-up market and propose one action."""
    context = runtime.context
    snapshots = state["markets"]
    features = {m: s["features"] for m, s in snapshots.items() if s["features"] is not None}
    blocked = {m: s["blocked"] for m, s in snapshots.items() if s["blocked"]}
    model_id = context.signal_model.model_id
    if not features:
        proposal = _hold("warming_up")
        signals: dict[str, Signal] = {}
    else:
        predictions = context.signal_model.predict(features)
        signals = {
            market: {
                "p_buy": round(float(p.p_buy), 6),
                "p_sell": round(float(p.p_sell), 6),
                "edge": round(float(p.p_buy) - float(p.p_sell), 6),
            }
            for market, p in predictions.items()
        }
        held = set(state["account"]["positions"])
        proposal = choose_action(signals, held, blocked, context)
    emit({"type": "ml_signal", "node": "ml_signal", "proposal": proposal["action"]})
    return {
        "model_id": model_id,
        "signals": signals,
        "proposal": proposal,
        "events": [
            event(
                "ml_signal",
                "proposal",
                model_id=model_id,
                action=proposal["action"],
                market=proposal["market"],
                reason=proposal["reason"],
                signals=signals,
                blocked=blocked,
            )
        ],
    }
