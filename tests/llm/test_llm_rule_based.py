"""The rule-based reviewers and sizer that stand in for the LLM checks."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest

from graph.review import ReviewRequest, SizingRequest, Verdict
from llm.rule_based import (
    RULE_BASED,
    RuleBasedMoodReviewer,
    RuleBasedSizer,
    RuleBasedTechnicalReviewer,
)

CALM = {"ret_60": 0.001, "volatility_60": 0.001, "rsi_14": 55.0, "macd_hist": 0.0001}


def _request(action: str = "buy", **features: float | None) -> ReviewRequest:
    return ReviewRequest(
        role="groq_check",
        action=action,  # type: ignore[arg-type]
        market="KRW-ETH",
        entry_probability=0.7,
        exit_probability=0.1,
        features={**CALM, **features},
        position=None,
    )


def _without(feature: str) -> ReviewRequest:
    request = _request()
    features = dict(request.features)
    del features[feature]
    return replace(request, features=features)


def _check(verdict: Verdict, name: str) -> Any:
    (check,) = [c for c in verdict.checks if c.name == name]
    return check


# -- mood reviewer (stands in for Groq) -------------------------------------------------------


@pytest.mark.parametrize(("ret_60", "verdict"), [(-0.015, "buy"), (-0.0151, "hold"), (0.02, "buy")])
async def test_mood_hour_return_at_the_drop_limit_passes_and_below_it_holds(
    ret_60: float, verdict: str
) -> None:
    result = await RuleBasedMoodReviewer().review(_request(ret_60=ret_60))

    assert result.verdict == verdict
    assert _check(result, "ret_60").passed is (verdict == "buy")


@pytest.mark.parametrize(
    ("volatility", "verdict"), [(0.004, "buy"), (0.00401, "hold"), (0.0, "buy")]
)
async def test_mood_volatility_at_the_limit_passes_and_above_it_holds(
    volatility: float, verdict: str
) -> None:
    result = await RuleBasedMoodReviewer().review(_request(volatility_60=volatility))

    assert result.verdict == verdict
    assert _check(result, "volatility_60").passed is (verdict == "buy")


@pytest.mark.parametrize("feature", ["ret_60", "volatility_60"])
async def test_mood_missing_feature_fails_its_check_and_holds(feature: str) -> None:
    result = await RuleBasedMoodReviewer().review(_without(feature))

    assert result.verdict == "hold"
    check = _check(result, feature)
    assert check.value is None
    assert check.passed is False


@pytest.mark.parametrize("feature", ["ret_60", "volatility_60"])
async def test_mood_nan_feature_fails_its_check_and_holds(feature: str) -> None:
    result = await RuleBasedMoodReviewer().review(_request(**{feature: math.nan}))

    assert result.verdict == "hold"
    assert _check(result, feature).passed is False


async def test_mood_sell_passes_without_checks_even_in_turmoil() -> None:
    result = await RuleBasedMoodReviewer().review(_request("sell", ret_60=-0.2, volatility_60=0.05))

    assert result.verdict == "sell"
    assert result.checks == ()


async def test_mood_verdict_names_the_missing_news_source_as_a_risk() -> None:
    result = await RuleBasedMoodReviewer().review(_request())

    assert any("news" in risk for risk in result.risks)
    assert all(check.name != "news_score" for check in result.checks)


def _news(*scored: tuple[float | None, float]) -> list[dict[str, Any]]:
    return [
        {"title": f"item {n}", "score": score, "relevance": relevance}
        for n, (score, relevance) in enumerate(scored)
    ]


@pytest.mark.parametrize(
    ("news", "mood", "verdict"),
    [
        (_news((-0.8, 1.0), (0.2, 1.0)), -0.3, "buy"),  # at the limit: passes
        (_news((-0.8, 1.0), (0.2, 0.5)), -0.4667, "hold"),  # weighted by relevance
        (_news((0.5, 0.4)), 0.5, "buy"),
        (_news((-0.9, 1.0), (None, 1.0)), -0.9, "hold"),  # an unscored item does not count
    ],
)
async def test_mood_with_scored_news_holds_a_buy_when_their_weighted_score_is_below_the_limit(
    news: list[dict[str, Any]], mood: float, verdict: str
) -> None:
    result = await RuleBasedMoodReviewer().review(replace(_request(), news=news))

    assert result.verdict == verdict
    check = _check(result, "news_score")
    assert check.value == pytest.approx(mood, abs=1e-4)
    assert check.passed is (verdict == "buy")
    assert not any("sentiment unknown" in risk for risk in result.risks)


async def test_mood_lets_an_exit_through_whatever_the_news() -> None:
    request = replace(_request("sell"), news=_news((-1.0, 1.0)))

    assert (await RuleBasedMoodReviewer().review(request)).verdict == "sell"


# -- technical reviewer (stands in for Ollama) ------------------------------------------------


@pytest.mark.parametrize(("rsi", "verdict"), [(70.0, "buy"), (70.01, "hold"), (30.0, "buy")])
async def test_technical_buy_rsi_at_overbought_passes_and_above_it_holds(
    rsi: float, verdict: str
) -> None:
    result = await RuleBasedTechnicalReviewer().review(_request(rsi_14=rsi))

    assert result.verdict == verdict
    assert _check(result, "rsi_14").passed is (verdict == "buy")


@pytest.mark.parametrize(("macd", "verdict"), [(0.0, "buy"), (-1e-9, "hold"), (0.5, "buy")])
async def test_technical_buy_macd_hist_at_zero_passes_and_below_it_holds(
    macd: float, verdict: str
) -> None:
    result = await RuleBasedTechnicalReviewer().review(_request(macd_hist=macd))

    assert result.verdict == verdict
    assert _check(result, "macd_hist").passed is (verdict == "buy")


@pytest.mark.parametrize(("rsi", "verdict"), [(25.0, "sell"), (24.99, "hold"), (80.0, "sell")])
async def test_technical_sell_rsi_at_oversold_passes_and_below_it_holds(
    rsi: float, verdict: str
) -> None:
    result = await RuleBasedTechnicalReviewer().review(_request("sell", rsi_14=rsi))

    assert result.verdict == verdict
    assert [c.name for c in result.checks] == ["rsi_14"]


@pytest.mark.parametrize("feature", ["rsi_14", "macd_hist"])
async def test_technical_buy_missing_feature_fails_its_check_and_holds(feature: str) -> None:
    result = await RuleBasedTechnicalReviewer().review(_without(feature))

    assert result.verdict == "hold"
    assert _check(result, feature).passed is False


async def test_technical_sell_missing_rsi_holds() -> None:
    request = _request("sell", rsi_14=None)

    result = await RuleBasedTechnicalReviewer().review(request)

    assert result.verdict == "hold"


async def test_failed_checks_set_confidence_to_the_failed_share_and_name_them() -> None:
    result = await RuleBasedTechnicalReviewer().review(_request(rsi_14=90.0))

    assert result.confidence == 0.5
    assert "rsi_14=90.0" in result.reasoning


# -- every rule-based answer is labelled ------------------------------------------------------


@pytest.mark.parametrize(
    "reviewer", [RuleBasedMoodReviewer(), RuleBasedTechnicalReviewer()], ids=["mood", "technical"]
)
@pytest.mark.parametrize(
    "request_",
    [_request(), _request("sell"), _request(rsi_14=99.0, ret_60=-1.0), _without("rsi_14")],
    ids=["buy-pass", "sell", "buy-fail", "missing"],
)
async def test_every_rule_based_verdict_says_reviewer_rule_based(
    reviewer: Any, request_: ReviewRequest
) -> None:
    result = await reviewer.review(request_)

    assert result.reviewer == RULE_BASED == "rule-based"
    assert reviewer.name == "rule-based"
    assert result.to_json()["reviewer"] == "rule-based"


# -- sizer --------------------------------------------------------------------------------------


def _sizing_request(
    strength: str = "strong",
    volatility: float | None = 0.001,
    results: list[float] | None = None,
    risk_level: str = "medium",
) -> SizingRequest:
    return SizingRequest(
        market="KRW-ETH",
        capital_krw=1_000_000.0,
        cash_krw=1_000_000.0,
        positions={},
        entry_probability=0.3,
        volatility_60m=volatility,
        range_10m=0.001,
        recent_results=results or [],
        risk_level=risk_level,  # type: ignore[arg-type]
        signal_strength=strength,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("strength", "volatility", "ratio"),
    [
        ("strong", 0.001, 0.5),  # strong and calm
        ("strong", 0.0015, 0.3),  # strong but not calm: medium tier
        ("medium", 0.001, 0.3),  # medium
        ("weak", 0.001, 0.1),  # weak
        ("strong", None, 0.3),  # unknown volatility counts as not calm
    ],
)
async def test_sizer_tiers_by_signal_strength_and_volatility(
    strength: str, volatility: float | None, ratio: float
) -> None:
    proposal = await RuleBasedSizer().size(_sizing_request(strength, volatility))

    assert proposal.investment_ratio == ratio
    assert proposal.reviewer == "rule-based"


@pytest.mark.parametrize("strength", ["strong", "medium", "weak"])
async def test_sizer_after_two_losses_proposes_at_most_eight_percent(strength: str) -> None:
    proposal = await RuleBasedSizer().size(_sizing_request(strength, results=[0.03, -0.01, -0.02]))

    assert proposal.investment_ratio <= 0.08
    assert "2 losses in a row" in proposal.reasoning


async def test_sizer_after_two_wins_raises_the_ratio_by_a_fifth() -> None:
    proposal = await RuleBasedSizer().size(_sizing_request("medium", results=[0.01, 0.02]))

    assert proposal.investment_ratio == pytest.approx(0.36)


@pytest.mark.parametrize(("risk_level", "ratio"), [("low", 0.25), ("medium", 0.5), ("high", 0.75)])
async def test_sizer_scales_the_ratio_by_risk_level(risk_level: str, ratio: float) -> None:
    proposal = await RuleBasedSizer().size(_sizing_request("strong", risk_level=risk_level))

    assert proposal.investment_ratio == ratio
    assert f"risk level {risk_level}" in proposal.reasoning


async def test_sizer_take_profit_is_twice_the_volatility_based_stop() -> None:
    proposal = await RuleBasedSizer().size(_sizing_request(volatility=0.003))

    assert proposal.stop_loss_pct == round(100 * 2.5 * 0.003 * math.sqrt(10), 3)
    assert proposal.take_profit_pct == pytest.approx(2 * proposal.stop_loss_pct)


async def test_sizer_stop_loss_never_goes_under_half_a_percent() -> None:
    proposal = await RuleBasedSizer().size(_sizing_request(volatility=0.0))

    assert proposal.stop_loss_pct == 0.5
