"""The quick set's predictor on a small slice of the real Upbit candles."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.features import FEATURE_NAMES, LiveFeatures
from ml.predict import Prediction, Predictor


def _live_rows(candles: pd.DataFrame, end: pd.Timestamp) -> dict[str, dict[str, float]]:
    """Return the live feature row of each market at its last bar before ``end``."""
    rows: dict[str, dict[str, float]] = {}
    for market, one in candles[candles["ts"] < end].groupby("market"):
        live = LiveFeatures()
        for bar in one.iloc[-200:].itertuples(index=False):
            live.update(bar.ts.to_pydatetime(), bar.open, bar.high, bar.low, bar.close, bar.volume)
        row = live.latest()
        assert row is not None
        rows[str(market)] = row
    return rows


def test_predictor_gives_probabilities_for_each_market(
    quick_set: Path, quick_slice: pd.DataFrame
) -> None:
    predictor = Predictor.load(quick_set)
    rows = _live_rows(quick_slice, pd.Timestamp("2025-09-04T12:00Z"))

    predictions = predictor.predict(rows)

    assert predictor.model_id == quick_set.name
    assert tuple(predictor.feature_names) == FEATURE_NAMES
    assert set(predictions) == set(rows)
    for prediction in predictions.values():
        assert isinstance(prediction, Prediction)
        assert 0.0 < prediction.p_buy < 1.0 and 0.0 < prediction.p_sell < 1.0


def test_predictor_is_fast_for_four_markets(quick_set: Path, quick_slice: pd.DataFrame) -> None:
    predictor = Predictor.load(quick_set)
    rows = _live_rows(quick_slice, pd.Timestamp("2025-09-04T12:00Z"))
    predictor.predict(rows)

    started = time.perf_counter()
    for _ in range(50):
        predictor.predict(rows)
    per_call = (time.perf_counter() - started) / 50

    assert per_call < 5e-3


def test_predictor_names_a_missing_feature(quick_set: Path, quick_slice: pd.DataFrame) -> None:
    predictor = Predictor.load(quick_set)
    rows = _live_rows(quick_slice, pd.Timestamp("2025-09-04T12:00Z"))
    del rows["KRW-ETH"]["rsi_14"]

    with pytest.raises(ValueError, match=r"KRW-ETH.*rsi_14"):
        predictor.predict(rows)


def test_predictor_treats_nan_features_as_missing(quick_set: Path) -> None:
    predictor = Predictor.load(quick_set)
    row = dict.fromkeys(FEATURE_NAMES, np.nan)

    prediction = predictor.predict({"KRW-BTC": row})["KRW-BTC"]

    assert 0.0 < prediction.p_buy < 1.0
