"""End a cycle without trading, saying why and which later steps were skipped."""

from __future__ import annotations

from typing import Any

from graph.state import NODE_ORDER, Decision, TradeState
from nodes._common import event

_STAGE_KEYS = {
    "ml_signal": "proposal",
    "groq_check": "groq",
    "ollama_check": "ollama",
    "sizing": "sizing",
}


def hold_reason(state: TradeState) -> str:
    """Name the reason for holding from how far the run got."""
    sizing = state.get("sizing")
    if sizing is not None and sizing.get("refused"):
        return str(sizing["refused"])
    ollama = state.get("ollama")
    if ollama is not None and not ollama.get("agrees"):
        return "ollama_error" if ollama.get("error") else "ollama_disagreed"
    groq = state.get("groq")
    if groq is not None and not groq.get("agrees"):
        return "groq_error" if groq.get("error") else "groq_disagreed"
    proposal = state.get("proposal")
    return proposal["reason"] if proposal is not None else "no_proposal"


def hold(state: TradeState) -> dict[str, Any]:
    """Record a hold decision and the nodes this run did not reach."""
    reached = [node for node, key in _STAGE_KEYS.items() if key in state]
    last = NODE_ORDER.index(reached[-1]) if reached else -1
    skipped = NODE_ORDER[last + 1 :]
    reason = hold_reason(state)
    proposal = state.get("proposal")
    decision: Decision = {
        "action": "hold",
        "market": proposal["market"] if proposal is not None else None,
        "reason": reason,
    }
    events = [event("hold", "node_skipped", skipped_node=node, because=reason) for node in skipped]
    events.append(event("hold", "decision", **decision))
    return {"decision": decision, "events": events}
