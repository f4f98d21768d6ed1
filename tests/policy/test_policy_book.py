"""The policy's memory: rebuilt from fills, measured in whole minutes, counted per KST day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from policy.book import PolicyBook, kst_day, minutes_between

T0 = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # 12:00 KST


def fill(market: str, side: str, volume: str, at: datetime) -> dict[str, object]:
    return {"market": market, "side": side, "volume": volume, "ts": at.isoformat()}


def test_a_restart_remembers_when_the_open_position_was_entered_and_the_last_exit() -> None:
    fills = [
        fill("KRW-BTC", "bid", "0.01", T0),
        fill("KRW-BTC", "ask", "0.01", T0 + timedelta(minutes=40)),
        fill("KRW-BTC", "bid", "0.02", T0 + timedelta(minutes=90)),
        fill("KRW-BTC", "bid", "0.01", T0 + timedelta(minutes=95)),  # adds, same position
    ]

    book = PolicyBook.from_fills(fills)
    view = book.snapshot("KRW-BTC", T0 + timedelta(minutes=100, seconds=59))

    assert view["held_minutes"] == 10  # from the first buy of the open position, rounded down
    assert view["minutes_since_exit"] == 60
    assert view["entries_today"] == 2
    assert view["entered_at"] == (T0 + timedelta(minutes=90)).isoformat()


def test_a_partial_sell_keeps_the_position_open() -> None:
    book = PolicyBook.from_fills(
        [fill("KRW-ETH", "bid", "1", T0), fill("KRW-ETH", "ask", "0.4", T0 + timedelta(minutes=5))]
    )

    view = book.snapshot("KRW-ETH", T0 + timedelta(minutes=20))

    assert view["held_minutes"] == 20
    assert view["minutes_since_exit"] is None


def test_entries_are_counted_per_kst_calendar_day() -> None:
    before_midnight = datetime(2026, 3, 2, 14, 59, tzinfo=UTC)  # 23:59 KST on the 2nd
    book = PolicyBook.from_fills(
        [
            fill("KRW-XRP", "bid", "10", before_midnight),
            fill("KRW-XRP", "ask", "10", before_midnight + timedelta(seconds=30)),
        ]
    )

    same_day = book.snapshot("KRW-XRP", before_midnight + timedelta(seconds=50))
    next_day = book.snapshot("KRW-XRP", before_midnight + timedelta(minutes=2))

    assert same_day["entries_today"] == 1
    assert next_day["entries_today"] == 0
    assert kst_day(before_midnight + timedelta(minutes=2)).day == 3


def test_an_unknown_market_has_an_empty_memory() -> None:
    assert PolicyBook().snapshot("KRW-SOL", T0) == {
        "entered_at": None,
        "last_exit_at": None,
        "held_minutes": None,
        "minutes_since_exit": None,
        "entries_today": 0,
    }


def test_times_must_be_timezone_aware_and_sides_known() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        kst_day(datetime(2026, 3, 2))
    with pytest.raises(ValueError, match="side must be"):
        PolicyBook().on_fill("KRW-BTC", "buy", T0, flat_after=False)
    assert minutes_between(T0, T0 - timedelta(minutes=5)) == 0
