"""The `lxa` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

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


LIVE_CONFIRMATION = "LIVE"


def _confirm_live() -> Settings:
    """Ask the operator to type LIVE before real orders; return the settings with live on."""
    try:
        settings = load_settings(live=True)
    except SettingsError as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    err.print(
        f"LIVE TRADING: real orders with real money on {settings.upbit_rest_url} "
        f"for {', '.join(settings.markets)}.",
        style="bold red",
        markup=False,
        highlight=False,
    )
    answer = typer.prompt(
        f"Type {LIVE_CONFIRMATION} to send real orders", default="", show_default=False
    )
    if answer.strip() != LIVE_CONFIRMATION:
        err.print("not confirmed: nothing was started", markup=False)
        raise typer.Exit(1)
    return settings


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


def _emit_summary(summary: dict[str, object], as_json: bool) -> None:
    """Print a session summary: one JSON line, or the readable table."""
    if as_json:
        sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    else:
        _print_summary(summary)


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
    keep_serving: Callable[[], Awaitable[None]] | None = None,
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
                    keep_serving=keep_serving or _wait_for_interrupt,
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
    _emit_summary(summary.to_json(), as_json)


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


def _run_live(settings: Settings, *, minutes: int | None, serve: bool, as_json: bool) -> None:
    from app.live import LiveFeedError, run_live_session
    from app.wiring import LiveTradingRefused, ModelNotFoundError
    from exchange.upbit_ws import FeedEvent
    from prompts.loader import PromptError

    def on_event(event: FeedEvent) -> None:
        if event.kind in ("stale", "disconnected", "backfill_failed"):
            err.print(f"feed {event.kind}: {event.detail}", style="yellow", markup=False)
        elif event.kind in ("connected", "recovered", "backfill"):
            err.print(f"feed {event.kind}: {event.detail}", markup=False, highlight=False)

    with _progress("live", quiet=as_json) as progress:
        task = progress.add_task("live", total=minutes, last="")

        def on_progress(done: int, total: int, result: object) -> None:
            action = getattr(result, "action", "")
            reason = getattr(result, "reason", "")
            progress.update(task, completed=done, last=f"{action} ({reason})")

        try:
            summary = asyncio.run(
                run_live_session(
                    settings,
                    session_id="live" if settings.live else "paper",
                    account_path=settings.data_dir / "paper_account.json",
                    minutes=minutes,
                    serve=serve,
                    keep_serving=_wait_for_interrupt,
                    on_progress=on_progress,
                    on_ready=lambda url: err.print(f"[green]viewer: {url}[/green]"),
                    on_event=None if as_json else on_event,
                )
            )
        except (LiveFeedError, LiveTradingRefused, PromptError, ModelNotFoundError) as exc:
            err.print(str(exc), style="red", markup=False, highlight=False)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("stopped")
            raise typer.Exit(130) from None
    _emit_summary(summary.to_json(), as_json)


@app.command()
def record(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the parquet files (default <data_dir>/ticks)."),
    ] = None,
    flush_interval: Annotated[
        float, typer.Option(min=0.1, help="Seconds between writes of the buffered rows.")
    ] = 60.0,
) -> None:
    """Record every trade, orderbook snapshot and 1-minute bar of LXA_MARKETS to parquet.

    Files are partitioned by market and UTC day (<out>/trades/market=KRW-BTC/date=.../). Runs
    until Ctrl-C, which writes what is still buffered before it exits.
    """
    from app.live import record as record_feed
    from exchange.recorder import ParquetRecorder
    from exchange.upbit_ws import FeedEvent, UpbitWebSocket

    settings = _settings()
    target = out_dir or settings.data_dir / "ticks"
    recorder = ParquetRecorder(target, flush_interval_s=flush_interval)

    def on_event(event: FeedEvent) -> None:
        err.print(f"feed {event.kind}: {event.detail}", markup=False, highlight=False)

    def on_status(recorder: ParquetRecorder, client: UpbitWebSocket) -> None:
        stats = client.stats
        err.print(
            f"recorded {stats.trades} trades, {stats.orderbooks} orderbooks "
            f"(buffered {recorder.buffered}, written {sum(recorder.written.values())})",
            markup=False,
            highlight=False,
        )

    err.print(f"recording {', '.join(settings.markets)} to {target}", markup=False)
    try:
        asyncio.run(record_feed(settings, recorder, on_event=on_event, on_status=on_status))
    except KeyboardInterrupt:
        recorder.close()  # already flushed when the task was cancelled; a no-op then
        err.print(f"stopped; written {recorder.written} under {target}", markup=False)
        raise typer.Exit(130) from None
    err.print(f"feed ended; written {recorder.written} under {target}", markup=False)


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
    feed: Annotated[
        str | None,
        typer.Option(
            help="live: Upbit's WebSocket (LXA_UPBIT_WS_URL); replay: candle files. "
            "Default: replay with --candles, else live."
        ),
    ] = None,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Real orders on Upbit (needs LXA_UPBIT_ACCESS_KEY and LXA_UPBIT_SECRET_KEY); "
            f"asks you to type {LIVE_CONFIRMATION} first.",
        ),
    ] = False,
    allow_unproven_model: Annotated[
        bool,
        typer.Option(
            "--allow-unproven-model",
            help="Trade live with a model set whose own hold-out policy result is not positive "
            "after fees (refused otherwise; the override is journaled and alerted).",
        ),
    ] = False,
) -> None:
    """Paper-trade on the persistent account in LXA_DATA_DIR, continuing where it stopped.

    The market feed is Upbit's live stream (trades and orderbooks; bars built from trades), or
    a replay of candle files with --candles / --feed replay. With --live (or LXA_LIVE=1) the
    orders go to Upbit after a reconciliation with the journal.
    """
    from app.wiring import BUNDLED_CANDLES

    settings = _settings()
    if live and not settings.live:
        settings = _confirm_live()
    if allow_unproven_model:
        settings = settings.model_copy(update={"allow_unproven_model": True})
    mode = feed or ("replay" if candles else "live")
    if mode not in ("live", "replay"):
        err.print(f"[red]--feed must be live or replay, got {mode!r}[/red]")
        raise typer.Exit(2)
    if settings.live and (mode != "live" or candles):
        err.print("[red]live orders trade on the live feed only, not on a replay[/red]")
        raise typer.Exit(2)
    if mode == "live":
        if candles:
            err.print("[red]--candles replays files: it cannot go with --feed live[/red]")
            raise typer.Exit(2)
        _run_live(settings, minutes=minutes, serve=serve, as_json=as_json)
        return
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


async def _serve_until_stopped() -> None:
    """Keep the API and viewer up until Ctrl-C or SIGTERM, terminal or not."""
    err.print("[green]the feed ended; the API and viewer stay up. Ctrl-C to stop.[/green]")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


@app.command()
def serve(
    feed: Annotated[
        str,
        typer.Option(
            help="replay: candle files, paced (default: the bundled Upbit candles); live: "
            "Upbit's WebSocket (LXA_UPBIT_WS_URL)."
        ),
    ] = "replay",
    candles: Annotated[
        list[Path] | None, typer.Option(help="Candle parquet file(s) to replay.")
    ] = None,
    pace: Annotated[float, typer.Option(min=0.0, help="Seconds between replayed bars.")] = 1.0,
    minutes: Annotated[int | None, typer.Option(min=1, help="Stop trading after N runs.")] = None,
) -> None:
    """Run the engine with the API and the viewer at LXA_API_HOST:LXA_API_PORT (paper trading).

    Changes through the API need the bearer token: LXA_API_TOKEN, or one generated on first
    start into <data_dir>/api_token and printed once. The viewer stays up after the feed ends.
    """
    from app.wiring import BUNDLED_CANDLES

    settings = _settings()
    if feed not in ("live", "replay"):
        err.print(f"[red]--feed must be live or replay, got {feed!r}[/red]")
        raise typer.Exit(2)
    if feed == "live":
        if candles:
            err.print("[red]--candles replays files: it cannot go with --feed live[/red]")
            raise typer.Exit(2)
        _run_live(settings, minutes=minutes, serve=True, as_json=False)
        return
    err.print(
        f"serving over a replay of {', '.join(p.name for p in candles or [BUNDLED_CANDLES])} "
        f"at {pace:g} s per bar (use --feed live for Upbit's stream)",
        markup=False,
        highlight=False,
    )
    _run_session(
        settings,
        candles=candles or [BUNDLED_CANDLES],
        session_id="paper",
        account_path=settings.data_dir / "paper_account.json",
        minutes=minutes,
        pace=pace,
        serve=True,
        as_json=False,
        label="serve",
        keep_serving=_serve_until_stopped,
    )


@app.command("api")
def api_only() -> None:
    """Serve the API and viewer alone, over the journal and LXA_REDIS_URL's event stream.

    For an engine running in another process (`lxa serve` or `lxa run` with the same
    LXA_DATABASE_URL and LXA_REDIS_URL): runs, replays and balances need the engine and answer
    503 here; everything else works, live events included.
    """
    import uvicorn

    from app.serve import api_token_for, token_path
    from app.wiring import build_bus
    from prompts.loader import DEFAULT_PROMPTS_DIR
    from store.journal import Journal

    settings = _settings()
    if not settings.redis_url:
        err.print(
            "[red]lxa api needs LXA_REDIS_URL: without it no event of the engine reaches this "
            "process (use lxa serve to run both in one)[/red]"
        )
        raise typer.Exit(2)
    from api.app import create_app
    from app.serve import PROMPT_VARIABLES

    token, created = api_token_for(settings)
    if created:
        err.print(f"API token (shown once; kept in {token_path(settings)}): {token}", markup=False)
    local = settings.api_host in ("127.0.0.1", "localhost", "::1")
    with Journal.open(settings.journal_url) as journal:
        app_ = create_app(
            journal=journal,
            bus=build_bus(settings),
            api_token=token,
            prompts_dir=settings.prompts_dir or DEFAULT_PROMPTS_DIR,
            prompt_variables=PROMPT_VARIABLES,
            markets=settings.markets,
            feed="the engine's, in another process",
            reads_need_token=not local,
            bus_kind="redis",
        )
        err.print(f"[green]API: http://{settings.api_host}:{settings.api_port}/[/green]")
        uvicorn.run(app_, host=settings.api_host, port=settings.api_port, log_level="warning")


@app.command()
def graph() -> None:
    """Print the trading graph as Mermaid (drawn from the compiled graph)."""
    from graph.builder import graph_mermaid

    out.print(graph_mermaid(), markup=False, highlight=False)


@app.command()
def train(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) or folder(s) in the shared schema.")
    ],
    quick: Annotated[
        bool, typer.Option(help="Train only the quick LightGBM buy/sell pair (under a minute).")
    ] = False,
    until: Annotated[
        datetime | None,
        typer.Option(help="Use candles before this UTC time only (keep later ones unseen)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Models directory (default <data_dir>/models).")
    ] = None,
    tune: Annotated[
        bool,
        typer.Option(help="Search LightGBM parameters with Optuna first (needs optuna; slow)."),
    ] = False,
    tune_trials: Annotated[int, typer.Option(min=1, help="Optuna trials with --tune.")] = 20,
    all_markets: Annotated[
        bool,
        typer.Option(
            "--all-markets", help="Train on every market in the files, not only LXA_MARKETS."
        ),
    ] = False,
    eval_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the most recent stretch kept out of training as the policy's "
            "hold-out window (its result is stored with the set)."
        ),
    ] = 0.15,
) -> None:
    """Train a model set on real candles and save it to the model registry.

    The full set (default): LightGBM pair, LSTM+CNN hybrid, a stack calibrated per coin and
    the anomaly autoencoder, with walk-forward figures. --quick: the LightGBM pair only. Every
    set also gets its expected-return calibration and its policy's result on a hold-out window
    no model saw (the last --eval-fraction of the most recent stretch).
    """
    from datetime import UTC

    from ml.data import load_candles

    settings = _settings()
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=UTC)
    try:
        frame = load_candles(
            [str(p) for p in candles], markets=None if all_markets else settings.markets
        )
    except (FileNotFoundError, ValueError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    files = [str(p) for p in candles]
    target = out_dir or settings.models_dir
    from app.training import EVAL_FRACTION, evaluation_start, train_model_set

    if quick and tune:
        err.print("[red]--tune applies to the full set, not --quick[/red]")
        raise typer.Exit(2)
    if not 0 < eval_fraction < 1:
        err.print("[red]--eval-fraction must be between 0 and 1[/red]")
        raise typer.Exit(2)
    try:
        config = None
        if not quick:
            from ml.training.full_set import FullConfig

            config = FullConfig()
            if tune:
                from ml.training.tune import tune_lightgbm

                before = frame if until is None else frame[frame["ts"] < until]
                tune_until = evaluation_start(before, eval_fraction or EVAL_FRACTION)
                best = tune_lightgbm(
                    frame, until=tune_until.to_pydatetime(), trials=tune_trials, log=err.print
                )
                config.lgb_params = best
                err.print(f"tuned LightGBM parameters: {json.dumps(best)}")
        trained = train_model_set(
            frame,
            target,
            settings,
            until=until,
            quick=quick,
            full_config=config,
            data_files=files,
            eval_fraction=eval_fraction,
            log=err.print,
        )
    except (ValueError, ImportError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(1) from None
    meta = trained.meta
    out.print(f"saved {meta['model_id']} to {trained.model_dir}")
    _print_train_metrics(meta.get("metrics", {}))
    _print_policy_evaluation(meta.get("policy_evaluation") or {})


def _print_policy_evaluation(evaluation: dict[str, Any]) -> None:
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


def _print_train_metrics(metrics: dict[str, object]) -> None:
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


@app.command()
def download(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the parquet parts (default <data_dir>/candles)."),
    ] = None,
    days: Annotated[float, typer.Option(min=0.001, help="How far back to fetch.")] = 7.0,
    since: Annotated[
        datetime | None, typer.Option(help="Fetch from this UTC time (overrides --days).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Fetch up to this UTC time (default now).")
    ] = None,
    markets: Annotated[
        list[str] | None, typer.Option("--market", help="Market(s) (default LXA_MARKETS).")
    ] = None,
) -> None:
    """Fetch Upbit 1-minute candles into parquet (one folder per market), resuming from disk."""
    from datetime import UTC, timedelta

    from ml.download import DownloadError, download_candles

    settings = _settings()
    end = _utc(until) or datetime.now(UTC)
    start = _utc(since) or end - timedelta(days=days)
    target = out_dir or settings.data_dir / "candles"
    chosen = markets or list(settings.markets)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeRemainingColumn(),
        console=err,
    ) as progress:
        tasks = {m: progress.add_task(m, total=None) for m in chosen}

        def on_progress(market: str, done: int, total: int) -> None:
            progress.update(tasks[market], completed=done, total=total)

        try:
            added = download_candles(
                chosen,
                target,
                since=start,
                until=end,
                base_url=settings.upbit_rest_url,
                on_progress=on_progress,
            )
        except DownloadError as exc:
            err.print(str(exc), style="red", markup=False, highlight=False)
            err.print("what was fetched is kept; run the same command again to resume")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print("interrupted; run the same command again to resume")
            raise typer.Exit(130) from None
    for market, rows in added.items():
        out.print(f"{market}: {rows} new candles", highlight=False)
    out.print(f"candles in {target}", markup=False, highlight=False)


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
def walkforward(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) or folder(s) in the shared schema.")
    ],
    train_days: Annotated[float, typer.Option(min=1.0, help="Training days of each window.")],
    test_days: Annotated[float, typer.Option(min=0.1, help="Test days of each window.")],
    step_days: Annotated[
        float | None, typer.Option(min=0.1, help="Days between windows (default: test days).")
    ] = None,
    report_dir: Annotated[
        Path, typer.Option("--report", help="Folder for walkforward.json and report.html.")
    ] = Path("walkforward"),
    seeds: Annotated[
        int, typer.Option(min=1, max=200, help="Random-entry baselines per window.")
    ] = 20,
    max_windows: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many windows (a quick look).")
    ] = None,
    margins: Annotated[
        list[float] | None,
        typer.Option(
            "--margin",
            help="Entry margins (bps) the sweep tries, repeatable (default 0, 10, 25, 50; a "
            "negative one admits entries the calibration expects to lose after costs).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
) -> None:
    """Retrain and trade window after window over every market in the files, never on a seen bar.

    Each window trains the quick model set on its training days (calibration and the policy's
    hold-out inside them), sweeps the policy's parameters on that hold-out, then trades its test
    days in the fast simulator: returns, drawdown, trades and fees against buy-and-hold, cash,
    the lowest-volatility rotation and random entries at the same rate.
    """
    from app.walkforward import run_walkforward
    from ml.data import load_candles

    settings = _settings()
    try:
        frame = load_candles([str(p) for p in candles], markets=None)
        report = run_walkforward(
            frame,
            settings,
            report_dir,
            train_days=train_days,
            test_days=test_days,
            step_days=step_days,
            seeds=seeds,
            max_windows=max_windows,
            files=[str(p) for p in candles],
            log=err.print,
            entry_margins=margins,
        )
    except (FileNotFoundError, ValueError) as exc:
        err.print(str(exc), style="red", markup=False, highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(report["total"], sort_keys=True) + "\n")
        return
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


def _write_trading_state(state: str, reason: str, *, flatten: bool, as_json: bool) -> None:
    from store.journal import Journal

    if not reason.strip():
        err.print("[red]--reason must not be empty[/red]")
        raise typer.Exit(2)
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
    _write_trading_state("halted", reason, flatten=flatten, as_json=as_json)


@app.command()
def resume(
    reason: Annotated[str, typer.Option(help="Why trading resumes (recorded).")] = "manual resume",
    as_json: Annotated[bool, typer.Option("--json", help="Print the new state as JSON.")] = False,
) -> None:
    """Resume trading (exits only while today's daily loss limit is breached)."""
    _write_trading_state("active", reason, flatten=False, as_json=as_json)


@app.command()
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> None:
    """Show the trading state (set and effective), the monthly loss cap and the model status."""
    from store.journal import Journal
    from store.trading_view import trading_view

    settings = _settings()
    with Journal.open(settings.journal_url) as journal:
        view = trading_view(journal)
    _print_trading_state(view, as_json=as_json)


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
    from llm.reviewers import REVIEW_VARIABLES, SIZING_VARIABLES
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


llm_app = typer.Typer(help="The LLM checks and the sizer: try the configured providers.")
app.add_typer(llm_app, name="llm")


@llm_app.command("check")
def llm_check(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON report on stdout, nothing else.")
    ] = False,
) -> None:
    """Send one review and one sizing request to Groq and Ollama (where configured); show them.

    Exits 1 when a configured provider did not answer usably.
    """
    from app.llm_check import check_llms, report_lines

    report = asyncio.run(check_llms(_settings()))
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        for line in report_lines(report):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


def main() -> None:
    """Run the CLI."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()


if __name__ == "__main__":
    main()
