"""llm.answers: the verdict and sizing answers read the way models write them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from llm.answers import SizingAnswer, VerdictAnswer
from llm.parsing import LLMOutputError


# VerdictAnswer ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "verdict"), [("BUY ", "buy"), (" Sell", "sell"), ("hold\n", "hold")]
)
def test_verdict_is_stripped_and_lowercased(written: str, verdict: str) -> None:
    assert VerdictAnswer.model_validate({"verdict": written}).verdict == verdict


@pytest.mark.parametrize(
    ("written", "confidence"),
    [
        ("85%", 0.85),
        (85, 0.85),
        ("85", 0.85),
        (0.7, 0.7),
        ("0.7", 0.7),
        (1, 1.0),
        (100, 1.0),
        (1.7, 0.017),  # in (1, 100]: read as percent
        ("N/A", 0.5),
        (None, 0.5),
        ("", 0.5),
        (0, 0.0),
    ],
)
def test_confidence_reads_fractions_percents_and_missing_values(
    written: Any, confidence: float
) -> None:
    answer = VerdictAnswer.model_validate({"verdict": "buy", "confidence": written})

    assert answer.confidence == pytest.approx(confidence)


@pytest.mark.parametrize(
    "written",
    [
        *(101, 250.0, -0.1, "-5%", "150%", "high", "nan", float("inf"), [0.5]),
        pytest.param(10**400, id="10**400"),
    ],
)
def test_confidence_out_of_range_or_unreadable_is_a_validation_error(written: Any) -> None:
    with pytest.raises(ValidationError):
        VerdictAnswer.model_validate({"verdict": "buy", "confidence": written})


def test_confidence_default_is_half_when_missing() -> None:
    assert VerdictAnswer.model_validate({"verdict": "hold"}).confidence == 0.5


@pytest.mark.parametrize(
    ("written", "risks"),
    [
        ("thin volume", ["thin volume"]),
        ("none", []),
        ("N/A", []),
        (None, []),
        (["a", 2, None], ["a", "2", "None"]),
        (7, ["7"]),
        ([f"r{i}" for i in range(30)], [f"r{i}" for i in range(20)]),
    ],
)
def test_risks_accept_a_string_none_or_a_list_and_keep_at_most_twenty(
    written: Any, risks: list[str]
) -> None:
    assert VerdictAnswer.model_validate({"verdict": "sell", "risks": written}).risks == risks


@pytest.mark.parametrize("written", ["long", "approve", "yes", "", "buy!", None, 1, ["buy"]])
def test_verdict_outside_buy_sell_hold_is_a_validation_error(written: Any) -> None:
    with pytest.raises(ValidationError):
        VerdictAnswer.model_validate({"verdict": written})


def test_missing_verdict_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        VerdictAnswer.model_validate({"confidence": 0.9})


def test_extra_fields_are_ignored_and_reasoning_none_is_empty() -> None:
    answer = VerdictAnswer.model_validate(
        {"verdict": "hold", "reasoning": None, "action": "buy", "score": 9}
    )

    assert answer.model_dump() == {
        "verdict": "hold",
        "confidence": 0.5,
        "reasoning": "",
        "risks": [],
    }


# SizingAnswer ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "ratio"), [("15%", 0.15), ("0.3", 0.3), (0.25, 0.25), (" 2.5 ", 2.5)]
)
def test_investment_ratio_reads_fractions_and_percents(written: Any, ratio: float) -> None:
    answer = SizingAnswer.model_validate({"investment_ratio": written})

    assert answer.investment_ratio == pytest.approx(ratio)


@pytest.mark.parametrize(
    "written", ["N/A", None, "", "half", True, "inf", pytest.param(10**400, id="10**400")]
)
def test_unreadable_investment_ratio_is_a_validation_error(written: Any) -> None:
    with pytest.raises(ValidationError, match="investment_ratio"):
        SizingAnswer.model_validate({"investment_ratio": written})


def test_missing_investment_ratio_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="investment_ratio"):
        SizingAnswer.model_validate({"stop_loss_pct": 1.0, "take_profit_pct": 2.0})


def test_stop_and_take_written_with_percent_sign_stay_in_percent() -> None:
    answer = SizingAnswer.model_validate(
        {"investment_ratio": 0.2, "stop_loss_pct": "2%", "take_profit_pct": "4.5 %"}
    )

    assert answer.protections() == (2.0, 4.5)


def test_protections_fall_back_to_max_loss_acceptable_and_take_profit_target() -> None:
    answer = SizingAnswer.model_validate(
        {"investment_ratio": 0.2, "max_loss_acceptable": "1.5", "take_profit_target": 3}
    )

    assert answer.protections() == (1.5, 3.0)


def test_explicit_protections_win_over_the_fallback_names() -> None:
    answer = SizingAnswer.model_validate(
        {
            "investment_ratio": 0.2,
            "stop_loss_pct": 1.0,
            "take_profit_pct": 2.0,
            "max_loss_acceptable": 9.0,
            "take_profit_target": 9.0,
        }
    )

    assert answer.protections() == (1.0, 2.0)


def test_negative_stop_loss_is_read_as_its_magnitude() -> None:
    answer = SizingAnswer.model_validate(
        {"investment_ratio": 0.2, "stop_loss_pct": -1.2, "take_profit_pct": "-2.4%"}
    )

    assert answer.protections() == (1.2, 2.4)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"stop_loss_pct": 1.0},
        {"take_profit_target": 2.0},
        {"stop_loss_pct": "n/a", "take_profit_pct": 2.0},
    ],
)
def test_missing_stop_or_take_profit_raises_llm_output_error(fields: dict[str, Any]) -> None:
    answer = SizingAnswer.model_validate({"investment_ratio": 0.2, **fields})

    with pytest.raises(LLMOutputError, match="no stop-loss or no take-profit"):
        answer.protections()
