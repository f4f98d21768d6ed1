"""Full set, stages 4 and 5: out-of-sample base predictions, the stackers, per-coin calibration.

The stacker only sees base-model predictions made out of sample (on the stack window), and
the per-coin Platt calibration is fit on the calibration window, which neither the base
models nor the stacker saw. The calibration window's AUCs are the reported hold-out figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.features import FEATURE_NAMES
from ml.predict import base_score
from ml.sequences import MarketTable
from ml.stack import LINEAR_STACK_INPUTS, LinearStacker, calibrate, calibrators, logit
from ml.training.base_hybrid import BaseHybrid
from ml.training.base_lightgbm import BaseLightgbm
from ml.training.scoring import auc, decision_threshold, thresholds_source
from ml.training.windows import FullWindows

HELD_OUT_NOTE = (
    "calibration window: unseen by the base models and the stacker; the per-coin Platt "
    "scaling was fit on it (monotone per coin)"
)


def base_predictions(
    tables: Sequence[MarketTable],
    windows: FullWindows,
    lightgbm: BaseLightgbm,
    hybrid: BaseHybrid,
    *,
    threads: int,
) -> pd.DataFrame:
    """Return one row per usable bar of the stack and calibration windows, with base scores.

    Columns: market, ts, FEATURE_NAMES, window, filled, the labels, nn_* and lgb_* per side.
    """
    stack_rows, calibration_rows = windows.rows("stack"), windows.rows("calibration")
    later = [s | c for s, c in zip(stack_rows, calibration_rows, strict=True)]
    frames: list[pd.DataFrame] = []
    for index, (table, rows, ends) in enumerate(zip(tables, later, hybrid.ends, strict=True)):
        idx = np.flatnonzero(rows)
        nn = np.full((len(table), 2), np.nan)
        have = ends[rows[ends]]
        if len(have):
            nn[have] = hybrid.predict(index, have)
        frame = pd.DataFrame(table.features[idx], columns=list(FEATURE_NAMES))
        frame.insert(0, "ts", table.ts[idx])
        frame.insert(0, "market", table.market)
        frame["window"] = np.where(windows.masks[index]["stack"][idx], "stack", "calibration")
        frame["filled"] = table.filled[idx]
        frame["label_buy"] = table.label_buy[idx]
        frame["label_sell"] = table.label_sell[idx]
        frame["nn_buy"] = nn[idx, 0]
        frame["nn_sell"] = nn[idx, 1]
        frames.append(frame)
    predictions = pd.concat(frames, ignore_index=True)
    x_later = predictions[lightgbm.feature_names].to_numpy(dtype="float64")
    for side in ("buy", "sell"):
        predictions[f"lgb_{side}"] = lightgbm.boosters[side].predict(x_later, num_threads=threads)
    return predictions


@dataclass(frozen=True)
class CalibratedStack:
    """A stacker and a per-coin calibration per side, with the hold-out figures."""

    stackers: dict[str, LinearStacker]
    calibration: dict[str, dict[str, list[float]]]
    held_out: dict[str, Any]
    thresholds: dict[str, Any]


def fit_stack(predictions: pd.DataFrame, base_outputs: Mapping[str, str]) -> CalibratedStack:
    """Fit each side's stacker on the stack window and its calibration on the calibration one."""
    stackers: dict[str, LinearStacker] = {}
    calibration: dict[str, dict[str, list[float]]] = {}
    in_stack = (predictions["window"] == "stack").to_numpy()
    in_calib = ~in_stack
    markets = predictions["market"].to_numpy()[in_calib]
    real = ~predictions["filled"].to_numpy(dtype=bool)[in_calib]
    held_out: dict[str, Any] = {}
    thresholds: dict[str, Any] = {"source": thresholds_source("calibration-window")}
    for side in ("buy", "sell"):
        inputs = predictions.assign(
            lgb_logit=base_score(predictions[f"lgb_{side}"].to_numpy(), base_outputs[side]),
            nn_logit=logit(predictions[f"nn_{side}"].to_numpy()),
        )[list(LINEAR_STACK_INPUTS)].to_numpy(dtype="float64")
        labels = predictions[f"label_{side}"].to_numpy(dtype="float64")
        stackers[side] = LinearStacker.fit(inputs[in_stack], labels[in_stack])
        raw = stackers[side].predict(inputs[in_calib])
        calibration[side] = calibrators(raw, labels[in_calib], markets)
        calibrated = calibrate(raw, markets, calibration[side])
        base = {name: predictions[f"{name}_{side}"].to_numpy()[in_calib] for name in ("lgb", "nn")}
        y = labels[in_calib][real]
        held_out[f"auc_{side}_lgb"] = auc(y, base["lgb"][real], digits=4)
        held_out[f"auc_{side}_hybrid"] = auc(y, base["nn"][real], digits=4)
        held_out[f"auc_{side}_stack_raw"] = auc(y, raw[real], digits=4)
        held_out[f"auc_{side}_stack_calibrated"] = auc(y, calibrated[real], digits=4)
        held_out[f"mean_p_{side}"] = round(float(np.mean(calibrated[real])), 4)
        held_out[f"positive_rate_{side}"] = round(float(np.mean(y)), 4)
        key, value = decision_threshold(side, calibrated)
        thresholds[key] = value
    labels_buy = predictions["label_buy"].to_numpy(dtype="float64")[in_calib][real]
    volatility = predictions["volatility_60"].to_numpy()[in_calib][real]
    held_out["baseline_auc_vol60"] = auc(labels_buy, volatility, digits=4)
    held_out["n_rows"] = int(real.sum())
    held_out["note"] = HELD_OUT_NOTE
    return CalibratedStack(stackers, calibration, held_out, thresholds)
