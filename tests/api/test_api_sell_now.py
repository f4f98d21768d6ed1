"""POST /api/positions/{market}/sell: the operator's exit from one market, now, with the token.

Over a real engine trading the bundled candles on paper (the policy loosened so that it enters
at once and never leaves by itself): the sell goes through the engine's flatten path, the
trip closes as the operator's, and the journal, the bus and a second try all say so. Without
an engine, or for a market not traded here, the answer says why.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_runs import decision_row

from api.app import create_app
from app.serve import create_api
from app.session import collect_closes
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, Services, open_services
from ml.data import load_candles
from ml.features import WARMUP_BARS
from ml.registry import latest_model_dir
from store.bus import InProcessBus
from store.journal import Journal

TOKEN = "sell-now-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MARKETS = ("KRW-BTC", "KRW-ETH")


async def published(bus: Any, after: int, kind: str) -> dict[str, Any]:
    """The first event of `kind` published after seq `after`."""
    events = bus.subscribe(after)
    try:
        while True:
            event = await asyncio.wait_for(anext(events), timeout=5)
            if event.get("type") == kind:
                return dict(event)
    finally:
        await events.aclose()


@dataclass
class Engine:
    services: Services
    client: httpx.AsyncClient
    bars: Any


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine that replayed bars until it held a coin, and its API with the token."""
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
        policy_entry_margin_bps=-1000.0,
        policy_exit_margin_bps=1000.0,
        policy_reentry_pause_minutes=0,
        policy_max_entries_per_day=1440,
    )
    bars = load_candles([BUNDLED_CANDLES], markets=settings.markets)
    closes = await collect_closes(bars)
    async with open_services(
        settings, session_id="sell", account_path=tmp_path / "acct.json"
    ) as services:
        engine = services.engine
        engine.warm_up(closes[:WARMUP_BARS])
        for close in closes[WARMUP_BARS : WARMUP_BARS + 30]:
            await engine.on_bar_close(close)
            if (await engine.venue.get_account()).positions:
                break
        app = create_api(services, TOKEN, feed="test", bars=bars)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Engine(services, client, bars)


async def test_sell_now_closes_the_trip_as_the_operators_exit(engine: Engine) -> None:
    account = await engine.services.engine.venue.get_account()
    assert account.positions, "the loosened policy bought nothing in 30 bars"
    market, position = next(iter(account.positions.items()))
    bus = engine.services.bus
    after = bus.last_seq

    response = await engine.client.post(
        f"/api/positions/{market}/sell", json={"reason": "take it off"}, headers=AUTH
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["market"] == market
    assert body["exit_reason"] == "operator"
    assert body["state"] == "done"
    assert body["reason"] == "take it off"
    assert body["volume"] == str(position.volume) == body["executed_volume"]
    assert market not in (await engine.services.engine.venue.get_account()).positions
    # The policy does not buy it back at the next bar: the market cools down.
    running = engine.services.engine
    assert running.last_bar_ts is not None
    next_bar = running.last_bar_ts + timedelta(minutes=1)
    assert datetime.fromisoformat(body["cooldown_until"]) == next_bar + timedelta(
        seconds=running.cooldown_s
    )
    assert (running.blocked_reason(market, next_bar) or "").startswith("cooldown after operator")
    journal = engine.services.journal
    assert market not in journal.positions()
    [trip] = [
        t for t in journal.round_trips(market=market) if t["exit_order"] == body["identifier"]
    ]
    assert (trip["status"], trip["exit_kind"], trip["closed_reason"]) == (
        "closed",
        "flatten",
        "operator",
    )
    [event] = journal.events_of_type(("operator_sell",), limit=5)
    assert event["payload"]["market"] == market
    assert event["payload"]["reason"] == "take it off"
    sent = await published(bus, after, "operator_sell")
    assert {key: sent[key] for key in event["payload"]} == event["payload"]
    trades = (await engine.client.get(f"/api/trades?market={market}")).json()["trades"]
    assert any(
        t["exit_order"] == body["identifier"] and t["exit_kind"] == "flatten" for t in trades
    )


async def test_selling_again_with_nothing_held_is_409_saying_so(engine: Engine) -> None:
    account = await engine.services.engine.venue.get_account()
    market = next(iter(account.positions))
    first = await engine.client.post(f"/api/positions/{market}/sell", headers=AUTH)
    assert first.status_code == 200

    again = await engine.client.post(f"/api/positions/{market}/sell", headers=AUTH)

    assert again.status_code == 409
    assert again.json() == {"detail": f"no position in {market} to sell"}


async def test_a_market_not_traded_here_is_404_naming_the_markets(engine: Engine) -> None:
    response = await engine.client.post("/api/positions/KRW-DOGE/sell", headers=AUTH)

    assert response.status_code == 404
    assert response.json()["detail"].startswith("market KRW-DOGE is not traded here")


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/positions/btc/sell", None), ("/api/positions/KRW-BTC/sell", {"reason": ""})],
)
async def test_a_malformed_market_or_reason_is_422(
    engine: Engine, path: str, body: dict[str, Any] | None
) -> None:
    response = await engine.client.post(path, json=body, headers=AUTH)

    assert response.status_code == 422


