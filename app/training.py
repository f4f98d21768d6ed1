"""`lxa train`: a model set, its expected-return calibration and its policy's own hold-out result.

The most recent stretch of the candles (after the last jump of more than a day) is cut:

    [ the models' own training windows ........ | calibration ] purge [ policy evaluation ]

The models train on everything before the evaluation window (`ml.training`, quick or full, with
their own validation or calibration window at the end). The expected-return calibration
(`ml.expected`) is fitted on that last window of theirs, on scores the models made out of
sample. The policy evaluation window is the last `EVAL_FRACTION` of the stretch: no model, no
calibration and no parameter saw it. The policy runs over it in the simulator with the
configured LXA_POLICY_* parameters, and the result, against buy-and-hold, cash, the volatility
baseline and random entries, is stored in meta.json as `policy_evaluation`. Live trading refuses
entries with a set whose result is not positive after fees (`policy.evidence.model_evidence`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.settings import Settings
from app.simulation import Prepared, prepare, simulation_settings
from app.wiring import policy_params_from
from evaluation.policy_result import evaluate
from ml.expected import fit_expected_return
from ml.features import LONG_BARS, WARMUP_BARS
from ml.predict import Predictor
from ml.registry import FULL_KIND, read_meta, update_meta
from ml.training.weights import TrainingWeights
from policy.evidence import model_evidence
from policy.params import PolicyParams

EVAL_FRACTION = 0.15
RECENT_GAP = pd.Timedelta(days=1)
HISTORY = pd.Timedelta(minutes=LONG_BARS + WARMUP_BARS)  # features warm before a window
Log = Callable[[str], None]


@dataclass
class TrainedSet:
    """A saved model set with what `lxa train` measured on it."""

    model_dir: Path
    meta: dict[str, Any]
    evaluation: Prepared  # the policy evaluation window, ready for the simulator
    params: PolicyParams


def evaluation_start(candles: pd.DataFrame, fraction: float = EVAL_FRACTION) -> pd.Timestamp:
    """The first bar of the policy evaluation window: the last `fraction` of the recent stretch."""
    if not 0 < fraction < 1:
        raise ValueError(f"the evaluation fraction must be in (0, 1), got {fraction}")
    ts = np.unique(candles["ts"].to_numpy(dtype="datetime64[ns]"))
    if len(ts) == 0:
        raise ValueError("no candles to train on")
    jumps = np.flatnonzero(np.diff(ts) > np.timedelta64(RECENT_GAP.value, "ns"))
    recent = ts[jumps[-1] + 1 :] if len(jumps) else ts
    return pd.Timestamp(recent[int(len(recent) * (1 - fraction))]).tz_localize("UTC")


def calibration_start(meta: dict[str, Any]) -> pd.Timestamp:
    """Where the set's own out-of-sample window starts (quick: validation; full: calibration)."""
    metrics = meta.get("metrics") or {}
    if meta.get("kind") == FULL_KIND:
        value = (metrics.get("windows") or {}).get("calibration")
    else:
        value = metrics.get("validation_start")
    if not value:
        raise ValueError(f"model set {meta.get('model_id')} records no out-of-sample window")
    return pd.Timestamp(value).tz_convert("UTC")


def warmed_start(candles: pd.DataFrame, start: pd.Timestamp) -> pd.Timestamp:
    """`start`, or later when the bars before it cannot warm the features up.

    A window that opens after a gap in the data (a model's validation split falling between
    two far-apart files) starts once its own first bars have warmed the features.
    """
    ts = np.unique(candles["ts"].to_numpy(dtype="datetime64[ns]"))
    begin = start.tz_convert("UTC").tz_localize(None).to_datetime64()
    since = (start - HISTORY).tz_convert("UTC").tz_localize(None).to_datetime64()
    if int(np.count_nonzero((ts >= since) & (ts < begin))) >= WARMUP_BARS:
        return start
    later = ts[ts >= begin]
    needed = LONG_BARS + WARMUP_BARS
    if len(later) <= needed:
        raise ValueError(f"too few bars after {start.isoformat()} to warm the features up")
    return pd.Timestamp(later[needed]).tz_localize("UTC")


def _window(candles: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp | None) -> pd.DataFrame:
    rows = candles["ts"] >= start - HISTORY
    if end is not None:
        rows &= candles["ts"] < end
    return candles[rows].reset_index(drop=True)


