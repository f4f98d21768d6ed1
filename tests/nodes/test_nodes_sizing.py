"""Deterministic clamps on the sizer's proposal (nodes.sizing.clamp_proposal)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from graph.context import TradingPolicy
from graph.review import SizingProposal
from nodes.sizing import LOSING_STREAK_RATIO_CAP, clamp_proposal

POLICY = TradingPolicy()


def _proposal(
    ratio: Any = 0.3, stop_loss_pct: Any = 1.0, take_profit_pct: Any = 2.0
) -> SizingProposal:
    return SizingProposal(
        investment_ratio=ratio,
        stop_loss_pct=stop_loss_pct,
        take_profit_pct=take_profit_pct,
        reasoning="test",
        reviewer="test-sizer",
    )


def test_proposal_within_limits_is_kept_and_records_no_clamp() -> None:
    values, clamps = clamp_proposal(_proposal(0.3, 1.0, 2.0), POLICY, [])

    assert values == {"investment_ratio": 0.3, "stop_loss_pct": 1.0, "take_profit_pct": 2.0}
    assert clamps == []


def test_ratio_above_one_is_clamped_to_one_by_max_investment_ratio() -> None:
    values, clamps = clamp_proposal(_proposal(ratio=5.0), POLICY, [])

    assert values is not None
    assert values["investment_ratio"] == 1.0
    assert clamps == [
        {
            "field": "investment_ratio",
            "proposed": 5.0,
            "clamped_to": 1.0,
            "rule": "max_investment_ratio",
        }
    ]


def test_ratio_below_minimum_is_raised_to_min_investment_ratio() -> None:
    values, clamps = clamp_proposal(_proposal(ratio=0.01), POLICY, [])

    assert values is not None
    assert values["investment_ratio"] == 0.05
    assert clamps == [
        {
            "field": "investment_ratio",
            "proposed": 0.01,
            "clamped_to": 0.05,
            "rule": "min_investment_ratio",
        }
    ]


@pytest.mark.parametrize("ratio", [0.05, 1.0])
def test_ratio_exactly_at_a_limit_is_not_clamped(ratio: float) -> None:
    values, clamps = clamp_proposal(_proposal(ratio=ratio), POLICY, [])

    assert values is not None
    assert values["investment_ratio"] == ratio
    assert clamps == []


def test_stop_loss_of_ten_percent_is_capped_at_three_by_stop_loss_cap() -> None:
    values, clamps = clamp_proposal(_proposal(stop_loss_pct=10.0), POLICY, [])

    assert values is not None
    assert values["stop_loss_pct"] == 3.0
    assert clamps == [
        {"field": "stop_loss_pct", "proposed": 10.0, "clamped_to": 3.0, "rule": "stop_loss_cap"}
    ]


def test_stop_loss_under_the_floor_is_raised_by_stop_loss_floor() -> None:
    values, clamps = clamp_proposal(_proposal(stop_loss_pct=0.05), POLICY, [])

    assert values is not None
    assert values["stop_loss_pct"] == POLICY.stop_loss_floor_pct
    assert [c["rule"] for c in clamps] == ["stop_loss_floor"]


def test_take_profit_above_the_cap_is_lowered_by_take_profit_cap() -> None:
    values, clamps = clamp_proposal(_proposal(take_profit_pct=50.0), POLICY, [])

    assert values is not None
    assert values["take_profit_pct"] == 20.0
    assert clamps == [
        {
            "field": "take_profit_pct",
            "proposed": 50.0,
            "clamped_to": 20.0,
            "rule": "take_profit_cap",
        }
    ]


def test_take_profit_under_the_floor_is_raised_by_take_profit_floor() -> None:
    values, clamps = clamp_proposal(_proposal(take_profit_pct=0.0), POLICY, [])

    assert values is not None
    assert values["take_profit_pct"] == POLICY.take_profit_floor_pct
    assert [c["rule"] for c in clamps] == ["take_profit_floor"]


def test_two_losses_in_a_row_cap_the_ratio_at_ten_percent_by_losing_streak() -> None:
    values, clamps = clamp_proposal(_proposal(ratio=0.5), POLICY, [0.02, -0.01, -0.003])

    assert values is not None
    assert values["investment_ratio"] == LOSING_STREAK_RATIO_CAP == 0.10
    assert clamps == [
        {"field": "investment_ratio", "proposed": 0.5, "clamped_to": 0.1, "rule": "losing_streak"}
    ]


def test_one_loss_after_a_win_keeps_the_normal_ratio_cap() -> None:
    values, clamps = clamp_proposal(_proposal(ratio=0.5), POLICY, [-0.01, 0.02, -0.01])

    assert values is not None
    assert values["investment_ratio"] == 0.5
    assert clamps == []


def test_several_fields_out_of_range_record_one_clamp_each() -> None:
    _, clamps = clamp_proposal(_proposal(5.0, 10.0, 50.0), POLICY, [])

    assert [c["field"] for c in clamps] == ["investment_ratio", "stop_loss_pct", "take_profit_pct"]


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, "lots", None, [0.5]],
    ids=["nan", "inf", "-inf", "text", "none", "list"],
)
@pytest.mark.parametrize("field", ["ratio", "stop_loss_pct", "take_profit_pct"])
def test_non_finite_or_non_numeric_field_makes_the_proposal_unusable(bad: Any, field: str) -> None:
    values, clamps = clamp_proposal(_proposal(**{field: bad}), POLICY, [])

    assert values is None
    assert clamps == []


def test_numeric_text_is_read_as_a_number() -> None:
    values, _ = clamp_proposal(_proposal(ratio="0.25"), POLICY, [])

    assert values is not None
    assert values["investment_ratio"] == 0.25
