"""Wire the nodes into the decision graph; no logic lives here."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph

from graph.context import Context
from graph.routing import after_groq_check, after_ml_signal, after_ollama_check, after_sizing
from graph.state import TradeState
from nodes.groq_check import groq_check
from nodes.hold import hold
from nodes.ml_signal import ml_signal
from nodes.ollama_check import ollama_check
from nodes.sizing import sizing
from nodes.trade import trade

P = ParamSpec("P")
R = TypeVar("R")


def on_loop(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """Wrap a quick sync node or router as a coroutine, so LangGraph calls it on the loop.

    An async graph runs a plain function in a worker thread: per run, `hold` and every router
    would each cost a thread hand-off (more than their work, and much more on a busy CPU).
    The wrapper keeps the name, signature and return type (the routers' `Literal` names the
    edges).
    """

    @functools.wraps(function)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return function(*args, **kwargs)

    return run


def build_graph(checkpointer: BaseCheckpointSaver | None = None, **compile_kwargs: Any) -> Any:
    """Compile the trading graph: ml_signal -> groq_check -> ollama_check -> sizing -> trade."""
    builder = StateGraph(TradeState, context_schema=Context)
    builder.add_node("ml_signal", ml_signal)
    builder.add_node("groq_check", groq_check)
    builder.add_node("ollama_check", ollama_check)
    builder.add_node("sizing", sizing)
    builder.add_node("trade", trade)
    builder.add_node("hold", on_loop(hold))
    builder.add_edge(START, "ml_signal")
    builder.add_conditional_edges("ml_signal", on_loop(after_ml_signal))
    builder.add_conditional_edges("groq_check", on_loop(after_groq_check))
    builder.add_conditional_edges("ollama_check", on_loop(after_ollama_check))
    builder.add_conditional_edges("sizing", on_loop(after_sizing))
    builder.add_edge("trade", END)
    builder.add_edge("hold", END)
    return builder.compile(checkpointer=checkpointer, name="lxa-trade", **compile_kwargs)


def graph_mermaid() -> str:
    """Return the compiled graph drawn as Mermaid."""
    return str(build_graph().get_graph().draw_mermaid())
