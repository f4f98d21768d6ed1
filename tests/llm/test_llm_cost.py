"""The call meter: money from the price table, cached answers free, the daily budget (KST)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from llm.cost import BudgetSpent, CallMeter, percentile


def test_money_comes_from_the_table_and_a_model_it_does_not_list_costs_nothing() -> None:
    meter = CallMeter(prices={"big": (1.0, 2.0)})

    paid = meter.record(
        "groq", "big", input_tokens=1000, output_tokens=500, latency_ms=80, cached=False
    )
    free = meter.record(
        "ollama", "local", input_tokens=900, output_tokens=90, latency_ms=400, cached=False
    )
    hit = meter.record(
        "groq", "big", input_tokens=1000, output_tokens=500, latency_ms=0, cached=True
    )

    assert paid == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert free == 0.0 and hit == 0.0
    totals = meter.totals()
    assert (totals["calls"], totals["cache_hits"]) == (2, 1)
    assert totals["cost_usd"] == pytest.approx(paid)
    assert meter.to_json()["providers"]["ollama"]["latency_p50_ms"] == 400


def test_a_spent_budget_refuses_calls_alerts_once_and_rolls_at_midnight_in_seoul() -> None:
    now = [datetime(2026, 12, 6, 14, 0, tzinfo=UTC)]  # 23:00 KST
    alerts: list[str] = []
    meter = CallMeter(
        prices={"m": (10.0, 10.0)},
        daily_budget_usd=0.01,
        on_spent=alerts.append,
        clock=lambda: now[0],
    )
    meter.check()
    meter.record("groq", "m", input_tokens=1000, output_tokens=0, latency_ms=1, cached=False)

    for _ in range(2):
        with pytest.raises(BudgetSpent, match=r"\$0.01"):
            meter.check()
    assert len(alerts) == 1
    now[0] = datetime(2026, 12, 6, 15, 1, tzinfo=UTC)  # 00:01 KST: a new day
    meter.check()


def test_token_budget_and_percentiles() -> None:
    meter = CallMeter(daily_budget_tokens=100)
    meter.record("ollama", "x", input_tokens=60, output_tokens=40, latency_ms=1, cached=False)
    with pytest.raises(BudgetSpent, match="100 tokens"):
        meter.check()
    assert percentile([], 0.5) is None
    assert percentile([5.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile(list(map(float, range(1, 101))), 0.99) == 99.0