async def test_sell_now_needs_the_token(engine: Engine) -> None:
    market = next(iter((await engine.services.engine.venue.get_account()).positions))

    response = await engine.client.post(f"/api/positions/{market}/sell")

    assert response.status_code == 401
    assert market in (await engine.services.engine.venue.get_account()).positions


async def test_the_engine_says_who_answers_each_llm_node(engine: Engine) -> None:
    info = (await engine.client.get("/api/info")).json()

    assert info["can_sell"] is True
    assert info["reviewers"] == {
        "groq_check": {
            "kind": "rule_based",
            "label": "rule-based",
            "provider": None,
            "model": None,
            "setting": "LXA_GROQ_API_KEY",
        },
        "ollama_check": {
            "kind": "rule_based",
            "label": "rule-based",
            "provider": None,
            "model": None,
            "setting": "LXA_OLLAMA_HOST",
        },
        "sizing": {
            "kind": "rule_based",
            "label": "rule-based",
            "provider": None,
            "model": None,
            "setting": "LXA_SIZING_PROVIDER=groq or ollama (with that provider configured)",
        },
    }


async def test_candles_span_the_replayed_bars_only_with_their_volume(engine: Engine) -> None:
    journal = engine.services.journal
    first, last = journal.first_bar_ts("sell"), journal.last_bar_ts("sell")
    market = "KRW-BTC"

    body = (await engine.client.get(f"/api/candles?market={market}")).json()

    assert body["source"] == "bars"
    assert body["bucket_minutes"] == 1
    assert datetime.fromisoformat(body["candles"][0]["ts"]) == first
    assert datetime.fromisoformat(body["candles"][-1]["ts"]) == last
    assert (body["first_bar"], body["last_bar"]) == (
        body["candles"][0]["ts"],
        body["candles"][-1]["ts"],
    )
    assert len(body["candles"]) == body["bars"]
    frame = engine.bars[engine.bars["market"] == market].set_index("ts")
    row = frame.loc[first]
    candle = body["candles"][0]
    assert float(candle["high"]) == pytest.approx(float(row["high"]))
    assert float(candle["volume"]) == pytest.approx(float(row["volume"]))


async def test_a_prompt_edit_replay_of_a_run_only_rule_based_checks_saw_is_409(
    engine: Engine,
) -> None:
    journal = engine.services.journal
    runs = [d for d in journal.list_decisions(limit=100) if d["action"] == "buy"]
    assert runs, "no buy run to replay"
    prompt = (await engine.client.get("/api/prompts/groq_check")).json()["text"]

    response = await engine.client.post(
        f"/api/runs/{runs[0]['run_id']}/replay",
        json={"prompts": {"groq_check": prompt + "\nBe brief."}},
        headers=AUTH,
    )

    assert response.status_code == 409
    detail = response.json()["detail"]
    assert detail.startswith("groq_check rule-based here (no LLM configured)")
    assert "LXA_GROQ_API_KEY" in detail


class Replayer:
    """A replayer that must not be reached."""

    def __init__(self) -> None:
        self.calls = 0

    async def replay(self, run_id: str, prompts: Any, models: Any) -> dict[str, Any]:
        self.calls += 1
        raise AssertionError("a useless replay reached the engine")


async def test_a_prompt_edit_replay_of_a_hold_is_409_before_any_fork(journal: Journal) -> None:
    journal.record_decision(decision_row("hold-1", 0))
    replayer = Replayer()
    app = create_app(journal=journal, bus=InProcessBus(), api_token=TOKEN, replayer=replayer)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        prompt = (await client.get("/api/prompts/ollama_check")).json()["text"]
        response = await client.post(
            "/api/runs/hold-1/replay",
            json={"prompts": {"ollama_check": prompt + "\nBe brief."}},
            headers=AUTH,
        )

    assert response.status_code == 409
    assert response.json()["detail"].startswith(
        "run hold-1: the ML signal proposed hold, so no check ran"
    )
    assert replayer.calls == 0


async def test_without_an_engine_the_runs_labels_say_a_check_was_rule_based(
    journal: Journal,
) -> None:
    labels = {"groq_check": "rule-based", "ollama_check": "ollama:qwen3", "sizing": "rule-based"}
    proposal = {"ml_signal": {"proposal": {"action": "buy", "market": "KRW-BTC"}}}
    journal.record_decision(
        decision_row("buy-1", 0, action="buy", reviewer_labels=labels, nodes=proposal)
    )
    app = create_app(journal=journal, bus=InProcessBus(), api_token=TOKEN, replayer=Replayer())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        prompt = (await client.get("/api/prompts/groq_check")).json()["text"]
        refused = await client.post(
            "/api/runs/buy-1/replay",
            json={"prompts": {"groq_check": prompt + "\nBe brief."}},
            headers=AUTH,
        )

    assert refused.status_code == 409
    assert "groq_check rule-based here" in refused.json()["detail"]


async def test_without_an_engine_sell_now_is_503(journal: Journal) -> None:
    app = create_app(journal=journal, bus=InProcessBus(), api_token=TOKEN, markets=MARKETS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/api/positions/KRW-BTC/sell", headers=AUTH)
        info = (await client.get("/api/info")).json()

    assert response.status_code == 503
    assert response.json() == {"detail": "no engine here: this server cannot sell"}
    assert (info["can_sell"], info["reviewers"]) == (False, None)
