"""Live sessions on Upbit's public stream: `lxa run --feed live` (paper orders) and `lxa record`.

A live run warms the features up from Upbit's recent 1-minute candles, then connects the
WebSocket: every trade goes to `Engine.on_tick` at once (the watchdog never waits for the
graph), trades build 1-minute bars, and each closed minute becomes one graph run. The feed's
alarms (stale stream, disconnects, backfills) are journaled, published on the bus, and a
stale stream is alerted.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from alerts.types import Alert
from app.engine import Engine
from app.news import running_news
from app.outcomes import periodic_outcomes
from app.retrain import daily_retrain
from app.serve import LiveBars
from app.session import ProgressCallback, SessionSummary, collect_closes, serving, summarize
from app.settings import Settings
from app.wiring import Services, open_services
from exchange.bars import BarBuilder, LiveBarClose
from exchange.feed import BarClose
from exchange.recorder import ParquetRecorder
from exchange.upbit_ws import FeedEvent, OrderbookSnapshot, Status, Trade, UpbitWebSocket
from ml.download import DownloadError, parse_candles
from ml.features import LONG_BARS

log = logging.getLogger(__name__)
CANDLES_PATH = "/v1/candles/minutes/1"
CANDLES_PAGE = 200  # Upbit's most candles per request
JOURNALED_FEED_EVENTS = frozenset(
    {"stale", "recovered", "disconnected", "backfill", "backfill_failed"}
)
FeedEventCallback = Callable[[FeedEvent], None]


class LiveFeedError(RuntimeError):
    """The live feed cannot start (no warm-up candles, a bad reply from Upbit)."""


async def warmup_closes(
    http: httpx.AsyncClient, rest_url: str, markets: list[str], count: int
) -> list[BarClose]:
    """Fetch each market's latest `count` 1-minute candles and return them as bar closes.

    Upbit gives at most 200 candles a request: more are fetched page by page backwards, each
    page asking for the candles before the oldest one so far (`to`).
    """
    frames = []
    url = f"{rest_url.rstrip('/')}{CANDLES_PATH}"
    for market in markets:
        pages: list[pd.DataFrame] = []
        remaining = count
        before: pd.Timestamp | None = None
        while remaining > 0:
            asked = min(remaining, CANDLES_PAGE)
            params: dict[str, str | int] = {"market": market, "count": asked}
            if before is not None:
                params["to"] = before.strftime("%Y-%m-%dT%H:%M:%SZ")
            try:
                response = await http.get(url, params=params)
            except httpx.HTTPError as exc:
                raise LiveFeedError(f"warm-up candles for {market}: {exc!r}") from None
            if response.status_code != 200:
                raise LiveFeedError(
                    f"warm-up candles for {market}: {url} answered {response.status_code}: "
                    f"{response.text[:200]}"
                )
            try:
                page = parse_candles(market, response.json())
            except (DownloadError, ValueError) as exc:
                raise LiveFeedError(f"warm-up candles for {market}: {exc}") from None
            if page.empty:
                break
            oldest = pd.Timestamp(page["ts"].iloc[0])
            if before is not None and oldest >= before:
                raise LiveFeedError(
                    f"warm-up candles for {market}: asked for candles before "
                    f"{before.isoformat()}, got one at {oldest.isoformat()}"
                )
            pages.append(page)
            remaining -= len(page)
            if len(page) < asked:
                break  # no older candles
            before = oldest
        if pages:
            frames.append(
                pd.concat(pages[::-1], ignore_index=True)
                .drop_duplicates("ts")
                .sort_values("ts", kind="stable")
                .reset_index(drop=True)
            )
    candles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if candles.empty:
        raise LiveFeedError(f"no warm-up candles for {markets} from {rest_url}")
    return await collect_closes(candles)


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


class LiveRunner:
    """Wire one `UpbitWebSocket` to an engine: ticks to the watchdog, closed bars to the graph."""

    def __init__(
        self,
        services: Services,
        *,
        on_event: FeedEventCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        recorder: ParquetRecorder | None = None,
        on_bar: Callable[[LiveBarClose], None] | None = None,
    ) -> None:
        """Build the client and the bar builder from the services' settings (`on_bar`: told
        each bar close the engine was given, after it)."""
        self.services = services
        self._on_bar = on_bar
        self.engine: Engine = services.engine
        settings = services.settings
        self._clock = clock
        self._on_event = on_event
        self.recorder = recorder
        self.builder = BarBuilder(
            list(self.engine.markets), idle_close_ms=int(settings.feed_stale_after_s * 1000)
        )
        self.closes: asyncio.Queue[LiveBarClose] = asyncio.Queue()
        self.http = httpx.AsyncClient(timeout=10.0)
        self.client = UpbitWebSocket(
            settings.upbit_ws_url,
            list(self.engine.markets),
            on_trade=self._on_trade,
            on_orderbook=self._on_orderbook,
            on_status=self._on_status,
            on_event=self._feed_event,
            rest_url=settings.upbit_rest_url,
            http=self.http,
            stale_after_s=settings.feed_stale_after_s,
            clock=clock,
        )

    async def _on_trade(self, trade: Trade) -> None:
        await self.engine.on_tick(trade.market, trade.ts, trade.price, trade.volume)
        if self.recorder is not None:
            self.recorder.add_trade(trade)
        for close in self.builder.add_trade(trade, self._clock()):
            self._closed(close)

    async def _on_orderbook(self, snapshot: OrderbookSnapshot) -> None:
        self.builder.add_orderbook(snapshot)
        if self.recorder is not None:
            self.recorder.add_orderbook(snapshot)

    async def _on_status(self, _: Status) -> None:
        if not self.client.stale:  # a stalled stream's minutes wait for the backfill
            for close in self.builder.flush_idle(self._clock()):
                self._closed(close)
        if self.recorder is not None:
            self.recorder.maybe_flush()

    def _closed(self, close: LiveBarClose) -> None:
        if self.recorder is not None:
            self.recorder.add_bars(close)
        self.closes.put_nowait(close)

    def _feed_event(self, event: FeedEvent) -> None:
        payload = {"kind": event.kind, **event.detail}
        self.engine.bus.publish({"type": f"feed_{event.kind}", **event.detail})
        if event.kind in JOURNALED_FEED_EVENTS:
            self.engine.outbox.record(None, f"feed_{event.kind}", payload)
        if event.kind in ("stale", "backfill_failed") and self.engine.alerts is not None:
            title = "market feed stale" if event.kind == "stale" else "feed backfill failed"
            with contextlib.suppress(Exception):  # an alert must never stop the feed
                self.engine.alerts.publish(
                    Alert(
                        kind="error",
                        title=title,
                        text=", ".join(f"{k}={v}" for k, v in event.detail.items()),
                    )
                )
        if self._on_event is not None:
            self._on_event(event)

    async def run(
        self, *, minutes: int | None, on_progress: ProgressCallback | None = None
    ) -> list[tuple[LiveBarClose, Any]]:
        """Run until `minutes` graph runs were made (forever when None); return what ran."""
        engine = self.engine
        if engine.last_bar_ts is not None:
            # Backfill from the minute after the warm-up, so the first live bar is whole.
            self.client.last_trade_ms = _ms(engine.last_bar_ts + timedelta(minutes=1)) - 1
        feed = asyncio.create_task(self.client.run(), name="upbit-feed")
        done: list[tuple[LiveBarClose, Any]] = []
        try:
            while minutes is None or len(done) < minutes:
                getter = asyncio.ensure_future(self.closes.get())
                await asyncio.wait({getter, feed}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    error = feed.exception()
                    raise LiveFeedError(f"the live feed stopped: {error!r}") from error
                close = getter.result()
                if engine.last_bar_ts is not None and close.ts <= engine.last_bar_ts:
                    continue  # a minute the warm-up already covered
                result = await engine.on_bar_close(close)
                if self._on_bar is not None:
                    self._on_bar(close)
                done.append((close, result))
                if on_progress is not None:
                    on_progress(len(done), minutes or 0, result)
        finally:
            self.client.stop()
            with contextlib.suppress(Exception):
                await feed
            await self.http.aclose()
        return done


def settle_heap() -> None:
    """Collect once, then freeze what start-up built (libraries, models, the graph).

    Those few hundred thousand objects live as long as the process; left in the collector's
    oldest generation, every full collection would walk all of them in the middle of some
    tick (tens of milliseconds), right where the watchdog needs its sell out in under two.
    """
    gc.collect()
    gc.freeze()


async def run_live_session(
    settings: Settings,
    *,
    session_id: str,
    account_path: Path,
    minutes: int | None,
    serve: bool = False,
    keep_serving: Callable[[], Any] | None = None,
    on_progress: ProgressCallback | None = None,
    on_ready: Callable[[str], None] | None = None,
    on_event: FeedEventCallback | None = None,
) -> SessionSummary:
    """Paper-trade on Upbit's live stream until `minutes` bars have been traded."""
    started = datetime.now(UTC)
    async with open_services(
        settings, session_id=session_id, account_path=account_path
    ) as services:
        engine = services.engine
        venue = "LIVE Upbit orders" if settings.live else "paper exchange"
        notes = [f"live feed {settings.upbit_ws_url}, {venue}"]
        resumed = await engine.resume_unfinished()
        if resumed:
            notes.append(f"resumed {len(resumed)} interrupted run(s) from their checkpoints")
        async with httpx.AsyncClient(timeout=10.0) as http:
            warm = await warmup_closes(
                http, settings.upbit_rest_url, list(engine.markets), LONG_BARS + 16
            )
        engine.warm_up(warm)
        bars = LiveBars()  # the charts' OHLCV: the warm-up candles, then each live close
        bars.extend(warm)
        async with (
            daily_retrain(settings, engine.outbox),  # LXA_RETRAIN_AT_KST, in its own process
            periodic_outcomes(services.journal),  # what each decision was worth, once known
            serving(services, enabled=serve, on_ready=on_ready, live_bars=bars),
            # LXA_NEWS_ENABLED; the news scorer's LLM calls count on the checks' meter
            running_news(settings, engine, services.journal, services.bus, meter=services.meter),
        ):
            runner = LiveRunner(services, on_event=on_event, on_bar=bars.record)
            settle_heap()
            done = await runner.run(minutes=minutes, on_progress=on_progress)
            if serve and keep_serving is not None:
                await keep_serving()
        if not done:
            raise LiveFeedError("the live feed closed no bar")
        stats = runner.client.stats
        notes.append(
            f"feed: {stats.trades} trades, {stats.orderbooks} orderbooks, "
            f"{stats.stale_alarms} stale alarm(s), {stats.reconnects} reconnect(s), "
            f"{stats.backfilled} backfilled, {stats.duplicates} duplicate(s) dropped, "
            f"{stats.malformed + stats.unknown} bad message(s) skipped, "
            f"{runner.builder.late_trades} late trade(s) left out of closed bars"
        )
        durations = [result.duration_ms for _, result in done]
        return await summarize(
            engine,
            services,
            start_close=done[0][0],
            end_close=done[-1][0],
            elapsed_s=(datetime.now(UTC) - started).total_seconds(),
            runs_this_call=len(done),
            mean_cycle_ms=sum(durations) / len(durations),
            notes=notes,
        )


