"""The veto ledger on hand-made decisions (synthetic closes, chosen so the answers are known)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from store.reviewer_ledger import ledger_rows, veto_ledger

T0 = datetime(2026, 1, 1, tzinfo=UTC)
FEE = 0.0005


def decision(
    minute: int,
    close: float,
    action: str | None = None,
    groq: str | None = None,
    ollama: str | None = None,
) -> dict[str, Any]:
    """A run at T0 + minute with KRW-BTC at `close`, proposing `action` (synthetic)."""
    verdicts = {
        "groq": {"verdict": groq} if groq else None,
        "ollama": {"verdict": ollama} if ollama else None,
    }
    return {
        "run_id": f"r{minute}",
        "bar_ts": T0 + timedelta(minutes=minute),
        "action": "hold",
        "nodes": {
            "input": {"closes": {"KRW-BTC": close}},
            "ml_signal": {"proposal": {"action": action or "hold", "market": "KRW-BTC"}},
        },
        "verdicts": verdicts,
    }


def test_forward_returns_are_net_of_the_round_trip_fee_and_sells_count_the_move_avoided() -> None:
    runs = [
        decision(0, 100.0, "buy", groq="buy", ollama="buy"),
        decision(1, 100.0, "sell", groq="sell", ollama="hold"),
        decision(2, 100.0, "buy", groq="hold"),
        decision(10, 102.0),
        decision(11, 99.0),
    ]

    rows = ledger_rows(runs, horizon_minutes=10, fee_rate=FEE)

    assert [(r.action, r.groq, r.ollama) for r in rows] == [
        ("buy", "buy", "buy"),
        ("sell", "sell", "hold"),
        ("buy", "hold", None),
    ]
    assert rows[0].net_return == pytest.approx(0.02 - 2 * FEE)
    assert rows[1].net_return == pytest.approx(0.01)  # the price fell 1%: selling was right
    assert rows[2].net_return is None  # no close 10 minutes later


def test_a_reviewer_that_vetoes_the_losers_earns_a_positive_edge_with_its_interval() -> None:
    runs = []
    for k in range(40):  # every proposal a buy; odd ones lose 1%, even ones gain 1%
        start = 100 * k
        loses = k % 2 == 1
        runs.append(
            decision(
                start,
                100.0,
                "buy",
                groq="hold" if loses else "buy",
                ollama=None if loses else "buy",
            )
        )
        runs.append(decision(start + 10, 99.0 if loses else 101.0))

    ledger = veto_ledger(runs, horizon_minutes=10, fee_rate=FEE)

    groq = ledger["reviewers"]["groq"]
    assert (groq["asked"], groq["vetoed"], groq["veto_rate"]) == (40, 20, 0.5)
    assert groq["vetoed_net_return"]["mean"] == pytest.approx(-0.01 - 2 * FEE)
    assert groq["passed_net_return"]["mean"] == pytest.approx(0.01 - 2 * FEE)
    assert groq["passed_minus_vetoed"] == pytest.approx(0.02)
    low, high = groq["passed_net_return"]["ci95"]
    assert low == pytest.approx(high)  # identical outcomes: no spread
    assert ledger["reviewers"]["ollama"]["vetoed"] == 0
    assert ledger["agreement"] == {
        "groq agreed / ollama agreed": 20,
        "groq vetoed / ollama not asked": 20,
    }
    assert ledger["proposals"] == ledger["with_outcome"] == 40
