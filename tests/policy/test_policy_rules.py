"""The trading rules: each rule fires on its own case and records what it compared."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from policy.params import PolicyParams, PolicyParamsError
from policy.rules import MarketInput, Policy, Rule

PARAMS = PolicyParams()  # costs 14 bps, entry margin 10, exit margin 5, min hold 10 minutes
RULES = Policy(PARAMS)


def decide(**markets: MarketInput) -> tuple[str, str | None, str]:
    decision = RULES.decide(markets)
    return decision.action, decision.market, decision.rule


def test_an_expected_return_that_clears_costs_and_margin_enters_the_best_market() -> None:
    decision = RULES.decide({"A": MarketInput(0.0030), "B": MarketInput(0.0040)})

    assert (decision.action, decision.market, decision.rule) == ("buy", "B", "enter")
    assert decision.value == pytest.approx(26.0)  # 40 bps - 14 bps of costs
    assert decision.threshold == pytest.approx(10.0)
    assert "clears the margin" in decision.reason


def test_an_expected_return_short_of_the_margin_holds_no_edge_with_the_numbers() -> None:
    decision = RULES.decide({"A": MarketInput(0.0020), "B": MarketInput(-0.001)})

    assert (decision.action, decision.market, decision.rule) == ("hold", "A", "no_edge")
    assert decision.value == pytest.approx(6.0)
    assert decision.threshold == pytest.approx(10.0)


def test_no_expected_return_anywhere_holds_no_signal() -> None:
    assert decide(A=MarketInput(None), B=MarketInput(None)) == ("hold", None, "no_signal")


def test_the_alternate_bar_flip_flop_cannot_happen() -> None:
    """Issue #8's loss: bought on one bar, sold on the next because both signals fired."""
    bought = decide(A=MarketInput(0.0050))
    # One minute later the same volatile market now looks like a sell.
    next_bar = decide(A=MarketInput(-0.0050, held=True, held_minutes=1))
    # Sold at the minimum hold, then the buy signal is back on the following bar.
    sold = decide(A=MarketInput(-0.0050, held=True, held_minutes=10))
    again = decide(A=MarketInput(0.0050, minutes_since_exit=1, entries_today=1))

    assert bought == ("buy", "A", "enter")
    assert next_bar == ("hold", "A", "min_hold")
    assert sold == ("sell", "A", "exit_signal")
    assert again == ("hold", "A", "reentry_pause")


def test_a_held_coin_inside_the_hysteresis_band_is_kept() -> None:
    # -3 bps expected: selling does not beat holding by the 5 bps exit margin.
    decision = RULES.decide({"A": MarketInput(-0.0003, held=True, held_minutes=500)})

    assert (decision.action, decision.market, decision.rule) == ("hold", "A", "keep")
    assert (decision.value, decision.threshold) == (pytest.approx(-3.0), pytest.approx(-5.0))
    assert decide(A=MarketInput(-0.0006, held=True, held_minutes=500)) == (
        "sell",
        "A",
        "exit_signal",
    )


def test_the_time_stop_sells_after_max_hold_minutes() -> None:
    rules = Policy(replace(PARAMS, max_hold_minutes=60))

    young = rules.decide({"A": MarketInput(0.0, held=True, held_minutes=59)})
    old = rules.decide({"A": MarketInput(0.0, held=True, held_minutes=60)})

    assert young.action == "hold"
    assert (old.action, old.market, old.rule) == ("sell", "A", "exit_time")
    assert (old.value, old.threshold, old.unit) == (60.0, 60.0, "minutes")


def test_an_exit_signal_wins_over_a_new_entry_in_the_same_cycle() -> None:
    assert decide(A=MarketInput(-0.0050, held=True, held_minutes=30), B=MarketInput(0.0100)) == (
        "sell",
        "A",
        "exit_signal",
    )


@pytest.mark.parametrize(
    ("market", "rule"),
    [
        (MarketInput(0.005, blocked="cooldown after drop"), "blocked"),
        (MarketInput(0.005, minutes_since_exit=29), "reentry_pause"),
        (MarketInput(0.005, entries_today=3), "turnover_budget"),
    ],
)
def test_each_entry_filter_records_its_own_rule(market: MarketInput, rule: str) -> None:
    decision = RULES.decide({"A": market})

    assert (decision.action, decision.market, decision.rule) == ("hold", "A", rule)
    assert decision.value == pytest.approx(36.0)


def test_the_pause_ends_after_reentry_pause_minutes() -> None:
    assert decide(A=MarketInput(0.005, minutes_since_exit=30)) == ("buy", "A", "enter")


def test_max_open_positions_holds_with_its_rule() -> None:
    decision = RULES.decide(
        {
            "A": MarketInput(0.0, held=True, held_minutes=20),
            "B": MarketInput(0.0, held=True, held_minutes=20),
            "C": MarketInput(0.005),
        }
    )

    assert (decision.action, decision.market, decision.rule) == ("hold", "C", "max_positions")


def test_a_filtered_best_market_gives_way_to_the_next_allowed_one() -> None:
    decision = RULES.decide(
        {"A": MarketInput(0.009, minutes_since_exit=3), "B": MarketInput(0.004)}
    )

    assert (decision.action, decision.market) == ("buy", "B")


def test_every_rule_has_a_name_and_the_decision_serialises() -> None:
    decision = RULES.decide({"A": MarketInput(0.004)})

    assert {r.name.lower() for r in Rule} >= {"enter", "no_edge", "min_hold", "exit_signal"}
    assert decision.to_json()["expected_returns_bps"] == {"A": 40.0}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("min_hold_minutes", 5, "at least the label horizon"),
        ("max_hold_minutes", 5, "0 (off) or at least"),
        ("slippage_bps", -1.0, "slippage_bps must be in"),
        ("monthly_loss_cap_pct", 0.0, "monthly_loss_cap_pct must be in"),
        ("max_open_positions", 0, "max_open_positions must be >= 1"),
        ("entry_margin_bps", float("nan"), "entry_margin_bps must be in"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(
    field: str, value: object, message: str
) -> None:
    with pytest.raises(PolicyParamsError, match=re.escape(message)):
        replace(PARAMS, **{field: value})


def test_parameters_round_trip_through_json() -> None:
    params = replace(PARAMS, entry_margin_bps=25.0, max_hold_minutes=240)

    assert PolicyParams.from_json(params.to_json()) == params
    with pytest.raises(PolicyParamsError, match="unknown policy parameters"):
        PolicyParams.from_json({**params.to_json(), "entry_probability_min": 0.3})
