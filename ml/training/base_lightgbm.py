"""Full set, stage 2: the LightGBM buy and sell base models, fit on the base window."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np

from ml.features import FEATURE_NAMES
from ml.predict import BASE_LOG_ABS_RETURN, BASE_PROBABILITY
from ml.sequences import MarketTable
from ml.training.boosting import best_trees, fit_early_stopped
from ml.training.weights import TrainingWeights
from ml.training.windows import FullWindows

BASE_TARGETS = ("label", "abs_return")
"""What a base model learns. "label": its side's label (a classifier). "abs_return": a
regression on log(|forward return| + floor), a volatility forecast that the stacker (monotone
in it) and the per-coin calibration turn into a probability."""
MIN_BASE_ROWS = 2000
EARLY_STOPPING_FROM = 0.85  # early stopping on the base rows after this share, by time


@dataclass(frozen=True)
class BaseLightgbm:
    """The fitted pair, the features it reads, and what each side outputs."""

    boosters: dict[str, lgb.Booster]
    feature_names: list[str]
    outputs: dict[str, str]  # per side: BASE_PROBABILITY or BASE_LOG_ABS_RETURN
    n_rows: int  # base-window rows
    weight_summary: dict[str, Any] | None = None  # `ml.training.weights`, None: unweighted

    def metrics(self) -> dict[str, int]:
        """Return the trees kept per side and the rows they were fit on."""
        return {
            "lgb_trees_buy": self.boosters["buy"].num_trees(),
            "lgb_trees_sell": self.boosters["sell"].num_trees(),
            "n_base_rows": self.n_rows,
        }


def forward_returns(table: MarketTable, horizon: int) -> np.ndarray:
    """Return each bar's simple ``horizon``-bar forward return, NaN where it leaves the segment.

    The same rule as ``ml.labels.make_labels`` (whose labels the table holds).
    """
    close = table.bars[:, 2]
    out = np.full(len(close), np.nan)
    if len(close) > horizon:
        same_segment = table.segment[horizon:] == table.segment[:-horizon]
        out[:-horizon] = np.where(same_segment, close[horizon:] / close[:-horizon] - 1.0, np.nan)
    return out


def _targets(
    tables: Sequence[MarketTable],
    rows: Sequence[np.ndarray],
    side: str,
    target: str,
    *,
    horizon: int,
    abs_return_floor: float,
) -> np.ndarray:
    """Return ``side``'s training target on the given rows of every table, concatenated."""
    if target == "abs_return":
        # usable rows have a label, so their forward return is known (finite).
        return np.concatenate(
            [
                np.log(np.abs(forward_returns(t, horizon)) + abs_return_floor)[r]
                for t, r in zip(tables, rows, strict=True)
            ]
        )
    return np.concatenate(
        [getattr(t, f"label_{side}")[r] for t, r in zip(tables, rows, strict=True)]
    )


def fit_base_lightgbm(
    tables: Sequence[MarketTable],
    windows: FullWindows,
    *,
    params: dict[str, Any],
    rounds: int,
    drop: Sequence[str],
    targets: Mapping[str, str],
    horizon: int,
    abs_return_floor: float,
    weights: TrainingWeights | None = None,
) -> BaseLightgbm:
    """Fit the pair on the base window, early stopping on its last 15% (after a purge).

    ``weights``: the fit rows weighted by the reviewers' record and recency; the early-stopping
    rows are not weighted.
    """
    names = [n for n in FEATURE_NAMES if n not in drop]
    columns = [FEATURE_NAMES.index(n) for n in names]
    rows = windows.rows("base")
    x_base = np.concatenate([t.features[r] for t, r in zip(tables, rows, strict=True)])[:, columns]
    ts_base = np.concatenate([t.ts[r] for t, r in zip(tables, rows, strict=True)])
    if len(x_base) < MIN_BASE_ROWS:
        raise ValueError(f"only {len(x_base)} base-window rows: too little data for a full set")
    ordered = np.sort(ts_base)
    stop_cut = ordered[int(len(ordered) * EARLY_STOPPING_FROM)]
    fit_rows = ts_base < stop_cut - np.timedelta64(windows.purge.value, "ns")
    stop_rows = ts_base >= stop_cut
    fit_weight, weight_summary = None, None
    if weights is not None:
        fit_weight, weight_summary = weights.weights(ts_base[fit_rows])
    boosters: dict[str, lgb.Booster] = {}
    outputs = {"buy": BASE_PROBABILITY, "sell": BASE_PROBABILITY}
    for side in ("buy", "sell"):
        side_params = params
        if targets[side] == "abs_return":
            side_params = params | {"objective": "regression", "metric": "l2"}
            outputs[side] = BASE_LOG_ABS_RETURN
        y_base = _targets(
            tables, rows, side, targets[side], horizon=horizon, abs_return_floor=abs_return_floor
        )
        booster, best = fit_early_stopped(
            names,
            side_params,
            rounds,
            x_base[fit_rows],
            y_base[fit_rows],
            x_base[stop_rows],
            y_base[stop_rows],
            train_weight=fit_weight,
        )
        boosters[side] = best_trees(booster, best)
    return BaseLightgbm(
        boosters=boosters,
        feature_names=names,
        outputs=outputs,
        n_rows=len(x_base),
        weight_summary=weight_summary,
    )
