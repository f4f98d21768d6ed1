"""The backtest report: definitions of every figure, an honest reading, the chart, the HTML."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DEFINITIONS: dict[str, str] = {
    "auc_buy": "ROC AUC of the model's P(buy) against the buy label (forward return over the "
    "model's label horizon above its threshold), over every real (not gap-filled), warmed-up, "
    "labelled bar of every market inside the traded span. 0.5 is chance.",
    "baseline_auc_vol60": "ROC AUC of the 60-minute volatility feature alone against the same "
    "buy label on the same rows: what a model-free score reaches.",
    "auc_sell": "ROC AUC of P(sell) against the sell label (forward return below minus the "
    "threshold), same rows.",
    "n_trades": "Round trips closed: a market's position going from flat to held and back to "
    "flat, counted from the journal's fills (graph, stop-loss/take-profit and watchdog sells).",
    "win_rate": "Share of closed round trips whose proceeds after fees exceeded their cost "
    "after fees (null without round trips).",
    "total_return": "Final equity / initial capital - 1 of the paper account, after fees and "
    "the paper exchange's slippage; open positions marked at the last closes.",
    "buy_and_hold_return": "The initial capital split equally over the markets at the close of "
    "the first traded bar, the 0.05% entry fee paid, marked at the last closes (no exit fee).",
    "vol_baseline_return": "Volatility-only baseline: at the first traded bar and every 60 bars "
    "after, hold the single market with the LOWEST 60-minute volatility (all capital), paying "
    "the 0.05% fee on every sale and purchase when the choice changes; marked at closes; no "
    "slippage and no minimum order (so it is slightly favoured).",
    "max_drawdown": "Largest fall of the equity curve (initial capital, then the equity after "
    "every bar) from its running peak, as a positive fraction of the peak.",
    "sharpe": "Mean / sample standard deviation of the per-bar (1-minute) returns of that "
    "equity curve, annualised by sqrt(525600) (minutes in a 365-day year), risk-free rate 0. "
    "Null when the equity never moved.",
    "fees_paid": "Sum of the fees of every fill in the backtest's journal, KRW.",
    "pnl_krw": "Per market: sells minus buys after fees, plus any coins still held at the last "
    "close (realised plus unrealised), KRW.",
}


def plot_equity(
    equity: pd.Series,
    initial: float,
    fills: Sequence[Mapping[str, Any]],
    hold_curve: pd.Series,
    vol_curve: pd.Series,
    path: Path,
) -> bytes:
    """Draw the strategy's equity (with its fills), buy-and-hold and the baseline; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    strategy = equity / initial
    fig, ax = plt.subplots(figsize=(11, 4.8), dpi=110)
    ax.plot(strategy.index, strategy.to_numpy(), label="strategy (LLM checks off)", lw=1.3)
    ax.plot(hold_curve.index, hold_curve.to_numpy(), label="buy and hold (equal split)", lw=1.0)
    ax.plot(
        vol_curve.index, vol_curve.to_numpy(), label="lowest-volatility baseline", lw=0.9, ls="--"
    )
    for side, marker, colour, label in (
        ("bid", "^", "tab:green", "buy fill"),
        ("ask", "v", "tab:red", "sell fill"),
    ):
        times = [pd.Timestamp(f["ts"]) for f in fills if f["side"] == side]
        if times:
            when = pd.DatetimeIndex(times).tz_convert("UTC")
            at = strategy.index.searchsorted(when, side="right") - 1
            at = np.clip(at, 0, len(strategy) - 1)
            ax.scatter(
                strategy.index[at], strategy.to_numpy()[at], marker=marker, s=22, c=colour,
                label=label, zorder=3,
            )  # fmt: skip
    ax.axhline(1.0, color="grey", lw=0.6)
    ax.set_ylabel("equity / initial")
    ax.set_xlabel("UTC")
    ax.set_title("Backtest equity, normalised to 1.0")
    ax.legend(loc="best", fontsize=8)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    data = buffer.getvalue()
    path.write_bytes(data)
    return data


def fmt(value: Any, kind: str = "") -> str:
    """A number for the report: percentages, fractions and plain figures."""
    if value is None:
        return "n/a"
    if kind == "pct" and isinstance(value, int | float):
        return f"{value * 100:+.2f}%"
    if kind == "frac" and isinstance(value, int | float):
        return f"{value * 100:.1f}%"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return html.escape(str(value))


def reading(metrics: dict[str, Any]) -> str:
    """An honest one-paragraph reading of the numbers."""
    parts = []
    auc, base = metrics["auc_buy"], metrics["baseline_auc_vol60"]
    if auc is None:
        parts.append("The buy AUC is undefined here (one label class only).")
    else:
        edge = "above" if auc > 0.5 else "not above"
        parts.append(
            f"On {metrics['scored_bars']} unseen bars the model ranks buy opportunities with "
            f"AUC {auc:.3f}, {edge} chance (0.5)"
        )
        if base is not None:
            better = "better than" if auc > base else "no better than"
            parts[-1] += f" and {better} 60-minute volatility alone ({base:.3f})."
        else:
            parts[-1] += "."
    total, hold, vol = (
        metrics["total_return"],
        metrics["buy_and_hold_return"],
        metrics["vol_baseline_return"],
    )
    verdict = "beat" if total > max(hold, vol) else "did not beat"
    parts.append(
        f"Trading it with the LLM checks off returned {total * 100:+.2f}% after "
        f"{metrics['fees_paid']:,.0f} KRW of fees over {metrics['bars']} one-minute bars, and "
        f"{verdict} buy-and-hold ({hold * 100:+.2f}%) and the lowest-volatility baseline "
        f"({vol * 100:+.2f}%)."
    )
    policy = metrics.get("policy") or {}
    holds = policy.get("holds_by_rule") or {}
    if holds:
        top, count = next(iter(holds.items()))
        parts.append(
            f"The policy held on {sum(holds.values())} bars, most often for '{top}' ({count})."
        )
    parts.append(
        f"It closed {metrics['n_trades']} round trips; a few days of one-minute bars are a "
        "short sample, so a good AUC here is a ranking signal, not proof of profit, and the "
        "returns mostly reflect how few trades cleared the entry threshold and fees."
    )
    return " ".join(parts)


