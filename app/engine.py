"""The long-running engine: turns bar closes into graph runs, journals them, enforces exits.

One engine owns one account. Each closed 1-minute bar updates the live features and the paper
marks, checks stop-loss and take-profit on held coins, then runs the graph once (a new thread
per run, so every run can be found, listed and resumed by its id). Viewers only watch: the
engine publishes every node update and event on the bus and never waits for a reader.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from alerts.types import Alert
from exchange.bars import LiveBarClose
from exchange.feed import BarClose, bar_to_ticks
from exchange.risk import GuardedExchange, RiskGuard, TradingState
from exchange.types import (
    AccountSnapshot,
    Bar,
    ExchangeError,
    Order,
    OrderRejected,
    OrderRequest,
    OrderType,
    Side,
)
from exchange.watchdog import Trigger, Watchdog
from graph.context import Context
from graph.state import AccountView, MarketSnapshot, TradeState
from ml.features import LiveFeatures
from policy.book import PolicyBook
from store.bus import EventBus
from store.journal import Journal

log = logging.getLogger(__name__)
RECENT_RESULTS = 20
RECENT_CLOSES = 30  # closes each reviewer is shown
LLM_NODES = (("groq_check", "groq"), ("ollama_check", "ollama"), ("sizing", "sizing"))


@dataclass(frozen=True, slots=True)
class CycleResult:
    """What one graph run decided."""

    run_id: str
    action: str
    market: str | None
    reason: str
    duration_ms: float


@dataclass(slots=True)
class Protection:
    """Stop-loss and take-profit trigger prices of one held coin."""

    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None


class AlertSink(Protocol):
    """Where alerts go (the dispatcher); publishing never blocks."""

    def publish(self, alert: Alert) -> bool: ...


class Venue(Protocol):
    """The account the engine marks and reads: the paper exchange, or Upbit when live."""

    def on_bar(self, bar: Bar) -> Any: ...

    def on_tick(self, market: str, ts: datetime, price: float) -> None: ...

    async def get_account(self) -> AccountSnapshot: ...


@dataclass
class Engine:
    """Owns the account, the features and the graph runs of one trading session.

    `paper` is the simulated venue the replayed market moves; `exchange` is the guarded view of
    it that every order goes through (risk limits and the trading state, in one place).
    """

    graph: Any  # a compiled LangGraph graph
    context: Context
    paper: Venue
    exchange: GuardedExchange
    journal: Journal
    bus: EventBus
    markets: list[str]
    session_id: str
    watchdog: Watchdog | None = None
    alerts: AlertSink | None = None
    cooldown_s: int = 1800
    exit_retry_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
    # How old an account read the watchdog may sell from without reading it again (live venue)
    account_max_age_s: float = 30.0
    history_bars: int = 300
    cooldowns: dict[str, tuple[datetime, str]] = field(init=False, default_factory=dict)
    exchange_healthy: bool = field(init=False, default=True)
    features: dict[str, LiveFeatures] = field(init=False)
    closes: dict[str, float] = field(init=False, default_factory=dict)
    recent_closes: dict[str, deque[float]] = field(init=False, default_factory=dict)
    last_bar_ts: datetime | None = field(init=False, default=None)
    protections: dict[str, Protection] = field(init=False, default_factory=dict)
    protection_retry_s: float = 10.0
    _protection_retry_at: dict[str, datetime] = field(init=False, default_factory=dict)
    recent_results: list[float] = field(init=False, default_factory=list)
    book: PolicyBook = field(init=False, default_factory=PolicyBook)
    _monthly_written: dict[str, Any] = field(init=False, default_factory=dict)
    _monthly_seen_at: str | None = field(init=False, default=None)
    # Why no entry may be made at all (an unproven model trading live), else None.
    entry_block: str | None = field(init=False, default=None)
    model_status: dict[str, Any] = field(init=False, default_factory=dict)
    _lock: asyncio.Lock = field(init=False, default_factory=asyncio.Lock)
    _manual_runs: int = field(init=False, default=0)
    _tasks: set[asyncio.Task[CycleResult]] = field(init=False, default_factory=set)
    _background: set[asyncio.Task[None]] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        self.features = {m: LiveFeatures(history_bars=self.history_bars) for m in self.markets}
        self.recent_closes = {m: deque(maxlen=RECENT_CLOSES) for m in self.markets}
        for market, row in self.journal.positions().items():
            self.protections[market] = Protection(
                _decimal_or_none(row.get("stop_loss_price")),
                _decimal_or_none(row.get("take_profit_price")),
            )
        self.recent_results = self.journal.recent_results(RECENT_RESULTS)
        # The policy's memory (entries, exits, today's count) comes from the fills, so a
        # restart remembers when each position was opened.
        self.book = PolicyBook.from_fills(self.journal.list_fills())
        control = self.journal.read_trading_control()
        self.guard.set_state(TradingState(control["state"]), control.get("reason") or "")
        saved = self.journal.read_loss_limit(MONTHLY) or {}
        self.guard.restore_monthly(saved)
        self._monthly_written = _monthly_key(saved)
        self._monthly_seen_at = saved.get("seen_at") if saved.get("breached") else None

    @property
    def guard(self) -> RiskGuard:
        """The risk guard every order passes."""
        return self.exchange.guard

    # Feeding -----------------------------------------------------------------------------
    def warm_up(self, closes: Iterable[BarClose]) -> int:
        """Feed bars into the features, marks and watchdog without acting; return the count."""
        count = 0
        for close in closes:
            for market, bar in close.bars.items():
                if market in self.features:
                    if self.watchdog is not None:
                        for ts, price, volume in bar_to_ticks(bar):
                            self.watchdog.on_tick(market, _ms(ts), price, volume)
                    self._apply_bar(market, bar, _live_values(close, market))
                    if self.watchdog is not None:  # fills the autoencoder's window only
                        self.watchdog.on_bar(
                            market, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume
                        )
            self.last_bar_ts = close.ts
            count += 1
        return count

    def _apply_bar(self, market: str, bar: Bar, live: dict[str, float]) -> None:
        """Mark the bar and add it to the market's features (``live``: its live-only values)."""
        self.paper.on_bar(bar)
        self.features[market].update(
            bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume, **live
        )
        self.closes[market] = bar.close
        self.recent_closes[market].append(bar.close)

    async def on_bar_close(self, close: BarClose) -> CycleResult:
        """Replay a closed bar tick by tick (the watchdog acts at once), then run the graph.

        A `LiveBarClose` comes from real trades that already went to `on_tick` one by one, so
        its bars are not replayed as ticks; its live-only features join the feature rows.
        """
        async with self._lock:
            await self._sync_control(close.ts)
            live = close.live if isinstance(close, LiveBarClose) else None
            for market, bar in close.bars.items():
                if market not in self.features:
                    continue
                if live is None:
                    for ts, price, volume in bar_to_ticks(bar):
                        await self.on_tick(market, ts, price, volume)
                self._apply_bar(market, bar, _live_values(close, market))
                if self.watchdog is not None:
                    trigger = self.watchdog.on_bar(
                        market, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume
                    )
                    if trigger is not None:
                        await self.on_trigger(trigger, bar.ts + timedelta(minutes=1))
            self.last_bar_ts = close.ts
            await self._check_daily_limit(close.ts + timedelta(minutes=1))
            await self._enforce_protections(close.ts)
            return await self._run_cycle("bar", close.ts)

    # The watchdog --------------------------------------------------------------------------
    async def on_tick(self, market: str, ts: datetime, price: float, volume: float) -> None:
        """Mark the market at a trade, enforce its stop-loss / take-profit, run the watchdog."""
        self.paper.on_tick(market, ts, price)
        protection = self.protections.get(market)
        if protection is not None and _crossed(protection, price) is not None:
            await self._protect(market, price, ts, "tick")
        if self.watchdog is None:
            return
        trigger = self.watchdog.on_tick(market, _ms(ts), price, volume)
        if trigger is not None:
            await self.on_trigger(trigger, ts)

    async def on_trigger(self, trigger: Trigger, ts: datetime) -> None:
        """Sell what the trigger covers now, bypassing the graph; cool the market down."""
        markets = [trigger.market] if trigger.market else list(self.markets)
        until = ts + timedelta(seconds=self.cooldown_s)
        for market in markets:
            self.cooldowns[market] = (until, trigger.detector)
        payload = {
            "market": trigger.market,
            "detector": trigger.detector,
            "price": trigger.price,
            "details": dict(trigger.details),
            "cooldown_until": until.isoformat(),
        }
        # The sells go out before anything else is written: the order manager journals each
        # order's intent before sending it, and the trigger is journaled right after. The
        # event is published once the sell is on its way (the loop's next turn: the send
        # yields while it waits for Upbit), so a Redis round trip never delays it.
        asyncio.get_running_loop().call_soon(self._publish, {"type": "watchdog_trigger", **payload})
        try:
            await self._exit_positions(markets, trigger, ts)
        finally:
            self.journal.record_event(None, "watchdog_trigger", payload, _now())

    async def _exit_positions(self, markets: list[str], trigger: Trigger, ts: datetime) -> None:
        """Sell every position in `markets`, from a fresh-enough account read if there is one."""
        recent = getattr(self.paper, "recent_account", None)
        account = recent(self.account_max_age_s) if callable(recent) else None
        from_cache = account is not None
        if account is None:
            try:
                account = await self.paper.get_account()
            except (ExchangeError, OSError, TimeoutError) as exc:
                log.warning("emergency exit: the account cannot be read: %s", exc)
                payload = {
                    "market": trigger.market,
                    "markets": markets,
                    "detector": trigger.detector,
                    "error": f"the account cannot be read: {exc}",
                    "identifier": None,
                    "retrying": True,
                }
                self.journal.record_event(None, "emergency_sell_failed", payload, _now())
                self._publish({"type": "emergency_sell_failed", **payload})
                await self._exchange_failed(ts)
                task = asyncio.create_task(self._retry_positions(markets, trigger, ts))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                return
        for market in markets:
            position = account.positions.get(market)
            if position is None or position.volume == 0:
                continue
            sold = await self._emergency_exit(market, position.volume, trigger, ts, account)
            if not sold and from_cache:  # refused on a cached balance: read it and try again
                try:
                    fresh = (await self.paper.get_account()).positions.get(market)
                except (ExchangeError, OSError, TimeoutError) as exc:
                    log.warning("emergency exit: the account cannot be read again: %s", exc)
                    await self._exchange_failed(ts)
                    task = asyncio.create_task(self._retry_positions([market], trigger, ts))
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
                    continue
                if fresh is not None and fresh.volume > 0:
                    await self._emergency_exit(
                        market, fresh.volume, trigger, ts, None, suffix="-fresh"
                    )

    async def _retry_positions(self, markets: list[str], trigger: Trigger, ts: datetime) -> None:
        """Read the account until the exchange answers, then sell what the trigger covers."""
        for delay in itertools.chain(self.exit_retry_s, itertools.repeat(self.exit_retry_s[-1])):
            await asyncio.sleep(delay)
            try:
                await self.paper.get_account()
            except (ExchangeError, OSError, TimeoutError):
                await self._exchange_failed(ts)
                continue
            await self._exit_positions(markets, trigger, ts)
            return

    async def _emergency_exit(
        self,
        market: str,
        volume: Decimal,
        trigger: Trigger,
        ts: datetime,
        account: AccountSnapshot | None = None,
        suffix: str = "",
    ) -> bool:
        """Send one emergency market sell; True when the exchange took it (or will retry)."""
        stamp = ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        detector = trigger.detector
        request = OrderRequest(
            market=market,
            side=Side.ASK,
            ord_type=OrderType.MARKET,
            identifier=f"lxa-{self.session_id}-{stamp}-{market}-emergency-{detector}{suffix}",
            volume=volume,
            urgent=True,
        )
        # No "sending" row first on this path: the order manager journals the intent before
        # the request leaves (live), and the paper venue cannot lose an order.
        try:
            order = await self.exchange.place_order(request, purpose="emergency", account=account)
        except OrderRejected as exc:
            self._record_exit_failure(market, request, trigger, str(exc), retrying=False)
            return False
        except (ExchangeError, OSError, TimeoutError) as exc:
            self._record_exit_failure(market, request, trigger, str(exc), retrying=True)
            await self._exchange_failed(ts)
            task = asyncio.create_task(self._retry_exit(request, trigger, ts))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return True
        await self._exchange_ok()
        self.order_log(None, _order_view(order, request))
        await self._journal_fills(None, order, None, reason=f"watchdog:{trigger.detector}")
        self._alert(
            "emergency_sell",
            f"{market} sold: {trigger.detector}",
            f"watchdog {trigger.detector} fired at {trigger.price}; sold {order.executed_volume} "
            f"at {order.avg_price}",
            market=market,
            fields={k: str(v) for k, v in trigger.details.items()},
        )
        return True

    async def _retry_exit(self, request: OrderRequest, trigger: Trigger, ts: datetime) -> None:
        """Keep trying an emergency sell the exchange did not take, then reconcile.

        The identifier is the same on every attempt, so a sell that did reach the exchange is
        found instead of sent twice. Entries stay blocked until the exchange answers again.
        """
        for delay in itertools.chain(self.exit_retry_s, itertools.repeat(self.exit_retry_s[-1])):
            await asyncio.sleep(delay)
            try:
                order = await self.exchange.get_order(request.identifier)
                if order is None:
                    account = await self.paper.get_account()
                    if request.market not in account.positions:
                        await self._exchange_ok()
                        return
                    order = await self.exchange.place_order(request, purpose="emergency")
            except OrderRejected as exc:
                self._record_exit_failure(request.market, request, trigger, str(exc), False)
                return
            except (ExchangeError, OSError, TimeoutError) as exc:
                log.warning("emergency sell %s still failing: %s", request.identifier, exc)
                await self._exchange_failed(ts)
                continue
            await self._exchange_ok()
            self.order_log(None, _order_view(order, request))
            await self._journal_fills(None, order, None, reason=f"watchdog:{trigger.detector}")
            self._alert(
                "emergency_sell",
                f"{request.market} sold after retries",
                str(order.avg_price),
                market=request.market,
            )
            return

    def _record_exit_failure(
        self, market: str, request: OrderRequest, trigger: Trigger, error: str, retrying: bool
    ) -> None:
        payload = {
            "market": market,
            "detector": trigger.detector,
            "error": error,
            "identifier": request.identifier,
            "retrying": retrying,
        }
        self.journal.record_event(None, "emergency_sell_failed", payload, _now())
        self._publish({"type": "emergency_sell_failed", **payload})
        self._alert("error", f"emergency sell of {market} failed", error, market=market)

    async def _exchange_failed(self, ts: datetime) -> None:
        self.exchange_healthy = False
        if self.watchdog is not None:
            trigger = self.watchdog.record_exchange_failure(_ms(ts))
            if trigger is not None:
                payload = {"detector": trigger.detector, "details": dict(trigger.details)}
                self.journal.record_event(None, "watchdog_trigger", payload, _now())
                self._publish({"type": "watchdog_trigger", **payload})
                self._alert("error", "exchange unreachable", "entries blocked; retrying exits")

    async def _exchange_ok(self) -> None:
        if not self.exchange_healthy:
            self._publish({"type": "exchange_recovered"})
        self.exchange_healthy = True
        if self.watchdog is not None:
            self.watchdog.record_exchange_success()

    # Trading state and hard limits ---------------------------------------------------------
    async def _sync_control(self, ts: datetime) -> None:
        """Apply a halt, resume or flatten written by `lxa halt` or the API."""
        control = self.journal.read_trading_control()
        await self._resume_monthly_if_asked(control, ts)
        # Compare with the operator's choice, not the effective state: a breached daily limit
        # makes the guard "reducing" while the journal still says "active".
        if control["state"] != self.guard.manual_state.value:
            previous = self.guard.state
            self.guard.set_state(TradingState(control["state"]), control.get("reason", ""))
            self._publish(
                {
                    "type": "trading_state",
                    "state": self.guard.state.value,
                    "previous": previous.value,
                    "reason": self.guard.reason,
                }
            )
            kind = "halt" if self.guard.state is TradingState.HALTED else "resume"
            self._alert(kind, f"trading {self.guard.state.value}", self.guard.reason)
            if self.guard.state is TradingState.HALTED:
                await self.exchange.cancel_all()
        if control.get("flatten_requested"):
            await self.exchange.cancel_all()  # coins locked by resting sells cannot be sold
            stamp = ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
            orders = await self.exchange.flatten(
                identifier_prefix=f"lxa-{self.session_id}-{stamp}-flatten"
            )
            for order in orders:
                self.order_log(None, _order_view(order, None))
                await self._journal_fills(None, order, None, reason="flatten")
            self.journal.clear_flatten_request()
            self._alert("halt", "positions flattened", f"{len(orders)} sell order(s)")

    async def _resume_monthly_if_asked(self, control: Mapping[str, Any], ts: datetime) -> None:
        """An operator's resume written after the monthly cap was breached clears the breach."""
        seen_at = self._monthly_seen_at
        updated_at = control.get("updated_at")
        if not self.guard.monthly_cap_breached or seen_at is None or updated_at is None:
            return
        if control["state"] != TradingState.ACTIVE.value or control.get("updated_by") == "engine":
            return
        if updated_at <= datetime.fromisoformat(str(seen_at)):
            return
        account = await self.paper.get_account()
        equity = account.equity(self.closes)
        reason = self.guard.reason
        self.guard.resume_monthly(equity, ts + timedelta(minutes=1))
        self._save_monthly(resumed_by=str(control.get("updated_by")))
        payload = {"state": self.guard.state.value, "cleared": reason, "start_equity": str(equity)}
        self.journal.record_event(None, "monthly_cap_resumed", payload, _now())
        self._publish({"type": "monthly_cap_resumed", **payload})
        self._alert(
            "resume",
            "monthly loss cap cleared by the operator",
            f"counting again from {equity:.0f}",
        )

    async def _check_daily_limit(self, now: datetime) -> None:
        account = await self.paper.get_account()
        equity = account.equity(self.closes)
        day_before, start_before = self.guard.trading_day, self.guard.day_start_equity
        before = self.guard.state
        after = self.guard.on_equity(equity, now)
        if day_before is not None and self.guard.trading_day != day_before and start_before:
            change = float(equity / start_before - 1) * 100
            self._alert(
                "daily_summary",
                f"trading day {day_before.isoformat()} closed",
                f"equity {equity:.0f} KRW ({change:+.2f}% on the day)",
                fields={"positions": ", ".join(sorted(account.positions)) or "none"},
            )
        if after is not before:
            payload = {"state": after.value, "previous": before.value, "reason": self.guard.reason}
            self.journal.record_event(None, "trading_state", payload, _now())
            self._publish({"type": "trading_state", **payload})
            self._alert("trading_state", f"trading {after.value}", self.guard.reason)
        self._save_monthly()

    def _save_monthly(self, *, resumed_by: str | None = None) -> None:
        """Write the monthly cap's figures when they change (period, start, breach, 0.1% steps)."""
        figures = self.guard.monthly_snapshot()
        if figures["month"] is None:
            return
        key = _monthly_key(figures)
        if key == self._monthly_written and resumed_by is None:
            return
        if figures["breached"]:
            # Wall time the breach was seen: a resume written after it clears it (bar times of
            # a replay cannot be compared with the operator's clock).
            self._monthly_seen_at = self._monthly_seen_at or _now().isoformat()
        else:
            self._monthly_seen_at = None
        figures["seen_at"] = self._monthly_seen_at
        if resumed_by is not None:
            figures["resumed_at"] = _now().isoformat()
            figures["resumed_by"] = resumed_by
        self.journal.write_loss_limit(MONTHLY, figures)
        self._monthly_written = key

    def announce_model(self, status: Mapping[str, Any]) -> None:
        """Journal and publish the model set in use and whether its policy has shown an edge.

        With `status["block_entries"]`, no entry is proposed for any market (an unproven model
        trading live without the operator's override).
        """
        self.model_status = dict(status)
        self.entry_block = (
            f"unproven model: {status.get('verdict')}; live entries need --allow-unproven-model"
            if status.get("block_entries")
            else None
        )
        self.journal.record_event(None, "model_status", self.model_status, _now())
        self._publish({"type": "model_status", **self.model_status})
        if not status.get("proven"):
            detail = str(status.get("verdict"))
            if status.get("block_entries"):
                self._alert("error", "live entries refused: unproven model", detail)
            elif status.get("live"):
                self._alert("error", "trading live with an unproven model (overridden)", detail)

    def blocked_reason(self, market: str, now: datetime) -> str | None:
        """Why entries into `market` are refused now, or None."""
        if self.entry_block is not None:
            return self.entry_block
        if self.guard.state is not TradingState.ACTIVE:
            return f"trading {self.guard.state.value}: {self.guard.reason}"
        if not self.exchange_healthy:
            return "exchange unreachable"
        cooldown = self.cooldowns.get(market)
        if cooldown is not None:
            until, detector = cooldown
            if now < until:
                return f"cooldown after {detector} until {until.isoformat()}"
            del self.cooldowns[market]
        return None

    def _alert(self, kind: str, title: str, text: str, **extra: Any) -> None:
        if self.alerts is None:
            return
        try:
            self.alerts.publish(Alert(kind=kind, title=title, text=text, ts=_now(), **extra))  # type: ignore[arg-type]
        except Exception:  # an alert must never stop trading
            log.exception("could not queue alert %s", title)

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
        pending = [*self._background, *self._tasks]
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

    # Snapshots ---------------------------------------------------------------------------
    async def account_view(self) -> tuple[AccountSnapshot, AccountView]:
        """Return the account and its JSON view with P&L at the latest closes."""
        account = await self.paper.get_account()
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
                "stop_loss_price": _str_or_none(protection.stop_loss_price),
                "take_profit_price": _str_or_none(protection.take_profit_price),
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
        now = (self.last_bar_ts or _now()) + timedelta(minutes=1)
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
                "blocked": self.blocked_reason(market, now),
                "recent_closes": list(self.recent_closes[market]),
                "policy": self.book.snapshot(market, now),  # type: ignore[typeddict-item]
            }
        return snapshots

    # One graph run -----------------------------------------------------------------------
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
        self.journal.record_event(run_id, "run_started", {"trigger": trigger}, _now())
        self._publish(
            {"type": "run_started", "run_id": run_id, "trigger": trigger, "bar_ts": state["bar_ts"]}
        )
        return await self._drive(run_id, state, trigger, bar_ts)

    async def resume_unfinished(self) -> list[CycleResult]:
        """Finish runs that started but never recorded a decision (a crash mid-run)."""
        results = []
        for run_id in self.journal.unfinished_runs(self.session_id):
            config = {"configurable": {"thread_id": run_id}}
            snapshot = await self.graph.aget_state(config)
            if not snapshot.values:
                continue
            if not snapshot.next:
                # It finished but was not journaled: record it from its last checkpoint.
                results.append(self._record(run_id, snapshot.values, 0.0))
                continue
            log.info("resuming run %s at %s", run_id, snapshot.next)
            values = snapshot.values
            bar_ts = datetime.fromisoformat(values["bar_ts"])
            async with self._lock:
                results.append(await self._drive(run_id, None, values["trigger"], bar_ts))
        return results

    async def _drive(
        self, run_id: str, state: TradeState | None, trigger: str, bar_ts: datetime
    ) -> CycleResult:
        config = {"configurable": {"thread_id": run_id}}
        started = time.perf_counter()
        final: Mapping[str, Any] | None = None
        async for mode, chunk in self.graph.astream(
            state,
            config,
            context=self.context,
            stream_mode=["updates", "custom", "tasks", "values"],
        ):
            if mode == "values":  # the state after each step: the last one is the run's end
                final = chunk
                continue
            if mode == "custom":
                self._publish({**chunk, "run_id": run_id})
                continue
            if mode == "tasks":  # a task's start carries its input, its end its result
                if "input" in chunk:
                    self._publish({"type": "node_started", "node": chunk["name"], "run_id": run_id})
                continue
            for node, update in chunk.items():
                for item in (update or {}).get("events", []):
                    self._publish({**item, "run_id": run_id})
                self._publish({"type": "node_finished", "node": node, "run_id": run_id})
        if final is None:  # nothing ran (a resumed run with no step left): read the checkpoint
            final = (await self.graph.aget_state(config)).values
        duration_ms = (time.perf_counter() - started) * 1000
        result = self._record(run_id, final, duration_ms)
        await self._after_order(run_id, final)
        return result

    def _record(self, run_id: str, final: Mapping[str, Any], duration_ms: float) -> CycleResult:
        decision = final["decision"]
        labels = {
            "groq_check": final.get("groq", {}).get("reviewer"),
            "ollama_check": final.get("ollama", {}).get("reviewer"),
            "sizing": final.get("sizing", {}).get("reviewer"),
        }
        llm_calls = []
        for node, key in LLM_NODES:
            view = final.get(key)
            if view and view.get("reviewer") not in (None, "deterministic"):
                llm_calls.append(_llm_call_row(run_id, node, view))
        ml = {
            "model_id": final.get("model_id"),
            "signals": final.get("signals", {}),
            "features": {m: s.get("features") for m, s in final.get("markets", {}).items()},
        }
        row = {
            "run_id": run_id,
            "session_id": self.session_id,
            "bar_ts": datetime.fromisoformat(final["bar_ts"]),
            "created_at": _now(),
            "trigger": final.get("trigger", "bar"),
            "action": decision["action"],
            "market": decision.get("market"),
            "reason": decision["reason"],
            "reviewer_labels": labels,
            "nodes": {
                "input": {
                    "account": final.get("account"),
                    "closes": {m: v.get("close") for m, v in final.get("markets", {}).items()},
                    "recent_results": final.get("recent_results"),
                },
                "ml_signal": {"proposal": final.get("proposal"), "signals": final.get("signals")},
                "groq_check": final.get("groq"),
                "ollama_check": final.get("ollama"),
                "sizing": final.get("sizing"),
                "trade": final.get("order"),
            },
            "ml": ml,
            "verdicts": {"groq": final.get("groq"), "ollama": final.get("ollama")},
            "sizing": final.get("sizing"),
            "duration_ms": round(duration_ms, 3),
        }
        events = [
            {"run_id": run_id, "type": e["type"], "payload": e, "ts": _parse_ts(e.get("ts"))}
            for e in final.get("events", [])
        ]
        self.journal.record_run(row, llm_calls, events)
        self._publish(
            {
                "type": "run_finished",
                "run_id": run_id,
                "action": decision["action"],
                "market": decision.get("market"),
                "reason": decision["reason"],
                "duration_ms": round(duration_ms, 3),
            }
        )
        return CycleResult(
            run_id, decision["action"], decision.get("market"), decision["reason"], duration_ms
        )

    def order_log(self, run_id: str | None, order: Mapping[str, Any]) -> None:
        """Journal an order before it is sent and once it is answered (the trade node's hook)."""
        now = _now()
        self.journal.record_order(
            {
                "identifier": order["identifier"],
                "run_id": run_id,
                "market": order["market"],
                "side": order["side"],
                "ord_type": order["ord_type"],
                "price": _decimal_or_none(order.get("requested_krw") or order.get("avg_price")),
                "volume": _decimal_or_none(order.get("requested_volume")),
                "state": order["state"],
                "reason": order.get("error") or None,
                "created_at": now,
                "updated_at": now,
                "executed_volume": Decimal(order.get("executed_volume") or "0"),
                "paid_fee": Decimal(order.get("paid_fee") or "0"),
            }
        )

    async def _after_order(self, run_id: str, final: Mapping[str, Any]) -> None:
        order_view = final.get("order")
        if order_view and order_view.get("state") == "unknown":  # the exchange did not answer
            await self._exchange_failed(datetime.fromisoformat(final["bar_ts"]))
        elif order_view and order_view.get("state") not in (None, "not_sent", "rejected"):
            await self._exchange_ok()
        if not order_view or Decimal(order_view.get("executed_volume") or "0") == 0:
            return
        order = await self.exchange.get_order(order_view["identifier"])
        if order is None:
            return
        protection = Protection(
            _decimal_or_none(order_view.get("stop_loss_price")),
            _decimal_or_none(order_view.get("take_profit_price")),
        )
        await self._journal_fills(run_id, order, protection, reason="graph")

    async def _journal_fills(
        self, run_id: str | None, order: Order, protection: Protection | None, *, reason: str
    ) -> None:
        cost_basis = None
        if order.side is Side.ASK:
            previous = self.journal.positions().get(order.market)
            cost_basis = _decimal_or_none(previous.get("avg_buy_price")) if previous else None
        for fill in order.fills:
            self.journal.record_fill(
                {
                    "order_identifier": fill.order_identifier,
                    "market": fill.market,
                    "side": fill.side.value,
                    "price": fill.price,
                    "volume": fill.volume,
                    "fee": fill.fee,
                    "ts": fill.ts,
                    "trade_uuid": fill.trade_uuid,  # live fills are journaled once
                }
            )
            self._publish(
                {
                    "type": "fill",
                    "run_id": run_id,
                    "market": fill.market,
                    "side": fill.side.value,
                    "price": str(fill.price),
                    "volume": str(fill.volume),
                    "fee": str(fill.fee),
                }
            )
        if order.executed_volume > 0:
            side = "bought" if order.side is Side.BID else "sold"
            self._alert(
                "fill",
                f"{order.market} {side}",
                f"{order.executed_volume} at {order.avg_price} ({reason})",
                market=order.market,
                fields={"fee": str(order.paid_fee), "identifier": order.identifier},
            )
        account = await self.paper.get_account()
        position = account.positions.get(order.market)
        flat = position is None or position.volume == 0
        for k, fill in enumerate(order.fills):
            last = k == len(order.fills) - 1
            self.book.on_fill(fill.market, fill.side.value, fill.ts, flat_after=flat and last)
        now = _now()
        if position is None or position.volume == 0:
            self.journal.delete_position(order.market)
            self.protections.pop(order.market, None)
            if cost_basis is not None and order.avg_price is not None and cost_basis > 0:
                proceeds = order.avg_price * (1 - self.context.policy.fee_rate)
                result = float(proceeds / cost_basis - 1)
                self.recent_results = [*self.recent_results, result][-RECENT_RESULTS:]
                payload = {
                    "market": order.market,
                    "return": result,
                    "reason": reason,
                    "identifier": order.identifier,
                }
                self.journal.record_event(run_id, "position_closed", payload, now)
                self._publish({"type": "position_closed", "run_id": run_id, **payload})
            return
        if protection is not None:
            self.protections[order.market] = protection
        current = self.protections.get(order.market, Protection(None, None))
        self.journal.upsert_position(
            {
                "market": order.market,
                "volume": position.volume,
                "avg_buy_price": position.avg_buy_price,
                "stop_loss_price": current.stop_loss_price,
                "take_profit_price": current.take_profit_price,
                "opened_at": now,
                "updated_at": now,
                "run_id": run_id,
            }
        )

    # Stop-loss and take-profit -----------------------------------------------------------
    async def _enforce_protections(self, bar_ts: datetime) -> None:
        """Sell a held coin whose bar close crossed its stop-loss or take-profit price.

        Ticks enforce the same prices as they arrive (`on_tick`); this catches a bar whose
        ticks were not seen (a warm-up, a live bar built while a sell was failing).
        """
        for market in list(self.protections):
            close = self.closes.get(market)
            if close is not None and _crossed(self.protections[market], close) is not None:
                await self._protect(market, close, bar_ts, "bar_close")

    async def _protect(self, market: str, price: float, ts: datetime, source: str) -> None:
        """Market-sell `market`'s whole position because `price` crossed a protection price.

        Upbit has no resting stop orders for spot, so the engine is the stop. A failed sell
        is recorded and retried no sooner than `protection_retry_s` later (not on every tick).
        """
        protection = self.protections.get(market)
        reason = _crossed(protection, price) if protection is not None else None
        if protection is None or reason is None:
            return
        retry_at = self._protection_retry_at.get(market)
        if retry_at is not None and ts < retry_at:
            return
        account = await self.paper.get_account()
        position = account.positions.get(market)
        if position is None or position.volume == 0:
            self.protections.pop(market, None)
            return
        stamp = ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        request = OrderRequest(
            market=market,
            side=Side.ASK,
            ord_type=OrderType.MARKET,
            identifier=f"lxa-{self.session_id}-{stamp}-{market}-{reason}",
            volume=position.volume,
        )
        event = {
            "type": "protection",
            "market": market,
            "reason": reason,
            "source": source,
            "price": price,
            "stop_loss_price": _str_or_none(protection.stop_loss_price),
            "take_profit_price": _str_or_none(protection.take_profit_price),
        }
        self._publish(event)
        self.journal.record_event(None, "protection", event, _now())
        self.order_log(None, _request_view(request, "sending"))
        try:
            order = await self.exchange.place_order(request, purpose="exit")
        except (OrderRejected, ExchangeError) as exc:
            log.warning("protection sell %s failed: %s", request.identifier, exc)
            self._protection_retry_at[market] = ts + timedelta(seconds=self.protection_retry_s)
            self.journal.record_event(
                None, "protection_failed", {**event, "error": str(exc)}, _now()
            )
            return
        self._protection_retry_at.pop(market, None)
        self.order_log(None, _order_view(order, request))
        await self._journal_fills(None, order, None, reason=reason)

    def _publish(self, event: dict[str, Any]) -> None:
        self.bus.publish(event)


