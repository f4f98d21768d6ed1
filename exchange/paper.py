"""A paper exchange: Upbit's order rules and fees, filled against 1-minute bars.

Market orders fill at once at the last close (the mark) moved against the trader by a slippage
model; resting limit orders fill at their limit when a later bar trades through it. The
account (cash, positions, every order ever seen) is saved as JSON after each change, so a
restarted process resumes the same paper account. Marks are market data, not account state:
they are not saved, and after a restart a market takes orders again once its next bar arrives.
Markets other than KRW-* (Binance candles in a backtest) pay the same fee, without tick rounding.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from exchange.rules import (
    FEE_RATE,
    RoundingMode,
    check_minimum,
    is_on_tick,
    round_to_tick,
    round_volume,
    tick_size,
)
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

logger = logging.getLogger(__name__)

_STATE_VERSION = 1
_ONE = Decimal(1)
_ZERO = Decimal(0)


@dataclass(frozen=True)
class SlippageModel:
    """How far a market order's fill moves against the trader, from the order's size in the bar.

    The fraction is `base_bps / 10_000 + impact_coeff * order_krw / bar_krw_volume`, capped at
    `max_bps / 10_000`: with the defaults, an order worth 1% of the bar's traded KRW pays
    2 bps + 10 bps.
    """

    base_bps: float = 2.0
    impact_coeff: float = 0.1
    max_bps: float = 100.0

    def slippage_fraction(self, order_krw: float, bar_krw_volume: float) -> float:
        """Return the adverse price move as a fraction of the price (0.0012 = 12 bps)."""
        cap = self.max_bps / 10_000
        if not bar_krw_volume > 0:  # also catches NaN
            return cap
        fraction = self.base_bps / 10_000 + self.impact_coeff * max(order_krw, 0.0) / bar_krw_volume
        return min(fraction, cap)


@dataclass(slots=True)
class _Holding:
    """A mutable coin holding (the paper exchange's working copy of a `Position`)."""

    volume: Decimal
    avg_buy_price: Decimal
    locked: Decimal = _ZERO


class PaperExchange:
    """The `Exchange` protocol, simulated: Upbit's fee, minimum, ticks and identifier rules."""

    name = "paper"

    def __init__(
        self,
        state_path: Path | None,
        *,
        initial_krw: Decimal,
        slippage: SlippageModel = SlippageModel(),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        if initial_krw < 0:
            raise ValueError(f"initial_krw must not be negative, got {initial_krw}")
        self._state_path = state_path
        self._slippage = slippage
        self._clock = clock
        self._initial_krw = initial_krw
        self._krw = initial_krw
        self._krw_locked = _ZERO
        self._holdings: dict[str, _Holding] = {}
        self._orders: dict[str, Order] = {}
        self._locks: dict[str, Decimal] = {}  # resting order -> KRW (bid) or coin (ask) it holds
        self._marks: dict[str, Decimal] = {}
        self._bar_krw_volume: dict[str, float] = {}
        self._bar_time: datetime | None = None
        if state_path is not None and state_path.exists():
            self._load(state_path, requested_initial_krw=initial_krw)

    # -- public, beyond the protocol ---------------------------------------------------------

    @property
    def initial_krw(self) -> Decimal:
        """KRW the account started with (the stored value wins over the constructor's)."""
        return self._initial_krw

    def now(self) -> datetime:
        """Return the paper time: the given clock, else the last bar's close, else wall time."""
        if self._clock is not None:
            return self._clock()
        if self._bar_time is not None:
            return self._bar_time
        return datetime.now(UTC)

    def recent_account(self, max_age_s: float) -> AccountSnapshot | None:
        """None: the paper account is read from memory, so the engine always reads it fresh."""
        del max_age_s
        return None

    def marks(self) -> dict[str, float]:
        """Return the last close of every market that has seen a bar."""
        return {market: float(price) for market, price in self._marks.items()}

    def on_bar(self, bar: Bar) -> list[Fill]:
        """Fill resting orders the bar traded through, then mark the market at the bar's close."""
        close_time = bar.ts + timedelta(minutes=1)
        if self._bar_time is None or close_time > self._bar_time:
            self._bar_time = close_time
        now = self.now()
        low = Decimal(str(bar.low))
        high = Decimal(str(bar.high))
        fills: list[Fill] = []
        for order in list(self._orders.values()):
            if order.market != bar.market or order.state is not OrderState.WAIT:
                continue
            assert order.price is not None and order.volume is not None
            if order.side is Side.BID and low <= order.price:
                fills.append(self._fill_resting_bid(order, now))
            elif order.side is Side.ASK and high >= order.price:
                fills.append(self._fill_resting_ask(order, now))
        self._marks[bar.market] = Decimal(str(bar.close))
        self._bar_krw_volume[bar.market] = bar.volume * bar.close
        if fills:
            self._save()
        return fills

    def on_tick(self, market: str, ts: datetime, price: float) -> None:
        """Mark a market at a trade price inside a bar (an emergency sell fills there)."""
        if self._bar_time is None or ts > self._bar_time:
            self._bar_time = ts
        self._marks[market] = Decimal(str(price))

    # -- the Exchange protocol ---------------------------------------------------------------

    async def get_account(self) -> AccountSnapshot:
        """Free and locked KRW and every coin position."""
        return AccountSnapshot(
            krw=self._krw,
            krw_locked=self._krw_locked,
            positions={
                market: Position(market, h.volume, h.avg_buy_price, h.locked)
                for market, h in self._holdings.items()
            },
        )

    async def place_order(self, request: OrderRequest) -> Order:
        """Validate and execute (or rest) an order; raise `OrderRejected` if refused."""
        identifier = request.identifier
        if not identifier:
            raise OrderRejected("identifier must not be empty")
        if identifier in self._orders:
            raise OrderRejected(
                f"identifier {identifier!r} was already used (state "
                f"{self._orders[identifier].state.value}); Upbit never accepts one twice",
                identifier=identifier,
            )
        order = Order(
            identifier=identifier,
            market=request.market,
            side=request.side,
            ord_type=request.ord_type,
            state=OrderState.WAIT,
            created_at=self.now(),
            price=request.price,
            volume=request.volume,
        )
        self._orders[identifier] = order
        try:
            self._execute(order)
        except OrderRejected as exc:
            order.state = OrderState.REJECTED
            order.reason = exc.reason
            self._save()
            raise OrderRejected(exc.reason, identifier=identifier) from None
        self._save()
        return _copy(order)

    async def get_order(self, identifier: str) -> Order | None:
        """Look an order up by identifier (rejected ones too); None if never seen."""
        order = self._orders.get(identifier)
        return None if order is None else _copy(order)

    async def cancel_order(self, identifier: str) -> Order:
        """Cancel a resting order and release what it locked; a finished order is returned as is."""
        order = self._orders.get(identifier)
        if order is None:
            raise ExchangeError(f"no order with identifier {identifier!r}")
        if order.state is OrderState.WAIT:
            lock = self._locks.pop(identifier)
            if order.side is Side.BID:
                self._krw_locked -= lock
                self._krw += lock
            else:
                self._holdings[order.market].locked -= lock
            order.state = OrderState.CANCEL
            order.reason = "cancelled by request"
            self._save()
        return _copy(order)

    async def open_orders(self, market: str | None = None) -> list[Order]:
        """Orders still resting on the book, oldest first."""
        return [
            _copy(order)
            for order in self._orders.values()
            if order.state is OrderState.WAIT and (market is None or order.market == market)
        ]

    # -- execution ---------------------------------------------------------------------------

    def _execute(self, order: Order) -> None:
        """Check the order against the rules and the account, then fill or rest it."""
        mark = self._marks.get(order.market)
        if mark is None:
            raise OrderRejected(f"no price for market {order.market!r}: no bar seen for it yet")
        if order.ord_type is OrderType.PRICE:
            self._execute_market_bid(order, mark)
        elif order.ord_type is OrderType.MARKET:
            self._execute_market_ask(order, mark)
        else:
            self._execute_limit(order, mark)

    def _execute_market_bid(self, order: Order, mark: Decimal) -> None:
        """Spend `price` KRW at the mark plus slippage (rounded up to the tick), fee on top."""
        if order.side is not Side.BID:
            raise OrderRejected("ord_type 'price' (market buy by KRW) must be side 'bid'")
        if order.volume is not None:
            raise OrderRejected("ord_type 'price' takes the KRW amount in price, not volume")
        krw_amount = _require_positive(order.price, "price")
        check_minimum(krw_amount)
        self._require_krw(krw_amount * (_ONE + FEE_RATE))
        slip = self._slip(order.market, krw_amount)
        fill_price = _round(order.market, mark * (_ONE + slip), "up")
        volume = round_volume(krw_amount / fill_price)
        if volume == 0:
            raise OrderRejected(f"price {krw_amount} KRW buys less than 1e-8 of {order.market}")
        self._apply_bid(order, fill_price, volume, self.now())

    def _execute_market_ask(self, order: Order, mark: Decimal) -> None:
        """Sell `volume` at the mark minus slippage (rounded down to the tick), fee deducted."""
        if order.side is not Side.ASK:
            raise OrderRejected("ord_type 'market' (market sell by volume) must be side 'ask'")
        if order.price is not None:
            raise OrderRejected("ord_type 'market' takes volume only, not price")
        volume = _require_volume(order.volume)
        check_minimum(volume * mark)
        self._require_coin(order.market, volume)
        slip = self._slip(order.market, volume * mark)
        fill_price = _round(order.market, mark * (_ONE - slip), "down")
        self._apply_ask(order, fill_price, volume, self.now())

    def _execute_limit(self, order: Order, mark: Decimal) -> None:
        """Fill a marketable limit at once (never worse than the limit), else rest it."""
        price = _require_positive(order.price, "price")
        volume = _require_volume(order.volume)
        if has_krw_ticks(order.market) and not is_on_tick(price):
            raise OrderRejected(
                f"price {price} is not on the tick: prices near it move in steps of "
                f"{tick_size(price)} KRW"
            )
        check_minimum(price * volume)
        now = self.now()
        if order.side is Side.BID:
            lock = price * volume * (_ONE + FEE_RATE)
            self._require_krw(lock)
            if price >= mark:
                slip = self._slip(order.market, price * volume)
                fill_price = min(price, _round(order.market, mark * (_ONE + slip), "up"))
                self._apply_bid(order, fill_price, volume, now)
                return
            self._krw -= lock
            self._krw_locked += lock
        else:
            self._require_coin(order.market, volume)
            if price <= mark:
                slip = self._slip(order.market, price * volume)
                fill_price = max(price, _round(order.market, mark * (_ONE - slip), "down"))
                self._apply_ask(order, fill_price, volume, now)
                return
            lock = volume
            self._holdings[order.market].locked += volume
        self._locks[order.identifier] = lock

    def _fill_resting_bid(self, order: Order, now: datetime) -> Fill:
        """Release a resting buy's KRW lock and fill it at its limit."""
        lock = self._locks.pop(order.identifier)
        self._krw_locked -= lock
        self._krw += lock
        assert order.price is not None and order.volume is not None
        return self._apply_bid(order, order.price, order.volume, now)

    def _fill_resting_ask(self, order: Order, now: datetime) -> Fill:
        """Release a resting sell's coin lock and fill it at its limit."""
        lock = self._locks.pop(order.identifier)
        self._holdings[order.market].locked -= lock
        assert order.price is not None and order.volume is not None
        return self._apply_ask(order, order.price, order.volume, now)

    def _apply_bid(self, order: Order, price: Decimal, volume: Decimal, now: datetime) -> Fill:
        """Pay for a buy, fee on top, and fold it into the position's fee-inclusive cost."""
        funds = price * volume
        fee = funds * FEE_RATE
        self._krw -= funds + fee
        holding = self._holdings.get(order.market)
        if holding is None:
            self._holdings[order.market] = _Holding(volume, (funds + fee) / volume)
        else:
            total = holding.volume + volume
            holding.avg_buy_price = (holding.avg_buy_price * holding.volume + funds + fee) / total
            holding.volume = total
        return _record_fill(order, price, volume, fee, now)

    def _apply_ask(self, order: Order, price: Decimal, volume: Decimal, now: datetime) -> Fill:
        """Deliver coin for a sell and credit the proceeds less the fee."""
        funds = price * volume
        fee = funds * FEE_RATE
        self._krw += funds - fee
        holding = self._holdings[order.market]
        holding.volume -= volume
        if holding.volume == 0 and holding.locked == 0:
            del self._holdings[order.market]
        return _record_fill(order, price, volume, fee, now)

    def _slip(self, market: str, order_krw: Decimal) -> Decimal:
        """Return the slippage fraction for an order of this size in the market's last bar."""
        fraction = self._slippage.slippage_fraction(
            float(order_krw), self._bar_krw_volume.get(market, 0.0)
        )
        return Decimal(repr(fraction))

    def _require_krw(self, needed: Decimal) -> None:
        """Refuse the order if free KRW does not cover `needed`."""
        if needed > self._krw:
            raise OrderRejected(
                f"insufficient KRW: the order needs {needed:f} KRW (fee included), "
                f"{self._krw:f} KRW is free"
            )

    def _require_coin(self, market: str, volume: Decimal) -> None:
        """Refuse the order if the free coin in `market` does not cover `volume`."""
        holding = self._holdings.get(market)
        free = _ZERO if holding is None else holding.volume - holding.locked
        if volume > free:
            raise OrderRejected(
                f"insufficient {market} volume: the order sells {volume:f}, {free:f} is free"
            )

    # -- persistence -------------------------------------------------------------------------

    def _save(self) -> None:
        """Write the account atomically (temp file, then `os.replace`)."""
        if self._state_path is None:
            return
        state = {
            "version": _STATE_VERSION,
            "initial_krw": str(self._initial_krw),
            "krw": str(self._krw),
            "krw_locked": str(self._krw_locked),
            "positions": {
                market: {
                    "volume": str(h.volume),
                    "avg_buy_price": str(h.avg_buy_price),
                    "locked": str(h.locked),
                }
                for market, h in self._holdings.items()
            },
            "orders": [_order_to_json(order) for order in self._orders.values()],
            "locks": {identifier: str(lock) for identifier, lock in self._locks.items()},
        }
        path = self._state_path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as tmp:
                json.dump(state, tmp, indent=1)
                tmp.flush()
                os.fsync(tmp.fileno())
            os.replace(tmp_name, path)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def _load(self, path: Path, *, requested_initial_krw: Decimal) -> None:
        """Resume the account stored at `path`."""
        state = json.loads(path.read_text(encoding="utf-8"))
        if state.get("version") != _STATE_VERSION:
            raise ValueError(f"{path}: unsupported paper state version {state.get('version')!r}")
        stored_initial = Decimal(state["initial_krw"])
        if stored_initial != requested_initial_krw:
            logger.warning(
                "paper account %s started with %s KRW; keeping it (initial_krw=%s ignored)",
                path,
                stored_initial,
                requested_initial_krw,
            )
        self._initial_krw = stored_initial
        self._krw = Decimal(state["krw"])
        self._krw_locked = Decimal(state["krw_locked"])
        self._holdings = {
            market: _Holding(
                Decimal(h["volume"]), Decimal(h["avg_buy_price"]), Decimal(h["locked"])
            )
            for market, h in state["positions"].items()
        }
        self._orders = {}
        for raw in state["orders"]:
            order = _order_from_json(raw)
            self._orders[order.identifier] = order
        self._locks = {identifier: Decimal(lock) for identifier, lock in state["locks"].items()}


def _require_positive(value: Decimal | None, field: str) -> Decimal:
    """Return `value`, refusing the order if it is missing or not positive."""
    if value is None:
        raise OrderRejected(f"{field} is required for this order type")
    if not value.is_finite() or value <= 0:
        raise OrderRejected(f"{field} must be a positive number, got {value}")
    return value


def _require_volume(volume: Decimal | None) -> Decimal:
    """Return a positive volume with at most 8 decimals, else refuse the order."""
    volume = _require_positive(volume, "volume")
    if round_volume(volume) != volume:
        raise OrderRejected(f"volume {volume} has more than 8 decimals")
    return volume


def has_krw_ticks(market: str) -> bool:
    """Whether Upbit's KRW tick table applies (KRW-* markets; Binance backtests: no)."""
    return market.startswith("KRW-")


def _round(market: str, price: Decimal, mode: RoundingMode) -> Decimal:
    """Round a fill price to the market's tick (KRW markets), in the given direction."""
    return round_to_tick(price, mode) if has_krw_ticks(market) else price


def _record_fill(
    order: Order, price: Decimal, volume: Decimal, fee: Decimal, now: datetime
) -> Fill:
    """Append a fill to the order and mark it done."""
    fill = Fill(
        order_identifier=order.identifier,
        market=order.market,
        side=order.side,
        price=price,
        volume=volume,
        fee=fee,
        ts=now,
    )
    order.fills.append(fill)
    order.executed_volume += volume
    order.paid_fee += fee
    order.state = OrderState.DONE
    return fill


def _copy(order: Order) -> Order:
    """Return a copy the caller may change without touching the exchange's record."""
    return replace(order, fills=list(order.fills))


def _dec(value: str | None) -> Decimal | None:
    """Parse an optional Decimal."""
    return None if value is None else Decimal(value)


def _order_to_json(order: Order) -> dict[str, Any]:
    """Serialize an order for the state file."""
    return {
        "identifier": order.identifier,
        "market": order.market,
        "side": order.side.value,
        "ord_type": order.ord_type.value,
        "state": order.state.value,
        "created_at": order.created_at.isoformat(),
        "price": None if order.price is None else str(order.price),
        "volume": None if order.volume is None else str(order.volume),
        "executed_volume": str(order.executed_volume),
        "paid_fee": str(order.paid_fee),
        "reason": order.reason,
        "fills": [
            {
                "price": str(f.price),
                "volume": str(f.volume),
                "fee": str(f.fee),
                "ts": f.ts.isoformat(),
            }
            for f in order.fills
        ],
    }


def _order_from_json(raw: dict[str, Any]) -> Order:
    """Rebuild an order from the state file."""
    side = Side(raw["side"])
    return Order(
        identifier=raw["identifier"],
        market=raw["market"],
        side=side,
        ord_type=OrderType(raw["ord_type"]),
        state=OrderState(raw["state"]),
        created_at=datetime.fromisoformat(raw["created_at"]),
        price=_dec(raw["price"]),
        volume=_dec(raw["volume"]),
        executed_volume=Decimal(raw["executed_volume"]),
        paid_fee=Decimal(raw["paid_fee"]),
        reason=raw["reason"],
        fills=[
            Fill(
                order_identifier=raw["identifier"],
                market=raw["market"],
                side=side,
                price=Decimal(f["price"]),
                volume=Decimal(f["volume"]),
                fee=Decimal(f["fee"]),
                ts=datetime.fromisoformat(f["ts"]),
            )
            for f in raw["fills"]
        ],
    )
