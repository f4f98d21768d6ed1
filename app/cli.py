"""The `lxa` command line."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from app.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    name="lxa",
    help=(
        "AutoTrader-LXA: an Upbit KRW trader. An ML signal proposes, two reviewers (Groq, "
        "Ollama; rule-based stand-ins until configured) must agree, sizing is clamped by hard "
        "limits. Paper trading is the default."
    ),
    no_args_is_help=True,
    add_completion=False,
)
err = Console(stderr=True)
out = Console()


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _progress(total_label: str, quiet: bool) -> Progress:
    return Progress(
        TextColumn(f"[bold]{total_label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )


def _print_summary(summary: dict[str, object]) -> None:
    table = Table(title=f"session {summary['session_id']}", show_header=False)
    for key in (
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
    ):
        table.add_row(key, str(summary[key]))
    holds = summary["holds"]
    assert isinstance(holds, dict)
    table.add_row("holds", ", ".join(f"{k}: {v}" for k, v in sorted(holds.items())) or "none")
    notes = summary.get("notes") or []
    assert isinstance(notes, list)
    for note in notes:
        table.add_row("note", str(note))
    out.print(table)


async def _wait_for_interrupt() -> None:
    """Keep the viewer up until Ctrl-C (interactive terminals only)."""
    if not sys.stdin.isatty():
        return
    err.print("[green]replay finished; the viewer stays up. Press Ctrl-C to stop.[/green]")
    try:
        while True:
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        return


def _run_session(
    settings: Settings,
    *,
    candles: list[Path],
    session_id: str,
    account_path: Path,
    minutes: int | None,
    pace: float,
    serve: bool,
    as_json: bool,
    label: str,
) -> None:
    from app.session import ReplayError, run_replay_session
    from app.wiring import ModelNotFoundError
    from prompts.loader import PromptError

    with _progress(label, quiet=as_json) as progress:
        task = progress.add_task(label, total=None, last="")

        def on_progress(done: int, total: int, result: object) -> None:
            action = getattr(result, "action", "")
            reason = getattr(result, "reason", "")
            progress.update(task, completed=done, total=total, last=f"{action} ({reason})")

        def on_ready(url: str) -> None:
            err.print(f"[green]viewer: {url}[/green]")

        try:
            summary = asyncio.run(
                run_replay_session(
                    settings,
                    candles_paths=candles,
                    session_id=session_id,
                    account_path=account_path,
                    minutes=minutes,
                    pace_seconds=pace,
                    serve=serve,
                    keep_serving=_wait_for_interrupt,
                    on_progress=on_progress,
                    on_ready=on_ready,
                )
            )
        except (ReplayError, PromptError, ModelNotFoundError) as exc:
            err.print(str(exc), style="red", markup=False, highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("stopped")
            raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(json.dumps(summary.to_json(), sort_keys=True) + "\n")
    else:
        _print_summary(summary.to_json())


@app.command()
def demo(
    minutes: Annotated[
        int | None, typer.Option(min=1, help="Graph runs to make (default: every bundled bar).")
    ] = None,
    serve: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Serve the run viewer while replaying.")
    ] = True,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON summary on stdout, nothing else.")
    ] = False,
    resume: Annotated[
        bool, typer.Option(help="Continue the last demo account instead of a fresh one.")
    ] = False,
    pace: Annotated[
        float | None,
        typer.Option(min=0.0, help="Seconds between bars (default 0.05 when serving, else 0)."),
    ] = None,
) -> None:
    """Paper-trade the bundled real Upbit candles (3 days the bundled model never saw)."""
    from app.session import ReplayError, demo_settings
    from app.wiring import BUNDLED_CANDLES

    base = _settings()
    try:
        settings, session_id = demo_settings(base, resume=resume)
    except ReplayError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    session_dir = settings.data_dir / "demo" / session_id
    if not settings.model_dir:
        from app.wiring import BUNDLED_MODELS
        from ml.registry import latest_model_dir

        settings = settings.model_copy(update={"model_dir": latest_model_dir(BUNDLED_MODELS)})
    _run_session(
        settings,
        candles=[BUNDLED_CANDLES],
        session_id=session_id,
        account_path=session_dir / "paper_account.json",
        minutes=minutes,
        pace=pace if pace is not None else (0.05 if serve else 0.0),
        serve=serve,
        as_json=as_json,
        label="demo",
    )


@app.command()
def run(
    candles: Annotated[
        list[Path] | None,
        typer.Option(help="Candle parquet file(s) to trade on (default: the bundled ones)."),
    ] = None,
    minutes: Annotated[int | None, typer.Option(min=1, help="Stop after this many runs.")] = None,
    pace: Annotated[float, typer.Option(min=0.0, help="Seconds between bars.")] = 0.0,
    serve: Annotated[bool, typer.Option("--serve/--no-serve")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Paper-trade on the persistent account in LXA_DATA_DIR, continuing where it stopped.

    The market feed is a replay of candle files; the live Upbit feed is not built yet.
    """
    from app.wiring import BUNDLED_CANDLES

    settings = _settings()
    _run_session(
        settings,
        candles=candles or [BUNDLED_CANDLES],
        session_id="paper",
        account_path=settings.data_dir / "paper_account.json",
        minutes=minutes,
        pace=pace,
        serve=serve,
        as_json=as_json,
        label="paper",
    )


