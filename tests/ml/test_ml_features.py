"""Tests for ml.features: no look-ahead, segment isolation and live/batch parity."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from ml.data import SEGMENT_GAP, regularize
from ml.features import (
    FEATURE_NAMES,
    LONG_BARS,
    LONG_FEATURES,
    MISSING_FROM_CANDLES,
    WARMUP_BARS,
    LiveFeatures,
    compute_features,
)


def _assert_rows_equal(left: pd.DataFrame, right: pd.DataFrame) -> None:
    """Assert two feature frames match exactly, NaN matching NaN."""
    np.testing.assert_array_equal(left.to_numpy(), right.to_numpy())


def test_features_are_nan_before_warmup_and_defined_after(btc_bars: pd.DataFrame) -> None:
    features = compute_features(regularize(btc_bars))

    assert list(features.columns) == list(FEATURE_NAMES)
    assert features.iloc[: WARMUP_BARS - 1].isna().all().all()
    short = features.drop(columns=[*MISSING_FROM_CANDLES, *LONG_FEATURES])
    assert short.iloc[WARMUP_BARS - 1 :].notna().all().all()
    assert features[list(MISSING_FROM_CANDLES)].isna().all().all()
    long = features[list(LONG_FEATURES)]
    assert long.iloc[: LONG_BARS - 1].isna().all().all()
    assert long.iloc[LONG_BARS - 1 :].notna().all().all()


def test_changing_future_bars_leaves_past_feature_rows_unchanged(btc_bars: pd.DataFrame) -> None:
    regular = regularize(btc_bars)
    cut = 400
    altered = regular.copy()
    altered.loc[cut:, ["open", "high", "low", "close"]] *= 1.5
    altered.loc[cut:, "volume"] *= 7.0

    before = compute_features(regular)
    after = compute_features(altered)

    _assert_rows_equal(before.iloc[:cut], after.iloc[:cut])
    assert not np.allclose(before.iloc[cut:, :5].to_numpy(), after.iloc[cut:, :5].to_numpy())


def test_features_restart_warmup_after_a_segment_break(btc_bars: pd.DataFrame) -> None:
    bars = btc_bars.copy()
    bars.loc[300:, "ts"] = bars.loc[300:, "ts"] + SEGMENT_GAP * 10
    regular = regularize(bars)
    assert regular["segment"].tolist().count(1) == 300

    features = compute_features(regular)
    second = features[regular["segment"] == 1]
    alone = compute_features(regular[regular["segment"] == 1])

    assert second.iloc[: WARMUP_BARS - 1].isna().all().all()
    _assert_rows_equal(second, alone)


def test_compute_features_requires_a_regularized_frame(btc_bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="segment"):
        compute_features(btc_bars)


def test_live_features_match_batch_on_real_bars_with_a_quiet_minute(
    btc_bars: pd.DataFrame,
) -> None:
    # Remove two real minutes: they must be filled as quiet bars by both paths.
    bars = btc_bars.drop(index=[150, 420]).reset_index(drop=True)
    regular = regularize(bars)
    assert regular["filled"].sum() == 2
    batch = compute_features(regular).set_index(regular["ts"])
    live = LiveFeatures(history_bars=LONG_BARS + 20)  # small buffer: exercises compaction

    compared = 0
    for bar in bars.itertuples(index=False):
        live.update(bar.ts.to_pydatetime(), bar.open, bar.high, bar.low, bar.close, bar.volume)
        row = live.latest()
        expected = batch.loc[bar.ts]
        if row is None:
            assert expected.isna().all()
            continue
        got = np.array([row[name] for name in FEATURE_NAMES])
        np.testing.assert_allclose(got, expected.to_numpy(), rtol=0, atol=1e-9)
        compared += 1
        long_defined = [not np.isnan(row[name]) for name in LONG_FEATURES]
        assert long_defined == [live.bars_in_segment >= LONG_BARS] * len(LONG_FEATURES)

    assert compared == len(regular) - (WARMUP_BARS - 1) - 2
    assert live.bars_in_segment == len(regular)


def test_live_features_reset_on_a_jump_longer_than_max_gap(btc_bars: pd.DataFrame) -> None:
    live = LiveFeatures()
    for bar in btc_bars.iloc[:200].itertuples(index=False):
        live.update(bar.ts.to_pydatetime(), bar.open, bar.high, bar.low, bar.close, bar.volume)
    assert live.latest() is not None

    later = btc_bars.iloc[200]
    live.update(
        (later.ts + SEGMENT_GAP * 2).to_pydatetime(),
        later.open,
        later.high,
        later.low,
        later.close,
        later.volume,
    )

    assert live.latest() is None
    assert live.bars_in_segment == 1


def test_live_features_reject_a_bar_older_than_the_newest(btc_bars: pd.DataFrame) -> None:
    live = LiveFeatures()
    first, second = btc_bars.iloc[0], btc_bars.iloc[1]
    live.update(second.ts.to_pydatetime(), 1.0, 1.0, 1.0, 1.0, 1.0)

    with pytest.raises(ValueError, match="older"):
        live.update(first.ts.to_pydatetime(), 1.0, 1.0, 1.0, 1.0, 1.0)


def test_live_update_and_latest_take_well_under_a_millisecond(btc_bars: pd.DataFrame) -> None:
    live = LiveFeatures()
    bars = list(btc_bars.itertuples(index=False))
    stamps = [bar.ts.to_pydatetime() for bar in bars]

    started = time.perf_counter()
    for stamp, bar in zip(stamps, bars, strict=True):
        live.update(stamp, bar.open, bar.high, bar.low, bar.close, bar.volume)
        live.latest()
    per_call = (time.perf_counter() - started) / len(bars)

    assert per_call < 1e-3


def _bars(log_ranges: np.ndarray, *, start: str = "2025-09-01T00:00Z") -> pd.DataFrame:
    """Bars around 100 with the given ln(high / low) each, one minute apart."""
    n = len(log_ranges)
    half = np.asarray(log_ranges, dtype="float64") / 2
    close = 100.0 + 0.01 * np.sin(np.arange(n))  # moving closes: volatility_* defined
    return pd.DataFrame(
        {
            "market": "KRW-TEST",
            "ts": pd.date_range(start, periods=n, freq="1min", tz="UTC"),
            "open": close,
            "high": 100.0 * np.exp(half),
            "low": 100.0 * np.exp(-half),
            "close": close,
            "volume": 1.0,
        }
    )


def test_parkinson_features_match_a_hand_computed_value() -> None:
    # ln(high / low) = 0.01 on every bar but the last 10, which have 0.02.
    log_ranges = np.full(WARMUP_BARS, 0.01)
    log_ranges[-10:] = 0.02
    features = compute_features(regularize(_bars(log_ranges)))
    last = features.iloc[-1]

    four_ln2 = 4 * 0.6931471805599453
    park_10 = 0.02 / four_ln2**0.5  # sqrt(0.02^2 / (4 ln 2)) = 0.0120112...
    park_60 = ((10 * 0.02**2 + 50 * 0.01**2) / 60 / four_ln2) ** 0.5  # 0.0073544...
    assert last["park_10"] == pytest.approx(0.0120112240878645, rel=1e-12)
    assert last["park_10"] == pytest.approx(park_10, rel=1e-12)
    assert last["park_60"] == pytest.approx(park_60, rel=1e-12)
    assert last["park_ratio_10_60"] == pytest.approx(park_10 / park_60, rel=1e-12)
    assert last["vol_ratio_10_60"] == pytest.approx(
        last["volatility_10"] / last["volatility_60"], rel=1e-12
    )
    assert features[["park_10", "park_60"]].iloc[: WARMUP_BARS - 1].isna().all().all()


def test_flat_windows_give_zero_parkinson_and_nan_ratios() -> None:
    bars = _bars(np.zeros(WARMUP_BARS + 5))
    bars[["open", "close"]] = 100.0  # no move at all: every volatility is exactly 0
    features = compute_features(regularize(bars)).iloc[WARMUP_BARS - 1 :]

    assert (features[["park_10", "park_60", "volatility_10", "volatility_60"]] == 0).all().all()
    # 0 / 0 is undefined: NaN, never a made-up 0 or 1.
    assert features[["vol_ratio_10_60", "park_ratio_10_60"]].isna().all().all()


def test_new_volatility_features_do_not_cross_a_data_jump(btc_bars: pd.DataFrame) -> None:
    names = ["park_10", "park_60", "vol_ratio_10_60", "park_ratio_10_60"]
    assert set(names) <= set(FEATURE_NAMES)
    bars = btc_bars.copy()
    bars.loc[300:, "ts"] = bars.loc[300:, "ts"] + SEGMENT_GAP * 10
    wild = bars.copy()
    wild.loc[:299, "high"] *= 1.2  # huge ranges before the jump only
    wild.loc[:299, "low"] *= 0.8

    calm = compute_features(regularize(bars))[names]
    altered = compute_features(regularize(wild))[names]

    after = slice(300, None)
    assert altered.iloc[300 : 300 + WARMUP_BARS - 1].isna().all().all()
    _assert_rows_equal(calm.iloc[after], altered.iloc[after])
    assert not np.allclose(calm.iloc[WARMUP_BARS:300], altered.iloc[WARMUP_BARS:300])


def test_four_hour_features_match_pandas_rolling_windows(btc_bars: pd.DataFrame) -> None:
    regular = regularize(btc_bars)
    features = compute_features(regular)
    window = LONG_BARS - 1  # 240 bars; the first bar has no one-bar return
    log_return = np.log(regular["close"]).diff()
    volatility = np.sqrt((log_return**2).rolling(window).mean())
    log_range_sq = np.log(regular["high"] / regular["low"]) ** 2
    park = np.sqrt(log_range_sq.rolling(window).mean() / (4 * np.log(2)))
    volume_ratio = regular["volume"].rolling(10).mean() / regular["volume"].rolling(window).mean()
    rows = slice(LONG_BARS - 1, None)

    got = features.iloc[rows]
    np.testing.assert_allclose(got["volatility_240"], volatility.iloc[rows], rtol=1e-9)
    np.testing.assert_allclose(got["park_240"], park.iloc[rows], rtol=1e-9)
    np.testing.assert_allclose(
        got["vol_ratio_60_240"], (features["volatility_60"] / volatility).iloc[rows], rtol=1e-9
    )
    np.testing.assert_allclose(got["volume_ratio_10_240"], volume_ratio.iloc[rows], rtol=1e-9)


def test_four_hour_features_are_zero_or_nan_on_flat_windows_and_respect_jumps(
    btc_bars: pd.DataFrame,
) -> None:
    flat = _bars(np.zeros(LONG_BARS + 5))
    flat[["open", "close"]] = 100.0
    flat["volume"] = 0.0
    quiet = compute_features(regularize(flat)).iloc[LONG_BARS - 1 :]
    assert (quiet[["volatility_240", "park_240"]] == 0).all().all()
    assert quiet[["vol_ratio_60_240", "volume_ratio_10_240"]].isna().all().all()

    # A jump at bar 300 of 600: the second segment has its four-hour features only from its
    # LONG_BARS-th bar, and nothing before the jump changes them.
    bars = btc_bars.copy()
    bars.loc[300:, "ts"] = bars.loc[300:, "ts"] + SEGMENT_GAP * 10
    wild = bars.copy()
    wild.loc[:299, ["high", "volume"]] *= 3.0
    names = list(LONG_FEATURES)
    calm = compute_features(regularize(bars))[names]
    altered = compute_features(regularize(wild))[names]
    assert altered.iloc[300 : 300 + LONG_BARS - 1].isna().all().all()
    assert altered.iloc[300 + LONG_BARS - 1 :].notna().all().all()
    _assert_rows_equal(calm.iloc[300:], altered.iloc[300:])
    assert not np.allclose(calm.iloc[LONG_BARS:300], altered.iloc[LONG_BARS:300])
