"""The paper exchange: fees, minimum, identifiers, funds, limit orders, slippage, persistence.

Every bar here is synthetic (made up for the test), around KRW-XRP's real price level (tick 1).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from exchange.paper import PaperExchange, SlippageModel
from exchange.rules import FEE_RATE
from exchange.types import (
    Bar,
    Exchange,
    ExchangeError,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
)

D = Decimal
T0 = datetime(2025, 9, 1, tzinfo=UTC)
XRP = "KRW-XRP"
NO_SLIPPAGE = SlippageModel(base_bps=0.0, impact_coeff=0.0, max_bps=0.0)


def synthetic_bar(
    minute: int,
    close: float,
    *,
    low: float | None = None,
    high: float | None = None,
    market: str = XRP,
    volume: float = 1_000_000.0,
) -> Bar:
    """Build a synthetic 1-minute bar opening `minute` minutes after T0."""
    low = close if low is None else low
    high = close if high is None else high
    return Bar(market, T0 + timedelta(minutes=minute), close, high, low, close, volume)


def paper(
    initial_krw: str = "1000000",
    *,
    state_path: Path | None = None,
    slippage: SlippageModel = NO_SLIPPAGE,
    mark: float | None = 4000.0,
) -> PaperExchange:
    """Build a paper exchange, marked at `mark` by one synthetic bar."""
    exchange = PaperExchange(state_path, initial_krw=D(initial_krw), slippage=slippage)
    if mark is not None:
        exchange.on_bar(synthetic_bar(0, mark))
    return exchange


def market_buy(identifier: str, krw: str, market: str = XRP) -> OrderRequest:
    return OrderRequest(market, Side.BID, OrderType.PRICE, identifier, price=D(krw))


def market_sell(identifier: str, volume: str, market: str = XRP) -> OrderRequest:
    return OrderRequest(market, Side.ASK, OrderType.MARKET, identifier, volume=D(volume))


def limit(identifier: str, side: Side, price: str, volume: str) -> OrderRequest:
    return OrderRequest(XRP, side, OrderType.LIMIT, identifier, volume=D(volume), price=D(price))


def test_paper_exchange_implements_the_exchange_protocol() -> None:
    exchange = paper()

    assert isinstance(exchange, Exchange)
    assert exchange.name == "paper"


async def test_market_buy_charges_exactly_five_bps_on_top() -> None:
    exchange = paper()

    order = await exchange.place_order(market_buy("b1", "100000"))

    assert order.state is OrderState.DONE
    (fill,) = order.fills
    assert fill.price == D(4000)
    assert fill.volume == D(25)
    assert fill.fee == D("50.0000")
    assert fill.fee == fill.funds * D("0.0005")
    assert order.paid_fee == fill.fee
    account = await exchange.get_account()
    assert account.krw == D(1_000_000) - D(100_000) - D(50)
    assert account.positions[XRP].volume == D(25)
    assert account.positions[XRP].avg_buy_price == D(100_050) / D(25)  # fee in the cost basis


async def test_market_buy_volume_is_truncated_to_eight_decimals() -> None:
    exchange = paper(mark=3999.0)

    order = await exchange.place_order(market_buy("b1", "10000"))

    (fill,) = order.fills
    assert fill.volume == D("2.50062515")  # 10000 / 3999 = 2.500625156..., rounded down
    assert fill.fee == fill.funds * FEE_RATE
    account = await exchange.get_account()
    assert account.krw == D(1_000_000) - fill.funds - fill.fee


async def test_market_sell_deducts_exactly_five_bps_from_the_proceeds() -> None:
    exchange = paper()
    await exchange.place_order(market_buy("b1", "100000"))
    krw_before = (await exchange.get_account()).krw
    exchange.on_bar(synthetic_bar(1, 4200.0))

    order = await exchange.place_order(market_sell("s1", "25"))

    (fill,) = order.fills
    assert fill.price == D(4200)
    assert fill.fee == D(105_000) * D("0.0005")
    account = await exchange.get_account()
    assert account.krw == krw_before + D(105_000) - D("52.5")
    assert XRP not in account.positions  # fully sold


async def test_second_buy_averages_the_fee_inclusive_cost() -> None:
    exchange = paper()
    await exchange.place_order(market_buy("b1", "100000"))  # 25 @ 4000
    exchange.on_bar(synthetic_bar(1, 5000.0))

    await exchange.place_order(market_buy("b2", "100000"))  # 20 @ 5000

    position = (await exchange.get_account()).positions[XRP]
    assert position.volume == D(45)
    assert position.avg_buy_price == D(200_100) / D(45)


async def test_order_under_5000_krw_is_refused_and_5000_accepted() -> None:
    exchange = paper()

    with pytest.raises(OrderRejected, match="minimum of 5000 KRW") as refused:
        await exchange.place_order(market_buy("small", "4999"))
    accepted = await exchange.place_order(market_buy("enough", "5000"))

    assert refused.value.identifier == "small"
    assert accepted.state is OrderState.DONE


async def test_sell_and_limit_orders_under_the_minimum_are_refused() -> None:
    exchange = paper()
    await exchange.place_order(market_buy("b1", "100000"))

    with pytest.raises(OrderRejected, match="minimum"):
        await exchange.place_order(market_sell("s1", "1.2"))  # 4,800 KRW
    with pytest.raises(OrderRejected, match="minimum"):
        await exchange.place_order(limit("l1", Side.BID, "3900", "1.28"))  # 4,992 KRW


async def test_identifier_reuse_is_refused() -> None:
    exchange = paper()
    await exchange.place_order(market_buy("same", "10000"))

    with pytest.raises(OrderRejected, match="already used"):
        await exchange.place_order(market_buy("same", "10000"))

    account = await exchange.get_account()
    assert account.positions[XRP].volume == D("2.5")  # only the first order filled


async def test_identifier_of_a_rejected_order_cannot_be_reused() -> None:
    exchange = paper()
    with pytest.raises(OrderRejected):
        await exchange.place_order(market_buy("once", "4999"))

    with pytest.raises(OrderRejected, match="already used"):
        await exchange.place_order(market_buy("once", "10000"))

    recorded = await exchange.get_order("once")
    assert recorded is not None
    assert recorded.state is OrderState.REJECTED
    assert recorded.reason is not None and "minimum" in recorded.reason
    assert await exchange.get_order("never-sent") is None


async def test_market_buy_needs_the_fee_on_top_in_free_krw() -> None:
    short = paper("100049.99")
    exact = paper("100050")

    with pytest.raises(OrderRejected, match="insufficient KRW"):
        await short.place_order(market_buy("b1", "100000"))
    await exact.place_order(market_buy("b1", "100000"))

    assert (await short.get_account()).krw == D("100049.99")
    assert (await exact.get_account()).krw == D(0)


async def test_selling_coin_not_held_is_refused() -> None:
    exchange = paper()
    await exchange.place_order(market_buy("b1", "100000"))  # 25 XRP

    with pytest.raises(OrderRejected, match="insufficient KRW-XRP"):
        await exchange.place_order(market_sell("s1", "25.00000001"))
    with pytest.raises(OrderRejected, match="insufficient KRW-XRP"):
        await exchange.place_order(limit("s2", Side.ASK, "4500", "26"))


async def test_market_without_a_price_is_refused() -> None:
    exchange = paper()

    with pytest.raises(OrderRejected, match="no price for market 'KRW-DOGE'"):
        await exchange.place_order(market_buy("b1", "10000", market="KRW-DOGE"))


async def test_limit_price_off_the_tick_is_refused() -> None:
    exchange = paper()

    with pytest.raises(OrderRejected, match="not on the tick"):
        await exchange.place_order(limit("l1", Side.BID, "3900.5", "10"))


async def test_volume_with_more_than_eight_decimals_is_refused() -> None:
    exchange = paper()

    with pytest.raises(OrderRejected, match="8 decimals"):
        await exchange.place_order(limit("l1", Side.BID, "3900", "10.000000001"))


@pytest.mark.parametrize("volume", ["0", "-1", "NaN", "Infinity"])
async def test_non_positive_or_non_finite_volume_is_refused(volume: str) -> None:
    exchange = paper()

    with pytest.raises(OrderRejected, match="volume must be a positive number"):
        await exchange.place_order(limit("l1", Side.BID, "3900", volume))


async def test_wrong_side_for_the_order_type_is_refused() -> None:
    exchange = paper()
    request = OrderRequest(XRP, Side.ASK, OrderType.PRICE, "x1", price=D(10_000))

    with pytest.raises(OrderRejected, match="must be side 'bid'"):
        await exchange.place_order(request)


async def test_limit_buy_rests_locks_krw_and_fills_when_a_bar_touches_it() -> None:
    exchange = paper()

    order = await exchange.place_order(limit("l1", Side.BID, "3900", "10"))

    assert order.state is OrderState.WAIT
    lock = D(39_000) * D("1.0005")
    account = await exchange.get_account()
    assert account.krw_locked == lock
    assert account.krw == D(1_000_000) - lock
    assert [o.identifier for o in await exchange.open_orders(XRP)] == ["l1"]

    assert exchange.on_bar(synthetic_bar(1, 3950.0, low=3901.0)) == []  # not touched
    fills = exchange.on_bar(synthetic_bar(2, 3920.0, low=3890.0))

    assert [(f.price, f.volume, f.fee) for f in fills] == [(D(3900), D(10), D("19.5"))]
    assert fills[0].ts == T0 + timedelta(minutes=3)  # the close of the bar that filled it
    account = await exchange.get_account()
    assert account.krw_locked == 0
    assert account.krw == D(1_000_000) - D(39_000) - D("19.5")
    assert account.positions[XRP].avg_buy_price == D("3901.95")
    assert await exchange.open_orders() == []
    filled = await exchange.get_order("l1")
    assert filled is not None and filled.state is OrderState.DONE


async def test_limit_buy_waits_for_its_own_market() -> None:
    exchange = paper()
    exchange.on_bar(synthetic_bar(0, 6_000_000.0, market="KRW-ETH"))
    await exchange.place_order(limit("l1", Side.BID, "3900", "10"))

    fills = exchange.on_bar(synthetic_bar(1, 5_000_000.0, low=3000.0, market="KRW-ETH"))

    assert fills == []
    assert len(await exchange.open_orders(XRP)) == 1
    assert await exchange.open_orders("KRW-ETH") == []


async def test_cancel_unlocks_the_krw_and_the_order_never_fills() -> None:
    exchange = paper()
    await exchange.place_order(limit("l1", Side.BID, "3900", "10"))

    cancelled = await exchange.cancel_order("l1")
    fills = exchange.on_bar(synthetic_bar(1, 3800.0, low=3800.0))

    assert cancelled.state is OrderState.CANCEL
    assert fills == []
    account = await exchange.get_account()
    assert account.krw == D(1_000_000)
    assert account.krw_locked == 0
    assert await exchange.open_orders() == []


async def test_cancel_of_an_unknown_order_raises() -> None:
    exchange = paper()

    with pytest.raises(ExchangeError, match="no order"):
        await exchange.cancel_order("ghost")


async def test_limit_sell_rests_locks_coin_and_fills_when_a_bar_reaches_it() -> None:
    exchange = paper()
    await exchange.place_order(market_buy("b1", "100000"))  # 25 XRP

    await exchange.place_order(limit("s1", Side.ASK, "4100", "20"))

    position = (await exchange.get_account()).positions[XRP]
    assert (position.volume, position.locked) == (D(25), D(20))
    with pytest.raises(OrderRejected, match="insufficient KRW-XRP"):
        await exchange.place_order(market_sell("s2", "6"))  # only 5 free

    krw_before = (await exchange.get_account()).krw
    fills = exchange.on_bar(synthetic_bar(1, 4050.0, high=4100.0))

    assert [(f.price, f.volume) for f in fills] == [(D(4100), D(20))]
    account = await exchange.get_account()
    assert account.krw == krw_before + D(82_000) - D(41)
    assert (account.positions[XRP].volume, account.positions[XRP].locked) == (D(5), D(0))


async def test_cancel_of_a_limit_sell_frees_the_coin() -> None:
    exchange = paper()
    await exchange.place_order(market_buy("b1", "100000"))
    await exchange.place_order(limit("s1", Side.ASK, "4100", "20"))

    await exchange.cancel_order("s1")

    assert (await exchange.get_account()).positions[XRP].locked == 0
    await exchange.place_order(market_sell("s2", "25"))  # all of it is free again


async def test_marketable_limit_fills_at_once_at_the_better_price() -> None:
    exchange = paper()

    order = await exchange.place_order(limit("l1", Side.BID, "4100", "10"))

    assert order.state is OrderState.DONE
    assert order.fills[0].price == D(4000)  # the mark, better than the limit
    account = await exchange.get_account()
    assert account.krw_locked == 0
    assert account.krw == D(1_000_000) - D(40_000) - D(20)


async def test_marketable_limit_never_fills_worse_than_its_limit() -> None:
    one_percent = SlippageModel(base_bps=100.0, impact_coeff=0.0, max_bps=100.0)
    exchange = paper(slippage=one_percent)
    await exchange.place_order(market_buy("b1", "100000"))

    buy = await exchange.place_order(limit("l1", Side.BID, "4020", "10"))  # slipped: 4040
    sell = await exchange.place_order(limit("l2", Side.ASK, "3980", "10"))  # slipped: 3960

    assert buy.fills[0].price == D(4020)
    assert sell.fills[0].price == D(3980)


async def test_slippage_makes_buys_and_sells_worse_than_the_mark() -> None:
    exchange = paper(slippage=SlippageModel())  # default model

    buy = await exchange.place_order(market_buy("b1", "400000"))
    sell = await exchange.place_order(market_sell("s1", "50"))

    assert buy.fills[0].price > D(4000)
    assert sell.fills[0].price < D(4000)


def test_slippage_fraction_grows_with_participation_and_is_capped() -> None:
    model = SlippageModel(base_bps=2.0, impact_coeff=0.1, max_bps=100.0)

    assert model.slippage_fraction(0.0, 1e9) == pytest.approx(0.0002)
    assert model.slippage_fraction(1e7, 1e9) == pytest.approx(0.0002 + 0.001)  # 1% of the bar
    assert model.slippage_fraction(1e9, 1e9) == pytest.approx(0.01)  # capped at 100 bps
    assert model.slippage_fraction(10_000.0, 0.0) == pytest.approx(0.01)  # no volume: the cap


async def test_given_clock_stamps_orders_and_fills() -> None:
    fixed = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    exchange = PaperExchange(
        None, initial_krw=D(1_000_000), slippage=NO_SLIPPAGE, clock=lambda: fixed
    )
    exchange.on_bar(synthetic_bar(0, 4000.0))

    order = await exchange.place_order(market_buy("b1", "10000"))

    assert order.created_at == fixed
    assert order.fills[0].ts == fixed


async def test_paper_clock_follows_bar_closes() -> None:
    exchange = paper()
    exchange.on_bar(synthetic_bar(5, 4000.0))

    order = await exchange.place_order(market_buy("b1", "10000"))

    assert order.created_at == T0 + timedelta(minutes=6)
    assert exchange.marks() == {XRP: 4000.0}


async def test_returned_orders_are_copies() -> None:
    exchange = paper()
    order = await exchange.place_order(market_buy("b1", "10000"))

    order.fills.clear()
    order.state = OrderState.CANCEL

    stored = await exchange.get_order("b1")
    assert stored is not None
    assert stored.state is OrderState.DONE
    assert len(stored.fills) == 1


async def test_restart_on_the_same_state_path_resumes_the_account(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_path = tmp_path / "paper" / "account.json"
    first = paper(state_path=state_path)
    await first.place_order(market_buy("b1", "100000"))
    await first.place_order(limit("l1", Side.BID, "3900", "10"))
    await first.place_order(limit("s1", Side.ASK, "4500", "5"))
    with pytest.raises(OrderRejected):
        await first.place_order(market_buy("tiny", "100"))

    with caplog.at_level(logging.WARNING, logger="exchange.paper"):
        second = PaperExchange(state_path, initial_krw=D(5), slippage=NO_SLIPPAGE)

    assert "1000000" in caplog.text  # the stored initial_krw wins, and the mismatch is logged
    assert second.initial_krw == D(1_000_000)
    assert await second.get_account() == await first.get_account()
    assert await second.open_orders() == await first.open_orders()
    for identifier in ("b1", "l1", "s1", "tiny"):
        assert await second.get_order(identifier) == await first.get_order(identifier)
    with pytest.raises(OrderRejected, match="already used"):
        await second.place_order(market_buy("tiny", "10000"))
    assert json.loads(state_path.read_text())["initial_krw"] == "1000000"
    assert sorted(p.name for p in state_path.parent.iterdir()) == ["account.json"]  # no temp


async def test_restarted_exchange_fills_and_cancels_resting_orders(tmp_path: Path) -> None:
    state_path = tmp_path / "account.json"
    first = paper(state_path=state_path)
    await first.place_order(limit("l1", Side.BID, "3900", "10"))
    await first.place_order(limit("l2", Side.BID, "3800", "10"))

    second = PaperExchange(state_path, initial_krw=D(1_000_000), slippage=NO_SLIPPAGE)
    fills = second.on_bar(synthetic_bar(1, 3900.0, low=3900.0))
    await second.cancel_order("l2")

    third = PaperExchange(state_path, initial_krw=D(1_000_000), slippage=NO_SLIPPAGE)
    assert [f.order_identifier for f in fills] == ["l1"]
    account = await third.get_account()
    assert account.krw_locked == 0
    assert account.krw == D(1_000_000) - D(39_000) - D("19.5")
    assert account.positions[XRP].volume == D(10)
    assert await third.open_orders() == []


async def test_restart_needs_a_new_bar_before_taking_orders(tmp_path: Path) -> None:
    state_path = tmp_path / "account.json"
    first = paper(state_path=state_path)
    await first.place_order(market_buy("b0", "10000"))
    restarted = PaperExchange(state_path, initial_krw=D(1_000_000), slippage=NO_SLIPPAGE)

    # marks are market data, not saved: a stale price must not fill an order after a restart
    with pytest.raises(OrderRejected, match="no price"):
        await restarted.place_order(market_buy("b1", "10000"))
    restarted.on_bar(synthetic_bar(1, 4000.0))
    assert (await restarted.place_order(market_buy("b2", "10000"))).state is OrderState.DONE
