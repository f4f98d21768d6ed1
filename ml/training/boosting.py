"""The LightGBM parameters both model sets start from, and the early-stopped fit they share."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

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


def fit_early_stopped(
    feature_names: Sequence[str],
    params: dict[str, Any],
    rounds: int,
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
    train_weight: np.ndarray | None = None,
) -> tuple[lgb.Booster, int]:
    """Train with early stopping on the validation rows; return the booster and its best round.

    `train_weight`: one weight per training row (`ml.training.weights`); validation rows are
    never weighted, so early stopping judges every bar alike.
    """
    train_set = lgb.Dataset(
        train_x, label=train_y, weight=train_weight, feature_name=list(feature_names)
    )
    valid_set = lgb.Dataset(valid_x, label=valid_y, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    return booster, best


def best_trees(booster: lgb.Booster, best: int) -> lgb.Booster:
    """Return a booster holding only the trees up to round ``best`` (what a set saves)."""
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
