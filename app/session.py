"""Replay sessions: the demo (a fresh paper account each time) and `lxa run` on a candle file."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from app.engine import CycleResult, Engine
from app.settings import Settings
from app.status_text import model_warning
from app.wiring import Services, open_services
from exchange.feed import BarClose, ReplayFeed
from exchange.rules import FEE_RATE
from ml.data import load_candles
from ml.features import LONG_BARS, WARMUP_BARS

ProgressCallback = Callable[[int, int, CycleResult], None]


class ReplayError(RuntimeError):
    """A replay cannot start as asked (overlap with training data, nothing left to replay)."""


@dataclass
class SessionSummary:
    """What a replay session did, for people (table) and scripts (JSON)."""

    session_id: str
    model_id: str
    model_trained_on: str
    replayed: str
    warmup_bars: int
    runs: int
    runs_this_call: int
    holds: dict[str, int]
    trades: int
    buys: int
    sells: int
    protection_exits: int  # stop-loss / take-profit sells
    emergency_exits: int  # watchdog sells
    fees: float
    initial_equity: float
    final_equity: float
    buy_and_hold_equity: float
    journal: str
    elapsed_s: float
    mean_cycle_ms: float
    notes: list[str] = field(default_factory=list)
    # What the engine announced at its start (app.wiring `model_status`), and a warning line
    # when the model set is unproven (its own hold-out policy result is not positive).
    model_status: dict[str, Any] = field(default_factory=dict)
    model_warning: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the summary as plain JSON values."""
        return asdict(self)


def new_session_id(prefix: str) -> str:
    """Name a session by kind, start time and a short random suffix."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{stamp}-{secrets.token_hex(2)}"


async def collect_closes(candles: pd.DataFrame) -> list[BarClose]:
    """Turn candles into the list of bar closes the replay will play."""
    return [close async for close in ReplayFeed(candles)]


def training_window_end(meta: dict[str, Any]) -> datetime | None:
    """Return the last candle time any market of a model set was trained on."""
    window = meta.get("training_window") or {}
    ends = []
    for value in window.values():
        last = value.get("last_ts") if isinstance(value, dict) else None
        if last:
            ends.append(datetime.fromisoformat(str(last)))
    return max(ends) if ends else None


def describe_training(meta: dict[str, Any]) -> str:
    """Say which candles a model set was trained on, for summaries and reports."""
    window = meta.get("training_window") or {}
    firsts = [str(v["first_ts"]) for v in window.values() if isinstance(v, dict)]
    lasts = [str(v["last_ts"]) for v in window.values() if isinstance(v, dict)]
    if not firsts:
        return "unknown window"
    files = ", ".join(
        Path(str(f.get("path") if isinstance(f, dict) else f)).name
        for f in meta.get("data_files", [])
    )
    return f"{min(firsts)} .. {max(lasts)} ({files})"


async def replay(
    services: Services,
    closes: Sequence[BarClose],
    *,
    minutes: int | None,
    pace_seconds: float,
    on_progress: ProgressCallback | None = None,
) -> SessionSummary:
    """Warm up, then run one graph cycle per bar close after the session's last journaled bar."""
    engine = services.engine
    journal = services.journal
    started = datetime.now(UTC)
    notes: list[str] = []
    trained_until = training_window_end(services.predictor.meta)
    resumed = await engine.resume_unfinished()
    if resumed:
        notes.append(f"resumed {len(resumed)} interrupted run(s) from their checkpoints")
    last_done = journal.last_bar_ts(engine.session_id)
    first_index = 0
    if last_done is not None:
        first_index = next((i for i, c in enumerate(closes) if c.ts > last_done), len(closes))
    first_index = max(first_index, WARMUP_BARS)
    if first_index >= len(closes):
        raise ReplayError("nothing left to replay: every bundled bar has been traded already")
    to_run = closes[first_index:]
    if minutes is not None:
        to_run = to_run[:minutes]
    if trained_until is not None and closes[first_index - WARMUP_BARS].ts <= trained_until:
        raise ReplayError(
            f"the model {services.predictor.model_id} was trained on candles up to "
            f"{trained_until.isoformat()}, which overlaps the replay from "
            f"{closes[first_index - WARMUP_BARS].ts.isoformat()}: refusing to report "
            "in-sample results"
        )
    # Up to LONG_BARS bars where the file has them, so a resumed session has the four-hour
    # features at once, exactly as the uninterrupted one would.
    engine.warm_up(closes[max(0, first_index - LONG_BARS) : first_index])
    durations = []
    for index, close in enumerate(to_run, start=1):
        result = await engine.on_bar_close(close)
        durations.append(result.duration_ms)
        if on_progress is not None:
            on_progress(index, len(to_run), result)
        if pace_seconds > 0:
            await asyncio.sleep(pace_seconds)
    first_bar = journal.first_bar_ts(engine.session_id) or to_run[0].ts
    replay_start = next(i for i, c in enumerate(closes) if c.ts >= first_bar)
    summary = await summarize(
        engine,
        services,
        start_close=closes[replay_start],
        end_close=to_run[-1],
        elapsed_s=(datetime.now(UTC) - started).total_seconds(),
        runs_this_call=len(to_run),
        mean_cycle_ms=sum(durations) / len(durations),
        notes=notes,
    )
    return summary


