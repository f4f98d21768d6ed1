"""The kill switch: `halt`, `resume` and `status` over the journal's trading state."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.common import fail, load
from app.cli.tables import print_trading_state


def _write_trading_state(state: str, reason: str, *, flatten: bool, as_json: bool) -> None:
    from app.journal_views import write_trading_control

    if not reason.strip():
        fail("--reason must not be empty", 2)
    row = write_trading_control(load(), state, reason, flatten=flatten, by="cli")
    print_trading_state(row, as_json=as_json)


def halt(
    flatten: Annotated[
        bool, typer.Option("--flatten", help="Also sell every position at market.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why trading stops (recorded).")] = "manual halt",
    as_json: Annotated[bool, typer.Option("--json", help="Print the new state as JSON.")] = False,
) -> None:
    """Halt trading: the engine sends no order but cancels (and the flattening, if asked)."""
    _write_trading_state("halted", reason, flatten=flatten, as_json=as_json)


def resume(
    reason: Annotated[str, typer.Option(help="Why trading resumes (recorded).")] = "manual resume",
    as_json: Annotated[bool, typer.Option("--json", help="Print the new state as JSON.")] = False,
) -> None:
    """Resume trading (exits only while today's daily loss limit is breached)."""
    _write_trading_state("active", reason, flatten=False, as_json=as_json)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Show the trading state (set and effective), the monthly loss cap and the model status."""
    from app.journal_views import read_trading_view

    print_trading_state(read_trading_view(load()), as_json=as_json)


def reconcile(
    adopt: Annotated[
        bool,
        typer.Option(
            "--adopt",
            help="Take Upbit's balances the journal's fills cannot explain as the journal's "
            "(each recorded as an adoption fill at Upbit's average buy price).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare Upbit's balances and orders with the journal; never sends an order.

    Settles fills the journal lacks, rebuilds positions from fills, and names what is left.
    Exits 1 while a difference remains (then `lxa run --live` refuses to start).
    """
    import asyncio

    from app.cli.common import print_json_line
    from app.wiring import LiveTradingRefused, reconcile_upbit

    try:
        report = asyncio.run(reconcile_upbit(load(), adopt=adopt))
    except LiveTradingRefused as exc:
        fail(str(exc), 1)
    if as_json:
        print_json_line(report.as_dict())
    else:
        typer.echo(report.summary())
    if not report.ok:
        raise typer.Exit(1)
