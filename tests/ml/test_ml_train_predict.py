"""Tests for ml.train and ml.predict on a small slice of the real Upbit candles."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml.features import FEATURE_NAMES, LiveFeatures
from ml.predict import Prediction, Predictor
from ml.registry import META_FIELDS, latest_model_dir, read_meta
from ml.train import train_quick

UNTIL = datetime(2025, 9, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def small_slice(upbit_1m: pd.DataFrame) -> pd.DataFrame:
    """Return four days of all four markets (the last day is after UNTIL)."""
    return upbit_1m[upbit_1m["ts"] < pd.Timestamp("2025-09-05T00:00Z")].reset_index(drop=True)


@pytest.fixture(scope="module")
def model_dir(
    small_slice: pd.DataFrame, upbit_1m_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Train once on the slice and return the model set directory."""
    return train_quick(
        small_slice,
        tmp_path_factory.mktemp("models"),
        until=UNTIL,
        data_files=[str(upbit_1m_path)],
    )


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


def test_train_quick_writes_a_model_set_with_honest_meta(model_dir: Path) -> None:
    meta = read_meta(model_dir)

    assert latest_model_dir(model_dir.parent) == model_dir
    assert set(META_FIELDS) <= set(meta)
    assert meta["model_id"] == model_dir.name and meta["model_id"].startswith("lgbm-quick-")
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["label"]["horizon"] == 10 and meta["label"]["threshold"] == 0.002
    assert meta["markets"] == ["KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-XRP"]
    assert meta["seed"] == 7 and meta["params"]["deterministic"] is True
    assert len(meta["data_files"][0]["sha256"]) == 64 and len(meta["data_sha256"]) == 64
    for window in meta["training_window"].values():
        assert pd.Timestamp(window["last_ts"]) < pd.Timestamp(UNTIL)
    metrics = meta["metrics"]
    assert metrics["n_train"] > 0 and metrics["n_valid"] > 0
    assert metrics["n_train"] + metrics["n_valid"] < metrics["n_rows"]  # purged rows
    for side in ("buy", "sell"):
        assert 0.0 <= metrics[f"auc_{side}_valid"] <= 1.0
        assert 0.0 < metrics[f"positive_rate_{side}_valid"] < 1.0


def test_train_quick_is_deterministic(
    model_dir: Path, small_slice: pd.DataFrame, tmp_path: Path
) -> None:
    again = train_quick(small_slice, tmp_path, until=UNTIL)

    assert (again / "model_buy.txt").read_text() == (model_dir / "model_buy.txt").read_text()
    assert read_meta(again)["data_sha256"] == read_meta(model_dir)["data_sha256"]


def test_predictor_gives_probabilities_for_each_market(
    model_dir: Path, small_slice: pd.DataFrame
) -> None:
    predictor = Predictor.load(model_dir)
    rows = _live_rows(small_slice, pd.Timestamp("2025-09-04T12:00Z"))

    predictions = predictor.predict(rows)

    assert predictor.model_id == model_dir.name
    assert tuple(predictor.feature_names) == FEATURE_NAMES
    assert set(predictions) == set(rows)
    for prediction in predictions.values():
        assert isinstance(prediction, Prediction)
        assert 0.0 < prediction.p_buy < 1.0 and 0.0 < prediction.p_sell < 1.0


def test_predictor_is_fast_for_four_markets(model_dir: Path, small_slice: pd.DataFrame) -> None:
    predictor = Predictor.load(model_dir)
    rows = _live_rows(small_slice, pd.Timestamp("2025-09-04T12:00Z"))
    predictor.predict(rows)

    started = time.perf_counter()
    for _ in range(50):
        predictor.predict(rows)
    per_call = (time.perf_counter() - started) / 50

    assert per_call < 5e-3


def test_predictor_names_a_missing_feature(model_dir: Path, small_slice: pd.DataFrame) -> None:
    predictor = Predictor.load(model_dir)
    rows = _live_rows(small_slice, pd.Timestamp("2025-09-04T12:00Z"))
    del rows["KRW-ETH"]["rsi_14"]

    with pytest.raises(ValueError, match=r"KRW-ETH.*rsi_14"):
        predictor.predict(rows)


def test_predictor_treats_nan_features_as_missing(model_dir: Path) -> None:
    predictor = Predictor.load(model_dir)
    row = dict.fromkeys(FEATURE_NAMES, np.nan)

    prediction = predictor.predict({"KRW-BTC": row})["KRW-BTC"]

    assert 0.0 < prediction.p_buy < 1.0
