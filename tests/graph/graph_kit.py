"""Helpers for graph tests: a paper exchange with marks, scripted reviewers, a fixed model.

The reviewers and the signal model here are stand-ins for the project's own interfaces
(`graph.review.Reviewer`, `graph.context.SignalModel`), scripted so that each row of the
decision table can be driven; they do not stand in for any external system. They live outside
conftest.py so test modules can import them by a unique module name: every folder's conftest
is imported as `conftest`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from exchange.paper import PaperExchange, SlippageModel
from exchange.types import Bar
from graph.context import Context, TradingPolicy
from graph.review import ReviewRequest, SizingProposal, SizingRequest, Verdict

BAR_TS = datetime(2025, 9, 19, 0, 0, tzinfo=UTC)
PRICES = {"KRW-BTC": 150_000_000.0, "KRW-ETH": 6_000_000.0, "KRW-XRP": 4_000.0}


EXPECTED_PER_EDGE = 0.01  # the fixed model's expected return: 1% per unit of P(buy) - P(sell)


@dataclass(frozen=True)
class Probs:
    p_buy: float
    p_sell: float

    @property
    def expected_return(self) -> float:
        """A made-up calibration for tests: (0.8, 0.1) expects +0.7%, (0.1, 0.8) -0.7%."""
        return (self.p_buy - self.p_sell) * EXPECTED_PER_EDGE


@dataclass
class FixedModel:
    """Returns the probabilities it was given; counts its calls."""

    probabilities: dict[str, tuple[float, float]]
    model_id: str = "fixed-test-model"
    calls: int = 0

    def predict(self, features: Mapping[str, Mapping[str, float | None]]) -> dict[str, Probs]:
        self.calls += 1
        return {m: Probs(*self.probabilities[m]) for m in features}


@dataclass
class ScriptedReviewer:
    """Answers with a fixed verdict (or raises); records every request."""

    answer: str | Exception
    name: str = "scripted"
    requests: list[ReviewRequest] = field(default_factory=list)

    async def review(self, request: ReviewRequest, on_token: object = None) -> Verdict:
        self.requests.append(request)
        if isinstance(self.answer, Exception):
            raise self.answer
        verdict = request.action if self.answer == "agree" else self.answer
        return Verdict(verdict=verdict, confidence=0.9, reasoning="scripted", reviewer=self.name)  # type: ignore[arg-type]


@dataclass
class BlockingReviewer:
    """Agrees, but on its first call signals `started` and waits for `release` (a stuck call)."""

    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    name: str = "blocking"
    calls: int = 0

    async def review(self, request: ReviewRequest, on_token: object = None) -> Verdict:
        self.calls += 1
        if self.calls == 1:
            self.started.set()
            await self.release.wait()
        return Verdict(
            verdict=request.action, confidence=0.9, reasoning="released", reviewer=self.name
        )


@dataclass
class ScriptedSizer:
    ratio: float = 0.2
    stop_loss_pct: float = 1.0
    take_profit_pct: float = 2.0
    name: str = "scripted-sizer"
    requests: list[SizingRequest] = field(default_factory=list)

    async def size(self, request: SizingRequest, on_token: object = None) -> SizingProposal:
        self.requests.append(request)
        return SizingProposal(
            investment_ratio=self.ratio,
            stop_loss_pct=self.stop_loss_pct,
            take_profit_pct=self.take_profit_pct,
            reasoning="scripted",
            reviewer=self.name,
        )


def memory(
    held_minutes: int | None = None,
    minutes_since_exit: int | None = None,
    entries_today: int = 0,
) -> dict[str, Any]:
    """The policy's memory of one market as the engine puts it in the state."""
    return {
        "entered_at": None,
        "last_exit_at": None,
        "held_minutes": held_minutes,
        "minutes_since_exit": minutes_since_exit,
        "entries_today": entries_today,
    }


def features(**overrides: float) -> dict[str, float | None]:
    base: dict[str, float | None] = {
        "ret_60": 0.001,
        "volatility_60": 0.001,
        "rsi_14": 55.0,
        "macd_hist": 0.0001,
    }
    base.update(overrides)
    return base


async def make_exchange(krw: int = 1_000_000) -> PaperExchange:
    exchange = PaperExchange(None, initial_krw=Decimal(krw), slippage=SlippageModel(base_bps=0))
    for market, price in PRICES.items():
        exchange.on_bar(Bar(market, BAR_TS, price, price, price, price, 1000.0))
    return exchange


async def account_view(exchange: PaperExchange) -> dict[str, Any]:
    account = await exchange.get_account()
    return {
        "krw": str(account.krw),
        "equity": str(account.equity(exchange.marks())),
        "positions": {
            m: {
                "volume": str(p.volume),
                "avg_buy_price": str(p.avg_buy_price),
                "unrealized_pct": 0.0,
                "stop_loss_price": None,
                "take_profit_price": None,
            }
            for m, p in account.positions.items()
        },
    }


async def initial_state(
    exchange: PaperExchange, run_id: str = "test-run", **feature_overrides: float
) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "trigger": "bar",
        "bar_ts": BAR_TS.isoformat(),
        "markets": {
            m: {
                "close": p,
                "features": features(**feature_overrides),
                "blocked": None,
                # Held positions (when a test adds one) are past the minimum hold.
                "policy": memory(held_minutes=120),
            }
            for m, p in PRICES.items()
        },
        "account": await account_view(exchange),
        "recent_results": [],
        "events": [],
    }


def make_context(
    exchange: PaperExchange,
    *,
    probabilities: dict[str, tuple[float, float]] | None = None,
    groq: str | Exception = "agree",
    ollama: str | Exception = "agree",
    sizer: ScriptedSizer | None = None,
    policy: TradingPolicy | None = None,
) -> Context:
    return Context(
        signal_model=FixedModel(probabilities or {m: (0.1, 0.1) for m in PRICES}),
        exchange=exchange,
        groq=ScriptedReviewer(groq, name="scripted-groq"),
        ollama=ScriptedReviewer(ollama, name="scripted-ollama"),
        sizer=sizer or ScriptedSizer(),
        policy=policy or TradingPolicy(),
    )


def events_of(result: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """Return the run's events of one type, in order."""
    return [e for e in result["events"] if e["type"] == kind]


def skipped_nodes(result: Mapping[str, Any]) -> list[str]:
    """Return the nodes the hold node reported as skipped."""
    return [e["skipped_node"] for e in events_of(result, "node_skipped")]


async def run_graph(
    context: Context, state: Mapping[str, Any] | None, thread_id: str = "thread-1"
) -> dict[str, Any]:
    """Run the compiled graph on an in-memory checkpointer and return the final state."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graph.builder import build_graph

    graph = build_graph(InMemorySaver())
    result: dict[str, Any] = await graph.ainvoke(
        state, {"configurable": {"thread_id": thread_id}}, context=context
    )
    return result
