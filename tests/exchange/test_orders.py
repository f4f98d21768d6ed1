"""The order manager against the fake Upbit: journal first, never two orders, nothing lost."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from exchange.orders import OrderManager, OrderUnknown, plan_execution
from exchange.ratelimit import ExchangeBlocked, RateLimiter
from exchange.reconcile import reconcile
from exchange.types import OrderRejected, OrderRequest, OrderState, OrderType, Side
from exchange.upbit import Orderbook, UpbitExchange
from store.journal import Journal

BTC = "KRW-BTC"
PRICE = Decimal(50_000_000)


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price(BTC, PRICE)
        yield server


@pytest.fixture
def journal_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'journal.db'}"


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    with Journal.open(journal_url) as opened:
        yield opened


def connect(fake: FakeUpbit, *, timeout_s: float = 2.0) -> UpbitExchange:
    return UpbitExchange.connect(
        fake.base_url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        timeout_s=timeout_s,
        fill_poll_s=0.01,
    )


@pytest.fixture
async def venue(fake: FakeUpbit) -> AsyncIterator[UpbitExchange]:
    exchange = connect(fake)
    try:
        yield exchange
    finally:
        await exchange.aclose()


def buy(identifier: str, krw: int = 100_000) -> OrderRequest:
    return OrderRequest(BTC, Side.BID, OrderType.PRICE, identifier, price=Decimal(krw))


async def test_a_filled_market_buy_is_journaled_done_with_its_executed_volume(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    manager = OrderManager(venue, journal)

    order = await manager.place_order(buy("o-1"))

    intent = journal.get_order_intent("o-1")
    assert order.state is OrderState.DONE
    assert order.executed_volume == Decimal("0.002")
    assert intent is not None and intent["state"] == "done" and intent["uuid"] == order.uuid
    assert intent["executed_volume"] == Decimal("0.002")
    assert [(f.price, f.volume) for f in order.fills] == [(PRICE, Decimal("0.002"))]
    assert order.fills[0].trade_uuid == fake.order_by_identifier("o-1").trades[0]["uuid"]
    # One writer: the ledger journals fills with the position they change, never the manager.
    assert journal.fills_for_order("o-1") == []


async def test_timeout_after_the_exchange_accepted_gives_exactly_one_order_found_by_identifier(
    fake: FakeUpbit, journal: Journal
) -> None:
    venue = connect(fake, timeout_s=0.3)
    manager = OrderManager(venue, journal, lookup_delay_s=0.05)
    fake.delay_reply("POST", "/v1/orders", seconds=1.0)
    try:
        order = await manager.place_order(buy("o-timeout"))
    finally:
        await venue.aclose()

    assert len(fake.order_posts()) == 1
    assert len(fake.orders) == 1
    assert order.identifier == "o-timeout"
    assert order.state is OrderState.DONE
    intent = journal.get_order_intent("o-timeout")
    assert intent is not None and intent["state"] == "done"
    assert intent["attempts"] == 1
    assert intent["executed_volume"] == Decimal("0.002")


async def test_process_killed_between_send_and_record_is_adopted_on_restart_not_resent(
    fake: FakeUpbit, journal_url: str
) -> None:
    # The first process journals the intent, sends the order, and dies before the answer.
    first_journal = Journal.open(journal_url)
    first_venue = connect(fake, timeout_s=10.0)
    first = OrderManager(first_venue, first_journal)
    fake.delay_reply("POST", "/v1/orders", seconds=2.0)
    sending = asyncio.create_task(first.place_order(buy("o-crash")))
    while fake.order_by_identifier("o-crash") is None:
        await asyncio.sleep(0.01)
    sending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sending
    await first_venue.aclose()
    first_journal.close()

    # A new process over the same journal database.
    with Journal.open(journal_url) as journal:
        assert journal.get_order_intent("o-crash")["state"] == "sent"
        venue = connect(fake)
        manager = OrderManager(venue, journal)
        try:
            report = await reconcile(manager, journal, markets=[BTC])
            again = await manager.place_order(buy("o-crash"))
        finally:
            await venue.aclose()
        intent = journal.get_order_intent("o-crash")
        fills = journal.fills_for_order("o-crash")
        position = journal.positions().get(BTC)

    assert report.adopted == ["o-crash"]
    assert report.ok, report.summary()
    assert report.fills_recorded == 1
    assert len(fake.order_posts()) == 1
    assert again.uuid == fake.order_by_identifier("o-crash").uuid
    assert intent is not None and intent["state"] == "done"
    assert len(fills) == 1
    assert position is not None and position["volume"] == Decimal("0.002")


async def test_a_call_that_never_reached_the_exchange_is_retried_with_the_same_identifier(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    manager = OrderManager(venue, journal, lookup_attempts=1)
    fake.fail_next(1, status=502, method="POST", path="/v1/orders")

    with pytest.raises(OrderUnknown, match="does not show it"):
        await manager.place_order(buy("o-retry"))
    assert journal.get_order_intent("o-retry")["state"] == "unknown"
    order = await manager.place_order(buy("o-retry"))

    assert order.state is OrderState.DONE
    assert len(fake.order_posts()) == 2
    assert len(fake.orders) == 1
    assert journal.get_order_intent("o-retry")["attempts"] == 2


async def test_malformed_reply_to_an_accepted_order_is_resolved_by_identifier(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    manager = OrderManager(venue, journal)
    fake.malformed_next("POST", "/v1/orders", body="<html>502 Bad Gateway</html>")

    order = await manager.place_order(buy("o-garbled"))

    assert order.state is OrderState.DONE
    assert len(fake.orders) == 1
    assert journal.get_order_intent("o-garbled")["state"] == "done"
    assert journal.get_order_intent("o-garbled")["executed_volume"] == Decimal("0.002")


async def test_malformed_lookups_leave_the_order_unknown_never_lost(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    manager = OrderManager(venue, journal, lookup_attempts=2, lookup_delay_s=0.01)
    fake.malformed_next("POST", "/v1/orders", body='{"uuid": 12}')
    # both lookups, each with the client's three retries of a read
    fake.malformed_next("GET", "/v1/order", body="not json", times=8)

    with pytest.raises(OrderUnknown, match=r"o-lost.*lookup failed.*not JSON"):
        await manager.place_order(buy("o-lost"))
    assert journal.get_order_intent("o-lost")["state"] == "unknown"
    resolved = await manager.resolve("o-lost")

    assert resolved is not None and resolved.state is OrderState.DONE
    assert journal.get_order_intent("o-lost")["state"] == "done"
    assert len(fake.order_posts()) == 1


async def test_refused_order_is_journaled_rejected_and_its_identifier_never_reused(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    manager = OrderManager(venue, journal)

    with pytest.raises(OrderRejected, match="insufficient_funds_bid"):
        await manager.place_order(buy("o-poor", krw=5_000_000))
    with pytest.raises(OrderRejected, match="already used and refused"):
        await manager.place_order(buy("o-poor", krw=10_000))

    assert journal.get_order_intent("o-poor")["state"] == "rejected"
    assert len(fake.order_posts()) == 1


async def test_fake_refuses_an_identifier_a_second_time_even_after_a_failed_order(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    with pytest.raises(OrderRejected, match="insufficient_funds_bid"):
        await venue.place_order(buy("o-twice", krw=5_000_000))
    with pytest.raises(OrderRejected, match="already used"):
        await venue.place_order(buy("o-twice", krw=10_000))

    assert fake.orders == {}


async def test_orders_under_the_minimum_are_refused_before_sending(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    manager = OrderManager(venue, journal)

    with pytest.raises(OrderRejected, match="under the minimum of 5000 KRW"):
        await manager.place_order(buy("o-small", krw=4_999))

    assert fake.order_posts() == []
    assert journal.get_order_intent("o-small")["state"] == "rejected"


async def test_limit_price_is_rounded_to_the_tick_in_the_owners_favour(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    request = OrderRequest(
        BTC,
        Side.BID,
        OrderType.LIMIT,
        "o-tick",
        price=Decimal("40000999.7"),
        volume=Decimal("0.0010000099"),
    )

    order = await venue.place_order(request)

    assert order.state is OrderState.WAIT
    assert order.price == Decimal(40_000_000)
    assert order.volume == Decimal("0.00100000")
    assert fake.order_by_identifier("o-tick").price == Decimal(40_000_000)


async def test_blocked_exchange_raises_and_leaves_the_order_unknown(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    manager = OrderManager(venue, journal)
    await venue.rules(BTC)  # cached before the block
    fake.blocked = True

    with pytest.raises(ExchangeBlocked):
        await manager.place_order(buy("o-blocked"))

    assert journal.get_order_intent("o-blocked")["state"] == "unknown"
    assert fake.orders == {}


# -- slippage control --------------------------------------------------------------------


def book(asks: list[tuple[int, str]], bids: list[tuple[int, str]]) -> Orderbook:
    return Orderbook(
        BTC,
        tuple((Decimal(p), Decimal(s)) for p, s in asks),
        tuple((Decimal(p), Decimal(s)) for p, s in bids),
    )


def test_market_buy_within_the_bound_stays_a_market_order() -> None:
    deep = book([(50_000_000, "10")], [(49_990_000, "10")])

    plan = plan_execution(buy("p-1"), deep, Decimal(10))

    assert plan.request.ord_type is OrderType.PRICE
    assert plan.time_in_force is None


def test_wide_spread_turns_a_market_buy_into_a_marketable_ioc_limit() -> None:
    wide = book([(50_500_000, "10")], [(49_500_000, "10")])

    plan = plan_execution(buy("p-2", krw=1_000_000), wide, Decimal(20))

    assert plan.request.ord_type is OrderType.LIMIT
    assert plan.time_in_force == "ioc"
    assert plan.request.price == Decimal(50_601_000)  # best ask + 20 bps, rounded down
    assert plan.request.volume == Decimal("0.01976245")
    assert "spread" in plan.reason


def test_thin_book_turns_a_market_sell_into_a_limit_at_best_bid_minus_the_bound() -> None:
    thin = book([(50_000_000, "10")], [(49_995_000, "0.001"), (49_000_000, "10")])
    sell = OrderRequest(BTC, Side.ASK, OrderType.MARKET, "p-3", volume=Decimal("0.5"))

    plan = plan_execution(sell, thin, Decimal(10))

    assert plan.request.ord_type is OrderType.LIMIT
    assert plan.request.price == Decimal(49_946_000)  # 49,995,000 * (1 - 0.001), rounded up
    assert plan.request.volume == Decimal("0.5")


def test_empty_book_refuses_a_market_order() -> None:
    with pytest.raises(OrderRejected, match="no bids"):
        plan_execution(
            OrderRequest(BTC, Side.ASK, OrderType.MARKET, "p-4", volume=Decimal(1)),
            book([(50_000_000, "1")], []),
            Decimal(10),
        )


async def test_manager_sends_a_marketable_ioc_limit_when_the_spread_is_too_wide(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal
) -> None:
    fake.set_orderbook(
        BTC, [(Decimal(50_500_000), Decimal(1))], [(Decimal(49_500_000), Decimal(1))]
    )
    manager = OrderManager(venue, journal, max_slippage_bps=Decimal(20))

    order = await manager.place_order(buy("o-ioc"))

    sent = fake.order_by_identifier("o-ioc")
    assert sent.ord_type == "limit" and sent.time_in_force == "ioc"
    assert order.state is OrderState.DONE
    assert order.fills[0].price == Decimal(50_500_000)
    assert journal.get_order_intent("o-ioc")["time_in_force"] == "ioc"


async def test_order_bursts_with_429s_stay_within_the_order_limit_and_place_each_once(
    fake: FakeUpbit, journal: Journal
) -> None:
    venue = UpbitExchange.connect(
        fake.base_url,
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        limiter=RateLimiter(backoff_s=0.35),
        fill_poll_s=0.01,
    )
    manager = OrderManager(venue, journal)
    fake.inject_429(2, method="POST", path="/v1/orders")
    try:
        orders = await asyncio.gather(
            *(manager.place_order(buy(f"burst-{n}", krw=10_000)) for n in range(12))
        )
    finally:
        await venue.aclose()

    assert all(order.state is OrderState.DONE for order in orders)
    assert len(fake.orders) == 12
    assert fake.max_in_window("order") <= 8
    assert not fake.blocked
    assert not [r for r in fake.records if r.status == 418 or (r.status == 429 and not r.injected)]
    assert {i["state"] for i in journal.list_order_intents()} == {"done"}


async def test_an_emergency_sell_goes_out_even_when_the_journal_cannot_be_written(
    fake: FakeUpbit,
    venue: UpbitExchange,
    journal: Journal,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.set_balance("BTC", Decimal("0.004"), PRICE)
    manager = OrderManager(venue, journal)
    calls = []

    def journal_down(row: dict[str, object]) -> None:
        calls.append(row["identifier"])
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal, "claim_order_intent", journal_down)
    sell = OrderRequest(
        BTC, Side.ASK, OrderType.MARKET, "panic-1", volume=Decimal("0.004"), urgent=True
    )

    order = await manager.place_order(sell)

    assert order.state is OrderState.DONE and order.identifier == "panic-1"
    assert len(fake.order_posts()) == 1 and fake.balances["BTC"]["balance"] == 0
    assert calls == ["panic-1", "panic-1"]  # before the send, and the write-back after it
    assert "goes out unjournaled" in caplog.text and "still not journaled" in caplog.text


async def test_an_ordinary_order_is_never_sent_without_its_journal_row(
    fake: FakeUpbit, venue: UpbitExchange, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    def journal_down(row: dict[str, object]) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(journal, "record_order_intent", journal_down)

    with pytest.raises(sqlite3.OperationalError):
        await OrderManager(venue, journal).place_order(buy("calm-1"))

    assert fake.order_posts() == []
