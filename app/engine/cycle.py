"""The bar cycle: bar closes become feature rows, ticks, and one graph run each.

One engine owns one account. Each closed 1-minute bar is replayed tick by tick (the watchdog
and the stops act at once), marks the venue, updates the live features; then the trading
control applies the operator's choices and the loss limits, the closes are checked against the
stops, and the graph runs once (a new thread per run, so every run can be found, listed and
resumed by its id). Viewers only watch: the engine publishes every node update and event on the
bus and never waits for a reader. The other concerns live beside this module: the ledger
(orders, fills, positions), emergency exits, protections, trading control and the run record.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from app.engine.control import TradingControl
from app.engine.emergency import EmergencyExits, ExchangeHealth
from app.engine.faults import Outages, is_transient
from app.engine.ledger import (
    JournaledExchange,
    Ledger,
    Protection,
    str_or_none,
)
from app.engine.models import ModelSwitch
from app.engine.news import NewsReader, NewsWatch
from app.engine.protections import Protections
from app.engine.record import CycleResult, RunRecorder
from app.engine.runs import GraphRuns
from app.engine.venue import AlertSink, Outbox, TradingVenue, log, ms, now
from exchange.bars import LiveBarClose
from exchange.feed import BarClose, bar_to_ticks
from exchange.ratelimit import ExchangeBlocked
from exchange.risk import GuardedExchange, RiskGuard
from exchange.types import AccountSnapshot, Bar
from exchange.watchdog import Trigger, Watchdog
from graph.context import Context
from graph.state import AccountView, MarketSnapshot, TradeState
from ml.features import LiveFeatures
from policy.book import PolicyBook
from store.bus import EventBus
from store.journal import Journal

T = TypeVar("T")

RECENT_CLOSES = 30  # closes each reviewer is shown


def live_values(close: BarClose, market: str) -> dict[str, float]:
    """A bar's trade_intensity and spread_bps: live, replayed from a recording, or none."""
    if isinstance(close, LiveBarClose) and market in close.live:
        return close.live[market].as_features()
    return dict(close.live_values.get(market, {}))


def news_values(news: NewsWatch | None, market: str, at: datetime) -> dict[str, float]:
    """The market's news features read at `at` (a bar's close), point in time.

    `news_sentiment` is the index (NaN when no item counts), `news_count` the items counted in
    it; none without a reader, so both stay NaN (no news collected, never 0).
    """
    if news is None:
        return {}
    reading = news.reader.reading(market, at)
    sentiment = math.nan if reading.index is None else float(reading.index)
    return {"news_sentiment": sentiment, "news_count": float(reading.items)}


