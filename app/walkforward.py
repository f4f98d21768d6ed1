"""`lxa walkforward`: retrain and trade window after window, never on a bar a model saw.

Each contiguous stretch of the candles (split where every market jumps more than a day) is cut
into windows: `train_days` of training, then `test_days` of test, stepping `step_days`. For
each window:

1. `lxa train`'s own procedure (app.training) on the training days only: the quick LightGBM
   pair, the expected-return calibration on its validation part, and the policy's result on
   the last part of the training days (its hold-out);
2. the parameter sweep (`evaluation.policy_result.SWEEP_GRID`) on that same hold-out, inside
   the training days: the test days never choose anything;
3. the test days in the fast simulator with the configured parameters and with the swept
   ones, against buy-and-hold, cash, the lowest-volatility rotation and random entries at the
   same rate (20 seeds).

The totals chain the test windows (compounded; the training days in between are not traded).
`walkforward.json` holds everything; `report.html` the tables and the equity curves.
"""

from __future__ import annotations

import json
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import pandas as pd

from app.settings import Settings
from app.simulation import prepare, simulation_settings
from app.training import HISTORY, train_model_set
from evaluation.policy_result import SWEEP_GRID, evaluate, hold_curve, json_ready, sweep
from evaluation.walkforward_report import (
    MIN_TEST_SHARE,
    Window,
    plan_windows,
    plot_equity,
    render_html,
    totals,
)
from ml.predict import Predictor
from policy.params import PolicyParams
from policy.simulate import simulate

Log = Callable[[str], None]


