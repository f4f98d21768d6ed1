"""The full set's training: inputs at data jumps, base targets, what a saved set holds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from ml_kit import FULL_UNTIL

from ml.data import regularize
from ml.features import compute_features
from ml.predict import (
    BASE_LOG_ABS_RETURN,
    BASE_PROBABILITY,
    Predictor,
)
from ml.registry import FULL_KIND, META_FIELDS, read_meta
from ml.sequences import market_tables, sequence_ends
from ml.stack import LINEAR_STACK_INPUTS, LinearStacker
from ml.training.autoencoder import anomaly_windows
from ml.training.base_lightgbm import forward_returns
from ml.training.full_set import FullConfig, train_full
from ml.training.torch_loops import HybridTrainConfig


def _with_jump(upbit_1m: pd.DataFrame) -> pd.DataFrame:
    """Four days of two markets with a 3-hour hole cut out of the middle (a data jump)."""
    rows = upbit_1m[
        upbit_1m["market"].isin(["KRW-BTC", "KRW-ETH"])
        & (upbit_1m["ts"] < pd.Timestamp("2025-09-03T00:00Z"))
    ]
    hole = (rows["ts"] >= pd.Timestamp("2025-09-02T00:00Z")) & (
        rows["ts"] < pd.Timestamp("2025-09-02T03:00Z")
    )
    return rows[~hole].reset_index(drop=True)


def test_no_sequence_or_label_crosses_a_data_jump(upbit_1m: pd.DataFrame) -> None:
    tables = market_tables(_with_jump(upbit_1m), horizon=10, threshold=0.002)

    for table in tables:
        assert set(np.unique(table.segment)) == {0, 1}
        first_after = int(np.flatnonzero(table.segment == 1)[0])
        ends = sequence_ends(table, 60)
        starts = ends - 59
        assert np.all(table.segment[starts] == table.segment[ends])
        assert np.all(table.warmed[starts])
        # The first sequence after the jump ends no earlier than warm-up + 59 bars into it.
        after = ends[ends >= first_after]
        assert after[0] - first_after >= 103 + 59
        # Labels of the last 10 bars before the jump are unknown (they would cross it).
        assert np.isnan(table.label_buy[first_after - 10 : first_after]).all()
        assert not np.isnan(table.label_buy[first_after - 11])
        # Autoencoder windows: one per bar of a segment with 30 bars behind it, none across.
        windows, _ = anomaly_windows([table], [np.arange(len(table))], 30)
        lengths = np.bincount(table.segment)
        assert len(windows) == int(np.sum(np.maximum(lengths - 30, 0)))


def test_a_full_set_is_saved_with_its_config_features_window_hash_and_metrics(
    full_set: Path,
) -> None:
    meta = read_meta(full_set)

    assert meta["kind"] == FULL_KIND and meta["model_id"].startswith("full-")
    assert all(field in meta for field in META_FIELDS)
    for name in ("model_buy.txt", "model_sell.txt", "hybrid.pt", "anomaly.npz"):
        assert (full_set / name).is_file()
    assert meta["stack"]["kind"] == "logistic"
    assert meta["stack"]["inputs"] == list(LINEAR_STACK_INPUTS)
    for side in ("buy", "sell"):
        stacker = LinearStacker.from_json(meta["stack"]["models"][side])
        assert stacker.with_nn[0] >= 0 and stacker.with_nn[1] >= 0  # monotone in base scores
    assert (
        max(span["last_ts"] for span in meta["training_window"].values()) < FULL_UNTIL.isoformat()
    )
    assert len(meta["metrics"]["walk_forward"]) == 2
    held = meta["metrics"]["held_out"]
    assert 0.5 < held["auc_buy_stack_calibrated"] < 1
    assert set(meta["metrics"]["autoencoder"]["alerts_training"]) == set(meta["markets"])
    checkpoint = torch.load(full_set / "hybrid.pt", weights_only=True)
    assert checkpoint["meta"]["feature_names"] == meta["hybrid"]["feature_names"]
    assert "history" in checkpoint["metrics"]
    assert set(meta["stack"]["calibration"]["buy"]) >= {"*", "KRW-BTC"}
    json.dumps(meta, allow_nan=False)


def test_forward_returns_are_known_exactly_where_labels_are_and_never_cross_a_jump(
    upbit_1m: pd.DataFrame,
) -> None:
    tables = market_tables(_with_jump(upbit_1m), horizon=10, threshold=0.002)

    for table in tables:
        forward = forward_returns(table, 10)
        np.testing.assert_array_equal(np.isnan(forward), np.isnan(table.label_buy))
        known = ~np.isnan(forward)
        np.testing.assert_array_equal(forward[known] > 0.002, table.label_buy[known] == 1)
        first_after = int(np.flatnonzero(table.segment == 1)[0])
        assert np.isnan(forward[first_after - 10 : first_after]).all()


def test_an_unknown_base_target_is_refused(upbit_1m: pd.DataFrame, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="buy_target"):
        train_full(upbit_1m.iloc[:10], tmp_path, config=FullConfig(buy_target="price"))
    with pytest.raises(ValueError, match="sell_target"):
        train_full(upbit_1m.iloc[:10], tmp_path, config=FullConfig(sell_target="price"))


def test_the_default_buy_base_model_is_an_absolute_return_regression(full_set: Path) -> None:
    meta = read_meta(full_set)

    assert FullConfig().buy_target == "abs_return" and FullConfig().sell_target == "label"
    assert meta["params"]["buy_target"] == "abs_return"
    assert meta["params"]["sell_target"] == "label"
    assert meta["stack"]["base_outputs"] == {"buy": BASE_LOG_ABS_RETURN, "sell": BASE_PROBABILITY}
    assert "objective=regression" in (full_set / "model_buy.txt").read_text()
    assert "objective=binary" in (full_set / "model_sell.txt").read_text()


@pytest.mark.parametrize("target", ["label", "abs_return"])
def test_each_base_target_trains_on_a_small_real_slice_and_predicts_probabilities(
    upbit_1m: pd.DataFrame, tmp_path: Path, target: str
) -> None:
    candles = upbit_1m[upbit_1m["ts"] < pd.Timestamp(FULL_UNTIL)]
    config = FullConfig(
        buy_target=target,
        sell_target=target,
        lgb_rounds=20,
        hybrid=HybridTrainConfig(epochs=1, samples_per_epoch=500, threads=1),
        autoencoder_epochs=1,
        walk_forward_folds=2,
        threads=1,
    )
    model_dir = train_full(candles, tmp_path, config=config)
    predictor = Predictor.load(model_dir)
    expected = BASE_PROBABILITY if target == "label" else BASE_LOG_ABS_RETURN
    assert predictor.meta["stack"]["base_outputs"] == {"buy": expected, "sell": expected}

    later = upbit_1m[
        upbit_1m["market"].isin(["KRW-BTC", "KRW-XRP"])
        & (upbit_1m["ts"] >= pd.Timestamp(FULL_UNTIL))
        & (upbit_1m["ts"] < pd.Timestamp("2025-09-05T04:00Z"))
    ]
    frames = {}
    for market, rows in later.groupby("market"):
        regular = regularize(rows.reset_index(drop=True))
        frames[str(market)] = compute_features(regular).assign(
            ts=regular["ts"], segment=regular["segment"]
        )
    scores = predictor.score_frames(frames)
    for market, frame in frames.items():
        warmed = frame["macd_signal"].notna().to_numpy()
        assert warmed.sum() > 100
        values = scores[market][warmed]
        assert np.isfinite(values).all() and ((values > 0) & (values < 1)).all()
        assert np.std(values[:, 0]) > 0 and np.std(values[:, 1]) > 0
