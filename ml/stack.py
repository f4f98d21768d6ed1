"""The stack: a small LightGBM over the base models' probabilities, calibrated per coin.

Inputs per market and bar (``STACK_INPUTS``): the logits of the LightGBM and LSTM+CNN
probabilities (the latter missing until a market has a full sequence), a few of the bar's own
features, and cross-market context computed over the markets scored at the same bar (their
mean 10- and 60-minute returns and 60-minute volatility). The stacker is fit on predictions
the base models made out of sample; a per-coin Platt scaling (logistic on the stacker's
logit), fit on a later calibration window, turns its output into P(buy) and P(sell).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

STACK_INPUTS: tuple[str, ...] = (
    "lgb_logit",
    "nn_logit",
    "volatility_60",
    "volatility_10",
    "ret_10",
    "ret_60",
    "volume_z_60",
    "ctx_ret_10",
    "ctx_ret_60",
    "ctx_volatility_60",
    "rel_volatility_60",
)
CONTEXT_SOURCES: tuple[str, ...] = ("ret_10", "ret_60", "volatility_60")

STACK_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 4,
    "min_data_in_leaf": 1000,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 10.0,
    # A higher base-model probability never lowers the stack's: it may only reweigh them.
    "monotone_constraints": [
        1 if name in ("lgb_logit", "nn_logit") else 0 for name in STACK_INPUTS
    ],
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
    "verbosity": -1,
}
STACK_ROUNDS = 150
NN_MASK_SHARE = 0.15  # share of stacker rows trained without the sequence model (live warm-up)
_EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    """Return log(p / (1 - p)), clipped away from 0 and 1; NaN stays NaN."""
    p = np.clip(np.asarray(p, dtype="float64"), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def add_context(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ctx_* (means over the markets at the same ts) and rel_volatility_60 columns.

    ``frame`` has columns ts (the grouping key), and CONTEXT_SOURCES.
    """
    grouped = frame.groupby("ts", sort=False)[list(CONTEXT_SOURCES)].transform("mean")
    out = frame.copy()
    for name in CONTEXT_SOURCES:
        out[f"ctx_{name}"] = grouped[name].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rel_volatility_60"] = out["volatility_60"] / out["ctx_volatility_60"]
    return out


def context_rows(rows: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Return the ctx_* and rel_volatility_60 values for each market's row (one bar, live)."""
    sums = {name: [] for name in CONTEXT_SOURCES}  # type: dict[str, list[float]]
    for row in rows.values():
        for name in CONTEXT_SOURCES:
            value = row.get(name)
            if value is not None and math.isfinite(value):
                sums[name].append(float(value))
    means = {name: (sum(v) / len(v) if v else math.nan) for name, v in sums.items()}
    out: dict[str, dict[str, float]] = {}
    for market, row in rows.items():
        vol = row.get("volatility_60")
        ctx_vol = means["volatility_60"]
        rel = (
            float(vol) / ctx_vol
            if vol is not None and ctx_vol and math.isfinite(ctx_vol) and ctx_vol != 0
            else math.nan
        )
        out[market] = {f"ctx_{name}": means[name] for name in CONTEXT_SOURCES} | {
            "rel_volatility_60": rel
        }
    return out


def fit_stacker(
    inputs: np.ndarray, labels: np.ndarray, seed: int, rounds: int = STACK_ROUNDS
) -> lgb.Booster:
    """Fit one side's stacker on out-of-sample base predictions (NaN nn_logit allowed)."""
    rng = np.random.default_rng(seed)
    inputs = inputs.copy()
    nn_column = STACK_INPUTS.index("nn_logit")
    masked = rng.random(len(inputs)) < NN_MASK_SHARE
    inputs[masked, nn_column] = np.nan
    data = lgb.Dataset(inputs, label=labels, feature_name=list(STACK_INPUTS))
    return lgb.train(STACK_PARAMS | {"seed": seed}, data, num_boost_round=rounds)


def fit_platt(raw: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Return (a, b) of P = sigmoid(a * logit(raw) + b) fit by logistic regression."""
    x = logit(raw).reshape(-1, 1)
    if len(np.unique(labels)) < 2:
        return 1.0, 0.0
    model = LogisticRegression(C=1e4, max_iter=1000)
    model.fit(x, labels.astype("int64"))
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def apply_platt(raw: np.ndarray, coefficients: Sequence[float]) -> np.ndarray:
    """Return sigmoid(a * logit(raw) + b)."""
    a, b = coefficients
    z = a * logit(raw) + b
    return 1.0 / (1.0 + np.exp(-z))


def calibrators(
    raw: np.ndarray, labels: np.ndarray, markets: np.ndarray, min_rows: int = 500
) -> dict[str, list[float]]:
    """Fit Platt scaling per market (``*`` pooled, for markets with too few rows or unseen)."""
    out: dict[str, list[float]] = {"*": list(fit_platt(raw, labels))}
    for market in sorted(set(markets.tolist())):
        mine = markets == market
        if mine.sum() >= min_rows and len(np.unique(labels[mine])) == 2:
            out[str(market)] = list(fit_platt(raw[mine], labels[mine]))
    return out


def calibrate(
    raw: np.ndarray, markets: Sequence[str], table: Mapping[str, Sequence[float]]
) -> np.ndarray:
    """Apply each row's market calibration (the pooled one where a market has none)."""
    out = np.empty(len(raw))
    markets_array = np.asarray(list(markets))
    for market in set(markets_array.tolist()):
        mine = markets_array == market
        out[mine] = apply_platt(raw[mine], table.get(market, table["*"]))
    return out
