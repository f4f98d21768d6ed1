"""The optional Optuna search over the LightGBM parameters."""

from __future__ import annotations

import pandas as pd
import pytest
from ml_kit import FULL_UNTIL

from ml.training.full_set import FullConfig


def test_tune_returns_parameters_from_a_tiny_search(upbit_1m: pd.DataFrame) -> None:
    pytest.importorskip("optuna")
    from ml.training.tune import tune_lightgbm

    best = tune_lightgbm(
        upbit_1m, until=FULL_UNTIL, trials=2, rounds=10, config=FullConfig(threads=1)
    )

    assert set(best) == {
        "learning_rate",
        "num_leaves",
        "min_data_in_leaf",
        "feature_fraction",
        "lambda_l2",
    }
    assert 0.01 <= best["learning_rate"] <= 0.15