def calibrate(
    model_dir: Path,
    candles: pd.DataFrame,
    settings: Settings,
    *,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> dict[str, Any]:
    """Fit and save the expected-return calibration on [start, end); return its JSON."""
    predictor = Predictor.load(model_dir)
    start = warmed_start(candles, start)
    prepared = prepare(_window(candles, start, end), predictor, settings, start=start)
    arrays = prepared.arrays
    rows = arrays.has_bar & np.isfinite(prepared.p_buy) & np.isfinite(prepared.forward_return)
    fitted = fit_expected_return(
        prepared.p_buy[rows],
        prepared.p_sell[rows],
        arrays.volatility[rows],
        prepared.forward_return[rows],
        horizon=prepared.horizon,
        window={"first_ts": start.isoformat(), "end_ts": end.isoformat()},
    )
    values = fitted.to_json()
    update_meta(model_dir, expected_return=values)
    return values


def evaluate_set(
    model_dir: Path,
    candles: pd.DataFrame,
    settings: Settings,
    *,
    start: pd.Timestamp,
    end: pd.Timestamp | None,
    params: PolicyParams | None = None,
) -> tuple[dict[str, Any], Prepared, PolicyParams]:
    """Run the set's policy over [start, end) in the simulator; save it as policy_evaluation."""
    predictor = Predictor.load(model_dir)
    params = params or policy_params_from(settings, predictor.meta)
    start = warmed_start(candles, start)
    prepared = prepare(_window(candles, start, end), predictor, settings, start=start)
    result = evaluate(prepared, params, simulation_settings(settings))
    ok, verdict = model_evidence(result)
    result = {**result, "proven": ok, "verdict": verdict}
    update_meta(model_dir, policy_evaluation=result)
    return result, prepared, params


def train_model_set(
    candles: pd.DataFrame,
    out_dir: Path,
    settings: Settings,
    *,
    until: datetime | None = None,
    quick: bool = True,
    full_config: Any = None,
    data_files: Sequence[str] = (),
    eval_fraction: float = EVAL_FRACTION,
    log: Log | None = None,
    weights: TrainingWeights | None = None,
    news: dict[str, Any] | None = None,
) -> TrainedSet:
    """Train (quick or full), calibrate the expected return, and evaluate the policy.

    `weights`: weight the models' training rows by the reviewers' record and recency
    (`app.outcomes.reviewer_weights`); only what was known by the models' own cutoff (the
    evaluation window's start) counts, and the set records the summary as `training_weights`.
    The news features are the candles' `ml.data.NEWS_COLUMNS` where they have them
    (`app.news_features.with_news_columns`), else NaN; `news`: their summary, recorded as
    `news_features`.
    """
    say = log or (lambda _: None)
    if until is not None:
        candles = candles[candles["ts"] < pd.Timestamp(until)]
    candles = candles.reset_index(drop=True)
    eval_start = evaluation_start(candles, eval_fraction)
    say(f"policy evaluation window: {eval_start.isoformat()} .. the end (no model sees it)")
    if weights is not None:
        say(
            f"weighted by the reviewers' record: rule {weights.rule.rule}, "
            f"{len(weights.verdicts)} judged verdicts"
        )
    if quick:
        from ml.training.quick_pair import train_quick

        model_dir = train_quick(
            candles,
            out_dir,
            until=eval_start.to_pydatetime(),
            data_files=data_files,
            weights=weights,
        )
    else:
        from ml.training.full_set import FullConfig, train_full

        model_dir = train_full(
            candles,
            out_dir,
            until=eval_start.to_pydatetime(),
            config=replace(full_config or FullConfig(), weights=weights)
            if weights is not None
            else full_config or FullConfig(),
            data_files=data_files,
            log=say,
        )
    if news is not None:
        update_meta(model_dir, news_features=news)
    meta = read_meta(model_dir)
    horizon = int((meta.get("label") or {}).get("horizon", 10))
    calibration = calibrate(
        model_dir,
        candles,
        settings,
        start=calibration_start(meta),
        end=eval_start - timedelta(minutes=horizon),
    )
    say(
        f"expected return: tau {calibration['tau']} over {calibration['rows']} rows "
        f"(window trend {calibration['trend_z_removed']} removed)"
    )
    evaluation, prepared, params = evaluate_set(
        model_dir, candles, settings, start=eval_start, end=None
    )
    strategy = evaluation["strategy"]
    hold = evaluation["buy_and_hold_return"] * 100
    say(
        f"policy on the evaluation window: {strategy['total_return'] * 100:+.2f}% after fees, "
        f"{strategy['entries']} entries; buy-and-hold {hold:+.2f}%; {evaluation['verdict']}"
    )
    return TrainedSet(model_dir, read_meta(model_dir), prepared, params)