MONTHLY = "monthly"


def _monthly_key(figures: Mapping[str, Any]) -> dict[str, Any]:
    """What makes the monthly figures worth writing again: period, start, breach, 0.1% steps."""
    loss = figures.get("loss_pct")
    return {
        "month": figures.get("month"),
        "start_equity": figures.get("start_equity"),
        "breached": bool(figures.get("breached")),
        "loss_step": None if loss is None else math.floor(float(loss) * 10),
    }


def _llm_call_row(run_id: str, node: str, view: Mapping[str, Any]) -> dict[str, Any]:
    """One journal row for a reviewer's or sizer's answer (an LLM call, or a rule-based one)."""
    call = view.get("call") or {}
    response = {k: v for k, v in view.items() if k != "call"}
    response["raw"] = call.get("raw")
    response["thinking"] = call.get("thinking")
    return {
        "run_id": run_id,
        "node": node,
        "provider": call.get("provider") or view.get("reviewer"),
        "model": call.get("model") or view.get("reviewer"),
        "prompt_ref": call.get("prompt_ref"),
        "request": {
            "system": call.get("system"),
            "user": call.get("user"),
            "input_sha256": call.get("input_sha256"),
        },
        "response": response,
        "verdict": view.get("verdict"),
        "latency_ms": call.get("latency_ms") or view.get("latency_ms"),
        "input_tokens": call.get("input_tokens"),
        "output_tokens": call.get("output_tokens"),
        "cached": bool(call.get("cached")),
        "attempts": call.get("attempts"),
        "created_at": _now(),
        "error": view.get("error") or call.get("error") or view.get("refused"),
    }


