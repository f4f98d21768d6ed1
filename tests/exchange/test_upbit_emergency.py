"""The watchdog's emergency sell on the live stack (engine -> guard -> order manager -> Upbit).

Against the fake Upbit REST server: the sell leaves without a second account round trip when
the last read is fresh, a refusal on a stale balance is answered by reading it again, and an
account that cannot be read at the trigger is retried until Upbit answers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from fake_upbit import FakeUpbit
from test_upbit_live_wiring import live_settings

from app.wiring import open_services
from exchange.upbit import UpbitExchange

BTC = "KRW-BTC"
PRICE = 150_000_000.0
T0 = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price(BTC, Decimal(145_000_000), size=Decimal(10))
        yield server


async def crash(engine: object, at: datetime) -> None:
    """A calm trade, then one 1.5% lower 20 s later: the watchdog's drop detector fires."""
    await engine.on_tick(BTC, at, PRICE, 0.01)  # type: ignore[attr-defined]
    later = at + timedelta(seconds=20)
    await engine.on_tick(BTC, later, PRICE * 0.985, 0.02)  # type: ignore[attr-defined]


def calls_after(fake: FakeUpbit, start: int) -> list[str]:
    return [f"{r.method} {r.path}" for r in fake.records[start:] if not r.injected]


async def test_a_fresh_account_read_lets_the_sell_leave_without_another_round_trip(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    settings = live_settings(tmp_path, fake.base_url)
    async with open_services(settings, session_id="wd", account_path=tmp_path / "x.json") as s:
        # bought after the start-up reconciliation (here set on the fake directly)
        fake.set_balance("BTC", Decimal("0.002"), Decimal(140_000_000))
        venue = s.exchange
        assert isinstance(venue, UpbitExchange)
        await venue.get_account()  # what the engine reads at each bar close
        start = len(fake.records)

        await crash(s.engine, T0)

        calls = calls_after(fake, start)
        events = s.journal.events_of_type(["watchdog_trigger"])
        intent = s.journal.get_order_intent(fake.orders[next(iter(fake.orders))].identifier)
        lane = venue.client.lane
    assert calls[0] == "POST /v1/orders", calls  # nothing went to Upbit before the sell
    assert lane is not None and lane.sent == 1  # and it left on the pre-opened order lane
    sells = fake.order_posts()
    assert len(sells) == 1
    assert fake.balances["BTC"]["balance"] == 0
    assert events and events[0]["payload"]["detector"] == "drop"
    assert intent is not None and intent["state"] == "done"


async def test_a_sell_refused_on_a_stale_balance_reads_the_account_and_sells_what_is_there(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    settings = live_settings(tmp_path, fake.base_url)
    async with open_services(settings, session_id="wd", account_path=tmp_path / "x.json") as s:
        # bought after the start-up reconciliation (here set on the fake directly)
        fake.set_balance("BTC", Decimal("0.002"), Decimal(140_000_000))
        venue = s.exchange
        assert isinstance(venue, UpbitExchange)
        await venue.get_account()
        fake.set_balance("BTC", Decimal("0.001"), Decimal(140_000_000))  # moved outside lxa

        await crash(s.engine, T0)

        identifiers = [o.identifier for o in fake.orders.values()]
        failures = s.journal.events_of_type(["emergency_sell_failed"])
    assert len(identifiers) == 1 and identifiers[0].endswith("-emergency-drop-fresh")
    assert fake.balances["BTC"]["balance"] == 0
    assert failures and "insufficient" in failures[0]["payload"]["error"]


async def test_an_unreadable_account_at_the_trigger_is_retried_until_upbit_answers(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    settings = live_settings(tmp_path, fake.base_url)
    async with open_services(settings, session_id="wd", account_path=tmp_path / "x.json") as s:
        # bought after the start-up reconciliation (here set on the fake directly)
        fake.set_balance("BTC", Decimal("0.002"), Decimal(140_000_000))
        engine = s.engine
        engine.exit_retry_s = (0.05,)
        assert isinstance(s.exchange, UpbitExchange)
        s.exchange._account_read = None  # no account read to sell from: it must be read
        await engine.on_tick(BTC, T0, PRICE, 0.01)
        # the read and the client's three retries fail: the emergency's own retry takes over
        fake.fail_next(4, status=503, method="GET", path="/v1/accounts")

        await engine.on_tick(BTC, T0 + timedelta(seconds=20), PRICE * 0.985, 0.02)
        failed = s.journal.events_of_type(["emergency_sell_failed"])
        for _ in range(100):  # the retry runs in the background
            if fake.order_posts():
                break
            await asyncio.sleep(0.02)
        await engine.wait_idle()

    assert failed and failed[0]["payload"]["detector"] == "drop"
    assert len(fake.order_posts()) == 1
    assert fake.balances["BTC"]["balance"] == 0


async def test_a_refused_sell_whose_account_cannot_be_reread_is_retried_not_raised(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    settings = live_settings(tmp_path, fake.base_url)
    async with open_services(settings, session_id="wd", account_path=tmp_path / "x.json") as s:
        engine = s.engine
        engine.exit_retry_s = (0.05,)
        fake.set_balance("BTC", Decimal("0.002"), Decimal(140_000_000))
        assert isinstance(s.exchange, UpbitExchange)
        await s.exchange.get_account()
        fake.set_balance("BTC", Decimal("0.001"), Decimal(140_000_000))  # moved outside lxa
        fake.fail_next(1, status=503, method="GET", path="/v1/accounts")

        await crash(engine, T0)  # must not raise into the feed
        for _ in range(100):  # the retry runs in the background
            if fake.balances["BTC"]["balance"] == 0:
                break
            await asyncio.sleep(0.02)
        await engine.wait_idle()

    assert fake.balances["BTC"]["balance"] == 0
    placed = [o.identifier for o in fake.orders.values()]  # the refused one is not an order
    assert len(placed) == 1 and placed[0].endswith("-emergency-drop-fresh")


async def test_with_the_order_lane_off_the_sell_goes_through_httpx(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    settings = live_settings(tmp_path, fake.base_url).model_copy(update={"order_lane": False})
    async with open_services(settings, session_id="wd", account_path=tmp_path / "x.json") as s:
        fake.set_balance("BTC", Decimal("0.002"), Decimal(140_000_000))
        venue = s.exchange
        assert isinstance(venue, UpbitExchange)
        await venue.get_account()

        await crash(s.engine, T0)

        assert venue.client.lane is None
    assert len(fake.order_posts()) == 1
    assert fake.balances["BTC"]["balance"] == 0