async def record(
    settings: Settings,
    recorder: ParquetRecorder,
    *,
    on_event: FeedEventCallback | None = None,
    on_status: Callable[[ParquetRecorder, UpbitWebSocket], None] | None = None,
    stop: asyncio.Event | None = None,
) -> ParquetRecorder:
    """Record every trade, orderbook and closed bar of the configured markets until stopped.

    Cancelling the task (Ctrl-C under `asyncio.run`) flushes the buffered rows before it ends.
    """
    builder = BarBuilder(
        list(settings.markets), idle_close_ms=int(settings.feed_stale_after_s * 1000)
    )
    client: UpbitWebSocket

    async def on_trade(trade: Trade) -> None:
        recorder.add_trade(trade)
        for close in builder.add_trade(trade, time.monotonic()):
            recorder.add_bars(close)

    async def on_orderbook(snapshot: OrderbookSnapshot) -> None:
        recorder.add_orderbook(snapshot)
        builder.add_orderbook(snapshot)

    async def on_status_message(_: Status) -> None:
        if not client.stale:
            for close in builder.flush_idle(time.monotonic()):
                recorder.add_bars(close)
        recorder.maybe_flush()
        if on_status is not None:
            on_status(recorder, client)

    client = UpbitWebSocket(
        settings.upbit_ws_url,
        list(settings.markets),
        on_trade=on_trade,
        on_orderbook=on_orderbook,
        on_status=on_status_message,
        on_event=on_event,
        rest_url=settings.upbit_rest_url,
        stale_after_s=settings.feed_stale_after_s,
    )
    feed = asyncio.create_task(client.run(), name="upbit-record")
    try:
        if stop is None:
            await feed
        else:
            await asyncio.wait(
                {feed, asyncio.ensure_future(stop.wait())}, return_when="FIRST_COMPLETED"
            )
    finally:
        client.stop()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await feed
        recorder.close()
    return recorder
