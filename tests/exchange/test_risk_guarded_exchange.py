"""GuardedExchange over a real PaperExchange: refusals never reach it; cancel and flatten do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from exchange.paper import PaperExchange, SlippageModel
from exchange.risk import GuardedExchange, RiskGuard, RiskLimits, TradingState
from exchange.types import (
    AccountSnapshot,
    Bar,
    Exchange,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
)

T0 = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)  # trading day 2026-02-28 (starts 15:00 UTC)
BTC = "KRW-BTC"
ETH = "KRW-ETH"


def bar(market: str, close: float, minute: int = 0) -> Bar:
    return Bar(market, T0 + timedelta(minutes=minute), close, close, close, close, 1_000_000.0)


def paper_with_positions() -> PaperExchange:
    """1,000,000 KRW, then 100,000 KRW of BTC and 50,000 KRW of ETH bought, marks set."""
    paper = PaperExchange(None, initial_krw=Decimal(1_000_000), slippage=SlippageModel(base_bps=0))
    paper.on_bar(bar(BTC, 100_000_000.0))
    paper.on_bar(bar(ETH, 5_000_000.0))
    return paper


def guarded(paper: PaperExchange, state: TradingState = TradingState.ACTIVE) -> GuardedExchange:
    guard = RiskGuard(RiskLimits(), state=state, reason="test")
    return GuardedExchange(paper, guard, marks=paper.marks, clock=paper.now)


def market_buy(identifier: str, krw: int, market: str = BTC) -> OrderRequest:
    return OrderRequest(market, Side.BID, OrderType.PRICE, identifier, price=Decimal(krw))


def market_sell(identifier: str, volume: Decimal, market: str = BTC) -> OrderRequest:
    return OrderRequest(market, Side.ASK, OrderType.MARKET, identifier, volume=volume)


async def seeded() -> tuple[PaperExchange, GuardedExchange]:
    paper = paper_with_positions()
    exchange = guarded(paper)
    await exchange.place_order(market_buy("seed-btc", 100_000))
    await exchange.place_order(market_buy("seed-eth", 50_000, ETH))
    return paper, exchange


def test_guarded_exchange_satisfies_the_exchange_protocol() -> None:
    paper = paper_with_positions()

    exchange = guarded(paper)

    assert isinstance(exchange, Exchange)
    assert exchange.name == "paper"


async def test_halted_refuses_a_buy_and_a_sell_and_nothing_reaches_the_paper_exchange() -> None:
    paper, exchange = await seeded()
    before: AccountSnapshot = await paper.get_account()
    exchange.guard.set_state(TradingState.HALTED, "kill switch")
    volume = before.positions[BTC].volume

    with pytest.raises(OrderRejected, match="halted"):
        await exchange.place_order(market_buy("halted-buy", 10_000))
    with pytest.raises(OrderRejected, match="halted"):
        await exchange.place_order(market_sell("halted-sell", volume))
    with pytest.raises(OrderRejected, match="halted"):
        await exchange.place_order(market_sell("halted-stop", volume), "emergency")

    assert await paper.get_account() == before
    assert await paper.get_order("halted-buy") is None
    assert await paper.get_order("halted-sell") is None


async def test_halted_allows_cancel_all_and_flatten_which_sells_every_position() -> None:
    paper, exchange = await seeded()
    resting = OrderRequest(
        BTC,
        Side.BID,
        OrderType.LIMIT,
        "resting-bid",
        volume=Decimal("0.0001"),
        price=Decimal(90_000_000),
    )
    await exchange.place_order(resting)
    exchange.guard.set_state(TradingState.HALTED, "kill switch")

    cancelled = await exchange.cancel_all()
    sold = await exchange.flatten(identifier_prefix="flatten-1")

    assert [o.identifier for o in cancelled] == ["resting-bid"]
    assert cancelled[0].state is OrderState.CANCEL
    assert [(o.identifier, o.state) for o in sold] == [
        ("flatten-1-KRW-BTC", OrderState.DONE),
        ("flatten-1-KRW-ETH", OrderState.DONE),
    ]
    account = await paper.get_account()
    assert account.positions == {}
    assert account.krw_locked == 0
    assert await paper.open_orders() == []


async def test_flatten_skips_dust_under_the_minimum_order() -> None:
    paper, exchange = await seeded()
    eth = (await paper.get_account()).positions[ETH].volume
    await exchange.place_order(
        market_sell("trim-eth", eth - Decimal("0.0009"), ETH), "exit"
    )  # 4,500

    sold = await exchange.flatten(identifier_prefix="flat")

    assert [o.identifier for o in sold] == ["flat-KRW-BTC"]
    assert set((await paper.get_account()).positions) == {ETH}


async def test_flatten_returns_a_refused_sell_as_rejected_and_sells_the_rest() -> None:
    paper, exchange = await seeded()
    await paper.place_order(market_sell("x-KRW-BTC", Decimal("0.0001")))  # identifier taken

    sold = await exchange.flatten(identifier_prefix="x")

    assert [(o.identifier, o.state) for o in sold] == [
        ("x-KRW-BTC", OrderState.REJECTED),
        ("x-KRW-ETH", OrderState.DONE),
    ]
    assert sold[0].reason is not None and "already used" in sold[0].reason
    assert set((await paper.get_account()).positions) == {BTC}


async def test_reducing_refuses_a_buy_but_allows_a_sell() -> None:
    paper, exchange = await seeded()
    exchange.guard.set_state(TradingState.REDUCING, "wind down")
    krw_before = (await paper.get_account()).krw
    volume = (await paper.get_account()).positions[BTC].volume

    with pytest.raises(OrderRejected, match="reducing"):
        await exchange.place_order(market_buy("reduce-buy", 10_000))
    assert (await paper.get_account()).krw == krw_before
    sold = await exchange.place_order(market_sell("reduce-sell", volume))

    assert sold.state is OrderState.DONE
    assert BTC not in (await paper.get_account()).positions


async def test_a_loss_seen_at_order_time_stops_the_entry() -> None:
    paper, exchange = await seeded()  # the first order set the day's start equity
    paper.on_bar(bar(BTC, 60_000_000.0, minute=1))  # BTC -40%: equity about -4%

    with pytest.raises(OrderRejected, match="daily loss limit"):
        await exchange.place_order(market_buy("after-loss", 10_000))

    assert exchange.guard.state is TradingState.REDUCING
    assert await paper.get_order("after-loss") is None


async def test_exposure_limit_refuses_a_buy_before_the_paper_exchange_sees_it() -> None:
    paper = paper_with_positions()
    guard = RiskGuard(RiskLimits(max_exposure_pct=10.0))
    exchange = GuardedExchange(paper, guard, marks=paper.marks, clock=paper.now)

    with pytest.raises(OrderRejected, match="max exposure"):
        await exchange.place_order(market_buy("too-big", 150_000))

    assert (await paper.get_account()).krw == Decimal(1_000_000)
    assert await paper.get_order("too-big") is None