def _between(candles: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return candles[(candles["ts"] >= start) & (candles["ts"] < end)].reset_index(drop=True)


def run_window(
    candles: pd.DataFrame,
    window: Window,
    settings: Settings,
    models_dir: Path,
    *,
    seeds: int,
    log: Log,
    grid: dict[str, Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Train on the window's training days, sweep there, then test on its test days."""
    started = time.perf_counter()
    train = _between(candles, window.train_start, window.test_start)
    record: dict[str, Any] = {
        "window": window.number,
        "train_start": window.train_start.isoformat(),
        "test_start": window.test_start.isoformat(),
        "test_end": window.test_end.isoformat(),
        "markets": sorted(str(m) for m in pd.unique(train["market"])),
    }
    trained = train_model_set(train, models_dir, settings, quick=True, log=lambda _: None)
    sim_settings = simulation_settings(settings)
    chosen, tried = sweep(trained.evaluation, trained.params, sim_settings, grid)
    record["model_id"] = trained.meta["model_id"]
    record["expected_return_tau"] = trained.meta["expected_return"]["tau"]
    record["holdout"] = trained.meta["policy_evaluation"]["strategy"]
    record["sweep"] = {"tried": tried, "chosen": _diff(chosen, trained.params)}
    test_candles = _between(candles, window.test_start - HISTORY, window.test_end)
    predictor = Predictor.load(trained.model_dir)
    prepared = prepare(test_candles, predictor, settings, start=window.test_start)
    record["configured"] = evaluate(prepared, trained.params, sim_settings, seeds=seeds)
    record["swept"] = evaluate(prepared, chosen, sim_settings, seeds=seeds)
    curve = simulate(prepared.arrays, chosen, sim_settings).equity / sim_settings.initial_krw
    configured = simulate(prepared.arrays, trained.params, sim_settings).equity
    record["_curves"] = {
        "time": pd.to_datetime(prepared.arrays.bar_minute, unit="m", utc=True),
        "swept": curve,
        "configured": configured / sim_settings.initial_krw,
        "buy_and_hold": hold_curve(prepared, trained.params.fee_rate),
    }
    record["seconds"] = round(time.perf_counter() - started, 1)
    s = record["swept"]["strategy"]
    log(
        f"window {window.number}: test {window.test_start:%Y-%m-%d %H:%M} .. "
        f"{window.test_end:%Y-%m-%d %H:%M}: swept {s['total_return'] * 100:+.2f}% "
        f"({s['entries']} entries), configured "
        f"{record['configured']['strategy']['total_return'] * 100:+.2f}%, buy-and-hold "
        f"{record['swept']['buy_and_hold_return'] * 100:+.2f}% [{record['seconds']} s]"
    )
    return record


def window_candles(candles: pd.DataFrame, window: Window) -> pd.DataFrame:
    """The candles `run_window` reads for `window`: its training days and its test days with
    their feature history, nothing else (what a worker process is handed)."""
    return _between(candles, min(window.train_start, window.test_start - HISTORY), window.test_end)


RunWindow = Callable[..., dict[str, Any]]


def _window_in_child(
    run: RunWindow,
    candles: pd.DataFrame,
    window: Window,
    settings: Settings,
    models_dir: Path,
    seeds: int,
    grid: dict[str, Sequence[Any]],
) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    record = run(candles, window, settings, models_dir, seeds=seeds, log=lines.append, grid=grid)
    return record, lines


def run_windows(
    candles: pd.DataFrame,
    windows: Sequence[Window],
    settings: Settings,
    models_dir: Path,
    seeds: int,
    grid: dict[str, Sequence[Any]],
    say: Log,
    workers: int,
    run: RunWindow = run_window,
) -> list[dict[str, Any]]:
    """`run` each window, in `workers` processes when more than one; records in window order."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1 or len(windows) == 1:
        return [
            run(
                window_candles(candles, w), w, settings, models_dir, seeds=seeds, log=say, grid=grid
            )
            for w in windows
        ]
    context = multiprocessing.get_context("spawn")  # no fork of a process holding threads
    with ProcessPoolExecutor(max_workers=min(workers, len(windows)), mp_context=context) as pool:
        futures = {
            pool.submit(
                _window_in_child,
                run,
                window_candles(candles, w),
                w,
                settings,
                models_dir,
                seeds,
                grid,
            ): w.number
            for w in windows
        }
        records: dict[int, dict[str, Any]] = {}
        for future in as_completed(futures):
            record, lines = future.result()
            for line in lines:
                say(line)
            records[futures[future]] = record
    return [records[w.number] for w in windows]


def _diff(chosen: PolicyParams, base: PolicyParams) -> dict[str, Any]:
    mine, theirs = chosen.to_json(), base.to_json()
    return {k: v for k, v in mine.items() if theirs.get(k) != v}


def run_walkforward(
    candles: pd.DataFrame,
    settings: Settings,
    out_dir: Path,
    *,
    train_days: float,
    test_days: float,
    step_days: float | None = None,
    seeds: int = 20,
    max_windows: int | None = None,
    files: Sequence[str] = (),
    log: Log | None = None,
    entry_margins: Sequence[float] | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run every window; write walkforward.json and report.html under `out_dir`.

    `workers` > 1 runs the windows in that many processes (each is handed only its own
    candles); the report is the same as run one after another, in window order.

    `entry_margins` replaces the sweep's entry margins (bps); the default grid never admits an
    entry whose expected net return is negative.
    """
    say = log or (lambda _: None)
    step = step_days or test_days
    windows = plan_windows(candles, train_days=train_days, test_days=test_days, step_days=step)
    if max_windows is not None:
        windows = windows[:max_windows]
    if not windows:
        raise ValueError(
            f"no window fits: every stretch of the candles is shorter than {train_days} training "
            f"days plus {test_days * MIN_TEST_SHARE} test days"
        )
    say(f"{len(windows)} windows of {train_days} + {test_days} days, step {step} days")
    out_dir.mkdir(parents=True, exist_ok=True)
    grid: dict[str, Sequence[Any]] = dict(SWEEP_GRID)
    if entry_margins:
        grid["entry_margin_bps"] = tuple(float(m) for m in entry_margins)
    records = run_windows(candles, windows, settings, out_dir / "models", seeds, grid, say, workers)
    report = {
        "files": list(files),
        "train_days": train_days,
        "test_days": test_days,
        "step_days": step,
        "seeds": seeds,
        "sweep_grid": {k: list(v) for k, v in grid.items()},
        "windows": [{k: v for k, v in r.items() if k != "_curves"} for r in records],
        "total": {"swept": totals(records, "swept"), "configured": totals(records, "configured")},
        "notes": [
            "Every figure is after fees (0.05% a side) and the paper exchange's slippage, on test "
            "days no model, calibration or parameter of that window saw.",
            "'configured' runs the LXA_POLICY_* parameters; 'swept' the best of the sweep grid "
            "on the window's training hold-out (ties to the most conservative).",
            "Totals chain the test windows; the training days between them are not traded.",
        ],
    }
    safe = json_ready(report)
    (out_dir / "walkforward.json").write_text(json.dumps(safe, indent=2, allow_nan=False) + "\n")
    (out_dir / "report.html").write_text(render_html(safe, plot_equity(records)))
    return safe
