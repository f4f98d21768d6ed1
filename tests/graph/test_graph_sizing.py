"""Sizing through the graph: clamps become events, an unusable or failed sizer holds."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from graph_kit import ScriptedSizer, events_of, initial_state, make_context, run_graph

from exchange.paper import PaperExchange
from graph.review import SizingProposal, SizingRequest

BUY_ETH = {"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.8, 0.1), "KRW-XRP": (0.1, 0.1)}


class FailingSizer:
    name = "failing-sizer"

    async def size(self, request: SizingRequest, on_token: object = None) -> SizingProposal:
        raise RuntimeError("sizer backend down")


async def test_every_clamp_appears_as_a_clamp_event_with_field_proposed_limit_and_rule(
    exchange: PaperExchange,
) -> None:
    sizer = ScriptedSizer(ratio=5.0, stop_loss_pct=10.0, take_profit_pct=50.0)
    context = make_context(exchange, probabilities=BUY_ETH, sizer=sizer)

    result = await run_graph(context, await initial_state(exchange))

    clamps = [
        {k: e[k] for k in ("field", "proposed", "clamped_to", "rule")}
        for e in events_of(result, "clamp")
    ]
    assert clamps == [
        {
            "field": "investment_ratio",
            "proposed": 5.0,
            "clamped_to": 1.0,
            "rule": "max_investment_ratio",
        },
        {"field": "stop_loss_pct", "proposed": 10.0, "clamped_to": 3.0, "rule": "stop_loss_cap"},
        {
            "field": "take_profit_pct",
            "proposed": 50.0,
            "clamped_to": 20.0,
            "rule": "take_profit_cap",
        },
    ]
    assert all(
        e["node"] == "sizing" and e["market"] == "KRW-ETH" for e in events_of(result, "clamp")
    )
    assert result["sizing"]["proposed"] == {
        "investment_ratio": 5.0,
        "stop_loss_pct": 10.0,
        "take_profit_pct": 50.0,
    }
    assert result["sizing"]["investment_ratio"] == 1.0
    assert result["sizing"]["clamps"] == clamps


async def test_clamped_ratio_of_one_spends_all_cash_less_the_fee(exchange: PaperExchange) -> None:
    context = make_context(exchange, probabilities=BUY_ETH, sizer=ScriptedSizer(ratio=5.0))

    result = await run_graph(context, await initial_state(exchange))

    assert result["sizing"]["order_krw"] == "999500"  # 1,000,000 / 1.0005, rounded down
    assert result["decision"]["action"] == "buy"
    remaining = (await exchange.get_account()).krw
    assert Decimal(0) <= remaining < Decimal(1_000)


async def test_losing_streak_caps_the_ratio_through_the_graph(exchange: PaperExchange) -> None:
    state = await initial_state(exchange)
    state["recent_results"] = [-0.01, -0.02]
    context = make_context(exchange, probabilities=BUY_ETH, sizer=ScriptedSizer(ratio=0.5))

    result = await run_graph(context, state)

    assert [e["rule"] for e in events_of(result, "clamp")] == ["losing_streak"]
    assert result["sizing"]["order_krw"] == "100000"


async def test_sizer_returning_non_numeric_ratio_holds_sizer_invalid(
    exchange: PaperExchange,
) -> None:
    sizer = ScriptedSizer(ratio="half")  # type: ignore[arg-type]
    context = make_context(exchange, probabilities=BUY_ETH, sizer=sizer)

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "sizer_invalid"
    assert result["sizing"]["refused"] == "sizer_invalid"
    assert events_of(result, "sizing_refused")[0]["reason"] == "sizer_invalid"
    assert events_of(result, "clamp") == []
    assert "order" not in result


async def test_sizer_returning_infinite_stop_loss_holds_sizer_invalid(
    exchange: PaperExchange,
) -> None:
    sizer = ScriptedSizer(stop_loss_pct=float("inf"))
    context = make_context(exchange, probabilities=BUY_ETH, sizer=sizer)

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "sizer_invalid"
    assert (await exchange.get_account()).positions == {}


async def test_sizer_raising_holds_sizer_failed_with_the_error(exchange: PaperExchange) -> None:
    context = replace(make_context(exchange, probabilities=BUY_ETH), sizer=FailingSizer())

    result = await run_graph(context, await initial_state(exchange))

    assert result["decision"]["reason"] == "sizer_failed"
    assert "sizer backend down" in result["sizing"]["reasoning"]
    assert (await exchange.get_account()).positions == {}


async def test_sizer_is_given_the_account_probability_and_volatility(
    exchange: PaperExchange,
) -> None:
    sizer = ScriptedSizer()
    context = make_context(exchange, probabilities=BUY_ETH, sizer=sizer)
    state = await initial_state(exchange, volatility_60=0.0021)
    state["recent_results"] = [0.01]

    await run_graph(context, state)

    (request,) = sizer.requests
    assert request.market == "KRW-ETH"
    assert request.capital_krw == 1_000_000.0
    assert request.entry_probability == 0.8
    assert request.volatility_60m == 0.0021
    assert request.recent_results == [0.01]
    assert request.risk_level == "medium"
