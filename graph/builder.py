"""Wire the nodes into the decision graph; no logic lives here."""

from __future__ import annotations

from typing import Any

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


def build_graph(checkpointer: BaseCheckpointSaver | None = None, **compile_kwargs: Any) -> Any:
    """Compile the trading graph: ml_signal -> groq_check -> ollama_check -> sizing -> trade."""
    builder = StateGraph(TradeState, context_schema=Context)
    builder.add_node("ml_signal", ml_signal)
    builder.add_node("groq_check", groq_check)
    builder.add_node("ollama_check", ollama_check)
    builder.add_node("sizing", sizing)
    builder.add_node("trade", trade)
    builder.add_node("hold", hold)
    builder.add_edge(START, "ml_signal")
    builder.add_conditional_edges("ml_signal", after_ml_signal)
    builder.add_conditional_edges("groq_check", after_groq_check)
    builder.add_conditional_edges("ollama_check", after_ollama_check)
    builder.add_conditional_edges("sizing", after_sizing)
    builder.add_edge("trade", END)
    builder.add_edge("hold", END)
    return builder.compile(checkpointer=checkpointer, name="lxa-trade", **compile_kwargs)


def graph_mermaid() -> str:
    """Return the compiled graph drawn as Mermaid."""
    return str(build_graph().get_graph().draw_mermaid())
