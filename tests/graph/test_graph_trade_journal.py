"""The ledger owns the order rows: the trade node places orders through the journaled exchange
and never calls back into the engine; refusals and lost answers are journaled with their state.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from graph_kit import initial_state as graph_state
from graph_kit import make_context, make_exchange, run_graph

from app.engine.ledger import JournaledExchange
from exchange.paper import PaperExchange
from exchange.risk import GuardedExchange, RiskGuard, RiskLimits
from exchange.types import ExchangeError, OrderRejected, OrderRequest, OrderType, Side

BUY_ETH = {"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.8, 0.1), "KRW-XRP": (0.1, 0.1)}


class RecordingLedger:
    """Records what the journaled exchange asks the ledger to write (run id, state, error)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str | None, str, str | None]] = []

    def order_log(self, run_id: str | None, order: dict[str, Any]) -> None:
        self.rows.append((run_id, order["state"], order.get("error")))


def journaled(exchange: Any, ledger: RecordingLedger) -> JournaledExchange:
    guard = RiskGuard(RiskLimits())
    inner = exchange
    if not isinstance(exchange, GuardedExchange):
        inner = GuardedExchange(exchange, guard, marks=exchange.marks)
    return JournaledExchange(inner, ledger)  # type: ignore[arg-type]


async def test_the_graphs_order_is_journaled_before_and_after_it_is_sent_with_its_run() -> None:
    exchange = await make_exchange()
    ledger = RecordingLedger()
    context = replace(
        make_context(exchange, probabilities=BUY_ETH), exchange=journaled(exchange, ledger)
    )

    result = await run_graph(context, await graph_state(exchange, run_id="logged-run"))

    assert result["decision"]["action"] == "buy"
    assert ledger.rows == [("logged-run", "sending", None), ("logged-run", "done", None)]


async def test_a_refused_order_is_journaled_rejected_and_the_run_holds() -> None:
    exchange = await make_exchange(krw=6_000)  # too little for the sized order
    ledger = RecordingLedger()
    context = replace(
        make_context(exchange, probabilities=BUY_ETH), exchange=journaled(exchange, ledger)
    )
    state = await graph_state(exchange, run_id="refused-run")
    state["account"] = {"krw": "1000000", "equity": "1000000", "positions": {}}  # stale view

    result = await run_graph(context, state)

    assert result["decision"]["reason"] == "order_rejected"
    assert [row[:2] for row in ledger.rows] == [
        ("refused-run", "sending"),
        ("refused-run", "rejected"),
    ]
    assert (ledger.rows[1][2] or "").startswith("rejected: ")


class LostLink:
    """An exchange whose answer never arrives (the order may or may not have been taken)."""

    name = "lost"

    def __init__(self, inner: PaperExchange) -> None:
        self.inner = inner

    async def place_order(self, request: OrderRequest) -> Any:
        raise ExchangeError("connection reset after the request was written")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_an_unanswered_order_is_journaled_unknown_and_the_error_is_raised() -> None:
    paper = await make_exchange()
    ledger = RecordingLedger()
    exchange = journaled(
        GuardedExchange(LostLink(paper), RiskGuard(RiskLimits()), marks=paper.marks), ledger
    )
    request = OrderRequest(
        "KRW-ETH", Side.BID, OrderType.PRICE, "lost-1", price=Decimal(10_000), run_id="r"
    )

    with pytest.raises(ExchangeError):
        await exchange.place_order(request)

    assert [row[:2] for row in ledger.rows] == [("r", "sending"), ("r", "unknown")]


async def test_an_urgent_sell_skips_the_sending_row_but_journals_its_answer() -> None:
    paper = await make_exchange()
    ledger = RecordingLedger()
    exchange = journaled(paper, ledger)
    buy = OrderRequest("KRW-ETH", Side.BID, OrderType.PRICE, "buy-1", price=Decimal(50_000))
    await exchange.place_order(buy)
    held = (await paper.get_account()).positions["KRW-ETH"].volume
    sell = OrderRequest("KRW-ETH", Side.ASK, OrderType.MARKET, "sell-1", volume=held, urgent=True)

    await exchange.place_order(sell, purpose="emergency")

    assert [row[1] for row in ledger.rows] == ["sending", "done", "done"]


async def test_a_refusal_by_the_risk_guard_is_journaled_too() -> None:
    paper = await make_exchange()
    ledger = RecordingLedger()
    guard = RiskGuard(RiskLimits())
    exchange = JournaledExchange(
        GuardedExchange(paper, guard, marks=paper.marks),
        ledger,  # type: ignore[arg-type]
    )
    from exchange.risk import TradingState

    guard.set_state(TradingState.HALTED, "test")
    request = OrderRequest("KRW-ETH", Side.BID, OrderType.PRICE, "halted-1", price=Decimal(10_000))

    with pytest.raises(OrderRejected, match="halted"):
        await exchange.place_order(request)

    assert [row[1] for row in ledger.rows] == ["sending", "rejected"]
