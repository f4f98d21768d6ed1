"""What the commands print for people: summaries, metrics and states as rich tables and lines."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table

from app.cli.common import out, print_json_line

SUMMARY_KEYS = (
    "model_id",
    "model_trained_on",
    "replayed",
    "runs",
    "trades",
    "buys",
    "sells",
    "protection_exits",
    "emergency_exits",
    "fees",
    "initial_equity",
    "final_equity",
    "buy_and_hold_equity",
    "mean_cycle_ms",
    "elapsed_s",
    "journal",
)
BACKTEST_KEYS = (
    "traded_span",
    "bars",
    "auc_buy",
    "baseline_auc_vol60",
    "auc_sell",
    "n_trades",
    "win_rate",
    "total_return",
    "buy_and_hold_return",
    "vol_baseline_return",
    "max_drawdown",
    "sharpe",
    "fees_paid",
)


def print_summary(summary: dict[str, object]) -> None:
    """Print a session summary as a table, with the unproven-model warning under it."""
    table = Table(title=f"session {summary['session_id']}", show_header=False)
    for key in SUMMARY_KEYS:
        table.add_row(key, str(summary[key]))
    holds = summary["holds"]
    assert isinstance(holds, dict)
    table.add_row("holds", ", ".join(f"{k}: {v}" for k, v in sorted(holds.items())) or "none")
    notes = summary.get("notes") or []
    assert isinstance(notes, list)
    for note in notes:
        table.add_row("note", str(note))
    model_status = summary.get("model_status") or {}
    assert isinstance(model_status, dict)
    if model_status:
        proven = "proven" if model_status.get("proven") else "UNPROVEN"
        table.add_row("model_status", f"{proven}: {model_status.get('verdict')}")
    out.print(table)
    warning = summary.get("model_warning")
    if warning:
        line = f"WARNING: {warning}"
        out.print(line, style="bold yellow", markup=False, highlight=False, soft_wrap=True)


def emit_summary(summary: dict[str, object], as_json: bool) -> None:
    """Print a session summary: one JSON line, or the readable table."""
    if as_json:
        print_json_line(summary)
    else:
        print_summary(summary)


def print_train_metrics(metrics: dict[str, object]) -> None:
    """Print a trained set's held-out AUCs, its walk-forward folds, then every metric as JSON."""
    folds = metrics.get("walk_forward")
    held_out = metrics.get("held_out")
    if isinstance(held_out, dict):
        table = Table(title="held-out calibration window (unseen by base models and stacker)")
        table.add_column("model")
        table.add_column("auc_buy")
        table.add_column("auc_sell")
        for name in ("lgb", "hybrid", "stack_raw", "stack_calibrated"):
            table.add_row(
                name, str(held_out.get(f"auc_buy_{name}")), str(held_out.get(f"auc_sell_{name}"))
            )
        table.add_row("vol60 baseline", str(held_out.get("baseline_auc_vol60")), "")
        out.print(table)
    if isinstance(folds, list):
        table = Table(title="walk-forward (LightGBM buy, expanding window, purged)")
        for column in ("fold", "test", "n_train", "n_test", "auc_buy", "baseline", "diff"):
            table.add_column(column)
        for fold in folds:
            assert isinstance(fold, dict)
            table.add_row(
                str(fold["fold"]),
                f"{str(fold['test_start'])[:16]} .. {str(fold['test_end'])[:16]}",
                str(fold["n_train"]),
                str(fold["n_test"]),
                str(fold.get("auc_buy")),
                str(fold.get("baseline_auc_vol60")),
                str(fold.get("auc_buy_minus_baseline", fold.get("skipped"))),
            )
        out.print(table)
    out.print_json(json.dumps(metrics))


