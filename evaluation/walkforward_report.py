"""The walk-forward's windows, totals and report (the runs themselves: app/walkforward.py)."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml.evaluate import max_drawdown

STRETCH_GAP = pd.Timedelta(days=1)
MIN_TEST_SHARE = 0.5  # a last window shorter than half the test days is dropped
MAX_TRADE_ROWS = 500  # in report.html; walkforward.json has them all


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


def plot_equity(records: Sequence[dict[str, Any]]) -> bytes:
    """The test windows' equity curves joined (swept, configured, buy-and-hold): a PNG."""
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


def render_html(report: dict[str, Any], png: bytes) -> str:
    """The self-contained report.html of a walk-forward."""
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