def _closes_by_market(
    closes: Sequence[BarClose], start: BarClose, end: BarClose
) -> tuple[dict[str, float], dict[str, float]]:
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for close in closes:
        if close.ts < start.ts or close.ts > end.ts:
            continue
        for market, bar in close.bars.items():
            first.setdefault(market, bar.close)
            last[market] = bar.close
    return first, last


async def summarize(
    engine: Engine,
    services: Services,
    *,
    start_close: BarClose,
    end_close: BarClose,
    elapsed_s: float,
    runs_this_call: int,
    mean_cycle_ms: float,
    notes: list[str],
) -> SessionSummary:
    """Count the session's runs, holds, trades and fees, and compare with buy-and-hold."""
    journal = services.journal
    session_id = engine.session_id
    holds = journal.hold_reasons(session_id)
    orders = [o for o in journal.list_orders() if o["executed_volume"] and o["executed_volume"] > 0]
    buys = sum(1 for o in orders if o["side"] == "bid")
    sells = sum(1 for o in orders if o["side"] == "ask")
    outside = [o for o in orders if o["side"] == "ask" and o["run_id"] is None]
    emergency_exits = sum(1 for o in outside if "-emergency-" in o["identifier"])
    protection_exits = len(outside) - emergency_exits
    account = await services.exchange.get_account()
    initial = services.exchange.initial_krw
    final = account.equity(engine.closes)
    # Buy-and-hold: the starting capital split evenly over the markets at the session's first
    # traded bar, paying the entry fee, marked at the same last closes as the account.
    first_prices = start_close.bars
    markets = [m for m in engine.markets if m in first_prices and m in engine.closes]
    share = initial / len(markets) if markets else Decimal(0)
    buy_and_hold = sum(
        (
            share
            * (1 - FEE_RATE)
            * Decimal(str(engine.closes[m]))
            / Decimal(str(first_prices[m].close))
            for m in markets
        ),
        Decimal(0),
    )
    meta = services.predictor.meta
    return SessionSummary(
        session_id=session_id,
        model_id=services.predictor.model_id,
        model_trained_on=describe_training(meta),
        replayed=f"{start_close.ts.isoformat()} .. {end_close.ts.isoformat()}",
        warmup_bars=WARMUP_BARS,
        runs=journal.count_decisions(session_id),
        runs_this_call=runs_this_call,
        holds=holds,
        trades=buys + sells,
        buys=buys,
        sells=sells,
        protection_exits=protection_exits,
        emergency_exits=emergency_exits,
        fees=round(float(journal.total_fees()), 2),
        initial_equity=float(initial),
        final_equity=round(float(final), 2),
        buy_and_hold_equity=round(float(buy_and_hold), 2),
        journal=services.settings.journal_url,
        elapsed_s=round(elapsed_s, 2),
        mean_cycle_ms=round(mean_cycle_ms, 3),
        notes=notes,
        model_status=dict(engine.model_status),
        model_warning=model_warning(engine.model_status),
    )