@dataclass
class Engine:
    """Owns the account, the features and the graph runs of one trading session.

    `venue` is the account the market moves (the paper exchange, or Upbit when live);
    `exchange` is the journaled, guarded view of it every order goes through (the ledger writes
    the orders; the risk guard checks the limits and the trading state); the graph's context is
    given the same exchange. `outbox` is where every component reports (journal events, the
    bus, the alerts).
    """

    graph: Any  # a compiled LangGraph graph
    context: Context
    venue: TradingVenue
    exchange: JournaledExchange
    ledger: Ledger
    outbox: Outbox
    markets: list[str]
    session_id: str
    watchdog: Watchdog | None = None
    cooldown_s: int = 1800
    history_bars: int = 300
    outage_reducing_after_s: float = 120.0
    models: ModelSwitch | None = None  # a new champion is taken up at the next bar close
    features: dict[str, LiveFeatures] = field(init=False)
    closes: dict[str, float] = field(init=False, default_factory=dict)
    recent_closes: dict[str, deque[float]] = field(init=False, default_factory=dict)
    last_bar_ts: datetime | None = field(init=False, default=None)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _manual_runs: int = field(init=False, default=0)
    _tasks: set[asyncio.Task[CycleResult]] = field(init=False, default_factory=set)
    news: NewsWatch | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.features = {m: LiveFeatures(history_bars=self.history_bars) for m in self.markets}
        self.recent_closes = {m: deque(maxlen=RECENT_CLOSES) for m in self.markets}
        self.health = ExchangeHealth(self.watchdog, self.outbox)
        self.control = TradingControl(
            self.journal,
            self.exchange,
            self.venue,
            self.ledger,
            self.outbox,
            self.health,
            self.session_id,
        )
        self.emergency = EmergencyExits(
            self.venue,
            self.exchange,
            self.ledger,
            self.outbox,
            self.health,
            self.session_id,
            self.markets,
            self.control.cool_down,
            cooldown_s=self.cooldown_s,
        )
        self.stops = Protections(
            self.ledger, self.venue, self.exchange, self.outbox, self.session_id
        )
        self.runs = GraphRuns(
            self.context,
            self.ledger,
            self.outbox,
            self.health,
            RunRecorder(self.outbox, self.session_id),
            self.session_id,
        )
        self.outages = Outages(self.guard, self.outbox, self.outage_reducing_after_s)

    def use_exchange(self, exchange: GuardedExchange) -> None:
        """Send every later order through `exchange` (another transport to the same account)."""
        self.exchange = JournaledExchange(exchange, self.ledger)
        for component in (self.control, self.emergency, self.stops):
            component.exchange = self.exchange

    @property
    def journal(self) -> Journal:
        """The journal every component writes to."""
        return self.outbox.journal

    @property
    def bus(self) -> EventBus:
        """The event bus the viewers listen on."""
        return self.outbox.bus

    @property
    def alerts(self) -> AlertSink | None:
        """Where alerts go (None: nowhere)."""
        return self.outbox.alerts

    @alerts.setter
    def alerts(self, sink: AlertSink | None) -> None:
        self.outbox.alerts = sink

    # What the rest of the service reads -----------------------------------------------------
    @property
    def guard(self) -> RiskGuard:
        """The risk guard every order passes."""
        return self.control.guard

    @property
    def protections(self) -> dict[str, Protection]:
        """Stop-loss and take-profit prices of the held coins (the ledger's)."""
        return self.ledger.protections

    @property
    def book(self) -> PolicyBook:
        """The policy's memory of entries and exits (the ledger's)."""
        return self.ledger.book

    @property
    def recent_results(self) -> list[float]:
        """Returns of the latest closed trades, oldest first (the sizer is shown them)."""
        return self.ledger.recent_results

    @property
    def cooldowns(self) -> dict[str, tuple[datetime, str]]:
        """Markets cooling down after a watchdog sell: until when, and which detector."""
        return self.control.cooldowns

    @property
    def exchange_healthy(self) -> bool:
        """Whether the last exchange call succeeded."""
        return self.health.healthy

    @property
    def model_status(self) -> dict[str, Any]:
        """The model set in use and whether its policy has shown an edge."""
        return self.control.model_status

    @property
    def exit_retry_s(self) -> tuple[float, ...]:
        """Delays between retries of an emergency sell the exchange did not take."""
        return self.emergency.exit_retry_s

    @exit_retry_s.setter
    def exit_retry_s(self, delays: tuple[float, ...]) -> None:
        self.emergency.exit_retry_s = delays

    @property
    def protection_retry_s(self) -> float:
        """How long a failed stop-loss or take-profit sell waits before it is tried again."""
        return self.stops.retry_s

    def announce_model(self, status: Mapping[str, Any]) -> None:
        """Journal and publish the model set's status (see `TradingControl.announce_model`)."""
        self.control.announce_model(status)

    def blocked_reason(self, market: str, at: datetime) -> str | None:
        """Why entries into `market` are refused at `at` (the controls, a notice), or None."""
        notice = None if self.news is None else self.news.blocked_reason(market, at)
        return notice or self.control.blocked_reason(market, at)

    def attach_news(self, reader: NewsReader, notice_block: timedelta) -> NewsWatch:
        """Read the news through `reader`: headlines in the prompts, notices and the index
        acted on at each bar close (and live, as a poll brings items: `NewsWatch.check`)."""
        self.news = NewsWatch(reader, self.watchdog, self.on_trigger, self.markets, notice_block)
        return self.news

    # Feeding ----------------------------------------------------------------------------------
    def warm_up(self, closes: Iterable[BarClose]) -> int:
        """Feed bars into the features, marks and watchdog without acting; return the count."""
        count = 0
        for close in closes:
            for market, bar in close.bars.items():
                if market in self.features:
                    if self.watchdog is not None:
                        for ts, price, volume in bar_to_ticks(bar):
                            self.watchdog.on_tick(market, ms(ts), price, volume)
                    self._apply_bar(market, bar, live_values(close, market))
                    if self.watchdog is not None:  # fills the autoencoder's window only
                        self.watchdog.on_bar(
                            market, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume
                        )
            self.last_bar_ts = close.ts
            count += 1
        return count

    def _apply_bar(self, market: str, bar: Bar, live: dict[str, float]) -> None:
        """Mark the bar and add it to the market's features (``live``: its live-only values;
        the news as read at the bar's close join them when a reader is attached)."""
        self.venue.on_bar(bar)
        news = news_values(self.news, market, bar.ts + timedelta(minutes=1))
        self.features[market].update(
            bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume, **live, **news
        )
        self.closes[market] = bar.close
        self.recent_closes[market].append(bar.close)

    async def on_bar_close(self, close: BarClose) -> CycleResult:
        """Replay a closed bar tick by tick (the watchdog acts at once), then run the graph.

        A `LiveBarClose` comes from real trades that already went to `on_tick` one by one, so
        its bars are not replayed as ticks; its live-only features join the feature rows.
        """
        async with self._lock:
            await self.take_champion()  # between runs: this bar runs with the champion
            self.outbox.deferred.flush()  # what waited for the database, first
            synced = await self._transient(self.control.sync(close.ts, self.closes))
            live = close.live if isinstance(close, LiveBarClose) else None
            for market, bar in close.bars.items():
                if market not in self.features:
                    continue
                if live is None:
                    for ts, price, volume in bar_to_ticks(bar):
                        await self.on_tick(market, ts, price, volume)
                self._apply_bar(market, bar, live_values(close, market))
                if self.watchdog is not None:
                    trigger = self.watchdog.on_bar(
                        market, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume
                    )
                    if trigger is not None:
                        await self.on_trigger(trigger, bar.ts + timedelta(minutes=1))
            self.last_bar_ts = close.ts
            if self.news is not None:  # notices and the index, as known at the close
                await self.news.check(close.ts + timedelta(minutes=1))
            outcome: CycleResult | BaseException | None = synced
            if outcome is None:
                outcome = await self._transient(self._decide(close))
            if isinstance(outcome, CycleResult):
                self.outages.recovered(now())
                return outcome
            # The exchange or the database is away: no run this bar (nothing could record it),
            # a hold with the reason; the ticks above still sold what the watchdog and the
            # stops asked for, and their journal rows wait in the deferred writes.
            assert outcome is not None
            reason = self.outages.failed(outcome, now())
            log.warning("bar %s: hold, %s", close.ts.isoformat(), reason)
            return CycleResult(self.run_id_for(close.ts), "hold", None, reason, 0.0)

    async def take_champion(self) -> bool:
        """Switch to a new champion model set if one was promoted; return whether it switched.

        The graph's context is replaced whole (the model and the policy its label implies),
        so a run sees one model; the switch is announced like the model at start.
        """
        if self.models is None:
            return False
        loaded = await self.models.poll()
        if loaded is None:
            return False
        before = self.context.signal_model.model_id
        self.context = replace(self.context, signal_model=loaded.predictor, policy=loaded.policy)
        self.runs.context = self.context
        self.announce_model({**loaded.status, "switched_from": before})
        log.info("model switch: %s -> %s", before, loaded.predictor.model_id)
        return True

    async def _decide(self, close: BarClose) -> CycleResult:
        """Unanswered orders, the limits, the stops at the close, then the graph run of a bar."""
        await self.ledger.settle_unknown(self.exchange)
        await self.control.check_limits(close.ts + timedelta(minutes=1), self.closes)
        await self.stops.at_close(self.closes, close.ts)
        return await self._run_cycle("bar", close.ts)

    async def _transient(self, work: Awaitable[T]) -> T | BaseException | None:
        """Await `work`; return its result, or the transient fault it raised (others raise)."""
        try:
            return await work
        except ExchangeBlocked as exc:  # fatal: halted and saved before the service stops
            self.control.halt_blocked(str(exc))
            raise
        except Exception as exc:
            if not is_transient(exc):
                raise
            return exc

    async def on_tick(self, market: str, ts: datetime, price: float, volume: float) -> None:
        """Mark the market at a trade, enforce its stop-loss / take-profit, run the watchdog."""
        self.venue.on_tick(market, ts, price)
        await self.stops.on_tick(market, price, ts)
        if self.watchdog is None:
            return
        trigger = self.watchdog.on_tick(market, ms(ts), price, volume)
        if trigger is not None:
            await self.emergency.on_trigger(trigger, ts)

    async def on_trigger(self, trigger: Trigger, ts: datetime) -> None:
        """Sell what a watchdog trigger covers now, bypassing the graph (`EmergencyExits`)."""
        await self.emergency.on_trigger(trigger, ts)

    # Manual runs and shutdown -----------------------------------------------------------------
    async def evaluate_now(self, market: str | None = None) -> str:
        """Start a manual re-evaluation on the latest bar; return its run id at once.

        With `market`, only that market is scored. The run belongs to the engine: it finishes
        (and is journaled) whoever is watching.
        """
        if market is not None and market not in self.markets:
            raise ValueError(f"market {market} is not traded here (markets: {self.markets})")
        if self.last_bar_ts is None:
            raise RuntimeError("no bar has closed yet: nothing to evaluate")
        self._manual_runs += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        run_id = f"{self.session_id}-manual-{stamp}-{self._manual_runs}"
        task = asyncio.create_task(self.run_manual(run_id, market))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return run_id

    async def close(self) -> None:
        """Stop background work (exit retries, manual runs) when the engine shuts down."""
        pending = [*self.emergency.background, *self._tasks]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def wait_idle(self) -> None:
        """Wait until the manual runs started so far have finished."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def run_manual(self, run_id: str, market: str | None = None) -> CycleResult:
        """Run the graph now on the latest bar under the given run id (one market or all)."""
        async with self._lock:
            assert self.last_bar_ts is not None
            return await self._run_cycle("manual", self.last_bar_ts, run_id, market)

    # Snapshots --------------------------------------------------------------------------------
    async def account_view(self) -> tuple[AccountSnapshot, AccountView]:
        """Return the account and its JSON view with P&L at the latest closes."""
        account = await self.venue.get_account()
        positions = {}
        for market, pos in account.positions.items():
            mark = self.closes.get(market)
            pnl = (
                float(Decimal(str(mark)) / pos.avg_buy_price - 1)
                if mark is not None and pos.avg_buy_price > 0
                else 0.0
            )
            protection = self.protections.get(market, Protection(None, None))
            positions[market] = {
                "volume": str(pos.volume),
                "avg_buy_price": str(pos.avg_buy_price),
                "unrealized_pct": round(100 * pnl, 4),
                "stop_loss_price": str_or_none(protection.stop_loss_price),
                "take_profit_price": str_or_none(protection.take_profit_price),
            }
        equity = account.equity(self.closes)
        view: AccountView = {
            "krw": str(account.krw),
            "equity": str(equity.quantize(Decimal("0.01"))),
            "positions": positions,  # type: ignore[typeddict-item]
        }
        return account, view

    def _market_snapshots(self, only: str | None = None) -> dict[str, MarketSnapshot]:
        snapshots: dict[str, MarketSnapshot] = {}
        at = (self.last_bar_ts or now()) + timedelta(minutes=1)
        for market in self.markets:
            if market not in self.closes or (only is not None and market != only):
                continue
            row = self.features[market].latest()
            snapshots[market] = {
                "close": self.closes[market],
                # JSON-friendly state: a missing feature is None, never NaN.
                "features": None
                if row is None
                else {name: value if math.isfinite(value) else None for name, value in row.items()},
                "blocked": self.blocked_reason(market, at),
                "recent_closes": list(self.recent_closes[market]),
                "policy": self.book.snapshot(market, at),  # type: ignore[typeddict-item]
                "news": [] if self.news is None else self.news.headlines(market, at),
            }
        return snapshots

    # One graph run ----------------------------------------------------------------------------
    def run_id_for(self, bar_ts: datetime) -> str:
        """Name a bar's run by session and bar time, so it can be found by time."""
        return f"{self.session_id}-{bar_ts.astimezone(UTC).strftime('%Y%m%dT%H%MZ')}"

    async def _run_cycle(
        self, trigger: str, bar_ts: datetime, run_id: str | None = None, market: str | None = None
    ) -> CycleResult:
        run_id = run_id or self.run_id_for(bar_ts)
        _, account = await self.account_view()
        state: TradeState = {
            "run_id": run_id,
            "trigger": trigger,
            "bar_ts": bar_ts.astimezone(UTC).isoformat(),
            "markets": self._market_snapshots(market),
            "account": account,
            "recent_results": list(self.recent_results),
            "events": [],
        }
        self.outbox.record(run_id, "run_started", {"trigger": trigger})
        self.outbox.publish(
            {"type": "run_started", "run_id": run_id, "trigger": trigger, "bar_ts": state["bar_ts"]}
        )
        return await self.runs.drive(self.graph, self.exchange, run_id, state)

    async def resume_unfinished(self) -> list[CycleResult]:
        """Finish runs a crash interrupted, or close them as recorded holds (`GraphRuns`)."""
        return await self.runs.resume_unfinished(
            self.graph, self.exchange, self._lock, self.last_bar_ts
        )
