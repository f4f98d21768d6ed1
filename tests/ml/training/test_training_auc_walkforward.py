"""The AUC walk-forward table of the full set's LightGBM buy model."""

from __future__ import annotations

import pandas as pd

from ml.sequences import market_tables
from ml.training.auc_walkforward import auc_walk_forward


def test_walk_forward_keeps_the_purge_between_train_and_test(upbit_1m: pd.DataFrame) -> None:
    candles = upbit_1m[upbit_1m["ts"] < pd.Timestamp("2025-09-05T00:00Z")]
    tables = market_tables(candles, horizon=10, threshold=0.002)

    folds = auc_walk_forward(
        tables,
        {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": 1},
        period_start=pd.Timestamp("2025-09-01T00:00Z"),
        period_end=pd.Timestamp("2025-09-05T00:00Z"),
        purge=pd.Timedelta(minutes=10),
        folds=2,
        rounds=20,
    )

    assert len(folds) == 2
    for fold in folds:
        gap = pd.Timestamp(fold["test_start"]) - pd.Timestamp(fold["train_until"])
        assert gap >= pd.Timedelta(minutes=10)
        assert 0.5 < fold["auc_buy"] < 1 and 0.5 < fold["baseline_auc_vol60"] < 1
    assert pd.Timestamp(folds[0]["test_end"]) == pd.Timestamp(folds[1]["test_start"])
