"""Upbit KRW rules: tick sizes at every band boundary, rounding direction, volume, minimum."""

from __future__ import annotations

from decimal import Decimal

import pytest

from exchange.rules import (
    FEE_RATE,
    MIN_ORDER_KRW,
    VOLUME_DECIMALS,
    check_minimum,
    is_on_tick,
    round_price,
    round_to_tick,
    round_volume,
    tick_size,
)
from exchange.types import OrderRejected, Side

D = Decimal


@pytest.mark.parametrize(
    ("price", "tick"),
    [
        ("2000000", "1000"),
        ("1999999", "1000"),
        ("1000000", "1000"),
        ("999999", "500"),
        ("500000", "500"),
        ("499999", "100"),
        ("100000", "100"),
        ("99999", "50"),
        ("50000", "50"),
        ("49999", "10"),
        ("10000", "10"),
        ("9999", "5"),
        ("5000", "5"),
        ("4999", "1"),
        ("1000", "1"),
        ("999", "1"),
        ("100", "1"),
        ("99.9", "0.1"),
        ("10", "0.1"),
        ("9.99", "0.01"),
        ("1", "0.01"),
        ("0.999", "0.001"),
        ("0.1", "0.001"),
        ("0.0999", "0.0001"),
        ("0.01", "0.0001"),
        ("0.00999", "0.00001"),
        ("0.001", "0.00001"),
        ("0.000999", "0.000001"),
        ("0.0001", "0.000001"),
        ("0.0000999", "0.0000001"),
        ("0.00001", "0.0000001"),
        ("0.00000999", "0.00000001"),
    ],
)
def test_tick_size_at_band_boundaries(price: str, tick: str) -> None:
    assert tick_size(D(price)) == D(tick)


def test_tick_size_refuses_a_negative_price() -> None:
    with pytest.raises(ValueError, match="price"):
        tick_size(D(-1))


def test_round_price_rounds_bids_down_and_asks_up() -> None:
    assert round_price(D("150123456"), side=Side.BID) == D("150123000")
    assert round_price(D("150123456"), side=Side.ASK) == D("150124000")
    assert round_price(D("4012.7"), side=Side.BID) == D("4012")
    assert round_price(D("4012.2"), side=Side.ASK) == D("4013")
    assert round_price(D("6001002"), side=Side.BID) == D("6001000")


def test_round_price_leaves_a_price_on_the_tick_unchanged() -> None:
    assert round_price(D("300500"), side=Side.BID) == D("300500")
    assert round_price(D("300500"), side=Side.ASK) == D("300500")


def test_rounding_up_across_a_band_lands_on_the_coarser_tick() -> None:
    rounded = round_to_tick(D("99995"), "up")  # band tick 50 -> 100,000, a 100-tick price

    assert rounded == D("100000")
    assert is_on_tick(rounded)


def test_round_to_tick_nearest() -> None:
    assert round_to_tick(D("10004"), "nearest") == D("10000")
    assert round_to_tick(D("10005"), "nearest") == D("10010")


def test_is_on_tick() -> None:
    assert is_on_tick(D("150124000"))
    assert not is_on_tick(D("150124500"))
    assert is_on_tick(D("4012"))
    assert not is_on_tick(D("4012.5"))
    assert not is_on_tick(D(0))


def test_round_volume_truncates_to_eight_decimals() -> None:
    assert round_volume(D("0.123456789")) == D("0.12345678")
    assert round_volume(D("0.999999999")) == D("0.99999999")
    assert round_volume(D("2")) == D("2")


def test_check_minimum_refuses_4999_and_names_the_minimum() -> None:
    with pytest.raises(OrderRejected, match="5000"):
        check_minimum(D(4999))


def test_check_minimum_accepts_exactly_5000() -> None:
    check_minimum(D(5000))  # must not raise


def test_constants_match_upbit_krw_markets() -> None:
    assert (D(5000), D("0.0005"), 8) == (MIN_ORDER_KRW, FEE_RATE, VOLUME_DECIMALS)