def demo_settings(settings: Settings, *, resume: bool) -> tuple[Settings, str]:
    """Point a demo at its own directory: a fresh account each time, or the last one."""
    base = settings.data_dir / "demo"
    session_id = None
    if resume:
        previous = sorted(p for p in base.glob("demo-*") if p.is_dir()) if base.is_dir() else []
        if not previous:
            raise ReplayError(f"no earlier demo under {base} to resume")
        session_id = previous[-1].name
    session_id = session_id or new_session_id("demo")
    session_dir = base / session_id
    session_dir.mkdir(parents=True, exist_ok=True)
    update: dict[str, Any] = {
        "database_url": f"sqlite:///{(session_dir / 'journal.db').resolve()}",
        "checkpoint_url": f"sqlite:///{(session_dir / 'checkpoints.db').resolve()}",
    }
    if settings.prompts_dir is None:
        # Prompt edits made in the demo's viewer change the demo's copy, not the shipped files.
        from prompts.loader import DEFAULT_PROMPTS_DIR

        prompts_dir = session_dir / "prompts"
        if not prompts_dir.is_dir():
            prompts_dir.mkdir()
            for source in DEFAULT_PROMPTS_DIR.glob("*.md"):
                (prompts_dir / source.name).write_bytes(source.read_bytes())
        update["prompts_dir"] = prompts_dir
    return settings.model_copy(update=update), session_id


async def run_replay_session(
    settings: Settings,
    *,
    candles_paths: Sequence[Path],
    session_id: str,
    account_path: Path,
    minutes: int | None,
    pace_seconds: float,
    serve: bool = False,
    keep_serving: Callable[[], Any] | None = None,
    on_progress: ProgressCallback | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> SessionSummary:
    """Open the services, optionally serve the viewer, and replay the candles."""
    candles = load_candles(list(candles_paths), markets=settings.markets)
    if candles.empty:
        raise ReplayError(f"no candles for {settings.markets} in {list(map(str, candles_paths))}")
    closes = await collect_closes(candles)
    async with open_services(
        settings, session_id=session_id, account_path=account_path
    ) as services:
        names = ", ".join(Path(p).name for p in candles_paths)
        feed = f"replay of {names} ({pace_seconds:g} s per bar)"
        async with serving(services, enabled=serve, feed=feed, on_ready=on_ready, bars=candles):
            summary = await replay(
                services,
                closes,
                minutes=minutes,
                pace_seconds=pace_seconds,
                on_progress=on_progress,
            )
            if serve and keep_serving is not None:
                await keep_serving()
        return summary


async def start_server(
    services: Services,
    *,
    feed: str | None = None,
    bars: pd.DataFrame | None = None,
    live_bars: Any = None,
) -> tuple[Any, asyncio.Task[Any]]:
    """Start the API and viewer in this event loop (the engine's), with its bearer token.

    A token generated on first start is printed once on stderr (and kept, mode 0600, under
    the data dir).
    """
    import uvicorn

    from app.serve import api_token_for, create_api, token_path

    settings = services.settings
    token, created = api_token_for(settings)
    if created:
        sys.stderr.write(
            f"API token (shown once; kept in {token_path(settings)}): {token}\n"
            "send it as 'Authorization: Bearer <token>' to change anything\n"
        )
    app = create_api(services, token, feed=feed, bars=bars, live_bars=live_bars)
    config = uvicorn.Config(
        app, host=settings.api_host, port=settings.api_port, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the start-up error (port taken, ...)
            raise RuntimeError("the API server stopped during start-up")
        await asyncio.sleep(0.05)
    return server, task


@contextlib.asynccontextmanager
async def serving(
    services: Services,
    *,
    enabled: bool,
    feed: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    bars: pd.DataFrame | None = None,
    live_bars: Any = None,
) -> AsyncIterator[None]:
    """Serve the API and viewer while the block runs (when `enabled`), then stop the server.

    `on_ready` is told the viewer's URL once the server listens; `bars` are a replay's
    candles, for the charts' OHLCV (`live_bars`: a live session's, `app.serve.LiveBars`).
    """
    if not enabled:
        yield
        return
    server, task = await start_server(services, feed=feed, bars=bars, live_bars=live_bars)
    if on_ready is not None:
        settings = services.settings
        on_ready(f"http://{settings.api_host}:{settings.api_port}/")
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
