"""Exchange-facing types and the `Exchange` protocol shared by the paper and the live exchange.

Money and volumes are `Decimal` here (the exchange boundary); times are timezone-aware UTC.
Names follow Upbit's API: `bid` buys, `ask` sells; `price` is a market buy by KRW amount,
`market` a market sell by volume, `limit` a limit order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Side(StrEnum):
    BID = "bid"  # buy
    ASK = "ask"  # sell


class OrderType(StrEnum):
    LIMIT = "limit"
    PRICE = "price"  # market buy: `price` is the KRW amount to spend
    MARKET = "market"  # market sell: `volume` is the coin amount to sell


class OrderState(StrEnum):
    WAIT = "wait"  # resting (limit order not yet fully filled)
    DONE = "done"  # fully filled
    CANCEL = "cancel"  # cancelled (possibly partly filled)
    REJECTED = "rejected"  # refused before it reached the book (never filled)


class ExchangeError(Exception):
    """A call to the exchange failed (network, protocol or server error)."""


class OrderRejected(ExchangeError):
    """The exchange (or the client-side last-moment check) refused an order; nothing was placed."""

    def __init__(self, reason: str, *, identifier: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.identifier = identifier


@dataclass(frozen=True, slots=True)
class Bar:
    """One closed 1-minute candle (open time `ts`, UTC)."""

    market: str
    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float  # base-asset volume


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """What the caller asks for; `identifier` is the client order id and idempotency key."""

    market: str
    side: Side
    ord_type: OrderType
    identifier: str
    volume: Decimal | None = None  # coin amount (limit, market)
    price: Decimal | None = None  # limit price, or KRW to spend for ord_type=price
    # An emergency exit: sent at once as asked, no orderbook (slippage) check on the way.
    urgent: bool = False
    # The graph run that decided the order (the journal's bookkeeping; never sent to Upbit).
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of an order."""

    order_identifier: str
    market: str
    side: Side
    price: Decimal
    volume: Decimal
    fee: Decimal  # KRW
    ts: datetime
    trade_uuid: str | None = None  # the exchange's id of this execution (Upbit `trades[].uuid`)

    @property
    def funds(self) -> Decimal:
        """KRW value of the fill before fees."""
        return self.price * self.volume


@dataclass(slots=True)
class Order:
    """The exchange's view of an order."""

    identifier: str
    market: str
    side: Side
    ord_type: OrderType
    state: OrderState
    created_at: datetime
    price: Decimal | None = None
    volume: Decimal | None = None
    executed_volume: Decimal = Decimal(0)
    paid_fee: Decimal = Decimal(0)
    fills: list[Fill] = field(default_factory=list)
    reason: str | None = None  # why it was rejected or cancelled
    uuid: str | None = None  # the exchange's own order id (Upbit `uuid`); None on paper

    @property
    def avg_price(self) -> Decimal | None:
        """Volume-weighted fill price, or None before any fill."""
        if self.executed_volume == 0:
            return None
        return sum((f.price * f.volume for f in self.fills), Decimal(0)) / self.executed_volume


@dataclass(frozen=True, slots=True)
class Position:
    """A coin holding."""

    market: str
    volume: Decimal  # everything held, including `locked`
    avg_buy_price: Decimal  # KRW per coin, fees included in cost basis
    locked: Decimal = Decimal(0)  # part of `volume` held by resting sell orders (Upbit's `locked`)


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """Cash and holdings at one moment."""

    krw: Decimal  # free KRW
    krw_locked: Decimal  # KRW held by resting buy orders
    positions: dict[str, Position]

    def equity(self, prices: dict[str, float]) -> Decimal:
        """Cash plus positions marked at `prices` (markets without a price count at cost)."""
        total = self.krw + self.krw_locked
        for market, pos in self.positions.items():
            mark = prices.get(market)
            unit = Decimal(str(mark)) if mark is not None else pos.avg_buy_price
            total += pos.volume * unit
        return total


@runtime_checkable
class Exchange(Protocol):
    """What the engine and the trade node need from an exchange, paper or live."""

    name: str

    async def get_account(self) -> AccountSnapshot:
        """Free and locked KRW and every coin position."""
        ...

    async def place_order(self, request: OrderRequest) -> Order:
        """Send an order; raise `OrderRejected` if refused, `ExchangeError` if the call failed."""
        ...

    async def get_order(self, identifier: str) -> Order | None:
        """Look an order up by its client identifier; None if the exchange never saw it."""
        ...

    async def cancel_order(self, identifier: str) -> Order:
        """Cancel a resting order and return its final state."""
        ...

    async def open_orders(self, market: str | None = None) -> list[Order]:
        """Orders still resting on the book."""
        ...