@app.command()
def graph() -> None:
    """Print the trading graph as Mermaid (drawn from the compiled graph)."""
    from graph.builder import graph_mermaid

    out.print(graph_mermaid(), markup=False, highlight=False)


@app.command()
def train(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) in the shared schema.")
    ],
    quick: Annotated[
        bool, typer.Option(help="Train the quick LightGBM buy/sell pair (under a minute).")
    ] = False,
    until: Annotated[
        datetime | None,
        typer.Option(help="Use candles before this UTC time only (keep later ones unseen)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Models directory (default <data_dir>/models).")
    ] = None,
) -> None:
    """Train a model set on real candles and save it to the model registry."""
    from datetime import UTC

    from ml.data import load_candles
    from ml.registry import read_meta
    from ml.train import train_quick

    if not quick:
        err.print(
            "[red]only --quick is available: the LSTM+CNN and stacked models arrive with the "
            "ML pipeline[/red]"
        )
        raise typer.Exit(2)
    settings = _settings()
    frame = load_candles([str(p) for p in candles], markets=settings.markets)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    model_dir = train_quick(
        frame, out_dir or settings.models_dir, until=until, data_files=[str(p) for p in candles]
    )
    meta = read_meta(model_dir)
    out.print(f"saved {meta['model_id']} to {model_dir}")
    out.print_json(json.dumps(meta.get("metrics", {})))


def _utc(value: datetime | None) -> datetime | None:
    from datetime import UTC

    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@app.command()
def backtest(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) the model never trained on.")
    ],
    report: Annotated[
        Path, typer.Option(help="Report directory: metrics.json, equity.png, report.html.")
    ],
    model: Annotated[
        Path | None, typer.Option(help="Model set directory (default: the bundled model).")
    ] = None,
    minutes: Annotated[
        int | None, typer.Option(min=1, help="Trade at most this many bars after warm-up.")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Use candles from this UTC time on (warm-up included).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Use candles before this UTC time only.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics.json on stdout, nothing else.")
    ] = False,
) -> None:
    """Score the model on unseen candles and trade them with the LLM checks off.

    The real engine runs (paper account, fees and minimums, rule-based sizing, stop-loss and
    take-profit, watchdog, risk limits); both reviewers agree with every ML proposal.
    """
    from app.backtest import BacktestError, run_backtest
    from app.wiring import ModelNotFoundError
    from prompts.loader import PromptError

    settings = _settings()
    with _progress("backtest", quiet=as_json) as progress:
        task = progress.add_task("backtest", total=None, last="")

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            metrics = asyncio.run(
                run_backtest(
                    settings,
                    candles_paths=candles,
                    report_dir=report,
                    model_dir=model,
                    minutes=minutes,
                    since=_utc(since),
                    until=_utc(until),
                    on_progress=on_progress,
                )
            )
        except (BacktestError, PromptError, ModelNotFoundError, FileNotFoundError) as exc:
            err.print(str(exc), style="red", markup=False, highlight=False)
            raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(metrics, sort_keys=True) + "\n")
        return
    table = Table(title=f"backtest {metrics['model_id']}", show_header=False)
    for key in (
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
    ):
        table.add_row(key, str(metrics[key]))
    out.print(table)
    out.print(f"report: {report / 'report.html'}", markup=False, highlight=False)


