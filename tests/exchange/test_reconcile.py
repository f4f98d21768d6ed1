"""Start-up reconciliation against the fake Upbit: adopt, record missed fills, name differences."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from exchange.orders import OrderManager
from exchange.reconcile import ADOPTED_PREFIX, reconcile
from exchange.types import ExchangeError, OrderRequest, OrderType, Side
from exchange.upbit import UpbitExchange
from exchange.views import fill_row
from store.journal import Journal

BTC = "KRW-BTC"


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price(BTC, Decimal(50_000_000))
        yield server


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(f"sqlite:///{tmp_path / 'journal.db'}") as opened:
        yield opened


@pytest.fixture
async def manager(fake: FakeUpbit, journal: Journal) -> AsyncIterator[OrderManager]:
    venue = UpbitExchange.connect(
        fake.base_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, fill_poll_s=0.01
    )
    try:
        yield OrderManager(venue, journal)
    finally:
        await venue.aclose()


def intent(identifier: str, state: str, **extra: object) -> dict[str, object]:
    return {
        "identifier": identifier,
        "market": BTC,
        "side": "bid",
        "ord_type": "price",
        "price": Decimal(100_000),
        "state": state,
        "attempts": 1,
        **extra,
    }


async def test_clean_start_agrees(manager: OrderManager, journal: Journal) -> None:
    report = await reconcile(manager, journal, markets=[BTC])

    assert report.ok
    assert report.differences == []
    assert "agrees" in report.summary()


async def test_order_filled_while_down_is_adopted_with_its_fill_and_position(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    journal.record_order_intent(intent("r-1", "unknown"))
    # The order reached Upbit and filled while the process was down.
    await manager.venue.place_order(manager_request("r-1"))

    report = await reconcile(manager, journal, markets=[BTC])

    assert report.ok, report.summary()
    assert report.adopted == ["r-1"]
    assert report.fills_recorded == 1
    assert report.positions_aligned == [BTC]
    assert journal.get_order_intent("r-1")["state"] == "done"
    assert journal.positions()[BTC]["volume"] == Decimal("0.002")
    assert len(fake.order_posts()) == 1


async def test_intent_that_never_reached_the_exchange_is_closed(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    journal.record_order_intent(intent("r-2", "pending", attempts=0))

    report = await reconcile(manager, journal, markets=[BTC])

    assert report.ok
    assert report.never_sent == ["r-2"]
    assert journal.get_order_intent("r-2")["state"] == "rejected"
    assert fake.order_posts() == []


async def test_open_order_unknown_to_the_journal_is_a_difference(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    placed = await manager.venue.place_order(
        OrderRequest(
            BTC,
            Side.BID,
            OrderType.LIMIT,
            "manual-1",
            price=Decimal(40_000_000),
            volume=Decimal("0.001"),
        )
    )

    report = await reconcile(manager, journal, markets=[BTC])

    assert not report.ok
    assert report.differences == [
        f"open order manual-1 (uuid {placed.uuid}) on Upbit, bid 0.001 KRW-BTC at 40000000, "
        "is not in the journal"
    ]


async def test_balance_the_journal_cannot_explain_is_a_difference(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    fake.set_balance("BTC", Decimal("0.5"), Decimal(45_000_000))
    journal.upsert_position(
        {"market": BTC, "volume": Decimal("0.25"), "avg_buy_price": Decimal(45_000_000)}
    )

    report = await reconcile(manager, journal, markets=[BTC])

    assert not report.ok
    assert report.differences == [
        "KRW-BTC: Upbit holds 0.5, the journal 0.25 (its fills add up to 0)"
    ]
    assert "differences:\n  - KRW-BTC" in report.summary()
    assert "lxa reconcile --adopt" in report.summary()


async def test_answered_order_whose_fills_a_dead_process_never_settled_is_settled(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    # The manager journaled Upbit's answer (done, 0.002 executed); the process died before the
    # ledger wrote the fills and the position.
    order = await manager.place_order(manager_request("r-9"))
    assert journal.get_order_intent("r-9")["state"] == "done"
    assert journal.fills_for_order("r-9") == [] and journal.positions() == {}

    report = await reconcile(manager, journal, markets=[BTC])

    assert report.ok, report.summary()
    assert report.adopted == ["r-9"] and report.fills_recorded == 1
    fills = journal.fills_for_order("r-9")
    assert [f["trade_uuid"] for f in fills] == [order.fills[0].trade_uuid]
    assert journal.positions()[BTC]["volume"] == Decimal("0.002")
    assert journal.positions()[BTC]["avg_buy_price"] == order.fills[0].price
    # A second start finds nothing left to do and looks nothing up.
    again = await reconcile(manager, journal, markets=[BTC])
    assert again.ok and again.adopted == [] and again.positions_aligned == []
    assert len(fake.order_posts()) == 1


async def test_position_lost_after_its_fills_were_journaled_is_rebuilt_from_them(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    # The journal's own fills explain what Upbit holds; only the position row was lost.
    await manager.place_order(manager_request("r-10"))
    order = await manager.get_order("r-10")
    assert order is not None
    journal.settle_fills(BTC, [fill_row(f) for f in order.fills], None)
    assert journal.positions() == {}

    report = await reconcile(manager, journal, markets=[BTC])

    assert report.ok, report.summary()
    assert report.positions_aligned == [BTC]
    assert journal.positions()[BTC]["volume"] == Decimal("0.002")


async def test_adopt_records_an_unexplained_balance_as_a_fill_so_positions_stay_their_sum(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    fake.set_balance("BTC", Decimal("0.5"), Decimal(45_000_000))

    refused = await reconcile(manager, journal, markets=[BTC])
    adopted = await reconcile(manager, journal, markets=[BTC], adopt=True)
    after = await reconcile(manager, journal, markets=[BTC])

    assert not refused.ok
    assert adopted.ok and adopted.adopted_balances == ["KRW-BTC 0.5"]
    assert after.ok and after.adopted_balances == []
    (fill,) = journal.list_fills()
    assert fill["order_identifier"].startswith(ADOPTED_PREFIX)
    assert (fill["side"], fill["volume"], fill["fee"]) == ("bid", Decimal("0.5"), 0)
    position = journal.positions()[BTC]
    assert position["volume"] == Decimal("0.5")
    assert position["avg_buy_price"] == Decimal(45_000_000)
    assert journal.holdings_from_fills()[BTC].volume == Decimal("0.5")


async def test_unreadable_exchange_fails_loudly(
    fake: FakeUpbit, manager: OrderManager, journal: Journal
) -> None:
    fake.fail_next(5, status=503, path="/v1/orders/open")

    with pytest.raises(ExchangeError, match="503"):
        await reconcile(manager, journal, markets=[BTC])


def manager_request(identifier: str) -> OrderRequest:
    return OrderRequest(BTC, Side.BID, OrderType.PRICE, identifier, price=Decimal(100_000))