def print_policy_evaluation(evaluation: dict[str, Any]) -> None:
    """Print the policy's hold-out result against its baselines, and whether it is proven."""
    strategy = evaluation.get("strategy") or {}
    if not strategy:
        return
    window = evaluation.get("window") or {}
    table = Table(
        title=f"policy on its hold-out window {str(window.get('first_ts'))[:16]} .. "
        f"{str(window.get('last_ts'))[:16]} (no model, calibration or parameter saw it)"
    )
    table.add_column("")
    table.add_column("return")
    table.add_column("max drawdown")
    table.add_column("entries")
    table.add_row(
        "policy, after fees",
        f"{strategy['total_return'] * 100:+.3f}%",
        f"{strategy['max_drawdown'] * 100:.3f}%",
        str(strategy["entries"]),
    )
    table.add_row("buy and hold", f"{evaluation['buy_and_hold_return'] * 100:+.3f}%", "", "")
    table.add_row("lowest-volatility", f"{evaluation['vol_baseline_return'] * 100:+.3f}%", "", "")
    table.add_row("cash", "+0.000%", "", "0")
    rand = evaluation.get("random_entries") or {}
    if rand.get("entries"):
        table.add_row(
            f"random entries ({rand['seeds']} seeds)",
            f"{rand['mean'] * 100:+.3f}% (sd {rand['std'] * 100:.3f})",
            "",
            str(rand["entries"]),
        )
    out.print(table)
    style = "green" if evaluation.get("proven") else "yellow"
    label = "proven" if evaluation.get("proven") else "UNPROVEN"
    out.print(f"[{style}]{label}[/{style}]: {evaluation.get('verdict')}", highlight=False)


def print_backtest(metrics: dict[str, Any], report: Path) -> None:
    """Print a backtest's headline metrics and where its report is."""
    table = Table(title=f"backtest {metrics['model_id']}", show_header=False)
    for key in BACKTEST_KEYS:
        table.add_row(key, str(metrics[key]))
    out.print(table)
    out.print(f"report: {report / 'report.html'}", markup=False, highlight=False)


def print_walkforward(report: dict[str, Any], report_dir: Path) -> None:
    """Print the walk-forward totals of each strategy against its baselines."""
    table = Table(title=f"walk-forward totals ({len(report['windows'])} test windows, after fees)")
    for column in ("", "return", "max dd", "entries", "fees %", "buy&hold", "low-vol", "random"):
        table.add_column(column)
    for name, total in report["total"].items():
        table.add_row(
            name,
            f"{total['total_return'] * 100:+.3f}%",
            f"{total['max_drawdown'] * 100:.3f}%",
            str(total["entries"]),
            f"{total['fees_pct_of_capital_sum']:.3f}",
            f"{total['buy_and_hold_return'] * 100:+.3f}%",
            f"{total['vol_baseline_return'] * 100:+.3f}%",
            f"{total['random_entries_mean_return'] * 100:+.3f}%",
        )
    out.print(table)
    out.print(f"report: {report_dir / 'report.html'}", markup=False, highlight=False)


def print_trading_state(row: Mapping[str, object], *, as_json: bool) -> None:
    """Print the operator's trading state, and with a full view the effective one and why."""
    if as_json:
        from store.journal import json_default

        print_json_line(row, default=json_default)
        return
    updated_at = row.get("updated_at")
    out.print(f"state: {row['state']}", highlight=False)
    out.print(f"reason: {row['reason'] or '-'}", markup=False, highlight=False)
    out.print(f"flatten requested: {'yes' if row['flatten_requested'] else 'no'}", highlight=False)
    if isinstance(updated_at, datetime):
        stamp = updated_at.isoformat(timespec="seconds")
        out.print(f"updated: {stamp} by {row['updated_by']}", markup=False, highlight=False)
    else:
        out.print("updated: never (the default)", highlight=False)
    if "effective_state" not in row:  # halt / resume print the operator's state only
        return
    from app.status_text import model_lines, model_warning, monthly_lines

    found_monthly, found_model = row.get("monthly"), row.get("model_status")
    monthly = found_monthly if isinstance(found_monthly, dict) else None
    status = found_model if isinstance(found_model, dict) else None
    why = row["effective_reason"]
    if monthly and why and why == monthly.get("reason"):
        why = "the monthly loss cap, below"
    effective = f"effective: {row['effective_state']}" + (f" ({why})" if why else "")
    entries = "allowed" if row["entries_allowed"] else "refused"
    out.print(effective, markup=False, highlight=False, soft_wrap=True)
    out.print(f"entries: {entries}", markup=False, highlight=False)
    style = "bold red" if monthly and monthly.get("breached") else None
    for line in monthly_lines(monthly):
        out.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
    style = "yellow" if model_warning(status) else None
    for line in model_lines(status):
        out.print(line, style=style, markup=False, highlight=False, soft_wrap=True)
