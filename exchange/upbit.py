"""The live Upbit exchange behind the `Exchange` protocol (the only module that imports pyupbit).

Which library does what:

- **pyupbit builds the JWT.** `pyupbit.Upbit._request_headers` is the signer by default: HS256
  over `{access_key, nonce}` plus `query_hash` (SHA-512 of the urlencoded parameters) and
  `query_hash_alg`. It is pure computation, so it runs on the event loop.
- **Every request goes through the thin client** (`exchange.upbit_client.UpbitRestClient`).
  Pointing pyupbit's own calls elsewhere is not possible cleanly: each method has
  `https://api.upbit.com/...` written into it (no module-level URL to change), uses `requests`
  without a timeout, catches every error and returns `None`, and `buy_market_order` /
  `sell_market_order` cannot send an `identifier`. So no pyupbit network call is made, and no
  `None` from pyupbit can ever reach the order logic.

Market orders are answered by Upbit before they are matched (state `wait`, nothing executed),
so `place_order` reads the order back by uuid until it has finished, to return its fills.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

import httpx
import pyupbit
from pydantic import SecretStr

from exchange.ratelimit import RateLimiter
from exchange.rules import FEE_RATE, MIN_ORDER_KRW, round_price, round_volume
from exchange.types import (
    AccountSnapshot,
    Bar,
    ExchangeError,
    Fill,
    Order,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Position,
    Side,
)
from exchange.upbit_client import (
    READ_RETRY_S,
    MalformedReply,
    RefusedBeforeSending,
    Signer,
    UpbitApiError,
    UpbitKeys,
    UpbitRestClient,
)

__all__ = [
    "MarketRules",
    "Orderbook",
    "UpbitExchange",
    "order_from_upbit",
    "pyupbit_signer",
]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)
_STATES = {
    "wait": OrderState.WAIT,
    "watch": OrderState.WAIT,
    "done": OrderState.DONE,
    "cancel": OrderState.CANCEL,
}


def pyupbit_signer(keys: UpbitKeys) -> Signer:
    """Sign with pyupbit's JWT builder (HS256 with query_hash), keys kept inside a closure."""
    upbit = pyupbit.Upbit(keys.access_key, keys.secret_bytes().decode())

    def sign(params: Mapping[str, Any] | None) -> dict[str, str]:
        headers = upbit._request_headers(dict(params) if params else None)
        return {"Authorization": str(headers["Authorization"])}

    return sign


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Fees and minimum order totals of one market (from /v1/orders/chance, else the table)."""

    market: str
    bid_fee: Decimal
    ask_fee: Decimal
    bid_min_total: Decimal
    ask_min_total: Decimal
    state: str
    source: str  # "chance" or "fallback"


@dataclass(frozen=True, slots=True)
class Orderbook:
    """One orderbook snapshot: asks lowest first, bids highest first, as (price, size)."""

    market: str
    asks: tuple[tuple[Decimal, Decimal], ...]
    bids: tuple[tuple[Decimal, Decimal], ...]

    @property
    def best_ask(self) -> Decimal | None:
        """Lowest ask price."""
        return self.asks[0][0] if self.asks else None

    @property
    def best_bid(self) -> Decimal | None:
        """Highest bid price."""
        return self.bids[0][0] if self.bids else None


class UpbitExchange:
    """Upbit's REST API as an `Exchange`; errors raise, a missing order is `None` only on 404."""

    name = "upbit"

    def __init__(
        self,
        client: UpbitRestClient,
        *,
        chance_ttl_s: float = 600.0,
        fill_poll_s: float = 0.05,
        fill_poll_attempts: int = 40,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.client = client
        self._chance_ttl_s = chance_ttl_s
        self._fill_poll_s = fill_poll_s
        self._fill_poll_attempts = fill_poll_attempts
        self._clock = clock
        self._rules: dict[str, tuple[float, MarketRules]] = {}
        self._marks: dict[str, Decimal] = {}
        self._last_ts: datetime | None = None
        # The last account read and the order activity it has seen (see `recent_account`).
        self._account_read: tuple[float, AccountSnapshot] | None = None
        self._order_calls = 0
        # Equity when the session started (set by the wiring after reconciliation): the
        # reference the session summary measures returns against.
        self.initial_krw = _ZERO

    @classmethod
    def connect(
        cls,
        base_url: str,
        *,
        access_key: str | SecretStr,
        secret_key: str | SecretStr,
        timeout_s: float = 5.0,
        limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retry_s: Sequence[float] = READ_RETRY_S,
        **kwargs: Any,
    ) -> UpbitExchange:
        """Build the client for `base_url` (pyupbit signs) and the exchange over it."""
        keys = UpbitKeys(access_key, secret_key)
        client = UpbitRestClient(
            base_url,
            signer=pyupbit_signer(keys),
            timeout_s=timeout_s,
            limiter=limiter,
            read_retry_s=read_retry_s,
            transport=transport,
        )
        return cls(client, **kwargs)

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        await self.client.aclose()

    # -- market data the engine hands in (marks for the risk guard and the minimum check) -

    def now(self) -> datetime:
        """Wall time, UTC (or the injected clock)."""
        return self._clock() if self._clock is not None else datetime.now(UTC)

    def marks(self) -> dict[str, float]:
        """Last traded price per market, from bars and ticks handed in."""
        return {market: float(price) for market, price in self._marks.items()}

    def on_bar(self, bar: Bar) -> list[Fill]:
        """Mark the market at the bar's close (fills come from the exchange, not from bars)."""
        self._marks[bar.market] = Decimal(str(bar.close))
        return []

    def on_tick(self, market: str, ts: datetime, price: float) -> None:
        """Mark a market at a trade price."""
        self._marks[market] = Decimal(str(price))
        self._last_ts = ts

    # -- exchange rules ------------------------------------------------------------------

    async def rules(self, market: str, *, urgent: bool = False) -> MarketRules:
        """Fees and minimums from /v1/orders/chance (cached), else Upbit's documented values.

        `urgent` (an emergency sell) never waits for the call: it takes the cached rules even
        past their time to live, or the documented values when none were read yet.
        """
        cached = self._rules.get(market)
        if cached is not None and (urgent or time.monotonic() - cached[0] < self._chance_ttl_s):
            return cached[1]
        if urgent:
            return _documented_rules(market)
        try:
            chance = await self.client.order_chance(market)
            rules = _rules_from_chance(market, chance)
        except (UpbitApiError, MalformedReply) as exc:
            logger.warning("order chance for %s unavailable (%s); using the fee table", market, exc)
            rules = _documented_rules(market)
        self._rules[market] = (time.monotonic(), rules)
        return rules

    def prepare(
        self, request: OrderRequest, rules: MarketRules, time_in_force: str | None
    ) -> dict[str, Any]:
        """Round to the tick and the volume precision and check the minimum; return the body.

        Raises `OrderRejected` (nothing is sent) when the order cannot be valid.
        """
        identifier = request.identifier

        def refuse(reason: str) -> OrderRejected:
            return RefusedBeforeSending(reason, identifier=identifier)

        if not identifier:
            raise refuse("identifier must not be empty")
        if rules.state != "active":
            raise refuse(f"market {request.market} is {rules.state!r} on Upbit, not active")
        body: dict[str, Any] = {
            "market": request.market,
            "side": request.side.value,
            "ord_type": request.ord_type.value,
        }
        minimum = rules.bid_min_total if request.side is Side.BID else rules.ask_min_total
        price, volume = request.price, request.volume
        total: Decimal | None
        if request.ord_type is OrderType.PRICE:
            if request.side is not Side.BID or price is None or volume is not None:
                raise refuse("ord_type 'price' is a market buy: side 'bid' with the KRW in price")
            krw = _positive(price, "price", refuse).quantize(Decimal(1), rounding=ROUND_DOWN)
            total = krw
            body["price"] = _text(krw)
        elif request.ord_type is OrderType.MARKET:
            if request.side is not Side.ASK or volume is None or price is not None:
                raise refuse("ord_type 'market' is a market sell: side 'ask' with volume only")
            volume = round_volume(_positive(volume, "volume", refuse))
            mark = self._marks.get(request.market)
            total = volume * mark if mark is not None else None
            body["volume"] = _text(volume)
        else:
            price = round_price(_positive(price, "price", refuse), side=request.side)
            volume = round_volume(_positive(volume, "volume", refuse))
            total = price * volume
            body["price"] = _text(price)
            body["volume"] = _text(volume)
            if time_in_force is not None:
                if time_in_force not in ("ioc", "fok"):
                    raise refuse(f"time_in_force must be 'ioc' or 'fok', got {time_in_force!r}")
                body["time_in_force"] = time_in_force
        if volume is not None and volume <= 0:
            raise refuse(f"volume rounds to 0 at 8 decimals: {request.volume}")
        if total is not None and total < minimum:
            raise refuse(f"order amount {total:f} KRW is under the minimum of {minimum:f} KRW")
        body["identifier"] = identifier
        return body

    # -- the Exchange protocol -----------------------------------------------------------

    async def get_account(self) -> AccountSnapshot:
        """KRW and every coin from /v1/accounts (positions keyed KRW-<coin>)."""
        calls_before = self._order_calls
        rows = await self.client.accounts()
        krw, krw_locked = _ZERO, _ZERO
        positions: dict[str, Position] = {}
        for row in rows:
            currency = _field_str(row, "currency", "GET /v1/accounts")
            balance = _field_dec(row, "balance", "GET /v1/accounts")
            locked = _field_dec(row, "locked", "GET /v1/accounts")
            if currency == "KRW":
                krw, krw_locked = balance, locked
                continue
            unit = row.get("unit_currency", "KRW")
            if unit != "KRW" or balance + locked == 0:
                continue
            market = f"KRW-{currency}"
            avg = _field_dec(row, "avg_buy_price", "GET /v1/accounts")
            positions[market] = Position(market, balance + locked, avg, locked)
        snapshot = AccountSnapshot(krw=krw, krw_locked=krw_locked, positions=positions)
        if self._order_calls == calls_before:  # no order of ours moved money during the read
            self._account_read = (time.monotonic(), snapshot)
        return snapshot

    def recent_account(self, max_age_s: float) -> AccountSnapshot | None:
        """The last account read if it is at most `max_age_s` old and no order was sent or
        cancelled since; else None (read it again).

        The watchdog's fast path: an emergency sell goes out without waiting for a round trip;
        Upbit still checks the real balance, and a refusal makes the caller read it again.
        """
        read = self._account_read
        if read is None or time.monotonic() - read[0] > max_age_s:
            return None
        return read[1]

    async def place_order(
        self, request: OrderRequest, *, time_in_force: str | None = None
    ) -> Order:
        """Send the order and return it once matched; `OrderRejected` if Upbit refused it.

        A transport failure raises `UpbitTransportError` (the order may exist: look it up by
        identifier); a reply that is not Upbit's JSON raises `MalformedReply` (same).
        """
        self._order_calls += 1
        self._account_read = None
        rules = await self.rules(request.market, urgent=request.urgent)
        body = self.prepare(request, rules, time_in_force)
        try:
            reply = await self.client.create_order(body, urgent=request.urgent)
        except UpbitApiError as exc:
            if 400 <= exc.status < 500 and exc.status not in (401, 429):
                raise OrderRejected(
                    f"Upbit refused the order: {exc.name}: {exc.message}",
                    identifier=request.identifier,
                ) from None
            raise
        order = order_from_upbit(reply, fee_rate=_fee(rules, request.side))
        if not order.identifier:  # a reply without the field is about the order just sent
            order = _with_identifier(order, request.identifier)
        if order.identifier != request.identifier:
            raise MalformedReply(
                f"Upbit POST /v1/orders answered for identifier {order.identifier!r}, "
                f"sent {request.identifier!r}"
            )
        if order.state is OrderState.WAIT and (
            request.ord_type is not OrderType.LIMIT or time_in_force is not None
        ):
            order = await self._until_finished(order, rules)
        return order

    async def get_order(self, identifier: str) -> Order | None:
        """GET /v1/order by identifier (fills included); None only when Upbit says not found."""
        reply = await self.client.get_order(identifier=identifier)
        if reply is None:
            return None
        order = order_from_upbit(reply, fee_rate=FEE_RATE)
        if not order.identifier:
            order = _with_identifier(order, identifier)
        if order.identifier != identifier:
            raise MalformedReply(
                f"Upbit GET /v1/order answered identifier {order.identifier!r}, "
                f"asked {identifier!r}"
            )
        return order

    async def cancel_order(self, identifier: str) -> Order:
        """DELETE /v1/order by identifier, then read its final state back."""
        self._order_calls += 1
        self._account_read = None
        try:
            await self.client.cancel_order(identifier=identifier)
        except UpbitApiError as exc:
            if exc.status != 400 and exc.status != 404:
                raise
            found = await self.get_order(identifier)
            if found is None:
                raise ExchangeError(f"no order with identifier {identifier!r} on Upbit") from None
            if found.state is not OrderState.WAIT:
                return found  # already finished: nothing to cancel
            raise
        order = await self.get_order(identifier)
        if order is None:
            raise MalformedReply(f"Upbit cancelled {identifier!r} but then could not find it")
        return order

    async def open_orders(self, market: str | None = None) -> list[Order]:
        """Orders waiting on the book (without their fills), oldest first."""
        rows = await self.client.open_orders(market)
        orders = [order_from_upbit(row, fee_rate=FEE_RATE) for row in rows]
        return sorted(orders, key=lambda o: o.created_at)

    async def orderbook(self, market: str) -> Orderbook:
        """GET /v1/orderbook for one market."""
        rows = await self.client.orderbook([market])
        call = "GET /v1/orderbook"
        row = next((r for r in rows if r.get("market") == market), None)
        if row is None:
            raise MalformedReply(f"Upbit {call} had no entry for {market}")
        units = row.get("orderbook_units")
        if not isinstance(units, list):
            raise MalformedReply(f"Upbit {call}: orderbook_units is not a list")
        asks, bids = [], []
        for unit in units:
            if not isinstance(unit, dict):
                raise MalformedReply(f"Upbit {call}: an orderbook unit is not an object")
            ask = (_field_dec(unit, "ask_price", call), _field_dec(unit, "ask_size", call))
            bid = (_field_dec(unit, "bid_price", call), _field_dec(unit, "bid_size", call))
            if ask[0] > 0 and ask[1] > 0:
                asks.append(ask)
            if bid[0] > 0 and bid[1] > 0:
                bids.append(bid)
        return Orderbook(market, tuple(sorted(asks)), tuple(sorted(bids, reverse=True)))

    async def _until_finished(self, order: Order, rules: MarketRules) -> Order:
        """Read an order back by uuid until it is no longer waiting (market and IOC orders)."""
        assert order.uuid is not None
        current = order
        for _ in range(self._fill_poll_attempts):
            reply = await self.client.get_order(uuid=order.uuid)
            if reply is not None:
                current = order_from_upbit(reply, fee_rate=_fee(rules, order.side))
                if not current.identifier:
                    current = _with_identifier(current, order.identifier)
                if current.state is not OrderState.WAIT:
                    return current
            await asyncio.sleep(self._fill_poll_s)
        logger.warning(
            "order %s still waiting after polling; returning it as waiting", order.identifier
        )
        return current

    # -- the emergency fast path (benchmarks) -------------------------------------------

    async def send_market_sell(
        self, market: str, volume: Decimal, identifier: str
    ) -> tuple[float, asyncio.Task[Any]]:
        """Send a market sell and return as soon as its bytes are written to the socket.

        Returns (`time.perf_counter()` when the request body was written, the task that
        finishes the call and yields Upbit's reply). No rule lookup is made on this path:
        the volume is rounded and the request signed and sent at once.
        """
        body = {
            "market": market,
            "side": Side.ASK.value,
            "volume": _text(round_volume(volume)),
            "ord_type": OrderType.MARKET.value,
            "identifier": identifier,
        }
        built = self.client.build_request("POST", "/v1/orders", body=body)
        sent = asyncio.Event()
        stamp: list[float] = []

        async def trace(event_name: str, _info: Mapping[str, Any]) -> None:
            if event_name.endswith("send_request_body.complete") and not stamp:
                stamp.append(time.perf_counter())
                sent.set()

        built.extensions["trace"] = trace
        task = asyncio.create_task(self.client.send_built(built, "order"))
        waiter = asyncio.create_task(sent.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not stamp:
            task.result()  # raises the transport error when it failed before sending
            stamp.append(time.perf_counter())
        return stamp[0], task


def _with_identifier(order: Order, identifier: str) -> Order:
    """Return the order (and its fills) labelled with the identifier it was sent with."""
    fills = [replace(f, order_identifier=identifier) for f in order.fills]
    return replace(order, identifier=identifier, fills=fills)


def _documented_rules(market: str) -> MarketRules:
    """Upbit's documented KRW-market fee and minimum (the fallback to /v1/orders/chance)."""
    return MarketRules(
        market, FEE_RATE, FEE_RATE, MIN_ORDER_KRW, MIN_ORDER_KRW, "active", "fallback"
    )


def _fee(rules: MarketRules, side: Side) -> Decimal:
    return rules.bid_fee if side is Side.BID else rules.ask_fee


def _rules_from_chance(market: str, chance: Mapping[str, Any]) -> MarketRules:
    call = "GET /v1/orders/chance"
    info = chance.get("market")
    if not isinstance(info, dict):
        raise MalformedReply(f"Upbit {call}: no market object")
    bid, ask = info.get("bid"), info.get("ask")
    if not isinstance(bid, dict) or not isinstance(ask, dict):
        raise MalformedReply(f"Upbit {call}: market.bid / market.ask missing")
    return MarketRules(
        market=market,
        bid_fee=_field_dec(chance, "bid_fee", call),
        ask_fee=_field_dec(chance, "ask_fee", call),
        bid_min_total=_optional_dec(bid, "min_total", call) or MIN_ORDER_KRW,
        ask_min_total=_optional_dec(ask, "min_total", call) or MIN_ORDER_KRW,
        state=str(info.get("state") or "active"),
        source="chance",
    )


def order_from_upbit(data: Mapping[str, Any], *, fee_rate: Decimal) -> Order:
    """Turn Upbit's order JSON into an `Order`; raise `MalformedReply` naming a bad field.

    Fees per fill are `paid_fee` shared by the trades' funds (Upbit reports only the total).
    """
    call = "order reply"
    order_uuid = _field_str(data, "uuid", call)
    call = f"order {order_uuid}"
    raw_state = _field_str(data, "state", call)
    if raw_state not in _STATES:
        raise MalformedReply(f"Upbit {call}: unknown state {raw_state!r}")
    try:
        side = Side(_field_str(data, "side", call))
        ord_type = OrderType(_field_str(data, "ord_type", call))
    except ValueError as exc:
        raise MalformedReply(f"Upbit {call}: {exc}") from None
    market = _field_str(data, "market", call)
    created_at = _field_time(data, "created_at", call)
    identifier = data.get("identifier")
    executed = _optional_dec(data, "executed_volume", call) or _ZERO
    paid_fee = _optional_dec(data, "paid_fee", call) or _ZERO
    trades = data.get("trades") or []
    if not isinstance(trades, list):
        raise MalformedReply(f"Upbit {call}: trades is not a list")
    parsed = []
    for trade in trades:
        if not isinstance(trade, dict):
            raise MalformedReply(f"Upbit {call}: a trade is not an object")
        price = _field_dec(trade, "price", call)
        volume = _field_dec(trade, "volume", call)
        funds = _optional_dec(trade, "funds", call) or price * volume
        ts = _field_time(trade, "created_at", call) if trade.get("created_at") else created_at
        parsed.append((price, volume, funds, ts, trade.get("uuid")))
    total_funds = sum((p[2] for p in parsed), _ZERO)
    fills: list[Fill] = []
    fee_left = paid_fee
    for i, (price, volume, funds, ts, trade_uuid) in enumerate(parsed):
        if i == len(parsed) - 1:
            fee = fee_left
        elif total_funds > 0 and paid_fee > 0:
            fee = paid_fee * funds / total_funds
        else:
            fee = funds * fee_rate
        fee_left -= fee
        fills.append(
            Fill(
                order_identifier=str(identifier or ""),
                market=market,
                side=side,
                price=price,
                volume=volume,
                fee=fee,
                ts=ts,
                trade_uuid=str(trade_uuid) if trade_uuid else None,
            )
        )
    if fills and sum((f.volume for f in fills), _ZERO) != executed:
        raise MalformedReply(
            f"Upbit {call}: executed_volume {executed} differs from the sum of its trades"
        )
    return Order(
        identifier=str(identifier or ""),
        market=market,
        side=side,
        ord_type=ord_type,
        state=_STATES[raw_state],
        created_at=created_at,
        price=_optional_dec(data, "price", call),
        volume=_optional_dec(data, "volume", call),
        executed_volume=executed,
        paid_fee=paid_fee,
        fills=fills,
        uuid=order_uuid,
    )


def _field_str(data: Mapping[str, Any], key: str, call: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedReply(f"Upbit {call}: field {key!r} is missing or not a string ({value!r})")
    return value


def _field_dec(data: Mapping[str, Any], key: str, call: str) -> Decimal:
    value = _optional_dec(data, key, call)
    if value is None:
        raise MalformedReply(f"Upbit {call}: field {key!r} is missing")
    return value


def _optional_dec(data: Mapping[str, Any], key: str, call: str) -> Decimal | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise MalformedReply(f"Upbit {call}: field {key!r} is not a number ({value!r})")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise MalformedReply(f"Upbit {call}: field {key!r} is not a number ({value!r})") from None
    if not number.is_finite() or number < 0:
        raise MalformedReply(f"Upbit {call}: field {key!r} is not a finite amount ({value!r})")
    return number


def _field_time(data: Mapping[str, Any], key: str, call: str) -> datetime:
    value = _field_str(data, key, call)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedReply(f"Upbit {call}: field {key!r} is not a time ({value!r})") from None
    if parsed.tzinfo is None:
        raise MalformedReply(f"Upbit {call}: field {key!r} has no timezone ({value!r})")
    return parsed.astimezone(UTC)


def _positive(value: Decimal | None, name: str, refuse: Callable[[str], OrderRejected]) -> Decimal:
    if value is None:
        raise refuse(f"{name} is required for this order type")
    if not value.is_finite() or value <= 0:
        raise refuse(f"{name} must be a positive number, got {value}")
    return value


def _text(value: Decimal) -> str:
    return format(value.normalize(), "f")
