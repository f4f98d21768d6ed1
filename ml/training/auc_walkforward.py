"""Full set, stage 7: the AUC walk-forward table of the LightGBM buy model on the recent stretch.

Expanding train windows, a purge gap, then an unseen test slice. (Not ``app.walkforward``,
which retrains whole sets and trades the policy window after window.)

Each fold trains the LightGBM buy classifier (fixed rounds: nothing is tuned on the test
slice) on every labelled, warmed bar that opened before ``test_start - purge`` and scores the
real bars of ``[test_start, test_end)``. The purge is at least the label horizon, so no
training label reaches into the test slice. Each fold reports the model's AUC for P(buy) and
the AUC of the 60-minute volatility alone on the same rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml.features import FEATURE_NAMES
from ml.sequences import MarketTable
from ml.training.scoring import auc

WALK_FORWARD_ROUNDS = 150
_VOL = FEATURE_NAMES.index("volatility_60")


def fold_bounds(
    start: pd.Timestamp, end: pd.Timestamp, folds: int, test_share: float
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Return ``folds`` consecutive test slices covering the last ``test_share`` of the span."""
    if folds < 1:
        raise ValueError(f"folds must be at least 1, got {folds}")
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must be in (0, 1), got {test_share}")
    first = start + (end - start) * (1 - test_share)
    edges = [first + (end - first) * k / folds for k in range(folds + 1)]
    return list(itertools.pairwise(edges))


def auc_walk_forward(
    tables: Sequence[MarketTable],
    params: dict[str, Any],
    *,
    period_start: pd.Timestamp,
    period_end: pd.Timestamp,
    purge: pd.Timedelta,
    folds: int = 4,
    test_share: float = 0.4,
    rounds: int = WALK_FORWARD_ROUNDS,
) -> list[dict[str, Any]]:
    """Run the folds; return one record per fold (times, sizes, AUCs)."""
    if purge <= pd.Timedelta(0):
        raise ValueError("purge must be positive (at least the label horizon)")
    ts = np.concatenate([t.ts for t in tables])
    x = np.concatenate([t.features for t in tables])
    y = np.concatenate([t.label_buy for t in tables])
    usable = np.concatenate([t.warmed for t in tables]) & ~np.isnan(y)
    real = ~np.concatenate([t.filled for t in tables])
    results: list[dict[str, Any]] = []
    for number, (test_start, test_end) in enumerate(
        fold_bounds(period_start, period_end, folds, test_share), start=1
    ):
        start64 = test_start.tz_convert("UTC").tz_localize(None).to_datetime64()
        end64 = test_end.tz_convert("UTC").tz_localize(None).to_datetime64()
        purge64 = np.timedelta64(purge.value, "ns")
        train = usable & (ts < start64 - purge64)
        test = usable & real & (ts >= start64) & (ts < end64)
        record: dict[str, Any] = {
            "fold": number,
            "train_until": (test_start - purge).isoformat(),
            "test_start": test_start.isoformat(),
            "test_end": test_end.isoformat(),
            "purge_minutes": purge.total_seconds() / 60,
            "n_train": int(train.sum()),
            "n_test": int(test.sum()),
        }
        if train.sum() < 1000 or test.sum() < 100:
            record["skipped"] = "too few rows"
            results.append(record)
            continue
        data = lgb.Dataset(x[train], label=y[train], feature_name=list(FEATURE_NAMES))
        booster = lgb.train(params, data, num_boost_round=rounds)
        scores = np.asarray(booster.predict(x[test], num_threads=2))
        record["auc_buy"] = auc(y[test], scores, digits=4)
        record["baseline_auc_vol60"] = auc(y[test], x[test, _VOL], digits=4)
        if record["auc_buy"] is not None and record["baseline_auc_vol60"] is not None:
            record["auc_buy_minus_baseline"] = round(
                record["auc_buy"] - record["baseline_auc_vol60"], 4
            )
        results.append(record)
    return results