def _crossed(protection: Protection, price: float) -> str | None:
    """'stop_loss' or 'take_profit' when `price` reached that level, else None."""
    mark = Decimal(str(price))
    if protection.stop_loss_price is not None and mark <= protection.stop_loss_price:
        return "stop_loss"
    if protection.take_profit_price is not None and mark >= protection.take_profit_price:
        return "take_profit"
    return None


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


def _request_view(request: OrderRequest, state: str) -> dict[str, Any]:
    return {
        "identifier": request.identifier,
        "market": request.market,
        "side": request.side.value,
        "ord_type": request.ord_type.value,
        "state": state,
        "requested_volume": _str_or_none(request.volume),
        "requested_krw": _str_or_none(request.price)
        if request.ord_type is OrderType.PRICE
        else None,
    }


def _order_view(order: Order, request: OrderRequest | None) -> dict[str, Any]:
    view = (
        _request_view(request, order.state.value)
        if request
        else {
            "identifier": order.identifier,
            "market": order.market,
            "side": order.side.value,
            "ord_type": order.ord_type.value,
            "state": order.state.value,
            "requested_volume": _str_or_none(order.volume),
        }
    )
    view.update(
        avg_price=_str_or_none(order.avg_price),
        executed_volume=str(order.executed_volume),
        paid_fee=str(order.paid_fee),
        error=order.reason,
    )
    return view


def _now() -> datetime:
    return datetime.now(UTC)


def _parse_ts(value: Any) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    return _now()


def _decimal_or_none(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _str_or_none(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _live_values(close: BarClose, market: str) -> dict[str, float]:
    """Return a bar's trade_intensity and spread_bps: live, replayed from a recording, or none."""
    if isinstance(close, LiveBarClose) and market in close.live:
        return close.live[market].as_features()
    return dict(close.live_values.get(market, {}))
