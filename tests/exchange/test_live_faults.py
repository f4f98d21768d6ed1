"""The live engine against the fake Upbit answering 500s: holds, reducing, never a crash.

Each endpoint the engine calls fails in turn for a whole bar while a held coin's stop-loss
fires; the bar ends as a recorded hold or a run, the service goes on, and once Upbit answers
again the journal and the exchange agree (reconciliation finds nothing to settle or refuse).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_upbit import FakeUpbit
from test_upbit_live_wiring import live_settings

from app.engine import Protection
from app.session import collect_closes
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, open_services
from exchange.feed import BarClose
from exchange.orders import OrderManager
from exchange.ratelimit import ExchangeBlocked
from exchange.reconcile import reconcile
from exchange.risk import TradingState
from exchange.types import ExchangeError, OrderRequest, OrderType, Side
from exchange.upbit import UpbitExchange
from ml.data import load_candles
from ml.features import WARMUP_BARS

BTC = "KRW-BTC"

# Every Upbit endpoint the engine calls while trading (method, path).
ENDPOINTS = [
    ("GET", "/v1/accounts"),
    ("GET", "/v1/orderbook"),
    ("GET", "/v1/orders/chance"),
    ("GET", "/v1/order"),
    ("GET", "/v1/orders/open"),
    ("POST", "/v1/orders"),
    ("DELETE", "/v1/order"),
]


@pytest.fixture(scope="module")
def closes() -> list[BarClose]:
    """The bundled real candles, KRW-BTC only."""
    every = asyncio.run(collect_closes(load_candles([BUNDLED_CANDLES])))
    return [BarClose(c.ts, {BTC: c.bars[BTC]}) for c in every if BTC in c.bars]


@pytest.fixture
def fake(closes: list[BarClose]) -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price(BTC, Decimal(str(closes[WARMUP_BARS].bars[BTC].close)))
        yield server


def settings_for(tmp_path: Path, fake: FakeUpbit) -> Settings:
    """Live settings over the fake (test_upbit_live_wiring's), reducing at the first failure."""
    return live_settings(tmp_path, fake.base_url).model_copy(
        update={"outage_reducing_after_s": 0.0, "order_lane": False}
    )


@pytest.mark.parametrize(("method", "path"), ENDPOINTS, ids=[f"{m} {p}" for m, p in ENDPOINTS])
async def test_500s_on_an_endpoint_for_a_bar_are_a_hold_and_the_books_still_agree(
    fake: FakeUpbit, tmp_path: Path, closes: list[BarClose], method: str, path: str
) -> None:
    settings = settings_for(tmp_path, fake)
    async with open_services(settings, session_id="f", account_path=tmp_path / "a.json") as s:
        engine = s.engine
        engine.exit_retry_s = (0.05,)
        engine.warm_up(closes[:WARMUP_BARS])
        order = await engine.exchange.place_order(
            OrderRequest(BTC, Side.BID, OrderType.PRICE, "held", price=Decimal(100_000)),
            purpose="entry",
        )
        # a stop above the market: it fires on the bar's first tick, into the failing endpoint
        await engine.ledger.record_fills(None, order, Protection(Decimal(10**12), None), reason="t")

        fake.fail_next(10_000, status=500, method=method, path=path)
        during = await engine.on_bar_close(closes[WARMUP_BARS])
        state_during = engine.guard.state
        fake.clear_faults()
        for _ in range(200):  # retries in the background finish once Upbit answers
            if not engine.emergency.background:
                break
            await asyncio.sleep(0.05)
        after = await engine.on_bar_close(closes[WARMUP_BARS + 1])
        after = await engine.on_bar_close(closes[WARMUP_BARS + 2])
        await engine.wait_idle()
        state_after = engine.guard.state

        venue = s.exchange
        assert isinstance(venue, UpbitExchange)
        report = await reconcile(OrderManager(venue, s.journal), s.journal, markets=[BTC])
        position = s.journal.positions().get(BTC)
        orders = {o["identifier"]: o["state"] for o in s.journal.list_orders()}
        intents = {i["identifier"]: i["state"] for i in s.journal.list_order_intents()}

    assert during.action in ("hold", "buy", "sell")
    if during.reason.startswith("exchange_unavailable"):
        assert "500" in during.reason
        assert state_during is TradingState.REDUCING
    assert state_after is TradingState.ACTIVE, after.reason
    assert report.ok and report.fills_recorded == 0 and report.positions_aligned == [], (
        report.summary()
    )
    held = fake.balances.get("BTC", {}).get("balance", Decimal(0))
    assert (position["volume"] if position else Decimal(0)) == held
    # the two order tables agree: nothing stays "unknown" once Upbit answers again
    assert "unknown" not in orders.values(), orders
    assert {k: v for k, v in orders.items() if k in intents} == intents


async def test_upbit_unreachable_for_several_bars_reduces_then_recovers_with_one_outage(
    fake: FakeUpbit, tmp_path: Path, closes: list[BarClose]
) -> None:
    settings = settings_for(tmp_path, fake)
    async with open_services(settings, session_id="o", account_path=tmp_path / "a.json") as s:
        engine = s.engine
        engine.warm_up(closes[:WARMUP_BARS])
        fake.fail_next(10_000, status=503, method="GET")
        holds = [await engine.on_bar_close(closes[WARMUP_BARS + k]) for k in range(3)]
        reducing = (engine.guard.state, engine.guard.reason)
        fake.clear_faults()
        back = await engine.on_bar_close(closes[WARMUP_BARS + 3])
        outages = s.journal.events_of_type(["outage"])
        runs = s.journal.count_decisions()

    assert [h.reason.split(":")[0] for h in holds] == ["exchange_unavailable"] * 3
    assert reducing[0] is TradingState.REDUCING and "exchange failing" in reducing[1]
    assert not back.reason.startswith("exchange_unavailable")
    assert runs == 1  # the three failing bars started no run
    assert len(outages) == 1 and outages[0]["payload"]["source"] == "exchange"


async def test_a_418_at_a_bar_halts_in_the_journal_alerts_and_stops_the_engine(
    fake: FakeUpbit, tmp_path: Path, closes: list[BarClose]
) -> None:
    settings = settings_for(tmp_path, fake)
    async with open_services(settings, session_id="b", account_path=tmp_path / "a.json") as s:
        s.engine.warm_up(closes[:WARMUP_BARS])
        fake.blocked = True
        with pytest.raises(ExchangeBlocked):
            await s.engine.on_bar_close(closes[WARMUP_BARS])
        control = s.journal.read_trading_control()

    assert control["state"] == "halted" and "418" in control["reason"]


async def test_an_entry_answered_late_is_settled_at_the_next_bar_with_a_stop(
    fake: FakeUpbit, tmp_path: Path, closes: list[BarClose]
) -> None:
    settings = settings_for(tmp_path, fake)
    async with open_services(settings, session_id="e", account_path=tmp_path / "a.json") as s:
        engine = s.engine
        engine.warm_up(closes[:WARMUP_BARS])
        fake.fail_next(10_000, status=500, method="GET", path="/v1/order")
        with pytest.raises(ExchangeError):
            await engine.exchange.place_order(
                OrderRequest(BTC, Side.BID, OrderType.PRICE, "late", price=Decimal(100_000)),
                purpose="entry",
            )
        assert "late" in engine.ledger.unknown and s.journal.positions() == {}
        fake.clear_faults()

        await engine.ledger.settle_unknown(engine.exchange)

        position = s.journal.positions()[BTC]
        stop = engine.protections[BTC].stop_loss_price
        orders = {o["identifier"]: o["state"] for o in s.journal.list_orders()}

    assert position["volume"] == fake.balances["BTC"]["balance"] > 0
    assert stop == position["avg_buy_price"] * Decimal("0.97")  # the 3% cap
    assert orders["late"] == "done" and engine.ledger.unknown == {}
