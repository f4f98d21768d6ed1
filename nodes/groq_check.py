"""First check (the plan's Groq role: news, sentiment, market mood) of the ML proposal."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import TradeState
from nodes._common import run_check


async def groq_check(state: TradeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask the first reviewer whether it agrees with the proposal."""
    return await run_check("groq_check", runtime.context.groq, state)
