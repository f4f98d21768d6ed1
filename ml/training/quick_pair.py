"""The quick set: a LightGBM buy/sell pair on all markets pooled (``lxa train --quick``).

Uses candles opened before ``until`` only (labels included). The last 20% of that time is the
validation split, with the ``horizon`` bars before it purged from training; it drives early
stopping and gives the reported metrics (so they lean slightly optimistic).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml.data import BAR, SEGMENT_GAP, regularize
from ml.features import FEATURE_NAMES, WARMED_FEATURES, compute_features
from ml.labels import label_meta, make_labels
from ml.registry import candles_sha256, save_model_set
from ml.training.boosting import BASE_PARAMS, best_trees, fit_early_stopped
from ml.training.candles import training_candles
from ml.training.scoring import auc, decision_threshold, thresholds_source
from ml.training.weights import TrainingWeights

VALIDATION_FRACTION = 0.2
NUM_BOOST_ROUND = 400


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


@dataclass(frozen=True)
class TimeSplit:
    """Training and validation rows of a dataset, cut in time with a purge between them."""

    train: np.ndarray  # bool per row
    valid: np.ndarray  # bool per row
    validation_start: pd.Timestamp


def split_in_time(dataset: pd.DataFrame, *, horizon: int, bar: pd.Timedelta) -> TimeSplit:
    """Validate on the last VALIDATION_FRACTION of the time; purge ``horizon`` bars before it."""
    first_ts, last_ts = dataset["ts"].min(), dataset["ts"].max()
    cut = first_ts + (last_ts - first_ts) * (1.0 - VALIDATION_FRACTION)
    purge_before = cut - horizon * bar
    train = (dataset["ts"] < purge_before).to_numpy()
    valid = (dataset["ts"] >= cut).to_numpy()
    if not train.any() or not valid.any():
        raise ValueError("too little data for a train/validation split")
    return TimeSplit(train=train, valid=valid, validation_start=cut)


def fit_pair(
    dataset: pd.DataFrame,
    split: TimeSplit,
    params: dict[str, Any],
    metrics: dict[str, Any],
    train_weight: np.ndarray | None = None,
) -> tuple[dict[str, lgb.Booster], dict[str, Any]]:
    """Fit the buy and sell classifiers; add their figures to ``metrics``; return thresholds.

    ``train_weight``: one weight per training row (``split.train``), or None for equal weights.
    """
    x = dataset[list(FEATURE_NAMES)].to_numpy(dtype="float64")
    boosters: dict[str, lgb.Booster] = {}
    thresholds: dict[str, Any] = {"source": thresholds_source("validation-split")}
    train, valid = split.train, split.valid
    for side in ("buy", "sell"):
        y = dataset[f"label_{side}"].to_numpy(dtype="int8")
        booster, best = fit_early_stopped(
            FEATURE_NAMES,
            params,
            NUM_BOOST_ROUND,
            x[train],
            y[train],
            x[valid],
            y[valid],
            train_weight=train_weight,
        )
        scores = np.asarray(booster.predict(x[valid], num_iteration=best))
        metrics[f"auc_{side}_valid"] = auc(y[valid], scores)
        metrics[f"positive_rate_{side}_train"] = float(y[train].mean())
        metrics[f"positive_rate_{side}_valid"] = float(y[valid].mean())
        metrics[f"best_iteration_{side}"] = int(best)
        key, value = decision_threshold(side, scores)
        thresholds[key] = value
        boosters[side] = best_trees(booster, best)
    return boosters, thresholds


def train_quick(
    candles: pd.DataFrame,
    out_dir: Path,
    *,
    until: datetime | None = None,
    horizon: int = 10,
    threshold: float = 0.002,
    seed: int = 7,
    data_files: Sequence[str] = (),
    weights: TrainingWeights | None = None,
) -> Path:
    """Train buy and sell classifiers on all markets pooled and save a model set.

    ``weights``: weight the training rows by the reviewers' record and recency
    (``ml.training.weights``), known no later than ``until``; the summary is saved in meta.json
    as ``training_weights`` (null when unweighted).
    """
    started = time.perf_counter()
    candles, bar = training_candles(candles, until=until, caller="train_quick")
    dataset = build_dataset(candles, horizon=horizon, threshold=threshold, bar=bar)
    if dataset.empty:
        raise ValueError("no warmed-up, labelled rows to train on")
    split = split_in_time(dataset, horizon=horizon, bar=bar)
    params = dict(BASE_PARAMS) | {"seed": int(seed)}
    metrics: dict[str, Any] = {
        "n_rows": len(dataset),
        "n_train": int(split.train.sum()),
        "n_valid": int(split.valid.sum()),
        "validation_start": split.validation_start.isoformat(),
        "purged_bars": int(horizon),
        "note": "validation split also used for early stopping",
    }
    train_weight, weight_summary = None, None
    if weights is not None:
        train_weight, weight_summary = weights.until(until).weights(dataset["ts"][split.train])
    boosters, thresholds = fit_pair(dataset, split, params, metrics, train_weight)
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
        label=label_meta(horizon, threshold, bar),
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
            "training_weights": weight_summary,
        },
    )
