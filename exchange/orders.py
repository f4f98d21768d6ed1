"""The order manager: journal first, send once, resolve the unknown by identifier.

Every order is written to the journal as an intent (state `pending`) before its request
leaves, then marked `sent`. The exchange's answer moves it to `open`, `done`, `cancel` or
`rejected`. A timeout, a dropped connection or a reply that cannot be read leaves it `unknown`:
it is then looked up by its identifier, and only if the exchange has never seen it is the
request sent again, with the same identifier (Upbit refuses an identifier twice, so even
that retry cannot create a second order). The intent keeps the executed volume Upbit reports;
the fills themselves are written by the ledger with the position they change, one writer.

Slippage control: a market order is sent as such only while the orderbook's spread and the
order's walk through the book stay within `max_slippage_bps`; otherwise it becomes a
marketable limit order (best ask + bound for buys, best bid - bound for sells), IOC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from exchange.ratelimit import ExchangeBlocked
from exchange.rules import round_price, round_volume
from exchange.types import (
    AccountSnapshot,
    ExchangeError,
    Order,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
)
from exchange.upbit_client import RefusedBeforeSending
from store.rows import OrderIntentChanges, OrderIntentRow

__all__ = [
    "ExecutionPlan",
    "LiveVenue",
    "OrderJournal",
    "OrderManager",
    "OrderUnknown",
    "plan_execution",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

_ZERO = Decimal(0)
_BPS = Decimal(10_000)
UNRESOLVED_STATES = ("pending", "sent", "unknown", "open")
_FINAL = {OrderState.DONE: "done", OrderState.CANCEL: "cancel", OrderState.REJECTED: "rejected"}


class OrderJournal(Protocol):
    """Where the manager writes intents (`store.journal.Journal` implements it)."""

    def record_order_intent(self, row: OrderIntentRow) -> None:
        """Insert a new intent; raise ValueError if the identifier was already journaled."""
        ...

    def claim_order_intent(self, row: OrderIntentRow) -> dict[str, Any] | None:
        """Insert a new intent in one write; return the existing one (unchanged) if any."""
        ...

    def update_order_intent(self, identifier: str, changes: OrderIntentChanges) -> None:
        """Change columns of an intent."""
        ...

    def get_order_intent(self, identifier: str) -> dict[str, Any] | None:
        """Return one intent, or None."""
        ...

    def list_order_intents(self, states: Collection[str] | None = None) -> list[dict[str, Any]]:
        """Return intents oldest first, optionally only those in `states`."""
        ...


class LiveVenue(Protocol):
    """What the manager needs from the live exchange (`exchange.upbit.UpbitExchange`)."""

    name: str

    async def get_account(self) -> AccountSnapshot: ...

    async def place_order(
        self, request: OrderRequest, *, time_in_force: str | None = None
    ) -> Order: ...

    async def get_order(self, identifier: str) -> Order | None: ...

    async def cancel_order(self, identifier: str) -> Order: ...

    async def open_orders(self, market: str | None = None) -> list[Order]: ...

    async def orderbook(self, market: str) -> Any: ...


class OrderUnknown(ExchangeError):
    """The exchange did not say whether the order exists; it stays `unknown` in the journal.

    Resolve it with `OrderManager.resolve(identifier)` (or at start-up, `reconcile`): never by
    sending a new order.
    """

    def __init__(self, message: str, *, identifier: str) -> None:
        super().__init__(message)
        self.identifier = identifier


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """How an order goes out after the slippage check."""

    request: OrderRequest
    time_in_force: str | None
    reason: str  # why market or marketable limit, with the figures


def plan_execution(request: OrderRequest, book: Any, max_slippage_bps: Decimal) -> ExecutionPlan:
    """Keep a market order if spread and impact are within the bound, else a marketable limit.

    `book` has `asks` (lowest first) and `bids` (highest first) as (price, size) tuples.
    Limit orders are returned unchanged.
    """
    if request.ord_type is OrderType.LIMIT:
        return ExecutionPlan(request, None, "limit order as requested")
    asks, bids = tuple(book.asks), tuple(book.bids)
    if not asks or not bids:
        raise OrderRejected(
            f"{request.market}: the orderbook has no {'asks' if not asks else 'bids'}; "
            "no market order is sent into an empty book",
            identifier=request.identifier,
        )
    best_ask, best_bid = asks[0][0], bids[0][0]
    mid = (best_ask + best_bid) / 2
    spread_bps = (best_ask - best_bid) / mid * _BPS
    bound = max_slippage_bps / _BPS
    if request.ord_type is OrderType.PRICE:
        krw = request.price or _ZERO
        average, filled = _walk_buy(asks, krw)
        impact_bps = (average / best_ask - 1) * _BPS if average else Decimal("Infinity")
        fits = filled and spread_bps <= max_slippage_bps and impact_bps <= max_slippage_bps
        figures = f"spread {spread_bps:.1f} bps, impact {impact_bps:.1f} bps"
        if fits:
            return ExecutionPlan(request, None, f"market: {figures}")
        limit = round_price(best_ask * (1 + bound), side=Side.BID)
        volume = round_volume(krw / limit)
        limited = replace(request, ord_type=OrderType.LIMIT, price=limit, volume=volume)
        return ExecutionPlan(limited, "ioc", f"limit {limit} ioc: {figures}")
    volume = request.volume or _ZERO
    average, filled = _walk_sell(bids, volume)
    impact_bps = (1 - average / best_bid) * _BPS if average else Decimal("Infinity")
    fits = filled and spread_bps <= max_slippage_bps and impact_bps <= max_slippage_bps
    figures = f"spread {spread_bps:.1f} bps, impact {impact_bps:.1f} bps"
    if fits:
        return ExecutionPlan(request, None, f"market: {figures}")
    limit = round_price(best_bid * (1 - bound), side=Side.ASK)
    limited = replace(request, ord_type=OrderType.LIMIT, price=limit, volume=volume)
    return ExecutionPlan(limited, "ioc", f"limit {limit} ioc: {figures}")


def _walk_buy(asks: tuple[Any, ...], krw: Decimal) -> tuple[Decimal | None, bool]:
    """Average price of spending `krw` through the asks, and whether the book covered it."""
    left, bought = krw, _ZERO
    for price, size in asks:
        take = min(left, price * size)
        bought += take / price
        left -= take
        if left <= 0:
            break
    return (krw - left) / bought if bought else None, left <= 0


def _walk_sell(bids: tuple[Any, ...], volume: Decimal) -> tuple[Decimal | None, bool]:
    """Average price of selling `volume` through the bids, and whether the book covered it."""
    left, funds = volume, _ZERO
    for price, size in bids:
        take = min(left, size)
        funds += take * price
        left -= take
        if left <= 0:
            break
    sold = volume - left
    return funds / sold if sold else None, left <= 0


def _intent_state(order: Order) -> str:
    return _FINAL.get(order.state, "open")


def _request_from_intent(intent: Mapping[str, Any]) -> OrderRequest:
    return OrderRequest(
        market=intent["market"],
        side=Side(intent["side"]),
        ord_type=OrderType(intent["ord_type"]),
        identifier=intent["identifier"],
        volume=intent.get("volume"),
        price=intent.get("price"),
    )


class OrderManager:
    """An `Exchange` over the live venue that journals every order before it is sent."""

    def __init__(
        self,
        venue: LiveVenue,
        journal: OrderJournal,
        *,
        max_slippage_bps: Decimal | None = None,
        lookup_attempts: int = 3,
        lookup_delay_s: float = 0.2,
        on_blocked: Callable[[str], None] | None = None,
    ) -> None:
        """`max_slippage_bps` None sends market orders as they are (no orderbook check).

        `on_blocked` is called with the reason when Upbit answers 418 (halt trading, alert).
        """
        self.venue = venue
        self.on_blocked = on_blocked
        self.journal = journal
        self.name = venue.name
        self._max_slippage_bps = max_slippage_bps
        self._lookup_attempts = lookup_attempts
        self._lookup_delay_s = lookup_delay_s
        self._locks: dict[str, asyncio.Lock] = {}

    # -- the Exchange protocol -----------------------------------------------------------

    async def get_account(self) -> AccountSnapshot:
        """The venue's account."""
        return await self._watch(self.venue.get_account())

    async def place_order(self, request: OrderRequest) -> Order:
        """Journal, check slippage, send once; see the module docstring for the failure cases.

        Raises `OrderRejected` (journaled `rejected`), `OrderUnknown` (journaled `unknown`),
        or `ExchangeBlocked` (418: stop trading).
        """
        return await self._watch(self._place(request))

    async def _watch(self, call: Awaitable[T]) -> T:
        """Await a venue call; on a 418 tell `on_blocked` before re-raising."""
        try:
            return await call
        except ExchangeBlocked as exc:
            if self.on_blocked is not None:
                self.on_blocked(str(exc))
            raise

    async def _place(self, request: OrderRequest) -> Order:
        lock = self._locks.setdefault(request.identifier, asyncio.Lock())
        async with lock:
            if request.urgent:
                # One write, no read first: the intent is journaled as sent before the request
                # leaves (a crash before the send reads the same: looked up, found absent).
                plan = ExecutionPlan(request, None, "urgent: sent at once, no slippage check")
                try:
                    earlier = self.journal.claim_order_intent(_intent_row(plan, "sent", 1))
                except Exception as exc:  # the journal cannot be written (database down)
                    return await self._send_unjournaled(request, exc)
                if earlier is not None:
                    return await self._continue(earlier)
                return await self._send(request, None, attempts=0, journaled=True)
            intent = self.journal.get_order_intent(request.identifier)
            if intent is not None:
                return await self._continue(intent)
            plan = await self._plan(request)
            self.journal.record_order_intent(_intent_row(plan, "pending", 0))
            return await self._send(plan.request, plan.time_in_force, attempts=0)

    async def _send_unjournaled(self, request: OrderRequest, error: Exception) -> Order:
        """Send an emergency sell the journal could not record: getting out comes first.

        Upbit refuses a second order under the same identifier, so a retry can still never
        sell twice; what is lost is only the local record, which reconciliation at the next
        start-up compares with Upbit. Writing the result back is tried, never required.
        """
        logger.error(
            "order %s: the journal cannot be written (%s); the emergency sell goes out "
            "unjournaled (Upbit's identifier still keeps it single)",
            request.identifier,
            error,
        )
        order = await self.venue.place_order(request, time_in_force=None)
        try:
            self.journal.claim_order_intent(
                _intent_row(ExecutionPlan(request, None, "urgent, sent unjournaled"), "sent", 1)
            )
            self._record(order)
        except Exception as exc:
            logger.error(
                "order %s: still not journaled after the send: %s", request.identifier, exc
            )
        return order

    async def get_order(self, identifier: str) -> Order | None:
        """The venue's view of the order (its fills journaled on the way)."""
        order = await self._watch(self.venue.get_order(identifier))
        if order is not None and self.journal.get_order_intent(identifier) is not None:
            self._record(order)
        return order

    async def cancel_order(self, identifier: str) -> Order:
        """Cancel on the venue and journal the final state."""
        order = await self._watch(self.venue.cancel_order(identifier))
        if self.journal.get_order_intent(identifier) is not None:
            self._record(order)
        return order

    async def open_orders(self, market: str | None = None) -> list[Order]:
        """Orders resting on the venue."""
        return await self._watch(self.venue.open_orders(market))

    # -- resolution ----------------------------------------------------------------------

    async def resolve(self, identifier: str) -> Order | None:
        """Look an unresolved order up by identifier and journal what the venue says.

        Returns the order, or None when the venue has never seen it (the intent is then
        marked `rejected`: it never reached the exchange). Raises `ExchangeError` when the
        lookup itself fails (the intent stays as it was).
        """
        intent = self.journal.get_order_intent(identifier)
        if intent is None:
            raise KeyError(f"no order intent {identifier!r} in the journal")
        order = await self.venue.get_order(identifier)
        if order is None:
            self.journal.update_order_intent(
                identifier,
                {
                    "state": "rejected",
                    "reason": "never reached the exchange (not found by identifier)",
                },
            )
            return None
        self._record(order)
        return order

    async def _continue(self, intent: Mapping[str, Any]) -> Order:
        """Handle a second call with an identifier already journaled: never a second order."""
        identifier = intent["identifier"]
        state = intent["state"]
        if state == "rejected":
            raise OrderRejected(
                f"identifier {identifier!r} was already used and refused ({intent.get('reason')})",
                identifier=identifier,
            )
        order = await self._lookup(identifier)
        if order is not None:
            self._record(order)
            return order
        if state in ("open", "done", "cancel"):
            raise ExchangeError(
                f"order {identifier!r} is journaled {state!r} but Upbit does not find it"
            )
        # pending / sent / unknown and never seen by the exchange: send again, same identifier.
        logger.warning(
            "order %s (%s) not found on the exchange; sending it again", identifier, state
        )
        return await self._send(
            _request_from_intent(intent), intent.get("time_in_force"), attempts=intent["attempts"]
        )

    async def _plan(self, request: OrderRequest) -> ExecutionPlan:
        if self._max_slippage_bps is None or request.ord_type is OrderType.LIMIT:
            return ExecutionPlan(request, None, "sent as requested")
        book = await self.venue.orderbook(request.market)
        return plan_execution(request, book, self._max_slippage_bps)

    async def _send(
        self,
        request: OrderRequest,
        time_in_force: str | None,
        *,
        attempts: int,
        journaled: bool = False,
    ) -> Order:
        identifier = request.identifier
        if not journaled:
            self.journal.update_order_intent(
                identifier, {"state": "sent", "attempts": attempts + 1}
            )
        try:
            order = await self.venue.place_order(request, time_in_force=time_in_force)
        except RefusedBeforeSending as exc:
            self.journal.update_order_intent(
                identifier, {"state": "rejected", "reason": f"not sent: {exc.reason}"}
            )
            raise
        except OrderRejected as exc:
            # Refused: unless the exchange already holds an order under this identifier
            # (an earlier attempt that did arrive), then that order is the answer.
            try:
                found = await self.venue.get_order(identifier)
            except ExchangeError as lookup_error:
                # Upbit may have refused it as a reuse of an identifier it already holds:
                # without the lookup that cannot be ruled out, so the order stays unknown.
                reason = f"refused ({exc.reason}) and the lookup failed ({lookup_error})"
                self.journal.update_order_intent(identifier, {"state": "unknown", "reason": reason})
                raise OrderUnknown(
                    f"order {identifier!r}: {reason}", identifier=identifier
                ) from None
            if found is not None:
                self._record(found)
                return found
            self.journal.update_order_intent(
                identifier, {"state": "rejected", "reason": exc.reason}
            )
            raise
        except ExchangeBlocked as exc:
            self.journal.update_order_intent(identifier, {"state": "unknown", "reason": str(exc)})
            raise
        except ExchangeError as exc:
            self.journal.update_order_intent(identifier, {"state": "unknown", "reason": str(exc)})
            logger.warning("order %s unknown after %s; looking it up", identifier, exc)
            found = await self._lookup(identifier)
            if found is None:
                raise OrderUnknown(
                    f"order {identifier!r}: {exc}; the exchange does not show it (yet). It stays "
                    "unknown in the journal and is resolved by identifier, never sent twice",
                    identifier=identifier,
                ) from None
            self._record(found)
            return found
        self._record(order)
        return order

    async def _lookup(self, identifier: str) -> Order | None:
        """Look the order up a few times (it may lag the create call); None if never seen."""
        last_error: ExchangeError | None = None
        for attempt in range(self._lookup_attempts):
            if attempt:
                await asyncio.sleep(self._lookup_delay_s)
            try:
                found = await self.venue.get_order(identifier)
            except ExchangeBlocked:
                raise
            except ExchangeError as exc:
                last_error = exc
                continue
            if found is not None:
                return found
            last_error = None
        if last_error is not None:
            raise OrderUnknown(
                f"order {identifier!r}: the lookup failed too ({last_error}); it stays unknown",
                identifier=identifier,
            )
        return None

    def _record(self, order: Order) -> None:
        """Journal the venue's view of the order on its intent.

        Its fills are not written here: the ledger writes them with the position they change
        (`app/engine/ledger.py`), and reconciliation settles those a dead process left behind.
        """
        self.journal.update_order_intent(
            order.identifier,
            {
                "state": _intent_state(order),
                "uuid": order.uuid,
                "executed_volume": order.executed_volume,
                "paid_fee": order.paid_fee,
            },
        )


def _intent_row(plan: ExecutionPlan, state: str, attempts: int) -> OrderIntentRow:
    request = plan.request
    return {
        "identifier": request.identifier,
        "market": request.market,
        "side": request.side.value,
        "ord_type": request.ord_type.value,
        "price": request.price,
        "volume": request.volume,
        "time_in_force": plan.time_in_force,
        "state": state,
        "reason": plan.reason,
        "attempts": attempts,
    }
