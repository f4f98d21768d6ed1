"""`lxa models` (the versions, the champion, promote, rollback) and `lxa retrain`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import err, exits_on, load, out, print_json_line

models_app = typer.Typer(
    help="Model versions: the champion that trades, the candidates and why they wait.",
    invoke_without_command=True,
)


def _pct(value: Any) -> str:
    return f"{value * 100:+.2f}%" if isinstance(value, int | float) else "-"


def _judged_line(judged: dict[str, Any]) -> str:
    mine, theirs = judged.get("challenger") or {}, judged.get("champion") or {}
    if not mine:
        return f"    judged: {judged.get('reason')}"
    return (
        f"    judged against {judged.get('champion_id')}: {_pct(mine.get('total_return'))} "
        f"({mine.get('entries')} entries) vs {_pct(theirs.get('total_return'))} "
        f"({theirs.get('entries')} entries) on {(mine.get('window') or {}).get('first_ts')} .. "
        f"{(mine.get('window') or {}).get('last_ts')}"
    )


def print_models(listing: dict[str, Any]) -> None:
    """The versions newest first, with the champion marked."""
    out.print(f"models: {listing['models_dir']}", markup=False, highlight=False, soft_wrap=True)
    out.print(
        f"champion: {listing['champion'] or '-'}", markup=False, highlight=False, soft_wrap=True
    )
    if listing.get("pinned"):
        out.print(
            f"pinned by LXA_MODEL_DIR: {listing['pinned']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    retrain = listing.get("retrain") or {}
    if retrain:
        out.print(
            f"last retrain: {retrain.get('last_run_kst_date')} (KST) {retrain.get('status')}"
            + (f": {retrain.get('error')}" if retrain.get("error") else ""),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    for version in listing["versions"]:
        mark = "*" if version["status"] == "champion" else " "
        window = version["training_window"]
        out.print(
            f"{mark} {version['model_id']}  {version['status']}  {version['kind']}  "
            f"trained {window['first_ts']} .. {window['last_ts']}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        if version.get("reason"):
            out.print(
                f"    reason: {version['reason']}", markup=False, highlight=False, soft_wrap=True
            )
        weights = version.get("weights")
        summary = (
            "unweighted"
            if not weights
            else f"{weights.get('rule')} (min {weights.get('min')}, max {weights.get('max')}, "
            f"{weights.get('up_weighted')} up, {weights.get('down_weighted')} down)"
        )
        out.print(f"    weights: {summary}", markup=False, highlight=False, soft_wrap=True)
        evaluation = version.get("evaluation")
        if evaluation:
            out.print(
                f"    own hold-out: {_pct(evaluation.get('total_return'))} in "
                f"{evaluation.get('entries')} entries, buy-and-hold "
                f"{_pct(evaluation.get('buy_and_hold_return'))}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        if version.get("judged"):
            out.print(
                _judged_line(version["judged"]), markup=False, highlight=False, soft_wrap=True
            )


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the listing as JSON.")] = False,
) -> None:
    """List the versions, the champion, each one's training window, weights and evaluation."""
    if ctx.invoked_subcommand is not None:
        return
    from app.models import list_models

    with exits_on(ValueError, code=2):
        listing = list_models(load())
    if as_json:
        print_json_line(listing)
        return
    print_models(listing)


def _print_switch(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json_line(result)
        return
    out.print(
        f"champion: {result['model_id']} (was {result.get('previous') or '-'}); "
        f"{'journaled' if result['journaled'] else 'no journal to record it in'}; the running "
        "engine takes it up at its next bar",
        markup=False,
        highlight=False,
    )


@models_app.command("promote")
def promote(
    model_id: Annotated[str, typer.Argument(help="The version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make a version the champion by hand (the current one is retired)."""
    from app.models import promote_by_hand

    with exits_on(ValueError, code=2):
        result = promote_by_hand(load(), model_id, reason=reason)
    _print_switch(result, as_json)


@models_app.command("rollback")
def rollback(
    model_id: Annotated[
        str | None, typer.Argument(help="The version to return to (default: the previous one).")
    ] = None,
    reason: Annotated[str, typer.Option(help="Why, for the record.")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Return to the previous champion (or to ID); the current one is retired."""
    from app.models import rollback_by_hand

    with exits_on(ValueError, code=2):
        result = rollback_by_hand(load(), model_id, reason=reason)
    _print_switch(result, as_json)


def retrain(
    candles: Annotated[
        list[Path] | None,
        typer.Option(help="Base candle file(s) or folder(s) (default LXA_RETRAIN_CANDLES)."),
    ] = None,
    full: Annotated[
        bool, typer.Option("--full", help="Train the full set (default: LXA_RETRAIN_QUICK).")
    ] = False,
    weights: Annotated[
        bool,
        typer.Option(
            "--weights/--no-weights",
            help="Weight rows by the reviewers' record and recency in the journal (LXA_RETRAIN_*).",
        ),
    ] = True,
    in_process: Annotated[
        bool, typer.Option("--in-process", help="Train here, not in a separate process.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a challenger on the base candles plus what was recorded since, and promote it only
    if its policy beats the champion's after fees on the newest window neither trained on."""
    from app.retrain import RetrainFailed, job_from, retrain_in_child, run_retrain

    settings = load()
    with exits_on(ValueError, FileNotFoundError, code=2):
        job = job_from(
            settings, candles or (), quick=settings.retrain_quick and not full, weighted=weights
        )
    err.print(f"retraining on {', '.join(map(str, job.candles))}", markup=False)
    with exits_on(RetrainFailed, ValueError, code=1):
        result = run_retrain(job, log=err.print) if in_process else retrain_in_child(job)
    if as_json:
        print_json_line(result)
        return
    verdict = "promoted: now the champion" if result["promoted"] else "kept as a candidate"
    out.print(f"{result['challenger']}: {verdict}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"  {result['reason']}", markup=False, highlight=False, soft_wrap=True)