def render_html(metrics: dict[str, Any], png: bytes) -> str:
    """The self-contained report.html of a backtest."""
    headline = [
        ("auc_buy", metrics["auc_buy"], ""),
        ("baseline_auc_vol60", metrics["baseline_auc_vol60"], ""),
        ("auc_sell", metrics["auc_sell"], ""),
        ("n_trades", metrics["n_trades"], ""),
        ("win_rate", metrics["win_rate"], "frac"),
        ("total_return", metrics["total_return"], "pct"),
        ("buy_and_hold_return", metrics["buy_and_hold_return"], "pct"),
        ("vol_baseline_return", metrics["vol_baseline_return"], "pct"),
        ("max_drawdown", metrics["max_drawdown"], "frac"),
        ("sharpe", metrics["sharpe"], ""),
        ("fees_paid", metrics["fees_paid"], ""),
        ("final_equity", metrics["final_equity"], ""),
    ]
    head_rows = "\n".join(
        f"<tr><th>{name}</th><td>{fmt(value, kind)}</td></tr>" for name, value, kind in headline
    )
    columns = [
        ("auc_buy", ""),
        ("baseline_auc_vol60", ""),
        ("auc_sell", ""),
        ("n_trades", ""),
        ("win_rate", "frac"),
        ("pnl_krw", ""),
        ("fees_paid", ""),
        ("buy_and_hold_return", "pct"),
    ]
    market_rows = "\n".join(
        "<tr><th>"
        + html.escape(market)
        + "</th>"
        + "".join(f"<td>{fmt(row[c], kind)}</td>" for c, kind in columns)
        + "</tr>"
        for market, row in metrics["per_market"].items()
    )
    definitions = "\n".join(
        f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>"
        for name, text in DEFINITIONS.items()
    )
    notes = "\n".join(f"<li>{html.escape(note)}</li>" for note in metrics["notes"])
    policy = metrics.get("policy") or {}
    policy_rows = "\n".join(
        f"<tr><th>{html.escape(str(name))}</th><td>{html.escape(str(value))}</td></tr>"
        for name, value in (
            ("holds by rule", policy.get("holds_by_rule")),
            ("exits", policy.get("exits")),
            ("shortest ML round trip (min)", policy.get("shortest_ml_round_trip_minutes")),
            ("fees, % of capital", fmt(policy.get("fees_pct_of_capital"))),
            ("parameters", policy.get("params")),
            ("model", (metrics.get("model_status") or {}).get("verdict")),
            ("fast simulator", {k: v for k, v in (metrics.get("fast_path") or {}).items()}),
        )
    )
    trade_rows = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(t[k]))}</td>"
            for k in ("market", "opened_at", "closed_at", "minutes", "exit_reason")
        )
        + f"<td>{fmt(t['return'], 'pct')}</td><td>{fmt(t['pnl_krw'])}</td></tr>"
        for t in metrics.get("trades", [])
    )
    image = base64.b64encode(png).decode("ascii")
    candles = metrics["candles"]
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Backtest {html.escape(metrics["model_id"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }}
th {{ background: #f4f4f4; text-align: left; }}
dt {{ font-weight: 600; margin-top: 0.5em; }}
img {{ max-width: 100%; }}
.reading {{ background: #f8f8f0; padding: 0.8em 1em; border-left: 4px solid #bb9; }}
</style></head><body>
<h1>Backtest: {html.escape(metrics["model_id"])}</h1>
<p>Candles: {html.escape(", ".join(candles["files"]))} ({html.escape(candles["first_ts"])} ..
{html.escape(candles["last_ts"])}); traded {html.escape(metrics["traded_span"]["first_ts"])} ..
{html.escape(metrics["traded_span"]["last_ts"])} ({metrics["bars"]} bars after
{metrics["warmup_bars"]} warm-up bars); markets {html.escape(", ".join(metrics["markets"]))}.<br>
Model trained on: {html.escape(metrics["model_trained_on"])}.<br>
Reviewers: {html.escape(metrics["reviewers"])}; sizer: {html.escape(metrics["sizer"])}.
Generated {generated}.</p>
<h2>Reading</h2>
<p class="reading">{html.escape(reading(metrics))}</p>
<h2>Headline</h2>
<table>{head_rows}</table>
<h2>Equity</h2>
<img alt="equity curve" src="data:image/png;base64,{image}">
<h2>Policy</h2>
<table>{policy_rows}</table>
<h2>Trades</h2>
<table><tr><th>market</th><th>opened</th><th>closed</th><th>minutes</th><th>exit</th>
<th>return</th><th>P&amp;L</th></tr>
{trade_rows}</table>
<h2>Per market</h2>
<table><tr><th>market</th>{"".join(f"<th>{c}</th>" for c, _ in columns)}</tr>
{market_rows}</table>
<h2>Definitions</h2>
<dl>{definitions}</dl>
<h2>Notes</h2>
<ul>{notes}</ul>
</body></html>
"""
