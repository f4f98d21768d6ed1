"""Optional Optuna search over the LightGBM parameters (``lxa train --tune``; not the default).

The search never sees the windows that report results: it uses only the base window of the
full set (``ml.training.windows``: bars before the stack window), split once more in time: fit
on its first 80%, score the buy AUC on the rest after a purge of the label horizon. Optuna is
an optional dependency (``pip install 'autotrader-lxa[tune]'``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml.features import FEATURE_NAMES
from ml.training.boosting import BASE_PARAMS
from ml.training.candles import training_candles
from ml.training.full_set import FullConfig, tables_and_windows


def tune_lightgbm(
    candles: pd.DataFrame,
    *,
    until: datetime | None = None,
    trials: int = 20,
    rounds: int = 300,
    config: FullConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Return the best LightGBM parameters found in ``trials`` trials (seeded TPE)."""
    try:
        import optuna
    except ImportError as error:
        raise ImportError(
            "--tune needs optuna: pip install 'autotrader-lxa[tune]' (or optuna>=4)"
        ) from error
    config = config or FullConfig()
    candles, bar = training_candles(candles, until=until, caller="tune_lightgbm")
    tables, windows = tables_and_windows(candles, bar, config)
    ts = np.concatenate([t.ts for t in tables])
    x = np.concatenate([t.features for t in tables])
    y = np.concatenate([t.label_buy for t in tables])
    purge = np.timedelta64(windows.purge.value, "ns")
    base = np.concatenate(windows.rows("base"))
    if base.sum() < 2000:
        raise ValueError(f"only {int(base.sum())} base-window rows: too little to tune on")
    cut = np.sort(ts[base])[int(base.sum() * 0.8)]
    fit = base & (ts < cut - purge)
    check = base & (ts >= cut)
    fit_set = lgb.Dataset(x[fit], label=y[fit], feature_name=list(FEATURE_NAMES))
    fit_set.construct()

    def objective(trial: optuna.Trial) -> float:
        params = dict(BASE_PARAMS) | {
            "seed": config.seed,
            "num_threads": config.threads,
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.15, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 50, 1000, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        }
        booster = lgb.train(params, fit_set, num_boost_round=rounds)
        scores = booster.predict(x[check], num_threads=config.threads)
        auc = float(roc_auc_score(y[check], np.asarray(scores)))
        if log is not None:
            log(f"trial {trial.number}: auc_buy {auc:.4f} {trial.params}")
        return auc

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.optimize(objective, n_trials=trials)
    return dict(study.best_params)
