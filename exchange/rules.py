"""Upbit KRW-market trading rules: fee, minimum order, tick size and volume precision.

The tick table is Upbit's published KRW table (the one in force since 2024-10); the paper
exchange and the last-moment check before a live order both use it, so an order the paper
exchange accepts is one Upbit would accept too.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Literal

from exchange.types import OrderRejected, Side

FEE_RATE = Decimal("0.0005")  # 0.05%, taker and maker, KRW markets
MIN_ORDER_KRW = Decimal(5000)
VOLUME_DECIMALS = 8

_VOLUME_QUANTUM = Decimal(1).scaleb(-VOLUME_DECIMALS)  # 0.00000001

# (lowest price of the band, tick size), highest band first.
_KRW_TICKS: tuple[tuple[Decimal, Decimal], ...] = (
    (Decimal(2_000_000), Decimal(1000)),
    (Decimal(1_000_000), Decimal(1000)),
    (Decimal(500_000), Decimal(500)),
    (Decimal(100_000), Decimal(100)),
    (Decimal(50_000), Decimal(50)),
    (Decimal(10_000), Decimal(10)),
    (Decimal(5_000), Decimal(5)),
    (Decimal(1_000), Decimal(1)),
    (Decimal(100), Decimal(1)),
    (Decimal(10), Decimal("0.1")),
    (Decimal(1), Decimal("0.01")),
    (Decimal("0.1"), Decimal("0.001")),
    (Decimal("0.01"), Decimal("0.0001")),
    (Decimal("0.001"), Decimal("0.00001")),
    (Decimal("0.0001"), Decimal("0.000001")),
    (Decimal("0.00001"), Decimal("0.0000001")),
)
_SMALLEST_TICK = Decimal("0.00000001")

RoundingMode = Literal["down", "up", "nearest"]


def tick_size(price: Decimal) -> Decimal:
    """Return the KRW-market tick size for a price."""
    if price < 0:
        raise ValueError(f"price must not be negative, got {price}")
    for floor, tick in _KRW_TICKS:
        if price >= floor:
            return tick
    return _SMALLEST_TICK


def round_to_tick(price: Decimal, mode: RoundingMode) -> Decimal:
    """Round a price to its tick: `down`, `up` or to the `nearest` tick (ties up)."""
    if price <= 0:
        raise ValueError(f"price must be positive, got {price}")
    tick = tick_size(price)
    rounding = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_UP}[mode]
    # Every band's lowest price is a multiple of both its own tick and the finer tick below it,
    # so rounding within the band of `price` always lands on a valid tick, even when rounding up
    # reaches the next band's lowest price (99,995 -> 100,000).
    return (price / tick).quantize(Decimal(1), rounding=rounding) * tick


def round_price(price: Decimal, *, side: Side) -> Decimal:
    """Round a limit price to the tick without making it worse for the order's owner.

    A buy rounds down and a sell rounds up: the rounded limit never pays more (buy) or accepts
    less (sell) than the caller asked for, so rounding can only make a limit order less likely
    to fill, never fill it at a worse price than intended, and a buy's KRW lock never grows.
    """
    return round_to_tick(price, "down" if side is Side.BID else "up")


def is_on_tick(price: Decimal) -> bool:
    """Tell whether a price is a whole number of ticks of its band."""
    if price <= 0:
        return False
    return price % tick_size(price) == 0


def round_volume(volume: Decimal) -> Decimal:
    """Round a coin volume down to Upbit's 8 decimals."""
    return volume.quantize(_VOLUME_QUANTUM, rounding=ROUND_DOWN)


def check_minimum(krw_amount: Decimal) -> None:
    """Raise `OrderRejected` if an order's KRW amount is under Upbit's 5,000 KRW minimum."""
    if krw_amount < MIN_ORDER_KRW:
        raise OrderRejected(
            f"order amount {krw_amount:f} KRW is under the minimum of {MIN_ORDER_KRW:f} KRW"
        )
