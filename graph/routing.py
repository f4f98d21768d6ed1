"""Conditional edges: the plan's decision table (ML, Groq and Ollama must all agree)."""

from __future__ import annotations

from typing import Literal

from graph.state import TradeState


class RoutingError(RuntimeError):
    """The state reached a router without what the router needs: a bug, never a decision."""


def after_ml_signal(state: TradeState) -> Literal["groq_check", "hold"]:
    """Send a buy or sell proposal to the first check; anything else holds."""
    proposal = state.get("proposal")
    if proposal is None:
        raise RoutingError("ml_signal finished without a proposal")
    return "groq_check" if proposal["action"] in ("buy", "sell") else "hold"


def after_groq_check(state: TradeState) -> Literal["ollama_check", "hold"]:
    """Ask Ollama only when Groq agreed; a disagreement holds without asking."""
    verdict = state.get("groq")
    if verdict is None:
        raise RoutingError("groq_check finished without a verdict")
    return "ollama_check" if verdict.get("agrees") else "hold"


def after_ollama_check(state: TradeState) -> Literal["sizing", "hold"]:
    """Size the trade only when Ollama agreed too."""
    verdict = state.get("ollama")
    if verdict is None:
        raise RoutingError("ollama_check finished without a verdict")
    return "sizing" if verdict.get("agrees") else "hold"


def after_sizing(state: TradeState) -> Literal["trade", "hold"]:
    """Trade unless sizing refused (below the minimum order, sizer failure, no funds)."""
    sizing = state.get("sizing")
    if sizing is None:
        raise RoutingError("sizing finished without a result")
    return "hold" if sizing.get("refused") else "trade"
