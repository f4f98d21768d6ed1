"""The ledger: the one owner of the account's orders, fills and positions in the journal.

Every order the engine or the graph sends goes through `JournaledExchange`, which writes it
before it leaves (urgent emergency sells excepted: the live order manager journals their intent
in the same write that claims it) and once it is answered, refused or lost. `Ledger` writes the
fills and the position they leave, the stop-loss and take-profit that guard it, the policy's
memory of entries and exits (`policy.book`), and the results of closed trades the sizer is shown.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.engine.faults import is_database_error
from app.engine.venue import Outbox, TradingVenue, log, now
from exchange.risk import GuardedExchange, OrderPurpose
from exchange.types import (
    AccountSnapshot,
    ExchangeError,
    Order,
    OrderRejected,
    OrderRequest,
    Position,
    Side,
)
from exchange.views import fill_row, order_view, request_view
from policy.book import PolicyBook
from store.journal import Journal
from store.rows import FillRow, OrderRow, PositionRow

RECENT_RESULTS = 20  # closed-trade results the sizer is shown


@dataclass(slots=True)
class Protection:
    """Stop-loss and take-profit trigger prices of one held coin."""

    stop_loss_price: Decimal | None
    take_profit_price: Decimal | None


def decimal_or_none(value: Any) -> Decimal | None:
    """A journal or view value as a Decimal (None and "" stay None)."""
    if value is None or value == "":
        return None
    return value if isinstance(value, Decimal) else Decimal(str(value))


def str_or_none(value: Decimal | None) -> str | None:
    """A Decimal as text for a JSON view (None stays None)."""
    return None if value is None else str(value)


@dataclass
class Ledger:
    """Writes orders, fills and positions; keeps what they imply in memory.

    Built from the journal at start: the protections of open positions, the recent results and
    the policy's memory, so a restart carries on where the last process stopped.
    """

    journal: Journal
    venue: TradingVenue
    outbox: Outbox
    fee_rate: Decimal
    # A held coin found with no stop-loss (filled while no process ran, or adopted from Upbit)
    # gets one this far below its average buy price: the plan's hard cap, never looser.
    restore_stop_loss_pct: Decimal = Decimal(3)
    protections: dict[str, Protection] = field(init=False, default_factory=dict)
    recent_results: list[float] = field(init=False, default_factory=list)
    book: PolicyBook = field(init=False, default_factory=PolicyBook)
    # orders the exchange did not answer for (timeouts, 5xx): resolved at the next bar
    unknown: dict[str, tuple[str | None, str]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        for market, row in self.journal.positions().items():
            stop = decimal_or_none(row.get("stop_loss_price"))
            if stop is None:
                stop = self._restore_stop(market, row)
            self.protections[market] = Protection(
                stop, decimal_or_none(row.get("take_profit_price"))
            )
        self.recent_results = self.journal.recent_results(RECENT_RESULTS)
        # The policy's memory (entries, exits, today's count) comes from the fills, so a
        # restart remembers when each position was opened.
        self.book = PolicyBook.from_fills(self.journal.list_fills())

    def _restore_stop(self, market: str, row: Mapping[str, Any]) -> Decimal | None:
        """Give a held coin without a stop-loss one at the hard cap; journal and alert it."""
        average = decimal_or_none(row.get("avg_buy_price"))
        if average is None or average <= 0:
            return None
        stop = average * (1 - self.restore_stop_loss_pct / 100)
        self.journal.upsert_position({"market": market, "stop_loss_price": stop})
        payload = {"market": market, "stop_loss_price": str(stop), "avg_buy_price": str(average)}
        self.outbox.record(None, "protection_restored", payload)
        self.outbox.alert(
            "trading_state",
            f"{market}: stop-loss restored",
            f"held {row.get('volume')} with no stop-loss; it is now {stop:.8g} "
            f"({self.restore_stop_loss_pct}% below the average buy price {average})",
            market=market,
        )
        return stop

    def order_log(self, run_id: str | None, order: Mapping[str, Any]) -> None:
        """Journal an order before it is sent and once it is answered (the trade node's hook).

        While the database is away the row waits in the outbox's deferred writes: the order
        itself never waits for the journal.
        """
        stamp = now()
        if order["state"] == "unknown":  # looked up again at the next bar (`settle_unknown`)
            self.unknown[order["identifier"]] = (run_id, "unanswered")
        row: OrderRow = {
            "identifier": order["identifier"],
            "run_id": run_id,
            "market": order["market"],
            "side": order["side"],
            "ord_type": order["ord_type"],
            "price": decimal_or_none(order.get("requested_krw") or order.get("avg_price")),
            "volume": decimal_or_none(order.get("requested_volume")),
            "state": order["state"],
            "reason": order.get("error") or None,
            "created_at": stamp,
            "updated_at": stamp,
            "executed_volume": Decimal(order.get("executed_volume") or "0"),
            "paid_fee": Decimal(order.get("paid_fee") or "0"),
        }
        self.outbox.deferred.run(
            f"order {order['identifier']}", lambda: self.journal.record_order(row)
        )

    async def record_fills(
        self, run_id: str | None, order: Order, protection: Protection | None, *, reason: str
    ) -> None:
        """Journal an answered order's fills and the position they leave, in one transaction.

        The account is read first; then the fills and the position (or its deletion when the
        order left it flat) are written together, so the journal never holds fills without the
        position they changed. When the account cannot be read, the position is rebuilt from
        the fills; while the database is away, the write waits in the deferred writes. Events,
        alerts and the in-memory state follow the write.
        """
        market = order.market
        cost_basis = None
        if order.side is Side.ASK:
            cost_basis = self._cost_basis(market)
        rows = [fill_row(fill) for fill in order.fills]
        try:
            account = await self.venue.get_account()
        except (ExchangeError, OSError, TimeoutError) as exc:
            # The account cannot be read: the position is what the fills add up to.
            log.warning("%s: account unreadable (%s); position rebuilt from fills", market, exc)
            flat = self._settle_from_fills(market, rows, protection, order.side)
        else:
            flat = self._settle(market, rows, account.positions.get(market), protection, run_id)
        for k, fill in enumerate(order.fills):
            self.outbox.publish(
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
            last = k == len(order.fills) - 1
            self.book.on_fill(fill.market, fill.side.value, fill.ts, flat_after=flat and last)
        if order.executed_volume > 0:
            side = "bought" if order.side is Side.BID else "sold"
            self.outbox.alert(
                "fill",
                f"{market} {side}",
                f"{order.executed_volume} at {order.avg_price} ({reason})",
                market=market,
                fields={"fee": str(order.paid_fee), "identifier": order.identifier},
            )
        if not flat:
            if protection is not None:
                self.protections[market] = protection
            return
        self.protections.pop(market, None)
        if cost_basis is not None and order.avg_price is not None and cost_basis > 0:
            proceeds = order.avg_price * (1 - self.fee_rate)
            result = float(proceeds / cost_basis - 1)
            self.recent_results = [*self.recent_results, result][-RECENT_RESULTS:]
            payload = {
                "market": market,
                "return": result,
                "reason": reason,
                "identifier": order.identifier,
            }
            self.outbox.record(run_id, "position_closed", payload)
            self.outbox.publish({"type": "position_closed", "run_id": run_id, **payload})

    def _settle(
        self,
        market: str,
        rows: list[FillRow],
        position: Position | None,
        protection: Protection | None,
        run_id: str | None,
    ) -> bool:
        """Write the fills with the position the account shows; return whether it is flat."""
        flat = position is None or position.volume == 0
        row: PositionRow | None = None
        if not flat:
            assert position is not None
            current = protection or self.protections.get(market, Protection(None, None))
            stamp = now()
            row = {
                "market": market,
                "volume": position.volume,
                "avg_buy_price": position.avg_buy_price,
                "stop_loss_price": current.stop_loss_price,
                "take_profit_price": current.take_profit_price,
                "opened_at": stamp,
                "updated_at": stamp,
                "run_id": run_id,
            }
        # a fill reconciliation already settled (same trade uuid) is not added twice
        self.outbox.deferred.run(
            f"fills in {market}", lambda: self.journal.settle_fills(market, rows, row)
        )
        return flat

    def _settle_from_fills(
        self, market: str, rows: list[FillRow], protection: Protection | None, side: Side
    ) -> bool:
        """Write the fills and rebuild the position from all fills; return whether it is flat."""

        def write() -> None:
            self.journal.settle_from_fills(market, rows)
            current = protection or self.protections.get(market)
            if current is not None and market in self.journal.positions():
                self.journal.upsert_position(
                    {
                        "market": market,
                        "stop_loss_price": current.stop_loss_price,
                        "take_profit_price": current.take_profit_price,
                    }
                )

        if self.outbox.deferred.run(f"fills in {market} (from fills)", write):
            return market not in self.journal.positions()
        return side is Side.ASK  # the database is away too: a sell is taken as closing

    async def settle_unknown(self, exchange: Any) -> None:
        """Look up the orders the exchange did not answer for; settle those that filled."""
        for identifier, (run_id, reason) in list(self.unknown.items()):
            order = await exchange.get_order(identifier)
            if order is None:  # never reached the exchange: the order row says so too
                del self.unknown[identifier]
                row: OrderRow = {
                    "identifier": identifier,
                    "state": "rejected",
                    "reason": "never reached the exchange (not found by identifier)",
                    "updated_at": now(),
                }
                self.outbox.deferred.run(
                    f"order {identifier}", functools.partial(self.journal.record_order, row)
                )
                continue
            if order.state.value == "wait" and order.executed_volume == 0:
                continue  # still resting: look again at the next bar
            del self.unknown[identifier]
            self.order_log(run_id, order_view(order))
            if order.executed_volume > 0:
                await self.record_fills(run_id, order, None, reason=f"resolved:{reason}")
                self._protect_if_bare(order.market)

    def _protect_if_bare(self, market: str) -> None:
        """A coin now held with no stop-loss (its entry was answered late) gets the cap's."""
        current = self.protections.get(market)
        if current is not None and current.stop_loss_price is not None:
            return
        row = self.journal.positions().get(market)
        if row is None:
            return
        stop = self._restore_stop(market, row)
        take = current.take_profit_price if current is not None else None
        self.protections[market] = Protection(stop, take)

    def _cost_basis(self, market: str) -> Decimal | None:
        """The average buy price of the position being sold (journal, else the account view)."""
        try:
            previous = self.journal.positions().get(market)
        except Exception as exc:
            if not is_database_error(exc):
                raise
            return None
        return decimal_or_none(previous.get("avg_buy_price")) if previous else None


class JournaledExchange:
    """The guarded exchange with every order journaled by the ledger (the graph's exchange).

    The trade node places orders through it like through any exchange; nothing calls back into
    the engine. Failures are journaled with their state (`rejected`, `unknown`) and re-raised,
    so the caller decides what they mean for its run.
    """

    def __init__(self, inner: GuardedExchange, ledger: Ledger) -> None:
        """Wrap the guarded exchange; `ledger` writes the order rows."""
        self.inner = inner
        self.ledger = ledger
        self.name = inner.name

    @property
    def guard(self) -> Any:
        """The risk guard every order passes (the inner exchange's)."""
        return self.inner.guard

    async def place_order(
        self,
        request: OrderRequest,
        purpose: OrderPurpose | None = None,
        *,
        account: AccountSnapshot | None = None,
    ) -> Order:
        """Journal the order, send it through the guard, journal the answer; re-raise failures."""
        log = self.ledger.order_log
        if not request.urgent:
            log(request.run_id, request_view(request, "sending"))
        try:
            order = await self.inner.place_order(request, purpose, account=account)
        except OrderRejected as exc:
            log(request.run_id, request_view(request, "rejected", f"rejected: {exc.reason}"))
            raise
        except (ExchangeError, OSError, TimeoutError) as exc:
            log(request.run_id, request_view(request, "unknown", f"failed: {exc}"))
            raise
        log(request.run_id, order_view(order, request))
        return order

    async def get_account(self) -> AccountSnapshot:
        """Free and locked KRW and every coin position."""
        return await self.inner.get_account()

    async def get_order(self, identifier: str) -> Order | None:
        """Look an order up by its client identifier."""
        return await self.inner.get_order(identifier)

    async def cancel_order(self, identifier: str) -> Order:
        """Cancel a resting order."""
        return await self.inner.cancel_order(identifier)

    async def open_orders(self, market: str | None = None) -> list[Order]:
        """Orders still resting on the book."""
        return await self.inner.open_orders(market)

    async def cancel_all(self) -> list[Order]:
        """Cancel every open order (allowed in every state)."""
        return await self.inner.cancel_all()

    async def flatten(self, *, identifier_prefix: str) -> list[Order]:
        """Sell every position; each order is journaled as it is answered."""
        orders = await self.inner.flatten(identifier_prefix=identifier_prefix)
        for order in orders:
            self.ledger.order_log(None, order_view(order))
        return orders
