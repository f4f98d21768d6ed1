"""Score every market with the ML model and let the trading policy propose at most one action."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import MarketSnapshot, PolicyView, Proposal, Signal, TradeState
from nodes._common import emit, event
from policy.params import PolicyParams
from policy.rules import MarketInput, Policy, PolicyDecision


@lru_cache(maxsize=8)
def rules_for(params: PolicyParams) -> Policy:
    """The policy for these parameters (built once per parameter set)."""
    return Policy(params)


@lru_cache(maxsize=8)
def _params_json(params: PolicyParams) -> dict[str, Any]:
    return params.to_json()


def _hold(reason: str) -> Proposal:
    return {
        "action": "hold",
        "market": None,
        "reason": reason,
        "entry_probability": None,
        "exit_probability": None,
    }


def policy_inputs(
    snapshots: dict[str, MarketSnapshot], signals: dict[str, Signal], held: set[str]
) -> dict[str, MarketInput]:
    """What the policy sees of each market: its expected return and its memory."""
    inputs: dict[str, MarketInput] = {}
    for market, snapshot in snapshots.items():
        memory: dict[str, Any] = dict(snapshot.get("policy") or {})
        expected_bps = signals.get(market, {}).get("expected_return_bps")
        inputs[market] = MarketInput(
            expected_return=None if expected_bps is None else expected_bps / 10_000,
            held=market in held,
            held_minutes=memory.get("held_minutes"),
            minutes_since_exit=memory.get("minutes_since_exit"),
            entries_today=int(memory.get("entries_today") or 0),
            blocked=snapshot.get("blocked"),
        )
    for market in held - set(inputs):  # held, but no snapshot this cycle (a one-market run)
        inputs[market] = MarketInput(expected_return=None, held=True)
    return inputs


def proposal_from(
    decision: PolicyDecision, signals: dict[str, Signal], params: PolicyParams
) -> Proposal:
    """Turn the policy's decision into the graph's proposal (the rule's name is the reason)."""
    view: PolicyView = {
        "rule": decision.rule,
        "value": decision.value,
        "threshold": decision.threshold,
        "unit": decision.unit,
        "reason": decision.reason,
        "expected_returns_bps": decision.expected_returns_bps,
        "params": dict(_params_json(params)),
    }
    signal = signals.get(decision.market or "", {})
    return {
        "action": decision.action,  # type: ignore[typeddict-item]
        "market": decision.market,
        "reason": decision.rule,
        "entry_probability": signal.get("p_buy"),
        "exit_probability": signal.get("p_sell"),
        "policy": view,
    }


async def ml_signal(state: TradeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Predict every warmed-up market and propose one action through the trading policy."""
    context = runtime.context
    snapshots = state["markets"]
    features = {m: s["features"] for m, s in snapshots.items() if s.get("features") is not None}
    blocked = {m: s["blocked"] for m, s in snapshots.items() if s.get("blocked")}
    model_id = context.signal_model.model_id
    params = context.policy.rules
    signals: dict[str, Signal] = {}
    if not features:
        proposal = _hold("warming_up")
    else:
        predictions = context.signal_model.predict(features)  # type: ignore[arg-type]
        for market, p in predictions.items():
            expected = getattr(p, "expected_return", None)
            signals[market] = {
                "p_buy": round(float(p.p_buy), 6),
                "p_sell": round(float(p.p_sell), 6),
                "edge": round(float(p.p_buy) - float(p.p_sell), 6),
                "expected_return_bps": None if expected is None else round(expected * 1e4, 4),
            }
        held = set(state["account"]["positions"])
        decision = rules_for(params).decide(policy_inputs(snapshots, signals, held))
        proposal = proposal_from(decision, signals, params)
    emit({"type": "ml_signal", "node": "ml_signal", "proposal": proposal["action"]})
    policy = proposal.get("policy") or {}
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
                rule=policy.get("rule"),
                value=policy.get("value"),
                threshold=policy.get("threshold"),
                unit=policy.get("unit"),
                explanation=policy.get("reason"),
                signals=signals,
                blocked=blocked,
            )
        ],
    }
