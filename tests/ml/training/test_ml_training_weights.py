"""Training weights from the reviewers' record and recency (synthetic verdicts, so labelled)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from ml.training.weights import (
    JudgedVerdict,
    WeightRule,
    recency_factors,
    reviewer_factors,
    training_weights,
)

T0 = datetime(2026, 1, 5, tzinfo=UTC)  # a period boundary (hourly periods)
HOUR = timedelta(hours=1)


def minutes(start: datetime, count: int) -> np.ndarray:
    """`count` one-minute row times from `start` (naive UTC datetime64, as the tables hold)."""
    return np.array(
        [
            np.datetime64(pd.Timestamp(start + timedelta(minutes=m)).tz_localize(None))
            for m in range(count)
        ]
    )


def verdict(
    at: datetime, right: bool, closes_after: timedelta = timedelta(minutes=11)
) -> JudgedVerdict:
    """A synthetic judged verdict given at `at`, known `closes_after` later."""
    return JudgedVerdict(bar_ts=at, closes_at=at + closes_after, right=right)


def test_step_rule_raises_right_periods_lowers_wrong_ones_and_leaves_the_rest() -> None:
    rule = WeightRule(rule="step", right_weight=2.0, wrong_weight=0.25)
    verdicts = [verdict(T0 + timedelta(minutes=5), True), verdict(T0 + HOUR, False)]
    ts = minutes(T0, 180)

    factors = reviewer_factors(ts, verdicts, rule, known_at=T0 + 3 * HOUR)

    assert set(factors[:60]) == {2.0}
    assert set(factors[60:120]) == {0.25}
    assert set(factors[120:]) == {1.0}


def test_linear_rule_scales_with_the_share_right_and_a_tie_stays_at_one() -> None:
    rule = WeightRule(rule="linear", right_weight=2.0, wrong_weight=0.5)
    verdicts = [
        *(verdict(T0 + timedelta(minutes=m), m != 0) for m in range(4)),  # 3 right, 1 wrong
        verdict(T0 + HOUR, True),
        verdict(T0 + HOUR + timedelta(minutes=1), False),  # a tie
        *(verdict(T0 + 2 * HOUR + timedelta(minutes=m), False) for m in range(2)),
    ]
    ts = minutes(T0, 180)

    factors = reviewer_factors(ts, verdicts, rule, known_at=T0 + 3 * HOUR)

    assert factors[0] == pytest.approx(1 + 0.5 * (2.0 - 1))  # score (3 - 1) / 4
    assert factors[60] == 1.0
    assert factors[120] == pytest.approx(0.5)  # every verdict wrong: the full wrong weight


def test_too_few_verdicts_and_the_none_rule_change_nothing() -> None:
    verdicts = [verdict(T0, True)]
    ts = minutes(T0, 60)

    few = reviewer_factors(ts, verdicts, WeightRule(min_verdicts=2), known_at=T0 + HOUR)
    off = reviewer_factors(ts, verdicts, WeightRule(rule="none"), known_at=T0 + HOUR)

    assert set(few) == {1.0}
    assert set(off) == {1.0}


def test_a_verdict_whose_window_closes_after_known_at_is_not_used() -> None:
    rule = WeightRule(rule="step", right_weight=2.0)
    verdicts = [verdict(T0 + timedelta(minutes=55), True)]  # known at T0 + 66 min
    ts = minutes(T0, 60)

    before = reviewer_factors(ts, verdicts, rule, known_at=T0 + timedelta(minutes=65))
    after = reviewer_factors(ts, verdicts, rule, known_at=T0 + timedelta(minutes=66))

    assert set(before) == {1.0}
    assert set(after) == {2.0}


def test_rows_before_the_previous_cutoff_keep_the_weights_known_at_that_cutoff() -> None:
    """A period judged right by the cutoff, then wrong twice after it: rows before the cutoff
    are never re-labelled with the later verdicts; rows after it see all three."""
    rule = WeightRule(rule="linear", right_weight=2.0, wrong_weight=0.5)
    cutoff = T0 + timedelta(minutes=30)
    verdicts = [
        verdict(T0 + timedelta(minutes=1), True),  # known at 0:12, before the cutoff
        verdict(T0 + timedelta(minutes=25), False),  # known at 0:36, after it
        verdict(T0 + timedelta(minutes=40), False),
    ]
    ts = minutes(T0, 60)

    factors = reviewer_factors(ts, verdicts, rule, known_at=T0 + 2 * HOUR, frozen_before=cutoff)

    assert set(factors[:30]) == {2.0}  # as known at the cutoff: one right verdict
    assert factors[30:] == pytest.approx(np.full(30, 1 + (1 / 3) * (0.5 - 1)))  # score -1/3


def test_recency_halves_the_weight_every_half_life_back_from_the_newest_row() -> None:
    ts = np.array(
        [
            np.datetime64("2026-01-01T00:00"),
            np.datetime64("2026-01-03T00:00"),
            np.datetime64("2026-01-05T00:00"),
        ]
    )

    factors = recency_factors(ts, half_life_days=2.0)

    assert factors == pytest.approx([0.25, 0.5, 1.0])
    assert set(recency_factors(ts, None)) == {1.0}


def test_weights_combine_both_have_mean_one_and_the_summary_says_what_was_done() -> None:
    rule = WeightRule(rule="step", right_weight=2.0, wrong_weight=0.5, recency_half_life_days=1.0)
    verdicts = [verdict(T0, True), verdict(T0 + HOUR, False)]
    ts = minutes(T0, 180)

    weights, summary = training_weights(ts, verdicts, rule, known_at=T0 + 3 * HOUR)

    raw = np.repeat([2.0, 0.5, 1.0], 60) * recency_factors(ts, 1.0)
    assert weights == pytest.approx(raw / raw.mean())
    assert weights.mean() == pytest.approx(1.0)
    assert summary["rule"] == "step"
    assert summary["params"]["recency_half_life_days"] == 1.0
    assert (summary["up_weighted"], summary["down_weighted"], summary["rows"]) == (60, 60, 180)
    assert summary["min"] == pytest.approx(weights.min())
    assert summary["max"] == pytest.approx(weights.max())
    assert (summary["periods_right"], summary["periods_wrong"]) == (1, 1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rule", "vote"), ("right_weight", 0.5), ("wrong_weight", 0.0), ("period_minutes", 0)],
)
def test_a_rule_training_cannot_use_is_refused_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        WeightRule(**{field: value}).check()  # type: ignore[arg-type]
