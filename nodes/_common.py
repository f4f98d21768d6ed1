"""Helpers the nodes share: events, timing and the two LLM-style checks."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from langgraph.config import get_stream_writer

from graph.review import ReviewAborted, Reviewer, ReviewRequest, TokenCallback, Verdict
from graph.state import TradeState, VerdictView


def event(node: str, kind: str, **payload: Any) -> dict[str, Any]:
    """Build one journal/viewer event."""
    return {"type": kind, "node": node, "ts": datetime.now(UTC).isoformat(), **payload}


def emit(payload: dict[str, Any]) -> None:
    """Send progress to the `custom` stream when the run is being streamed."""
    try:
        writer = get_stream_writer()
    except RuntimeError:  # called outside a graph run (unit tests of helpers)
        return
    writer(payload)


def token_emitter(node: str) -> TokenCallback:
    """Forward streamed LLM text to the run's `custom` stream."""

    def on_token(text: str) -> None:
        emit({"type": "llm_token", "node": node, "text": text})

    return on_token


async def run_check(role: str, reviewer: Reviewer, state: TradeState) -> dict[str, Any]:
    """Ask `reviewer` about the ML proposal; any failure becomes a recorded hold verdict."""
    proposal = state["proposal"]
    market = proposal["market"]
    if market is None or proposal["action"] == "hold":
        raise ValueError(f"{role} needs a buy or sell proposal, got {proposal!r}")
    snapshot = state["markets"][market]
    account = state["account"]
    position = account["positions"].get(market)
    request = ReviewRequest(
        role=role,  # type: ignore[arg-type]
        action=proposal["action"],
        market=market,
        entry_probability=proposal["entry_probability"],
        exit_probability=proposal["exit_probability"],
        features=dict(snapshot["features"] or {}),
        position=dict(position) if position else None,
        model_id=state.get("model_id", ""),
        bar_time=state.get("bar_ts", ""),
        recent_closes=tuple(snapshot.get("recent_closes", ())),
        news=list(snapshot.get("news") or []),
        account=dict(account),
    )
    emit({"type": "llm_start", "node": role, "reviewer": reviewer.name})
    started = time.perf_counter()
    view: VerdictView
    try:
        verdict = await reviewer.review(request, on_token=token_emitter(role))
    except ReviewAborted:  # cache-only: a miss stops the backtest, it is not a verdict
        raise
    except Exception as exc:  # a failed check is a hold, never a crash or an approval
        verdict = Verdict(
            verdict="hold",
            confidence=0.0,
            reasoning=f"{role} failed: {type(exc).__name__}: {exc}",
            reviewer=reviewer.name,
            error=f"{type(exc).__name__}: {exc}",
        )
    data = verdict.to_json()
    view = {
        "verdict": verdict.verdict,
        "agrees": verdict.verdict == proposal["action"] and verdict.error is None,
        "confidence": verdict.confidence,
        "reasoning": verdict.reasoning,
        "risks": data["risks"],
        "reviewer": verdict.reviewer,
        "checks": data["checks"],
        "error": verdict.error,
        "call": verdict.call,
        "latency_ms": round((time.perf_counter() - started) * 1000, 3),
    }
    key = "groq" if role == "groq_check" else "ollama"
    call = verdict.call or {}
    return {
        key: view,
        "events": [
            event(
                role,
                "verdict",
                market=market,
                proposal=proposal["action"],
                verdict=view["verdict"],
                agrees=view["agrees"],
                reviewer=view["reviewer"],
                reasoning=view["reasoning"],
                error=view["error"],
                prompt_ref=call.get("prompt_ref"),
                cached=call.get("cached"),
            )
        ],
    }
