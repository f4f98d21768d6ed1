"""The quick set: a LightGBM buy/sell pair trained on a small slice of the real Upbit candles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from ml_kit import QUICK_UNTIL

from ml.features import FEATURE_NAMES
from ml.registry import META_FIELDS, latest_model_dir, read_meta
from ml.training.quick_pair import train_quick


def test_train_quick_writes_a_model_set_with_honest_meta(quick_set: Path) -> None:
    meta = read_meta(quick_set)

    assert latest_model_dir(quick_set.parent) == quick_set
    assert set(META_FIELDS) <= set(meta)
    assert meta["model_id"] == quick_set.name and meta["model_id"].startswith("lgbm-quick-")
    assert meta["feature_names"] == list(FEATURE_NAMES)
    assert meta["label"]["horizon"] == 10 and meta["label"]["threshold"] == 0.002
    assert meta["markets"] == ["KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-XRP"]
    assert meta["seed"] == 7 and meta["params"]["deterministic"] is True
    assert len(meta["data_files"][0]["sha256"]) == 64 and len(meta["data_sha256"]) == 64
    for window in meta["training_window"].values():
        assert pd.Timestamp(window["last_ts"]) < pd.Timestamp(QUICK_UNTIL)
    metrics = meta["metrics"]
    assert metrics["n_train"] > 0 and metrics["n_valid"] > 0
    assert metrics["n_train"] + metrics["n_valid"] < metrics["n_rows"]  # purged rows
    for side in ("buy", "sell"):
        assert 0.0 <= metrics[f"auc_{side}_valid"] <= 1.0
        assert 0.0 < metrics[f"positive_rate_{side}_valid"] < 1.0


def test_train_quick_is_deterministic(
    quick_set: Path, quick_slice: pd.DataFrame, tmp_path: Path
) -> None:
    again = train_quick(quick_slice, tmp_path, until=QUICK_UNTIL)

    assert (again / "model_buy.txt").read_text() == (quick_set / "model_buy.txt").read_text()
    assert read_meta(again)["data_sha256"] == read_meta(quick_set)["data_sha256"]
