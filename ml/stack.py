"""The stack: the base models' scores combined, then calibrated per coin.

The stacker (`LinearStacker`, the default since 2026-11-25) is a logistic regression over
``LINEAR_STACK_INPUTS``: the LightGBM score, the LSTM+CNN logit (missing until a market has a
full sequence: a second fit without it covers those rows) and the log of the 60-minute
volatility, never decreasing in either base score. It replaced a small LightGBM over
``STACK_INPUTS`` (the base logits, a few of the bar's features and cross-market context), which
over-fit its four-day window: on the full set's own calibration window (Upbit + Binance before
2025-09-18) the tree stacker scored AUC 0.730 against 0.748 and 0.753 for its two inputs
alone, the logistic one 0.753. Sets saved with the tree stacker still load and score (their
stack inputs, context columns included, are listed in their meta.json).

The stacker is fit on predictions the base models made out of sample; a per-coin Platt
scaling (logistic on the stacker's logit), fit on a later calibration window, turns its output
into P(buy) and P(sell).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

CONTEXT_SOURCES: tuple[str, ...] = ("ret_10", "ret_60", "volatility_60")
LINEAR_STACK_INPUTS: tuple[str, ...] = ("lgb_logit", "nn_logit", "volatility_60")
_BASE_COLUMNS = (0, 1)  # the stacker may not decrease in these (lgb_logit, nn_logit)
_VOL_FLOOR = 1e-6

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


@dataclass(frozen=True)
class LinearStacker:
    """Logistic regression over standardised (lgb_logit, nn_logit, log volatility_60).

    ``with_nn`` holds three weights and an intercept, for rows with the hybrid's logit;
    ``without_nn`` two weights (the nn weight is 0) and an intercept, for rows without it. A
    missing volatility is read as the training mean. Base-score weights are never negative:
    an input whose fitted weight is negative is dropped and the rest refit.
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    with_nn: tuple[float, float, float, float]
    without_nn: tuple[float, float, float, float]

    @classmethod
    def fit(cls, inputs: np.ndarray, labels: np.ndarray, c: float = 1.0) -> LinearStacker:
        """Fit on (n, 3) `inputs` in ``LINEAR_STACK_INPUTS`` order and 0/1 `labels`."""
        x = _linear_design(inputs)
        keep = np.isfinite(x[:, 0]) & np.isfinite(labels)
        x, y = x[keep], labels[keep].astype("int64")
        if len(np.unique(y)) < 2:
            raise ValueError("the stacker needs both labels in its window")
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        z = (x - mean) / std
        z[:, 2] = np.nan_to_num(z[:, 2], nan=0.0)
        has_nn = np.isfinite(z[:, 1])
        with_nn = _fit_monotone(z[has_nn], y[has_nn], (0, 1, 2), c)
        without_nn = _fit_monotone(z, y, (0, 2), c)
        return cls(
            mean=(float(mean[0]), float(mean[1]), float(mean[2])),
            std=(float(std[0]), float(std[1]), float(std[2])),
            with_nn=with_nn,
            without_nn=without_nn,
        )

    def decision(self, inputs: np.ndarray) -> np.ndarray:
        """Return the log-odds for (n, 3) inputs (NaN where lgb_logit is missing)."""
        z = (_linear_design(inputs) - np.asarray(self.mean)) / np.asarray(self.std)
        z[:, 2] = np.nan_to_num(z[:, 2], nan=0.0)
        has_nn = np.isfinite(z[:, 1])
        w_nn, w = np.asarray(self.with_nn), np.asarray(self.without_nn)
        out = z[:, 0] * w[0] + z[:, 2] * w[2] + w[3]
        out[has_nn] = z[has_nn, :3] @ w_nn[:3] + w_nn[3]
        return out

    def predict(self, inputs: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Return probabilities (the Booster.predict signature; `num_threads` is unused)."""
        del num_threads
        return 1.0 / (1.0 + np.exp(-self.decision(np.asarray(inputs, dtype="float64"))))

    def to_json(self) -> dict[str, list[float]]:
        """The weights as JSON (stored in the model set's meta.json)."""
        return {
            "mean": list(self.mean),
            "std": list(self.std),
            "with_nn": list(self.with_nn),
            "without_nn": list(self.without_nn),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[float]]) -> LinearStacker:
        """Rebuild from `to_json`'s output; raise ValueError when it is not that."""
        try:
            parts = {k: tuple(float(v) for v in data[k]) for k in cls.__dataclass_fields__}
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a linear stacker: {exc}") from None
        sizes = {"mean": 3, "std": 3, "with_nn": 4, "without_nn": 4}
        if any(
            len(parts[k]) != n or not all(map(math.isfinite, parts[k])) for k, n in sizes.items()
        ):
            raise ValueError("a linear stacker needs 3 means, 3 stds and two sets of 4 weights")
        return cls(**parts)  # type: ignore[arg-type]


def _linear_design(inputs: np.ndarray) -> np.ndarray:
    """(lgb_logit, nn_logit, log volatility_60) from inputs in LINEAR_STACK_INPUTS order."""
    x = np.array(inputs, dtype="float64", copy=True)
    if x.ndim != 2 or x.shape[1] != len(LINEAR_STACK_INPUTS):
        raise ValueError(f"stack inputs must be (n, {len(LINEAR_STACK_INPUTS)}), got {x.shape}")
    with np.errstate(invalid="ignore"):
        x[:, 2] = np.log(np.maximum(x[:, 2], _VOL_FLOOR))
    return x


def _fit_monotone(
    z: np.ndarray, y: np.ndarray, columns: Sequence[int], c: float
) -> tuple[float, float, float, float]:
    """Logistic fit on `columns` of z; base columns with a negative weight are dropped."""
    active = list(columns)
    while True:
        model = LogisticRegression(C=c, max_iter=1000)
        model.fit(z[:, active], y)
        weights = dict(zip(active, model.coef_[0].tolist(), strict=True))
        negative = [k for k in active if k in _BASE_COLUMNS and weights[k] < 0]
        if not negative:
            break
        active = [k for k in active if k not in negative]
    full = [weights.get(k, 0.0) for k in range(3)]
    return (full[0], full[1], full[2], float(model.intercept_[0]))


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
