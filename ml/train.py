"""Quick, honest LightGBM training of the buy and sell classifiers."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml.data import BAR, SEGMENT_GAP, regularize
from ml.features import FEATURE_NAMES, WARMED_FEATURES, compute_features
from ml.labels import make_labels
from ml.registry import candles_sha256, save_model_set

VALIDATION_FRACTION = 0.2
# Decision thresholds are read off the validation split (never off data reported later):
# enter only on the top 2% of P(buy), exit on the top 5% of P(sell).
ENTRY_QUANTILE = 0.98
EXIT_QUANTILE = 0.95
NUM_BOOST_ROUND = 400
EARLY_STOPPING_ROUNDS = 40

BASE_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "auc",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "max_depth": -1,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 255,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}


def build_dataset(
    candles: pd.DataFrame,
    *,
    horizon: int,
    threshold: float,
    bar: pd.Timedelta = BAR,
    max_gap: pd.Timedelta = SEGMENT_GAP,
) -> pd.DataFrame:
    """Return market, ts, FEATURE_NAMES and labels for every warmed-up, labelled bar."""
    pieces: list[pd.DataFrame] = []
    for market, one in candles.groupby("market", sort=True):
        regular = regularize(one, bar=bar, max_gap=max_gap)
        features = compute_features(regular)
        labels = make_labels(regular, horizon=horizon, threshold=threshold)
        piece = pd.concat([regular[["ts"]], features, labels], axis=1)
        piece.insert(0, "market", str(market))
        warmed = features[list(WARMED_FEATURES)].notna().all(axis=1)
        pieces.append(piece[warmed & labels["forward_return"].notna()])
    if not pieces:
        raise ValueError("no candles to train on")
    return pd.concat(pieces, ignore_index=True)


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """Return ROC AUC, or None when only one class is present."""
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels, scores))


def _infer_bar(candles: pd.DataFrame) -> pd.Timedelta:
    """Return the most common spacing between a market's consecutive bars."""
    steps = candles.groupby("market", sort=False)["ts"].diff().dropna()
    steps = steps[steps > pd.Timedelta(0)]
    if steps.empty:
        return BAR
    return pd.Timedelta(steps.mode().iloc[0])


def _fit(
    name: str,
    params: dict[str, Any],
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
) -> lgb.Booster:
    """Train one binary classifier with early stopping on the validation AUC."""
    train_set = lgb.Dataset(
        train_x, label=train_y, feature_name=list(FEATURE_NAMES), free_raw_data=True
    )
    valid_set = lgb.Dataset(valid_x, label=valid_y, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=NUM_BOOST_ROUND,
        valid_sets=[valid_set],
        valid_names=[f"valid_{name}"],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    return booster


def train_quick(
    candles: pd.DataFrame,
    out_dir: Path,
    *,
    until: datetime | None = None,
    horizon: int = 10,
    threshold: float = 0.002,
    seed: int = 7,
    data_files: Sequence[str] = (),
) -> Path:
    """Train buy and sell classifiers on all markets pooled and save a model set.

    Uses candles opened before ``until`` only (labels included). The last 20% of that time
    is the validation split, with the ``horizon`` bars before it purged from training; it
    drives early stopping and gives the reported metrics (so they lean slightly optimistic).
    """
    started = time.perf_counter()
    for column in ("market", "ts", "open", "high", "low", "close", "volume"):
        if column not in candles.columns:
            raise ValueError(f"train_quick needs candle column {column!r}")
    if until is not None:
        if until.tzinfo is None:
            raise ValueError("until must be timezone-aware (UTC)")
        candles = candles[candles["ts"] < pd.Timestamp(until).tz_convert("UTC")]
    candles = candles.sort_values(["market", "ts"], kind="stable").reset_index(drop=True)
    if candles.empty:
        raise ValueError("no candles before 'until' to train on")
    bar = _infer_bar(candles)
    dataset = build_dataset(candles, horizon=horizon, threshold=threshold, bar=bar)
    if dataset.empty:
        raise ValueError("no warmed-up, labelled rows to train on")

    first_ts, last_ts = dataset["ts"].min(), dataset["ts"].max()
    cut = first_ts + (last_ts - first_ts) * (1.0 - VALIDATION_FRACTION)
    purge_before = cut - horizon * bar
    train_mask = (dataset["ts"] < purge_before).to_numpy()
    valid_mask = (dataset["ts"] >= cut).to_numpy()
    if not train_mask.any() or not valid_mask.any():
        raise ValueError("too little data for a train/validation split")

    x = dataset[list(FEATURE_NAMES)].to_numpy(dtype="float64")
    params = dict(BASE_PARAMS) | {"seed": int(seed)}
    boosters: dict[str, lgb.Booster] = {}
    thresholds: dict[str, Any] = {
        "source": f"validation-split quantiles {ENTRY_QUANTILE} (buy) and {EXIT_QUANTILE} (sell)"
    }
    metrics: dict[str, Any] = {
        "n_rows": len(dataset),
        "n_train": int(train_mask.sum()),
        "n_valid": int(valid_mask.sum()),
        "validation_start": cut.isoformat(),
        "purged_bars": int(horizon),
        "note": "validation split also used for early stopping",
    }
    for side in ("buy", "sell"):
        y = dataset[f"label_{side}"].to_numpy(dtype="int8")
        booster = _fit(side, params, x[train_mask], y[train_mask], x[valid_mask], y[valid_mask])
        best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
        scores = booster.predict(x[valid_mask], num_iteration=best)
        metrics[f"auc_{side}_valid"] = _auc(y[valid_mask], np.asarray(scores))
        metrics[f"positive_rate_{side}_train"] = float(y[train_mask].mean())
        metrics[f"positive_rate_{side}_valid"] = float(y[valid_mask].mean())
        metrics[f"best_iteration_{side}"] = int(best)
        quantile = ENTRY_QUANTILE if side == "buy" else EXIT_QUANTILE
        key = "entry_probability_min" if side == "buy" else "exit_probability_min"
        thresholds[key] = round(float(np.quantile(np.asarray(scores), quantile)), 4)
        # Keep only the trees up to the best iteration in the saved model.
        boosters[side] = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    window = {
        str(market): {
            "first_ts": one["ts"].min().isoformat(),
            "last_ts": one["ts"].max().isoformat(),
        }
        for market, one in candles.groupby("market", sort=True)
    }
    metrics["train_seconds"] = round(time.perf_counter() - started, 3)
    return save_model_set(
        Path(out_dir),
        model_buy=boosters["buy"],
        model_sell=boosters["sell"],
        feature_names=FEATURE_NAMES,
        label={
            "horizon": int(horizon),
            "threshold": float(threshold),
            "bar": str(bar),
            "forward_return": "simple",
        },
        training_window=window,
        markets=sorted(window),
        data_files=data_files,
        data_sha256=candles_sha256(candles),
        params=params | {"num_boost_round": NUM_BOOST_ROUND},
        seed=seed,
        metrics=metrics,
        extra={
            "until": None if until is None else pd.Timestamp(until).isoformat(),
            "decision_thresholds": thresholds,
        },
    )
