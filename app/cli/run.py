"""Commands that trade or serve: `demo`, `run`, `serve`, `api` and `record`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import err, exits_on, fail, load, paper_account
from app.cli.sessions import (
    LIVE_CONFIRMATION,
    confirm_live,
    run_live,
    run_replay,
    serve_until_stopped,
)


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
    """Paper-trade the bundled real Upbit candles (3 days the bundled model never saw).

    With the viewer (the default), the API and viewer stay up after the replay until Ctrl-C
    or SIGTERM; `--no-serve` ends with the replay.
    """
    from app.session import ReplayError, demo_settings
    from app.wiring import BUNDLED_CANDLES, with_default_model

    base = load()
    with exits_on(ReplayError, code=1):
        settings, session_id = demo_settings(base, resume=resume)
    session_dir = settings.data_dir / "demo" / session_id
    run_replay(
        with_default_model(settings),
        candles=[BUNDLED_CANDLES],
        session_id=session_id,
        account_path=session_dir / "paper_account.json",
        minutes=minutes,
        pace=pace if pace is not None else (0.05 if serve else 0.0),
        serve=serve,
        as_json=as_json,
        label="demo",
        # The viewer stays up after the replay until Ctrl-C or SIGTERM, terminal or not (a
        # demo started in the background kept nothing to look at once the replay ended).
        keep_serving=serve_until_stopped,
    )


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

    settings = load()
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


def _check_feed(feed: str, candles: list[Path] | None, *, live_orders: bool = False) -> None:
    """Refuse a feed other than live or replay, live orders on a replay, candles on live."""
    if feed not in ("live", "replay"):
        fail(f"--feed must be live or replay, got {feed!r}", 2)
    if live_orders and (feed != "live" or candles):
        fail("live orders trade on the live feed only, not on a replay", 2)
    if feed == "live" and candles:
        fail("--candles replays files: it cannot go with --feed live", 2)


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

    settings = load()
    if live and not settings.live:
        settings = confirm_live()
    if allow_unproven_model:
        settings = settings.model_copy(update={"allow_unproven_model": True})
    mode = feed or ("replay" if candles else "live")
    _check_feed(mode, candles, live_orders=settings.live)
    account = paper_account(settings)
    if mode == "live":
        run_live(settings, account_path=account, minutes=minutes, serve=serve, as_json=as_json)
        return
    run_replay(
        settings,
        candles=candles or [BUNDLED_CANDLES],
        session_id="paper",
        account_path=account,
        minutes=minutes,
        pace=pace,
        serve=serve,
        as_json=as_json,
        label="paper",
    )


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

    settings = load()
    _check_feed(feed, candles)
    account = paper_account(settings)
    if feed == "live":
        run_live(settings, account_path=account, minutes=minutes, serve=True, as_json=False)
        return
    err.print(
        f"serving over a replay of {', '.join(p.name for p in candles or [BUNDLED_CANDLES])} "
        f"at {pace:g} s per bar (use --feed live for Upbit's stream)",
        markup=False,
        highlight=False,
    )
    run_replay(
        settings,
        candles=candles or [BUNDLED_CANDLES],
        session_id="paper",
        account_path=account,
        minutes=minutes,
        pace=pace,
        serve=True,
        as_json=False,
        label="serve",
        keep_serving=serve_until_stopped,
    )


def api_only() -> None:
    """Serve the API and viewer alone, over the journal and LXA_REDIS_URL's event stream.

    For an engine running in another process (`lxa serve` or `lxa run` with the same
    LXA_DATABASE_URL and LXA_REDIS_URL): runs, replays and balances need the engine and answer
    503 here; everything else works, live events included.
    """
    import uvicorn

    from app.serve import api_token_for, open_api_alone, token_path

    settings = load()
    if not settings.redis_url:
        fail(
            "lxa api needs LXA_REDIS_URL: without it no event of the engine reaches this "
            "process (use lxa serve to run both in one)",
            2,
        )
    token, created = api_token_for(settings)
    if created:
        err.print(f"API token (shown once; kept in {token_path(settings)}): {token}", markup=False)
    with open_api_alone(settings, token) as api:
        err.print(f"[green]API: http://{settings.api_host}:{settings.api_port}/[/green]")
        uvicorn.run(api, host=settings.api_host, port=settings.api_port, log_level="warning")
