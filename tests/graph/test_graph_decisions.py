"""The decision table, row by row, through the compiled graph on a paper exchange."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest
from graph_kit import (
    PRICES,
    FixedModel,
    ScriptedReviewer,
    ScriptedSizer,
    events_of,
    initial_state,
    make_context,
    make_exchange,
    memory,
    run_graph,
    skipped_nodes,
)

from exchange.paper import PaperExchange
from exchange.types import OrderRequest, OrderType, Side
from graph.context import TradingPolicy
from policy.params import PolicyParams

BUY_ETH = {"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.8, 0.1), "KRW-XRP": (0.1, 0.1)}


def _reviewer(context: object, attribute: str) -> ScriptedReviewer:
    reviewer = getattr(context, attribute)
    assert isinstance(reviewer, ScriptedReviewer)
    return reviewer


def _sizer(context: object) -> ScriptedSizer:
    sizer = context.sizer  # type: ignore[attr-defined]
    assert isinstance(sizer, ScriptedSizer)
    return sizer


async def test_expected_return_under_costs_and_margin_holds_no_edge_without_asking_reviewers(
    exchange: PaperExchange,
) -> None:
    # +10 bps expected: -4 bps after the 14 bps of round-trip costs, short of the 10 bps margin.
    context = make_context(exchange, probabilities={m: (0.2, 0.1) for m in PRICES})

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"] == {"action": "hold", "market": "KRW-BTC", "reason": "no_edge"}
    assert result["proposal"]["policy"]["value"] == pytest.approx(-4.0)
    assert result["proposal"]["policy"]["threshold"] == pytest.approx(10.0)
    assert _reviewer(context, "groq").requests == []
    assert _reviewer(context, "ollama").requests == []
    assert _sizer(context).requests == []
    assert skipped_nodes(result) == ["groq_check", "ollama_check", "sizing", "trade"]
    assert "order" not in result


async def test_high_buy_probability_with_a_negative_expected_return_holds_no_edge(
    exchange: PaperExchange,
) -> None:
    context = make_context(exchange, probabilities={m: (0.5, 0.6) for m in PRICES})

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "no_edge"
    assert _reviewer(context, "groq").requests == []


async def test_groq_says_hold_holds_groq_disagreed_without_asking_ollama(
    exchange: PaperExchange,
) -> None:
    context = make_context(exchange, probabilities=BUY_ETH, groq="hold")

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"] == {"action": "hold", "market": "KRW-ETH", "reason": "groq_disagreed"}
    assert len(_reviewer(context, "groq").requests) == 1
    assert _reviewer(context, "ollama").requests == []
    assert skipped_nodes(result) == ["ollama_check", "sizing", "trade"]
    assert result["groq"]["agrees"] is False
    assert result["groq"]["verdict"] == "hold"


async def test_groq_says_sell_on_a_buy_proposal_holds_groq_disagreed(
    exchange: PaperExchange,
) -> None:
    context = make_context(exchange, probabilities=BUY_ETH, groq="sell")

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "groq_disagreed"
    assert result["groq"]["verdict"] == "sell"
    assert _reviewer(context, "ollama").requests == []
    assert "ollama_check" in skipped_nodes(result)


async def test_groq_agrees_ollama_disagrees_holds_ollama_disagreed_without_sizing(
    exchange: PaperExchange,
) -> None:
    context = make_context(exchange, probabilities=BUY_ETH, ollama="hold")

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"] == {
        "action": "hold",
        "market": "KRW-ETH",
        "reason": "ollama_disagreed",
    }
    assert len(_reviewer(context, "ollama").requests) == 1
    assert _sizer(context).requests == []
    assert skipped_nodes(result) == ["sizing", "trade"]


async def test_all_agree_on_buy_buys_with_fee_and_protections(exchange: PaperExchange) -> None:
    context = make_context(
        exchange,
        probabilities=BUY_ETH,
        sizer=ScriptedSizer(ratio=0.2, stop_loss_pct=1.0, take_profit_pct=2.0),
    )
    krw_before = (await exchange.get_account()).krw

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"] == {"action": "buy", "market": "KRW-ETH", "reason": "agreed"}
    order = result["order"]
    assert order["state"] == "done"
    assert order["side"] == "bid"
    assert order["requested_krw"] == "200000"
    account = await exchange.get_account()
    assert "KRW-ETH" in account.positions
    assert account.positions["KRW-ETH"].volume == Decimal(order["executed_volume"])
    funds = Decimal(order["executed_volume"]) * Decimal(order["avg_price"])
    assert Decimal(order["paid_fee"]) == funds * Decimal("0.0005")
    assert krw_before - account.krw == funds + Decimal(order["paid_fee"])
    avg = Decimal(order["avg_price"])
    assert Decimal(order["stop_loss_price"]) == (avg * Decimal("0.99")).quantize(Decimal("0.0001"))
    assert Decimal(order["take_profit_price"]) == (avg * Decimal("1.02")).quantize(
        Decimal("0.0001")
    )
    assert skipped_nodes(result) == []


async def test_all_agree_on_buy_records_every_stage_in_events(exchange: PaperExchange) -> None:
    context = make_context(exchange, probabilities=BUY_ETH)

    result = await run_graph(context, await initial_state(exchange))

    kinds = [(e["node"], e["type"]) for e in result["events"]]
    assert kinds == [
        ("ml_signal", "proposal"),
        ("groq_check", "verdict"),
        ("ollama_check", "verdict"),
        ("sizing", "sizing"),
        ("trade", "order"),
        ("trade", "decision"),
    ]


async def test_all_agree_on_sell_of_held_coin_sells_the_whole_position() -> None:
    exchange = await make_exchange()
    await exchange.place_order(
        OrderRequest(
            market="KRW-XRP",
            side=Side.BID,
            ord_type=OrderType.PRICE,
            identifier="setup-buy",
            price=Decimal(100_000),
        )
    )
    state = await initial_state(exchange)
    held = Decimal(state["account"]["positions"]["KRW-XRP"]["volume"])
    context = make_context(
        exchange,
        probabilities={"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.1, 0.1), "KRW-XRP": (0.1, 0.9)},
    )

    result = await run_graph(context, state)

    assert result["decision"] == {"action": "sell", "market": "KRW-XRP", "reason": "agreed"}
    assert result["proposal"]["action"] == "sell"
    assert result["order"]["side"] == "ask"
    assert Decimal(result["order"]["executed_volume"]) == held
    assert "KRW-XRP" not in (await exchange.get_account()).positions
    assert _sizer(context).requests == []  # an exit sells everything, no sizer asked


async def test_a_coin_bought_a_minute_ago_is_not_sold_on_the_next_bars_sell_signal() -> None:
    """Issue #13's flip-flop, through the graph: the sell signal waits for the minimum hold."""
    exchange = await make_exchange()
    await exchange.place_order(
        OrderRequest(
            market="KRW-XRP",
            side=Side.BID,
            ord_type=OrderType.PRICE,
            identifier="setup-buy",
            price=Decimal(100_000),
        )
    )
    state = await initial_state(exchange)
    state["markets"]["KRW-XRP"]["policy"] = memory(held_minutes=1, entries_today=1)
    context = make_context(
        exchange,
        probabilities={"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.1, 0.1), "KRW-XRP": (0.1, 0.9)},
    )

    result = await run_graph(context, state)

    assert result["decision"] == {"action": "hold", "market": "KRW-XRP", "reason": "min_hold"}
    assert result["proposal"]["policy"]["value"] == pytest.approx(-80.0)  # bps expected
    assert _reviewer(context, "groq").requests == []
    assert "KRW-XRP" in (await exchange.get_account()).positions


async def test_groq_reviewer_raising_holds_groq_error_with_the_error_recorded(
    exchange: PaperExchange,
) -> None:
    context = make_context(exchange, probabilities=BUY_ETH, groq=TimeoutError("groq timed out"))

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "groq_error"
    assert result["groq"]["agrees"] is False
    assert result["groq"]["verdict"] == "hold"
    assert "groq timed out" in result["groq"]["error"]
    assert "TimeoutError" in result["groq"]["error"]
    assert _reviewer(context, "ollama").requests == []
    assert "order" not in result


async def test_ollama_reviewer_raising_holds_ollama_error_never_approves(
    exchange: PaperExchange,
) -> None:
    context = make_context(exchange, probabilities=BUY_ETH, ollama=ConnectionError("refused"))

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "ollama_error"
    assert result["ollama"]["agrees"] is False
    assert result["ollama"]["error"] == "ConnectionError: refused"
    assert _sizer(context).requests == []
    assert (await exchange.get_account()).positions == {}


async def test_max_open_positions_reached_holds_max_positions() -> None:
    exchange = await make_exchange()
    for market in ("KRW-BTC", "KRW-XRP"):
        await exchange.place_order(
            OrderRequest(
                market=market,
                side=Side.BID,
                ord_type=OrderType.PRICE,
                identifier=f"setup-{market}",
                price=Decimal(50_000),
            )
        )
    context = make_context(
        exchange,
        probabilities=BUY_ETH,
        policy=TradingPolicy(rules=PolicyParams(max_open_positions=2)),
    )

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "max_positions"
    assert _reviewer(context, "groq").requests == []


async def test_blocked_market_is_never_proposed_for_entry(exchange: PaperExchange) -> None:
    state = await initial_state(exchange)
    state["markets"]["KRW-ETH"]["blocked"] = "cooldown"
    context = make_context(
        exchange,
        probabilities={"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.9, 0.0), "KRW-XRP": (0.5, 0.1)},
    )

    result = await run_graph(context, state)

    assert result["proposal"]["market"] == "KRW-XRP"
    assert result["events"][0]["blocked"] == {"KRW-ETH": "cooldown"}


async def test_only_signal_on_a_blocked_market_holds_blocked(exchange: PaperExchange) -> None:
    state = await initial_state(exchange)
    state["markets"]["KRW-ETH"]["blocked"] = "cooldown"
    context = make_context(exchange, probabilities=BUY_ETH)

    result = await run_graph(context, state)

    assert result["decision"]["reason"] == "blocked"
    assert _reviewer(context, "groq").requests == []


async def test_all_features_missing_holds_warming_up_without_calling_the_model(
    exchange: PaperExchange,
) -> None:
    state = await initial_state(exchange)
    for snapshot in state["markets"].values():
        snapshot["features"] = None
    context = make_context(exchange, probabilities=BUY_ETH)

    result = await run_graph(context, state)

    assert result["decision"]["reason"] == "warming_up"
    assert result["signals"] == {}
    model = context.signal_model
    assert isinstance(model, FixedModel)
    assert model.calls == 0


async def test_size_below_upbit_minimum_holds_below_minimum_without_an_order() -> None:
    exchange = await make_exchange(krw=6_000)
    context = make_context(exchange, probabilities=BUY_ETH, sizer=ScriptedSizer(ratio=0.05))

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "below_minimum"
    assert result["sizing"]["refused"] == "below_minimum"
    assert skipped_nodes(result) == ["trade"]
    assert (await exchange.get_account()).krw == Decimal(6_000)


async def test_orders_disabled_holds_orders_disabled_and_sends_nothing(
    exchange: PaperExchange,
) -> None:
    context = replace(make_context(exchange, probabilities=BUY_ETH), place_orders=False)

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"] == {
        "action": "hold",
        "market": "KRW-ETH",
        "reason": "orders_disabled",
    }
    assert result["order"]["state"] == "not_sent"
    assert await exchange.get_order(result["order"]["identifier"]) is None
    account = await exchange.get_account()
    assert account.krw == Decimal(1_000_000)
    assert account.positions == {}


async def test_sizer_returning_nan_holds_sizer_invalid(exchange: PaperExchange) -> None:
    context = make_context(exchange, probabilities=BUY_ETH, sizer=ScriptedSizer(ratio=float("nan")))

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "sizer_invalid"
    assert (await exchange.get_account()).positions == {}


async def test_same_run_id_twice_places_one_order_and_reports_the_first(
    exchange: PaperExchange,
) -> None:
    state = await initial_state(exchange, run_id="run-twice")
    context = make_context(exchange, probabilities=BUY_ETH)
    first = await run_graph(context, state, thread_id="first")
    account_after_first = await exchange.get_account()

    second = await run_graph(context, state, thread_id="second")

    account_after_second = await exchange.get_account()
    assert account_after_second.krw == account_after_first.krw
    assert account_after_second.positions == account_after_first.positions
    assert second["order"]["identifier"] == first["order"]["identifier"] == "lxa-run-twice-bid"
    assert second["order"]["executed_volume"] == first["order"]["executed_volume"]
    assert second["decision"] == first["decision"]
    assert events_of(second, "order")[0]["state"] == "done"


async def test_exchange_refusing_the_order_holds_order_rejected_with_the_reason() -> None:
    exchange = await make_exchange(krw=6_000)
    state = await initial_state(exchange)
    state["account"] = {"krw": "1000000", "equity": "1000000", "positions": {}}  # stale view
    context = make_context(exchange, probabilities=BUY_ETH)

    result = await run_graph(context, state)

    assert result["decision"] == {"action": "hold", "market": "KRW-ETH", "reason": "order_rejected"}
    assert result["order"]["state"] == "rejected"
    assert "insufficient KRW" in result["order"]["error"]
    assert (await exchange.get_account()).krw == Decimal(6_000)
