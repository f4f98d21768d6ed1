"""Routers: each branch of the decision table, and a RoutingError for a state without its key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from graph.routing import (
    RoutingError,
    after_groq_check,
    after_ml_signal,
    after_ollama_check,
    after_sizing,
)


def _proposal(action: str) -> dict[str, Any]:
    market = None if action == "hold" else "KRW-ETH"
    return {
        "action": action,
        "market": market,
        "reason": "test",
        "entry_probability": None,
        "exit_probability": None,
    }


@pytest.mark.parametrize(
    ("action", "expected"), [("buy", "groq_check"), ("sell", "groq_check"), ("hold", "hold")]
)
def test_after_ml_signal_sends_buy_and_sell_to_groq_and_holds_otherwise(
    action: str, expected: str
) -> None:
    assert after_ml_signal({"proposal": _proposal(action)}) == expected  # type: ignore[typeddict-item]


@pytest.mark.parametrize(("agrees", "expected"), [(True, "ollama_check"), (False, "hold")])
def test_after_groq_check_asks_ollama_only_when_groq_agrees(agrees: bool, expected: str) -> None:
    assert after_groq_check({"groq": {"agrees": agrees}}) == expected


def test_after_groq_check_without_agrees_flag_holds() -> None:
    assert after_groq_check({"groq": {"verdict": "buy"}}) == "hold"


@pytest.mark.parametrize(("agrees", "expected"), [(True, "sizing"), (False, "hold")])
def test_after_ollama_check_sizes_only_when_ollama_agrees(agrees: bool, expected: str) -> None:
    assert after_ollama_check({"ollama": {"agrees": agrees}}) == expected


def test_after_ollama_check_with_an_errored_verdict_holds() -> None:
    verdict = {"verdict": "hold", "agrees": False, "error": "TimeoutError: slow"}

    assert after_ollama_check({"ollama": verdict}) == "hold"  # type: ignore[typeddict-item]


@pytest.mark.parametrize(
    ("refused", "expected"),
    [(None, "trade"), ("below_minimum", "hold"), ("sizer_failed", "hold")],
)
def test_after_sizing_trades_unless_sizing_refused(refused: str | None, expected: str) -> None:
    assert after_sizing({"sizing": {"refused": refused, "order_krw": "10000"}}) == expected


@pytest.mark.parametrize(
    ("router", "missing"),
    [
        (after_ml_signal, "proposal"),
        (after_groq_check, "verdict"),
        (after_ollama_check, "verdict"),
        (after_sizing, "result"),
    ],
)
def test_router_on_a_state_missing_its_key_raises_routing_error(
    router: Callable[[Any], str], missing: str
) -> None:
    with pytest.raises(RoutingError, match=missing):
        router({"run_id": "r"})
