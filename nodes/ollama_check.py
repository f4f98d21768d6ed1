"""Second check (the plan's Ollama role: technical and strategic soundness)."""

from __future__ import annotations

from typing import Any

from langgraph.runtime import Runtime

from graph.context import Context
from graph.state import TradeState
from nodes._common import run_check


async def ollama_check(state: TradeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Ask the second reviewer whether it agrees with the proposal."""
    return await run_check("ollama_check", runtime.context.ollama, state)
