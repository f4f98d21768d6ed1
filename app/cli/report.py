"""`lxa report reviewers`: what each LLM check's verdicts were worth, from the journal."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from app.cli.common import load, out, print_json_line, utc

report_app = typer.Typer(help="Reports over the journal's runs.", no_args_is_help=True)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:+.3f}%"


def _interval(figures: dict[str, Any]) -> str:
    ci = figures.get("ci95")
    mean = _pct(figures.get("mean"))
    if not ci:
        return f"{mean} (n={figures['n']})"
    return f"{mean} [{_pct(ci[0])}, {_pct(ci[1])}] (n={figures['n']})"


@report_app.command("reviewers")
def reviewers(
    since: Annotated[datetime | None, typer.Option(help="Runs from this UTC time on.")] = None,
    session: Annotated[str | None, typer.Option(help="One session's runs only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the ledger as JSON.")] = False,
    rows: Annotated[bool, typer.Option("--rows", help="With --json: every proposal.")] = False,
) -> None:
    """The veto ledger: per reviewer, how often it vetoed and what its vetoes were worth.

    For every ML proposal a reviewer saw, the return over the label horizon (from the closes
    the runs journaled, net of the round-trip fee) of following it: a reviewer earns its place
    when what it vetoed did worse than what it let through.
    """
    from app.journal_views import read_reviewer_ledger

    ledger = read_reviewer_ledger(load(), since=utc(since), session_id=session)
    if as_json:
        if not rows:
            ledger.pop("rows")
        print_json_line(ledger)
        return
    out.print(
        f"{ledger['proposals']} proposal(s) reviewed, {ledger['with_outcome']} with an outcome "
        f"({ledger['horizon_minutes']} min, net of {ledger['round_trip_fee'] * 100:.2f}% fees)"
    )
    for name, figures in ledger["reviewers"].items():
        rate = figures["veto_rate"]
        out.print(
            f"{name}: asked {figures['asked']}, vetoed {figures['vetoed']}"
            + (f" ({rate * 100:.1f}%)" if rate is not None else "")
        )
        out.print(f"  vetoed, net:  {_interval(figures['vetoed_net_return'])}")
        out.print(f"  passed, net:  {_interval(figures['passed_net_return'])}")
        out.print(f"  passed - vetoed: {_pct(figures['passed_minus_vetoed'])}")
    for outcome, count in ledger["agreement"].items():
        out.print(f"  {count:6d}  {outcome}")
    costs = ledger["costs"]
    out.print(f"LLM calls over {costs['decisions_with_calls']} decision(s), per node:")
    for label, figures in costs["nodes"].items():
        out.print(_cost_line(label, figures))
    out.print("per KST day:")
    for label, figures in costs["days"].items():
        out.print(_cost_line(label, figures))


def _cost_line(label: str, figures: dict[str, Any]) -> str:
    p50, p99 = figures["latency_p50_ms"], figures["latency_p99_ms"]
    latency = ""
    if p50 is not None and p99 is not None:
        latency = (
            f"  p50 {p50:.0f} ms, p99 {p99:.0f} ms ({figures['p99_share_of_bar']:.1%} of a bar)"
        )
    return (
        f"  {label:<13} calls {figures['calls']:>6}  cached {figures['cache_hits']:>6}  "
        f"tokens {figures['tokens']:>9}  ${figures['cost_usd']:.4f}" + latency
    )
