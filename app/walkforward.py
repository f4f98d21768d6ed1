"""`lxa walkforward`: retrain and trade window after window, never on a bar a model saw.

Each contiguous stretch of the candles (split where every market jumps more than a day) is cut
into windows: `train_days` of training, then `test_days` of test, stepping `step_days`. For
each window:

1. `lxa train`'s own procedure (app.training) on the training days only: the quick LightGBM
   pair, the expected-return calibration on its validation part, and the policy's result on
   the last part of the training days (its hold-out);
2. the parameter sweep (app.policy_eval.SWEEP_GRID) on that same hold-out, inside the training
   days: the test days never choose anything;
3. the test days in the fast simulator with the configured parameters and with the swept
   ones, against buy-and-hold, cash, the lowest-volatility rotation and random entries at the
   same rate (20 seeds).

The totals chain the test windows (compounded; the training days in between are not traded).
`walkforward.json` holds everything; `report.html` the tables and the equity curves.
"""

from __future__ import annotations

import base64
import html
import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.policy_eval import SWEEP_GRID, evaluate, json_ready, sweep
from app.settings import Settings
from app.simulation import prepare, simulation_settings
from app.training import HISTORY, train_model_set
from ml.evaluate import max_drawdown
from ml.predict import Predictor
from policy.params import PolicyParams
from policy.simulate import simulate

STRETCH_GAP = pd.Timedelta(days=1)
MIN_TEST_SHARE = 0.5  # a last window shorter than half the test days is dropped
MAX_TRADE_ROWS = 500  # in report.html; walkforward.json has them all
Log = Callable[[str], None]


@dataclass(frozen=True)
class Window:
    """One walk-forward step: train on [train_start, test_start), test on [test_start, test_end)."""

    number: int
    train_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp


