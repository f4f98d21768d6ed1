"""Train the full model set: LightGBM pair, LSTM+CNN hybrid, per-coin calibrated stack, autoencoder.

Time is cut into three windows over the most recent stretch of data (the candles after the
last jump of more than a day across all markets; everything older is base-training data):

    [ base: LightGBM + hybrid fit ] purge [ stack: stacker fit ] purge [ calibration ]

A purge of the label horizon separates the windows, so no label of one reaches into the next.
The stacker only sees base-model predictions made out of sample, and the per-coin Platt
calibration is fit on the last window, which neither the base models nor the stacker saw. The
calibration window's AUCs are the reported hold-out figures. The autoencoder is fit on the
base and stack windows; its alert rates are reported on those and on the calibration window.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch

from ml.anomaly import ALERT_SCORE
from ml.features import FEATURE_NAMES
from ml.models import AutoencoderConfig, HybridConfig
from ml.predict import BASE_LOG_ABS_RETURN, BASE_PROBABILITY, base_score
from ml.registry import FULL_KIND, candles_sha256, save_model_set
from ml.sequences import MarketTable, market_tables, sequence_ends, sequence_features
from ml.stack import (
    LINEAR_STACK_INPUTS,
    LinearStacker,
    calibrate,
    calibrators,
    logit,
)
from ml.train import BASE_PARAMS, EARLY_STOPPING_ROUNDS, ENTRY_QUANTILE, EXIT_QUANTILE, _infer_bar
from ml.trainer import (
    HybridTrainConfig,
    SequenceData,
    alert_rates,
    anomaly_windows,
    feature_stats,
    hybrid_state_bytes,
    predict_hybrid,
    train_autoencoder,
    train_hybrid,
)
from ml.walkforward import walk_forward

HYBRID_FILE = "hybrid.pt"
ANOMALY_FILE = "anomaly.npz"
RECENT_GAP = pd.Timedelta(days=1)
BASE_TARGETS = ("label", "abs_return")
Log = Callable[[str], None]


@dataclass
class FullConfig:
    """Knobs of a full training run (the defaults train in a few minutes on 2 CPU cores)."""

    horizon: int = 10
    threshold: float = 0.002
    seed: int = 7
    stack_start: float = 0.62  # fractions of the recent stretch
    calibration_start: float = 0.86
    lgb_rounds: int = 400
    # Stronger regularisation than the quick pair: on 17 days of bars the default LightGBM
    # fits the regime and trails the volatility baseline out of sample.
    lgb_params: dict[str, Any] = field(
        default_factory=lambda: {"num_leaves": 7, "min_data_in_leaf": 2000, "learning_rate": 0.03}
    )
    # Left out of the LightGBM pair: time of day over a few weeks is a regime label.
    lgb_drop: tuple[str, ...] = ("tod_sin", "tod_cos")
    # What the LightGBM "buy" base model learns. "label": the buy label (a classifier).
    # "abs_return": a regression on log(|forward return| + abs_return_floor), a volatility
    # forecast; the stacker (monotone in it) and the per-coin calibration turn it into P(buy).
    # Chosen on the inner calibration window (Upbit + Binance before 2025-09-18): stack AUC
    # 0.7301 against 0.7289 for "label" (vol60 baseline 0.737), a near tie.
    buy_target: str = "abs_return"
    # The same choice for the "sell" base model (its own label, or the same regression).
    sell_target: str = "label"
    abs_return_floor: float = 5e-4
    hybrid: HybridTrainConfig = field(default_factory=HybridTrainConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    autoencoder_epochs: int = 6
    walk_forward_folds: int = 4
    threads: int = 2


def recent_start(tables: Sequence[MarketTable]) -> pd.Timestamp:
    """Return the first bar time after the last jump of more than a day across all markets."""
    ts = np.unique(np.concatenate([t.ts for t in tables]))
    if len(ts) == 0:
        raise ValueError("no bars")
    jumps = np.flatnonzero(np.diff(ts) > np.timedelta64(RECENT_GAP.value, "ns"))
    first = ts[jumps[-1] + 1] if len(jumps) else ts[0]
    return pd.Timestamp(first, tz="UTC")


def _masks(
    table: MarketTable, bounds: dict[str, pd.Timestamp], purge: pd.Timedelta
) -> dict[str, np.ndarray]:
    """Row masks of the three windows (purged before each boundary)."""
    ts = table.ts
    stack = bounds["stack"].tz_localize(None).to_datetime64()
    calib = bounds["calibration"].tz_localize(None).to_datetime64()
    gap = np.timedelta64(purge.value, "ns")
    return {
        "base": ts < stack - gap,
        "stack": (ts >= stack) & (ts < calib - gap),
        "calibration": ts >= calib,
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


def _auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    keep = ~np.isnan(labels) & ~np.isnan(scores)
    if keep.sum() == 0 or len(np.unique(labels[keep])) < 2:
        return None
    return round(float(roc_auc_score(labels[keep], scores[keep])), 4)


def _fit_lgb(
    names: Sequence[str],
    params: dict[str, Any],
    rounds: int,
    train_x: np.ndarray,
    train_y: np.ndarray,
    valid_x: np.ndarray,
    valid_y: np.ndarray,
) -> lgb.Booster:
    """Fit with early stopping on the last part of the base window; keep the best trees."""
    train_set = lgb.Dataset(train_x, label=train_y, feature_name=list(names))
    valid_set = lgb.Dataset(valid_x, label=valid_y, reference=train_set)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
    )
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def train_full(
    candles: pd.DataFrame,
    out_dir: Path,
    *,
    until: datetime | None = None,
    config: FullConfig | None = None,
    data_files: Sequence[str] = (),
    log: Log | None = None,
) -> Path:
    """Train and save the full model set; return its directory."""
    config = config or FullConfig()
    for side_target in ("buy_target", "sell_target"):
        if getattr(config, side_target) not in BASE_TARGETS:
            raise ValueError(
                f"{side_target} must be one of {BASE_TARGETS}, got {getattr(config, side_target)!r}"
            )
    if not config.abs_return_floor > 0:
        raise ValueError("abs_return_floor must be positive")
    say = log or (lambda _message: None)
    started = time.perf_counter()
    torch.set_num_threads(config.threads)
    for column in ("market", "ts", "open", "high", "low", "close", "volume"):
        if column not in candles.columns:
            raise ValueError(f"train_full needs candle column {column!r}")
    if until is not None:
        if until.tzinfo is None:
            raise ValueError("until must be timezone-aware (UTC)")
        candles = candles[candles["ts"] < pd.Timestamp(until).tz_convert("UTC")]
    candles = candles.sort_values(["market", "ts"], kind="stable").reset_index(drop=True)
    if candles.empty:
        raise ValueError("no candles to train on")
    bar = _infer_bar(candles)
    purge = config.horizon * bar
    tables = market_tables(candles, horizon=config.horizon, threshold=config.threshold, bar=bar)
    start = recent_start(tables)
    end = pd.Timestamp(max(t.ts.max() for t in tables), tz="UTC")
    span = end - start
    bounds = {
        "recent_start": start,
        "stack": start + span * config.stack_start,
        "calibration": start + span * config.calibration_start,
        "end": end,
    }
    say(f"windows: {json.dumps({k: v.isoformat() for k, v in bounds.items()})}")
    masks = [_masks(t, bounds, purge) for t in tables]
    usable = [t.warmed & ~np.isnan(t.label_buy) for t in tables]
    params = dict(BASE_PARAMS) | {"seed": config.seed, "num_threads": config.threads}
    params |= config.lgb_params
    metrics: dict[str, Any] = {"windows": {k: v.isoformat() for k, v in bounds.items()}}

    # 1. LightGBM pair on the base window (early stopping on its last 15%, purged).
    lgb_names = [n for n in FEATURE_NAMES if n not in config.lgb_drop]
    lgb_columns = [FEATURE_NAMES.index(n) for n in lgb_names]
    x_base = np.concatenate(
        [t.features[m["base"] & u] for t, m, u in zip(tables, masks, usable, strict=True)]
    )[:, lgb_columns]
    ts_base = np.concatenate(
        [t.ts[m["base"] & u] for t, m, u in zip(tables, masks, usable, strict=True)]
    )
    if len(x_base) < 2000:
        raise ValueError(f"only {len(x_base)} base-window rows: too little data for a full set")
    ordered = np.sort(ts_base)
    stop_cut = ordered[int(len(ordered) * 0.85)]
    fit_rows = ts_base < stop_cut - np.timedelta64(purge.value, "ns")
    stop_rows = ts_base >= stop_cut
    boosters: dict[str, lgb.Booster] = {}
    base_outputs = {"buy": BASE_PROBABILITY, "sell": BASE_PROBABILITY}
    for side in ("buy", "sell"):
        side_params = params
        if getattr(config, f"{side}_target") == "abs_return":
            # usable rows have a label, so their forward return is known (finite).
            y_base = np.concatenate(
                [
                    np.log(np.abs(forward_returns(t, config.horizon)) + config.abs_return_floor)[
                        m["base"] & u
                    ]
                    for t, m, u in zip(tables, masks, usable, strict=True)
                ]
            )
            side_params = params | {"objective": "regression", "metric": "l2"}
            base_outputs[side] = BASE_LOG_ABS_RETURN
        else:
            y_base = np.concatenate(
                [
                    getattr(t, f"label_{side}")[m["base"] & u]
                    for t, m, u in zip(tables, masks, usable, strict=True)
                ]
            )
        boosters[side] = _fit_lgb(
            lgb_names,
            side_params,
            config.lgb_rounds,
            x_base[fit_rows],
            y_base[fit_rows],
            x_base[stop_rows],
            y_base[stop_rows],
        )
        metrics[f"lgb_trees_{side}"] = boosters[side].num_trees()
    metrics["n_base_rows"] = len(x_base)
    say(
        f"lightgbm: {metrics['lgb_trees_buy']} / {metrics['lgb_trees_sell']} trees "
        f"on {len(x_base)} rows"
    )

    # 2. LSTM+CNN hybrid on sequences ending in the base window.
    seq_len = config.hybrid.model.seq_len
    base_rows = [m["base"] & u for m, u in zip(masks, usable, strict=True)]
    # Recorded bars add trade_intensity and spread_bps to what the hybrid reads.
    seq_names = sequence_features(tables, base_rows)
    hybrid_config = HybridTrainConfig(
        **{
            k: getattr(config.hybrid, k)
            for k in (
                "epochs",
                "batch_size",
                "learning_rate",
                "weight_decay",
                "samples_per_epoch",
                "threads",
            )
        },
        seed=config.seed,
        model=HybridConfig(**(config.hybrid.model.to_json() | {"n_features": len(seq_names)})),
    )
    mean, std = feature_stats(tables, base_rows, seq_names)
    data = SequenceData.build(tables, mean, std, seq_names)
    all_ends = [sequence_ends(t, seq_len, labelled=False) for t in tables]
    labelled_ends = [e[~np.isnan(t.label_buy[e])] for t, e in zip(tables, all_ends, strict=True)]
    train_ends = data.ends([e[m["base"][e]] for e, m in zip(labelled_ends, masks, strict=True)])
    valid_ends = data.ends([e[m["stack"][e]] for e, m in zip(labelled_ends, masks, strict=True)])
    hybrid, hybrid_metrics = train_hybrid(data, train_ends, valid_ends, hybrid_config, log=say)
    metrics["hybrid"] = hybrid_metrics

    # 3. Base predictions on the stack and calibration windows (out of sample for both models).
    later = [(m["stack"] | m["calibration"]) & u for m, u in zip(masks, usable, strict=True)]
    frames: list[pd.DataFrame] = []
    for index, (table, rows, ends) in enumerate(zip(tables, later, all_ends, strict=True)):
        idx = np.flatnonzero(rows)
        nn = np.full((len(table), 2), np.nan)
        have = ends[rows[ends]]
        if len(have):
            nn[have] = predict_hybrid(hybrid, data, have + data.offsets[index])
        frame = pd.DataFrame(table.features[idx], columns=list(FEATURE_NAMES))
        frame.insert(0, "ts", table.ts[idx])
        frame.insert(0, "market", table.market)
        frame["window"] = np.where(masks[index]["stack"][idx], "stack", "calibration")
        frame["filled"] = table.filled[idx]
        frame["label_buy"] = table.label_buy[idx]
        frame["label_sell"] = table.label_sell[idx]
        frame["nn_buy"] = nn[idx, 0]
        frame["nn_sell"] = nn[idx, 1]
        frames.append(frame)
    later_frame = pd.concat(frames, ignore_index=True)
    x_later = later_frame[lgb_names].to_numpy(dtype="float64")
    for side in ("buy", "sell"):
        later_frame[f"lgb_{side}"] = boosters[side].predict(x_later, num_threads=config.threads)

    # 4. Stackers on the stack window; per-coin Platt on the calibration window.
    stackers: dict[str, LinearStacker] = {}
    calibration: dict[str, dict[str, list[float]]] = {}
    in_stack = (later_frame["window"] == "stack").to_numpy()
    in_calib = ~in_stack
    held_out: dict[str, Any] = {}
    real = ~later_frame["filled"].to_numpy(dtype=bool)
    thresholds: dict[str, Any] = {
        "source": f"calibration-window quantiles {ENTRY_QUANTILE} (buy) and {EXIT_QUANTILE} (sell)"
    }
    for side in ("buy", "sell"):
        inputs = later_frame.assign(
            lgb_logit=base_score(later_frame[f"lgb_{side}"].to_numpy(), base_outputs[side]),
            nn_logit=logit(later_frame[f"nn_{side}"].to_numpy()),
        )[list(LINEAR_STACK_INPUTS)].to_numpy(dtype="float64")
        labels = later_frame[f"label_{side}"].to_numpy(dtype="float64")
        stackers[side] = LinearStacker.fit(inputs[in_stack], labels[in_stack])
        raw = stackers[side].predict(inputs[in_calib])
        calibration[side] = calibrators(
            raw, labels[in_calib], later_frame["market"].to_numpy()[in_calib]
        )
        calibrated = calibrate(raw, later_frame["market"].to_numpy()[in_calib], calibration[side])
        rows = real[in_calib]
        y = labels[in_calib][rows]
        held_out[f"auc_{side}_lgb"] = _auc(y, later_frame[f"lgb_{side}"].to_numpy()[in_calib][rows])
        held_out[f"auc_{side}_hybrid"] = _auc(
            y, later_frame[f"nn_{side}"].to_numpy()[in_calib][rows]
        )
        held_out[f"auc_{side}_stack_raw"] = _auc(y, raw[rows])
        held_out[f"auc_{side}_stack_calibrated"] = _auc(y, calibrated[rows])
        held_out[f"mean_p_{side}"] = round(float(np.mean(calibrated[rows])), 4)
        held_out[f"positive_rate_{side}"] = round(float(np.mean(y)), 4)
        quantile = ENTRY_QUANTILE if side == "buy" else EXIT_QUANTILE
        key = "entry_probability_min" if side == "buy" else "exit_probability_min"
        thresholds[key] = round(float(np.quantile(calibrated, quantile)), 4)
    labels_buy = later_frame["label_buy"].to_numpy(dtype="float64")[in_calib][real[in_calib]]
    held_out["baseline_auc_vol60"] = _auc(
        labels_buy, later_frame["volatility_60"].to_numpy()[in_calib][real[in_calib]]
    )
    held_out["n_rows"] = int(real[in_calib].sum())
    held_out["note"] = (
        "calibration window: unseen by the base models and the stacker; the per-coin Platt "
        "scaling was fit on it (monotone per coin)"
    )
    metrics["held_out"] = held_out
    say(f"held-out (calibration window): {json.dumps(held_out)}")

    # 5. Autoencoder on the base and stack windows; alert rates there and held out.
    ae_config = config.autoencoder
    fit_windows, fit_owners = anomaly_windows(
        tables, [np.flatnonzero(m["base"] | m["stack"]) for m in masks], ae_config.window
    )
    _, anomaly, ae_metrics = train_autoencoder(
        fit_windows,
        ae_config,
        epochs=config.autoencoder_epochs,
        seed=config.seed,
        threads=config.threads,
    )
    names = [t.market for t in tables]
    ae_metrics["alert_score"] = ALERT_SCORE
    ae_metrics["alerts_training"] = alert_rates(anomaly, fit_windows, fit_owners, names)
    calib_windows, calib_owners = anomaly_windows(
        tables, [np.flatnonzero(m["calibration"]) for m in masks], ae_config.window
    )
    ae_metrics["alerts_held_out"] = alert_rates(anomaly, calib_windows, calib_owners, names)
    metrics["autoencoder"] = ae_metrics
    say(f"autoencoder alerts (training): {json.dumps(ae_metrics['alerts_training'])}")
    say(f"autoencoder alerts (held out): {json.dumps(ae_metrics['alerts_held_out'])}")

    # 6. Walk-forward check of the LightGBM base model on the recent stretch.
    wf_params = params | {"num_threads": config.threads}
    folds = walk_forward(
        tables,
        {k: v for k, v in wf_params.items() if k != "metric"},
        period_start=start,
        period_end=end,
        purge=purge,
        folds=config.walk_forward_folds,
    )
    metrics["walk_forward"] = folds
    for fold in folds:
        say(f"walk-forward: {json.dumps(fold)}")

    # 7. Save.
    hybrid_meta = {
        "feature_names": list(seq_names),
        "feature_mean": [float(v) for v in mean],
        "feature_std": [float(v) for v in std],
        "seq_len": seq_len,
        "config": hybrid.config.to_json(),
    }
    checkpoint = hybrid_state_bytes(hybrid, {"meta": hybrid_meta, "metrics": hybrid_metrics})
    window = {
        t.market: {
            "first_ts": pd.Timestamp(t.ts.min(), tz="UTC").isoformat(),
            "last_ts": pd.Timestamp(t.ts.max(), tz="UTC").isoformat(),
        }
        for t in tables
    }
    metrics["train_seconds"] = round(time.perf_counter() - started, 1)
    for side in ("buy", "sell"):
        metrics[f"auc_{side}_valid"] = held_out[f"auc_{side}_stack_calibrated"]
    return save_model_set(
        Path(out_dir),
        model_buy=boosters["buy"],
        model_sell=boosters["sell"],
        feature_names=lgb_names,
        label={
            "horizon": int(config.horizon),
            "threshold": float(config.threshold),
            "bar": str(bar),
            "forward_return": "simple",
        },
        training_window=window,
        markets=sorted(window),
        data_files=data_files,
        data_sha256=candles_sha256(candles),
        params={
            "lightgbm": params | {"num_boost_round": config.lgb_rounds},
            "buy_target": config.buy_target,
            "sell_target": config.sell_target,
            "abs_return_floor": config.abs_return_floor,
            "hybrid_training": {
                k: getattr(hybrid_config, k)
                for k in (
                    "epochs",
                    "batch_size",
                    "learning_rate",
                    "weight_decay",
                    "samples_per_epoch",
                )
            },
            "stack_inputs": list(LINEAR_STACK_INPUTS),
            "autoencoder": ae_config.to_json() | {"epochs": config.autoencoder_epochs},
        },
        seed=config.seed,
        metrics=metrics,
        kind=FULL_KIND,
        extra={
            "until": None if until is None else pd.Timestamp(until).isoformat(),
            "decision_thresholds": thresholds,
            "hybrid": hybrid_meta | {"file": HYBRID_FILE},
            "stack": {
                "inputs": list(LINEAR_STACK_INPUTS),
                "kind": "logistic",
                "models": {side: stacker.to_json() for side, stacker in stackers.items()},
                "calibration": calibration,
                "calibration_method": "Platt scaling per market ('*' pooled fallback)",
                "base_outputs": base_outputs,
            },
            "anomaly": {
                "file": ANOMALY_FILE,
                "window": ae_config.window,
                "alert_score": ALERT_SCORE,
                "input": "last window+1 one-minute bars (high, low, close, volume); see ml.anomaly",
            },
        },
        artifacts={
            HYBRID_FILE: checkpoint,
            ANOMALY_FILE: anomaly.to_bytes(),
        },
    )
