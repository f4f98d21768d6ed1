"""Evaluation metrics on small hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ml.evaluate import (
    buy_and_hold_curve,
    fold_fills,
    hold_lowest_score_curve,
    max_drawdown,
    roc_auc,
    sharpe_ratio,
    win_rate,
)


def test_roc_auc_of_a_perfect_score_is_one_and_of_a_reversed_score_is_zero() -> None:
    labels = [0, 0, 1, 1]
    assert roc_auc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0


def test_roc_auc_drops_missing_rows_and_is_none_with_one_class() -> None:
    assert roc_auc([0, 1, None, 1], [0.1, 0.9, 0.5, float("nan")]) == 1.0
    assert roc_auc([1, 1, 1], [0.1, 0.2, 0.3]) is None
    assert roc_auc(pd.array([0, pd.NA, 1], dtype="Int8"), [0.4, 0.0, 0.6]) == 1.0


def test_max_drawdown_of_a_known_curve_is_the_largest_fall_from_a_peak() -> None:
    # Peak 120 falls to 90 (25%); the later peak 130 falls to 117 (10%).
    curve = [100, 120, 90, 110, 130, 117]
    assert max_drawdown(curve) == pytest.approx(0.25)
    assert max_drawdown([100, 101, 102]) == 0.0


def test_sharpe_is_positive_for_a_rising_curve_negative_for_a_falling_one_and_none_if_flat() -> (
    None
):
    rising = [100, 101, 101.5, 103, 103.2]
    falling = [100, 99, 98.7, 97, 96.5]
    assert (sharpe := sharpe_ratio(rising)) is not None and sharpe > 0
    assert (sharpe := sharpe_ratio(falling)) is not None and sharpe < 0
    assert sharpe_ratio([100, 100, 100]) is None


def test_sharpe_is_mean_over_sample_std_times_root_periods() -> None:
    curve = [1.0, 1.1, 1.1 * 0.95, 1.1 * 0.95 * 1.02]
    returns = np.array([0.1, -0.05, 0.02])
    expected = returns.mean() / returns.std(ddof=1) * math.sqrt(4)
    assert sharpe_ratio(curve, periods_per_year=4) == pytest.approx(expected)


def _fill(side: str, price: float, volume: float, fee: float, minute: int) -> dict[str, object]:
    ts = pd.Timestamp("2025-09-19T00:00:00Z") + pd.Timedelta(minutes=minute)
    return {
        "market": "KRW-BTC",
        "side": side,
        "price": price,
        "volume": volume,
        "fee": fee,
        "ts": ts,
    }


def test_fold_fills_closes_a_round_trip_when_flat_and_keeps_the_open_remainder() -> None:
    fills = [
        _fill("bid", 100.0, 10.0, 0.5, 0),  # cost 1000.5
        _fill("ask", 110.0, 10.0, 0.55, 5),  # proceeds 1099.45: a winner
        _fill("bid", 100.0, 10.0, 0.5, 6),  # cost 1000.5
        _fill("ask", 90.0, 4.0, 0.18, 7),  # partial sell, still open
    ]
    book = fold_fills(fills)["KRW-BTC"]
    assert len(book.round_trips) == 1
    assert book.round_trips[0].pnl_krw == pytest.approx(98.95)
    assert book.open_volume == pytest.approx(6.0)
    assert book.fees_krw == pytest.approx(1.73)
    # Realised cash flow plus 6 coins at 95.
    assert book.pnl_krw(95.0) == pytest.approx(-1000.5 + 1099.45 - 1000.5 + 359.82 + 570.0)
    assert win_rate(book.round_trips) == 1.0
    assert win_rate([]) is None


def test_buy_and_hold_splits_equally_and_pays_the_entry_fee() -> None:
    closes = pd.DataFrame({"A": [100.0, 110.0], "B": [50.0, 45.0]})
    curve = buy_and_hold_curve(closes, fee_rate=0.001)
    assert curve.iloc[0] == pytest.approx(0.999)
    assert curve.iloc[-1] == pytest.approx((1.1 + 0.9) / 2 * 0.999)


def test_hold_lowest_score_switches_at_rebalances_and_pays_both_fees() -> None:
    index = pd.RangeIndex(4)
    closes = pd.DataFrame({"A": [100.0, 200.0, 200.0, 200.0], "B": [10.0, 10.0, 20.0, 20.0]})
    scores = pd.DataFrame({"A": [1.0, 1.0, 9.0, 9.0], "B": [2.0, 2.0, 1.0, 1.0]}, index=index)
    curve, switches = hold_lowest_score_curve(closes, scores, every=2, fee_rate=0.01)
    # Row 0: buy A (fee). Row 1: A doubled. Row 2: sell A (fee), buy B (fee); row 3 flat.
    assert curve.iloc[1] == pytest.approx(0.99 * 2)
    assert curve.iloc[2] == pytest.approx(0.99 * 2 * 0.99 * 0.99)
    assert [market for _, market in switches] == ["A", "B"]
