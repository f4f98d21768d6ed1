"""Positions are what the fills add up to: the replay and the journal's rebuild."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from store.journal import Journal
from store.journal.positions import Holding, holdings_from_fills

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def fill(market: str, side: str, price: str, volume: str, minute: int, uuid: str | None = None):
    return {
        "order_identifier": f"o-{minute}",
        "market": market,
        "side": side,
        "price": Decimal(price),
        "volume": Decimal(volume),
        "fee": Decimal(0),
        "ts": T0 + timedelta(minutes=minute),
        "trade_uuid": uuid,
    }


def test_buys_average_sells_reduce_and_a_flat_position_starts_afresh() -> None:
    rows = [
        fill("KRW-BTC", "bid", "100", "1", 0),
        fill("KRW-BTC", "bid", "130", "2", 1),  # average (100 + 260) / 3 = 120
        fill("KRW-BTC", "ask", "150", "1.5", 2),  # the average stays
        fill("KRW-ETH", "bid", "10", "4", 3),
        fill("KRW-ETH", "ask", "11", "4", 4),  # flat: omitted
        fill("KRW-XRP", "bid", "5", "1", 5),
        fill("KRW-XRP", "ask", "6", "1", 6),
        fill("KRW-XRP", "bid", "7", "2", 7),  # a new position at its own price
    ]

    assert holdings_from_fills(rows) == {
        "KRW-BTC": Holding(Decimal("1.5"), Decimal(120)),
        "KRW-XRP": Holding(Decimal(2), Decimal(7)),
    }


def test_settle_from_fills_adds_each_fill_once_and_keeps_the_stops(tmp_path: Path) -> None:
    with Journal.open(f"sqlite:///{tmp_path / 'j.db'}") as journal:
        journal.upsert_position(
            {
                "market": "KRW-BTC",
                "volume": Decimal(9),
                "avg_buy_price": Decimal(1),
                "stop_loss_price": Decimal(90),
            }
        )
        rows = [fill("KRW-BTC", "bid", "100", "1", 0, "t-1")]

        assert journal.settle_from_fills("KRW-BTC", rows) == 1
        assert journal.settle_from_fills("KRW-BTC", rows) == 0
        position = journal.positions()["KRW-BTC"]
        assert (position["volume"], position["avg_buy_price"]) == (Decimal(1), Decimal(100))
        assert position["stop_loss_price"] == Decimal(90)

        journal.settle_from_fills("KRW-BTC", [fill("KRW-BTC", "ask", "110", "1", 1, "t-2")])
        assert journal.positions() == {}
        assert len(journal.list_fills()) == 2