@app.command()
def lookahead(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) in the shared schema.")
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model set directory, or a models directory (its newest set); also checks "
            "P(buy) and P(sell)."
        ),
    ] = None,
    cut_points: Annotated[int, typer.Option(min=1, help="Cut times per market.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed for picking the cut times.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object, nothing else.")
    ] = False,
) -> None:
    """Check features, model probabilities and labels for look-ahead on truncated data.

    Exits 1 when a leak is found, 2 when the inputs cannot be read, 0 otherwise.
    """
    from ml.data import load_candles
    from ml.lookahead import check_lookahead, format_report
    from ml.predict import Predictor
    from ml.registry import META_FILE, latest_model_dir

    try:
        frame = load_candles([str(p) for p in candles])
        predictor = None
        if model is not None:
            model_dir = model if (model / META_FILE).is_file() else latest_model_dir(model)
            if model_dir is None:
                raise FileNotFoundError(f"no model set in {model}")
            predictor = Predictor.load(model_dir)
        result = check_lookahead(frame, predictor=predictor, cut_points=cut_points, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_json(), sort_keys=True) + "\n")
    else:
        for line in format_report(result):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


def _print_trading_state(row: dict[str, object], *, as_json: bool) -> None:
    if as_json:
        from store.journal import json_default

        sys.stdout.write(json.dumps(row, default=json_default, sort_keys=True) + "\n")
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


def _write_trading_state(state: str, reason: str, *, flatten: bool, as_json: bool) -> None:
    from store.journal import Journal

    settings = _settings()
    with Journal.open(settings.journal_url) as journal:
        row = journal.write_trading_control(state, reason, flatten=flatten, by="cli")
    _print_trading_state(row, as_json=as_json)


@app.command()
def halt(
    flatten: Annotated[
        bool, typer.Option("--flatten", help="Also sell every position at market.")
    ] = False,
    reason: Annotated[str, typer.Option(help="Why trading stops (recorded).")] = "manual halt",
    as_json: Annotated[bool, typer.Option("--json", help="Print the new state as JSON.")] = False,
) -> None:
    """Halt trading: the engine sends no order but cancels (and the flattening, if asked)."""
    if not reason.strip():
        err.print("[red]--reason must not be empty[/red]")
        raise typer.Exit(2)
    _write_trading_state("halted", reason, flatten=flatten, as_json=as_json)


@app.command()
def resume(
    reason: Annotated[str, typer.Option(help="Why trading resumes (recorded).")] = "manual resume",
    as_json: Annotated[bool, typer.Option("--json", help="Print the new state as JSON.")] = False,
) -> None:
    """Resume trading (exits only while today's daily loss limit is breached)."""
    if not reason.strip():
        err.print("[red]--reason must not be empty[/red]")
        raise typer.Exit(2)
    _write_trading_state("active", reason, flatten=False, as_json=as_json)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Show the trading state the operator set (halt, resume) from the journal."""
    from store.journal import Journal

    settings = _settings()
    with Journal.open(settings.journal_url) as journal:
        row = journal.read_trading_control()
    _print_trading_state(row, as_json=as_json)


prompts_app = typer.Typer(help="Prompt files the LLM checks and the sizer are rendered from.")
app.add_typer(prompts_app, name="prompts")


@prompts_app.command("check")
def prompts_check(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Prompt folder (default LXA_PROMPTS_DIR or the shipped one)."),
    ] = None,
) -> None:
    """Validate every prompt file: syntax, declared variables, and the variables the code passes."""
    from nodes.llm import REVIEW_VARIABLES, SIZING_VARIABLES
    from prompts.loader import DEFAULT_PROMPTS_DIR, PromptError, PromptLibrary

    folder = directory or _settings().prompts_dir or DEFAULT_PROMPTS_DIR
    library = PromptLibrary(folder)
    problems = library.check()
    try:
        library.require(
            ["groq_check", "ollama_check", "sizing"],
            {
                "groq_check": set(REVIEW_VARIABLES),
                "ollama_check": set(REVIEW_VARIABLES),
                "sizing": set(SIZING_VARIABLES),
            },
        )
    except PromptError as exc:
        problems.extend(p for p in str(exc).splitlines() if p not in problems)
    if problems:
        for problem in problems:
            err.print(problem, style="red", markup=False, highlight=False)
        raise typer.Exit(1)
    for name in library.names():
        prompt = library.get(name)
        out.print(f"ok  {prompt.ref}  {prompt.path}", highlight=False)


def main() -> None:
    """Run the CLI."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
