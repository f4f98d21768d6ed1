"""Stop-loss and take-profit: the engine is the stop (Upbit has no resting stops for spot).

Each trade a tick or a bar close crosses a held coin's protection price, the whole position
is market-sold through the guarded exchange. A failed sell is recorded and retried no sooner
than `retry_s` later (not on every tick). The prices themselves belong to the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from app.engine.ledger import JournaledExchange, Ledger, Protection, str_or_none
from app.engine.venue import Outbox, TradingVenue, log
from exchange.types import ExchangeError, OrderRejected, OrderRequest, OrderType, Side


def crossed(protection: Protection, price: float) -> str | None:
    """'stop_loss' or 'take_profit' when `price` reached that level, else None."""
    mark = Decimal(str(price))
    if protection.stop_loss_price is not None and mark <= protection.stop_loss_price:
        return "stop_loss"
    if protection.take_profit_price is not None and mark >= protection.take_profit_price:
        return "take_profit"
    return None


@dataclass
class Protections:
    """Enforces the ledger's stop-loss and take-profit prices on ticks and bar closes."""

    ledger: Ledger
    venue: TradingVenue
    exchange: JournaledExchange
    outbox: Outbox
    session_id: str
    retry_s: float = 10.0
    retry_at: dict[str, datetime] = field(default_factory=dict)

    async def on_tick(self, market: str, price: float, ts: datetime) -> None:
        """A trade at `price`: sell if it crossed the market's protection."""
        protection = self.ledger.protections.get(market)
        if protection is not None and crossed(protection, price) is not None:
            await self.protect(market, price, ts, "tick")

    async def at_close(self, closes: Mapping[str, float], bar_ts: datetime) -> None:
        """Sell a held coin whose bar close crossed its stop-loss or take-profit price.

        Ticks enforce the same prices as they arrive; this catches a bar whose ticks were not
        seen (a warm-up, a live bar built while a sell was failing).
        """
        for market in list(self.ledger.protections):
            close = closes.get(market)
            protection = self.ledger.protections.get(market)
            if close is not None and protection is not None and crossed(protection, close):
                await self.protect(market, close, bar_ts, "bar_close")

    async def protect(self, market: str, price: float, ts: datetime, source: str) -> None:
        """Market-sell `market`'s whole position because `price` crossed a protection price."""
        protection = self.ledger.protections.get(market)
        reason = crossed(protection, price) if protection is not None else None
        if protection is None or reason is None:
            return
        retry_at = self.retry_at.get(market)
        if retry_at is not None and ts < retry_at:
            return
        volume = await self._held(market, ts)
        if volume is None:
            return
        if volume == 0:
            self.ledger.protections.pop(market, None)
            return
        stamp = ts.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        request = OrderRequest(
            market=market,
            side=Side.ASK,
            ord_type=OrderType.MARKET,
            identifier=f"lxa-{self.session_id}-{stamp}-{market}-{reason}",
            volume=volume,
        )
        event = {
            "type": "protection",
            "market": market,
            "reason": reason,
            "source": source,
            "price": price,
            "stop_loss_price": str_or_none(protection.stop_loss_price),
            "take_profit_price": str_or_none(protection.take_profit_price),
        }
        self.outbox.publish(event)
        self.outbox.record(None, "protection", event)
        try:
            order = await self.exchange.place_order(request, purpose="exit")
        except (OrderRejected, ExchangeError) as exc:
            log.warning("protection sell %s failed: %s", request.identifier, exc)
            self.retry_at[market] = ts + timedelta(seconds=self.retry_s)
            self.outbox.record(None, "protection_failed", {**event, "error": str(exc)})
            return
        self.retry_at.pop(market, None)
        await self.ledger.record_fills(None, order, None, reason=reason)

    async def _held(self, market: str, ts: datetime) -> Decimal | None:
        """The volume to sell: the account's, else the journal's (the fills' sum); None: later."""
        try:
            position = (await self.venue.get_account()).positions.get(market)
            return Decimal(0) if position is None else position.volume
        except (ExchangeError, OSError, TimeoutError) as exc:
            log.warning(
                "protection %s: account unreadable (%s); selling the journal's", market, exc
            )
        try:
            row = self.ledger.journal.positions().get(market)
        except Exception as exc:  # the database is away too: try again after the pause
            log.warning("protection %s: no position readable (%s); retrying later", market, exc)
            self.retry_at[market] = ts + timedelta(seconds=self.retry_s)
            return None
        return Decimal(0) if row is None else Decimal(str(row["volume"]))