def stretches(candles: pd.DataFrame) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Contiguous stretches of bar times: (first bar, last bar + 1 minute) each."""
    ts = np.unique(candles["ts"].to_numpy(dtype="datetime64[ns]"))
    if len(ts) == 0:
        return []
    cuts = np.flatnonzero(np.diff(ts) > np.timedelta64(STRETCH_GAP.value, "ns"))
    starts = np.concatenate([[0], cuts + 1])
    ends = np.concatenate([cuts, [len(ts) - 1]])
    return [
        (
            pd.Timestamp(ts[a]).tz_localize("UTC"),
            pd.Timestamp(ts[b]).tz_localize("UTC") + pd.Timedelta(minutes=1),
        )
        for a, b in zip(starts, ends, strict=True)
    ]


def plan_windows(
    candles: pd.DataFrame, *, train_days: float, test_days: float, step_days: float
) -> list[Window]:
    """Every window that fits inside a stretch (none straddles a gap between stretches)."""
    if min(train_days, test_days, step_days) <= 0:
        raise ValueError("--train-days, --test-days and --step-days must be positive")
    train, test, step = (pd.Timedelta(days=d) for d in (train_days, test_days, step_days))
    windows: list[Window] = []
    for first, end in stretches(candles):
        test_start = first + train
        while test_start + test * MIN_TEST_SHARE <= end:
            windows.append(
                Window(
                    len(windows) + 1, test_start - train, test_start, min(test_start + test, end)
                )
            )
            test_start += step
    return windows


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
        "buy_and_hold": _hold_curve(prepared, trained.params.fee_rate),
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


def _hold_curve(prepared: Any, fee_rate: float) -> np.ndarray:
    from app.policy_eval import close_matrix
    from ml.evaluate import buy_and_hold_curve

    closes = close_matrix(prepared)
    usable = closes.columns[closes.iloc[0].notna()]
    if not len(usable):
        return np.ones(len(closes))
    return np.asarray(buy_and_hold_curve(closes[usable], fee_rate), dtype=np.float64)


def _diff(chosen: PolicyParams, base: PolicyParams) -> dict[str, Any]:
    mine, theirs = chosen.to_json(), base.to_json()
    return {k: v for k, v in mine.items() if theirs.get(k) != v}


def _chain(values: Sequence[float]) -> float:
    total = 1.0
    for value in values:
        total *= 1.0 + value
    return total - 1.0


def totals(records: Sequence[dict[str, Any]], which: str) -> dict[str, Any]:
    """The test windows chained: compounded returns, the joined equity curve's drawdown."""
    strategies = [r[which]["strategy"] for r in records]
    curves = [r["_curves"]["swept" if which == "swept" else "configured"] for r in records]
    joined: list[float] = [1.0]
    for curve in curves:
        base = joined[-1]
        joined.extend(float(base * v) for v in curve)
    fees = [r[which]["strategy"]["fees_pct_of_capital"] for r in records]
    trips = sum(s["round_trips"] for s in strategies)
    wins = sum((s["win_rate"] or 0.0) * s["round_trips"] for s in strategies)
    ml_short = [
        s["shortest_ml_round_trip_minutes"]
        for s in strategies
        if s["shortest_ml_round_trip_minutes"] is not None
    ]
    random_means = [r[which]["random_entries"].get("mean", 0.0) for r in records]
    return {
        "windows": len(records),
        "total_return": _chain([s["total_return"] for s in strategies]),
        "max_drawdown": max_drawdown(joined),
        "entries": sum(s["entries"] for s in strategies),
        "round_trips": trips,
        "win_rate": wins / trips if trips else None,
        "fees_pct_of_capital_sum": float(sum(fees)),
        "shortest_ml_round_trip_minutes": min(ml_short, default=None),
        "buy_and_hold_return": _chain([r[which]["buy_and_hold_return"] for r in records]),
        "vol_baseline_return": _chain([r[which]["vol_baseline_return"] for r in records]),
        "cash_return": 0.0,
        "random_entries_mean_return": _chain(random_means),
        "windows_beating_buy_and_hold": sum(
            1
            for r in records
            if r[which]["strategy"]["total_return"] > r[which]["buy_and_hold_return"]
        ),
        "windows_losing_money": sum(1 for s in strategies if s["total_return"] < 0),
    }


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
) -> dict[str, Any]:
    """Run every window; write walkforward.json and report.html under `out_dir`.

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
    records = [
        run_window(candles, w, settings, out_dir / "models", seeds=seeds, log=say, grid=grid)
        for w in windows
    ]
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
    (out_dir / "report.html").write_text(_html(safe, _plot(records)))
    return safe


def _plot(records: Sequence[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    offset = 0
    levels = {"swept": 1.0, "configured": 1.0, "buy_and_hold": 1.0}
    for record in records:
        curves = record["_curves"]
        n = len(curves["swept"])
        x = np.arange(offset, offset + n)
        for name, style, colour in (
            ("swept", "-", "tab:blue"),
            ("configured", ":", "tab:orange"),
            ("buy_and_hold", "--", "tab:green"),
        ):
            values = levels[name] * np.asarray(curves[name], dtype=np.float64)
            label = name.replace("_", " ") if record is records[0] else None
            ax.plot(x, values, style, color=colour, lw=1.0, label=label)
            levels[name] = float(values[-1]) if len(values) else levels[name]
        ax.axvline(offset, color="grey", lw=0.4)
        offset += n
    ax.axhline(1.0, color="grey", lw=0.6)
    ax.set_xlabel("test bars, windows joined (grey lines: a new window)")
    ax.set_ylabel("equity / initial")
    ax.set_title("Walk-forward equity on test windows only, after fees")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def _pct(value: Any) -> str:
    return "n/a" if value is None else f"{value * 100:+.3f}%"


def _html(report: dict[str, Any], png: bytes) -> str:
    rows = []
    for w in report["windows"]:
        swept, configured = w["swept"], w["configured"]
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(v))}</td>"
                for v in (
                    w["window"],
                    ", ".join(m for m in w["markets"]),
                    f"{w['test_start'][:16]} .. {w['test_end'][:16]}",
                    _pct(configured["strategy"]["total_return"]),
                    configured["strategy"]["entries"],
                    _pct(swept["strategy"]["total_return"]),
                    swept["strategy"]["entries"],
                    json.dumps(w["sweep"]["chosen"]),
                    _pct(swept["strategy"]["max_drawdown"]),
                    _pct(swept["buy_and_hold_return"]),
                    _pct(swept["vol_baseline_return"]),
                    _pct(swept["random_entries"].get("mean")),
                )
            )
            + "</tr>"
        )
    totals_rows = []
    for name, total in report["total"].items():
        totals_rows.append(
            f"<tr><th>{html.escape(name)}</th><td>{_pct(total['total_return'])}</td>"
            f"<td>{_pct(total['max_drawdown'])}</td><td>{total['entries']}</td>"
            f"<td>{total['round_trips']}</td><td>{total['fees_pct_of_capital_sum']:.3f}%</td>"
            f"<td>{_pct(total['buy_and_hold_return'])}</td>"
            f"<td>{_pct(total['vol_baseline_return'])}</td>"
            f"<td>{_pct(total['random_entries_mean_return'])}</td>"
            f"<td>{total['windows_beating_buy_and_hold']} / {total['windows']}</td></tr>"
        )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in report["notes"])
    trades = [(w["window"], t) for w in report["windows"] for t in w["swept"]["strategy"]["trades"]]
    trade_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                number,
                t["market"],
                t["opened_at"][:16],
                t["closed_at"][:16],
                t["minutes"],
                t["exit_reason"],
                _pct(t["return"]),
            )
        )
        + "</tr>"
        for number, t in trades[:MAX_TRADE_ROWS]
    )
    more = len(trades) - MAX_TRADE_ROWS
    trades_note = f"<p>{more} more in walkforward.json.</p>" if more > 0 else ""
    image = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Walk-forward</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }}
th {{ background: #f4f4f4; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>Walk-forward: {report["train_days"]} training days, {report["test_days"]} test days,
step {report["step_days"]}</h1>
<p>Files: {html.escape(", ".join(report["files"]))}.</p>
<h2>Total (test windows chained)</h2>
<table><tr><th></th><th>return</th><th>max drawdown</th><th>entries</th><th>round trips</th>
<th>fees (% of capital)</th><th>buy and hold</th><th>lowest volatility</th>
<th>random entries (mean)</th><th>windows beating buy and hold</th></tr>
{"".join(totals_rows)}</table>
<img alt="equity" src="data:image/png;base64,{image}">
<h2>Windows</h2>
<table><tr><th>#</th><th>markets</th><th>test</th><th>configured</th><th>entries</th>
<th>swept</th><th>entries</th><th>swept parameters</th><th>max drawdown</th>
<th>buy and hold</th><th>lowest volatility</th><th>random (mean)</th></tr>
{"".join(rows)}</table>
<h2>Trades (swept parameters)</h2>
<table><tr><th>window</th><th>market</th><th>opened</th><th>closed</th><th>minutes</th>
<th>exit</th><th>return after fees</th></tr>{trade_rows}</table>{trades_note}
<h2>Notes</h2><ul>{notes}</ul>
</body></html>
"""
