"""The run record: one graph run's final state written to the journal, and its summary event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.engine.venue import Outbox, now
from store.rows import DecisionRow, EventRow, LlmCallRow

LLM_NODES = (("groq_check", "groq"), ("ollama_check", "ollama"), ("sizing", "sizing"))
INCOMPLETE = "run_incomplete"  # the reason of a run recorded from a state with no decision


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one graph run decided."""

    run_id: str
    action: str
    market: str | None
    reason: str
    duration_ms: float


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return now()


def llm_call_row(run_id: str, node: str, view: Mapping[str, Any]) -> LlmCallRow:
    """One journal row for a reviewer's or sizer's answer (an LLM call, or a rule-based one)."""
    call = view.get("call") or {}
    response = {k: v for k, v in view.items() if k != "call"}
    response["raw"] = call.get("raw")
    response["thinking"] = call.get("thinking")
    response["cost_usd"] = call.get("cost_usd")
    # The journal's provider, model and latency columns are NOT NULL, and a missing value
    # there would refuse the whole run. Views name their reviewer and measure their latency
    # (the sizing node's refusals too); one that does not (a checkpoint from an older
    # version) is recorded as "unknown" and 0 ms rather than lost.
    label = str(view.get("reviewer") or "unknown")
    latency = call.get("latency_ms") or view.get("latency_ms")
    return {
        "run_id": run_id,
        "node": node,
        "provider": str(call.get("provider") or label),
        "model": str(call.get("model") or label),
        "prompt_ref": call.get("prompt_ref"),
        "request": {
            "system": call.get("system"),
            "user": call.get("user"),
            "input_sha256": call.get("input_sha256"),
        },
        "response": response,
        "verdict": view.get("verdict"),
        "latency_ms": float(latency) if latency is not None else 0.0,
        "input_tokens": call.get("input_tokens"),
        "output_tokens": call.get("output_tokens"),
        "cached": bool(call.get("cached")),
        "attempts": call.get("attempts"),
        "created_at": now(),
        "error": view.get("error") or call.get("error") or view.get("refused"),
    }


@dataclass
class RunRecorder:
    """Writes a finished run (decision, node outputs, LLM calls, events) in one journal call."""

    outbox: Outbox
    session_id: str

    def record(self, run_id: str, final: Mapping[str, Any], duration_ms: float) -> CycleResult:
        """Journal the run whose final state is `final`; publish `run_finished`.

        A state without a decision (a checkpoint the graph never finished) is recorded as a
        hold saying so: a run the engine cannot finish must never stop it from trading.
        """
        decision = final.get("decision") or {
            "action": "hold",
            "market": None,
            "reason": INCOMPLETE,
        }
        labels = {
            "groq_check": final.get("groq", {}).get("reviewer"),
            "ollama_check": final.get("ollama", {}).get("reviewer"),
            "sizing": final.get("sizing", {}).get("reviewer"),
        }
        llm_calls: list[LlmCallRow] = []
        for node, key in LLM_NODES:
            view = final.get(key)
            if view and view.get("reviewer") not in (None, "deterministic"):
                llm_calls.append(llm_call_row(run_id, node, view))
        markets = final.get("markets", {})
        ml = {
            "model_id": final.get("model_id"),
            "signals": final.get("signals", {}),
            "features": {m: s.get("features") for m, s in markets.items()},
        }
        row: DecisionRow = {
            "run_id": run_id,
            "session_id": self.session_id,
            "bar_ts": _parse_ts(final.get("bar_ts")),
            "created_at": now(),
            "trigger": final.get("trigger", "bar"),
            "action": decision["action"],
            "market": decision.get("market"),
            "reason": decision["reason"],
            "reviewer_labels": labels,
            "nodes": {
                "input": {
                    "account": final.get("account"),
                    "closes": {m: v.get("close") for m, v in markets.items()},
                    "recent_results": final.get("recent_results"),
                    # The news items each market's reviewers were shown (point in time).
                    "news": {m: v["news"] for m, v in markets.items() if v.get("news")},
                },
                "ml_signal": {"proposal": final.get("proposal"), "signals": final.get("signals")},
                "groq_check": final.get("groq"),
                "ollama_check": final.get("ollama"),
                "sizing": final.get("sizing"),
                "trade": final.get("order"),
            },
            "ml": ml,
            "verdicts": {"groq": final.get("groq"), "ollama": final.get("ollama")},
            "sizing": final.get("sizing"),
            "duration_ms": round(duration_ms, 3),
        }
        events: list[EventRow] = [
            {"run_id": run_id, "type": e["type"], "payload": e, "ts": _parse_ts(e.get("ts"))}
            for e in final.get("events", [])
        ]
        self.outbox.journal.record_run(row, llm_calls, events)
        self.outbox.publish(
            {
                "type": "run_finished",
                "run_id": run_id,
                "action": decision["action"],
                "market": decision.get("market"),
                "reason": decision["reason"],
                "duration_ms": round(duration_ms, 3),
            }
        )
        return CycleResult(
            run_id, decision["action"], decision.get("market"), decision["reason"], duration_ms
        )
