"""The watchdog's way out: emergency sells that bypass the graph, retried until they go through.

A trigger (`exchange.watchdog`) cools its markets down (`TradingControl.cool_down`), and every
position it covers is market-sold at once through the guarded exchange, from a fresh-enough
account read when the venue has one. A sell the exchange did not take is retried with the same
identifier (never sent twice) while entries stay blocked; three failed exchange calls in a row
are the watchdog's network trigger (`ExchangeHealth`).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from app.engine.ledger import JournaledExchange, Ledger
from app.engine.venue import Outbox, TradingVenue, log, ms
from exchange.types import (
    AccountSnapshot,
    ExchangeError,
    OrderRejected,
    OrderRequest,
    OrderType,
    Side,
)
from exchange.watchdog import Trigger, Watchdog

EXIT_RETRY_S = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


@dataclass
class ExchangeHealth:
    """Whether the exchange answers; consecutive failures feed the watchdog's network detector."""

    watchdog: Watchdog | None
    outbox: Outbox
    healthy: bool = True

    async def failed(self, ts: datetime) -> None:
        """An exchange call failed at `ts`."""
        self.healthy = False
        if self.watchdog is not None:
            trigger = self.watchdog.record_exchange_failure(ms(ts))
            if trigger is not None:
                payload = {"detector": trigger.detector, "details": dict(trigger.details)}
                self.outbox.record(None, "watchdog_trigger", payload)
                self.outbox.publish({"type": "watchdog_trigger", **payload})
                self.outbox.alert(
                    "error", "exchange unreachable", "entries blocked; retrying exits"
                )

    async def ok(self) -> None:
        """An exchange call succeeded."""
        if not self.healthy:
            self.outbox.publish({"type": "exchange_recovered"})
        self.healthy = True
        if self.watchdog is not None:
            self.watchdog.record_exchange_success()


@dataclass
class EmergencyExits:
    """Sells what a watchdog trigger covers, now, and keeps trying until the exchange takes it."""

    venue: TradingVenue
    exchange: JournaledExchange
    ledger: Ledger
    outbox: Outbox
    health: ExchangeHealth
    session_id: str
    markets: list[str]
    cool_down: Callable[[list[str], datetime, str], None]
    cooldown_s: int = 1800
    exit_retry_s: tuple[float, ...] = EXIT_RETRY_S
    # How old an account read the watchdog may sell from without reading it again (live venue)
    account_max_age_s: float = 30.0
    background: set[asyncio.Task[None]] = field(default_factory=set)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def on_trigger(self, trigger: Trigger, ts: datetime) -> None:
        """Sell what the trigger covers now, bypassing the graph; cool the market down."""
        markets = [trigger.market] if trigger.market else list(self.markets)
        until = ts + timedelta(seconds=self.cooldown_s)
        self.cool_down(markets, until, trigger.detector)
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
        asyncio.get_running_loop().call_soon(
            self.outbox.publish, {"type": "watchdog_trigger", **payload}
        )
        try:
            await self._exit_positions(markets, trigger, ts)
        finally:
            self.outbox.record(None, "watchdog_trigger", payload)

    async def _exit_positions(self, markets: list[str], trigger: Trigger, ts: datetime) -> None:
        """Sell every position in `markets`, from a fresh-enough account read if there is one."""
        account = self.venue.recent_account(self.account_max_age_s)
        from_cache = account is not None
        if account is None:
            try:
                account = await self.venue.get_account()
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
                self.outbox.record(None, "emergency_sell_failed", payload)
                self.outbox.publish({"type": "emergency_sell_failed", **payload})
                await self.health.failed(ts)
                self._spawn(self._retry_positions(markets, trigger, ts))
                return
        for market in markets:
            position = account.positions.get(market)
            if position is None or position.volume == 0:
                continue
            sold = await self._emergency_exit(market, position.volume, trigger, ts, account)
            if not sold and from_cache:  # refused on a cached balance: read it and try again
                try:
                    fresh = (await self.venue.get_account()).positions.get(market)
                except (ExchangeError, OSError, TimeoutError) as exc:
                    log.warning("emergency exit: the account cannot be read again: %s", exc)
                    await self.health.failed(ts)
                    self._spawn(self._retry_positions([market], trigger, ts))
                    continue
                if fresh is not None and fresh.volume > 0:
                    await self._emergency_exit(
                        market, fresh.volume, trigger, ts, None, suffix="-fresh"
                    )

    def _delays(self) -> itertools.chain[float]:
        return itertools.chain(self.exit_retry_s, itertools.repeat(self.exit_retry_s[-1]))

    async def _retry_positions(self, markets: list[str], trigger: Trigger, ts: datetime) -> None:
        """Read the account until the exchange answers, then sell what the trigger covers."""
        for delay in self._delays():
            await asyncio.sleep(delay)
            try:
                await self.venue.get_account()
            except (ExchangeError, OSError, TimeoutError):
                await self.health.failed(ts)
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
        # No "sending" row first on this urgent path (the journaled exchange skips it): the
        # order manager journals the intent before the request leaves (live), and the paper
        # venue cannot lose an order.
        try:
            order = await self.exchange.place_order(request, purpose="emergency", account=account)
        except OrderRejected as exc:
            self._record_failure(market, request, trigger, str(exc), retrying=False)
            return False
        except (ExchangeError, OSError, TimeoutError) as exc:
            self._record_failure(market, request, trigger, str(exc), retrying=True)
            await self.health.failed(ts)
            self._spawn(self._retry_exit(request, trigger, ts))
            return True
        await self.health.ok()
        await self.ledger.record_fills(None, order, None, reason=f"watchdog:{trigger.detector}")
        self.outbox.alert(
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
        for delay in self._delays():
            await asyncio.sleep(delay)
            try:
                order = await self.exchange.get_order(request.identifier)
                if order is None:
                    account = await self.venue.get_account()
                    if request.market not in account.positions:
                        await self.health.ok()
                        return
                    order = await self.exchange.place_order(request, purpose="emergency")
            except OrderRejected as exc:
                self._record_failure(request.market, request, trigger, str(exc), False)
                return
            except (ExchangeError, OSError, TimeoutError) as exc:
                log.warning("emergency sell %s still failing: %s", request.identifier, exc)
                await self.health.failed(ts)
                continue
            await self.health.ok()
            await self.ledger.record_fills(None, order, None, reason=f"watchdog:{trigger.detector}")
            self.outbox.alert(
                "emergency_sell",
                f"{request.market} sold after retries",
                str(order.avg_price),
                market=request.market,
            )
            return

    def _record_failure(
        self, market: str, request: OrderRequest, trigger: Trigger, error: str, retrying: bool
    ) -> None:
        payload = {
            "market": market,
            "detector": trigger.detector,
            "error": error,
            "identifier": request.identifier,
            "retrying": retrying,
        }
        self.outbox.record(None, "emergency_sell_failed", payload)
        self.outbox.publish({"type": "emergency_sell_failed", **payload})
        self.outbox.alert("error", f"emergency sell of {market} failed", error, market=market)
