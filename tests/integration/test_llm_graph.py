"""The real ChatGroq and ChatOllama, through the graph, against local protocol servers.

The servers (llm_servers.py) speak Groq's OpenAI-style chat API and Ollama's NDJSON chat API
on loopback; everything between the graph and the socket is the production code path.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from llm_servers import Delay, Garbage, GroqServer, HttpError, OllamaServer, Text, Truncated

from app.llm import Reviewers, build_reviewers
from app.settings import Settings
from exchange.paper import PaperExchange, SlippageModel
from exchange.types import Bar
from graph.builder import build_graph
from graph.context import Context, TradingPolicy
from llm.cache import MemoryResponseCache

BAR = "2025-09-19T00:00:00+00:00"
PRICE = 6_000_000.0


def verdict(action: str, confidence: float = 0.8) -> Text:
    body = {"verdict": action, "confidence": confidence, "reasoning": "checked", "risks": []}
    return Text(json.dumps(body))


def sizing(ratio: Any = 0.3, stop: Any = 1.5, take: Any = 3.0) -> Text:
    body = {
        "investment_ratio": ratio,
        "stop_loss_pct": stop,
        "take_profit_pct": take,
        "max_loss_acceptable": stop,
        "take_profit_target": take,
        "reasoning": "sized",
    }
    return Text(json.dumps(body))


class Recorder:
    """Stands in for asyncio.sleep in the retry loop so backoff is asserted, not waited."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def llm_settings(groq: GroqServer, ollama: OllamaServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "groq_api_key": "test-key",
        "groq_base_url": groq.base_url,
        "ollama_host": ollama.base_url,
        "sizing_provider": "ollama",
        "llm_timeout_s": 2.0,
        "llm_max_retries": 2,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def eth_cycle(reviewers: Reviewers, run_id: str) -> tuple[Context, dict[str, Any]]:
    """A context over a paper account marked at PRICE, and one cycle's state proposing ETH."""
    exchange = PaperExchange(None, initial_krw=Decimal(1_000_000), slippage=SlippageModel(0))
    ts = datetime.fromisoformat(BAR)
    exchange.on_bar(Bar("KRW-ETH", ts, PRICE, PRICE, PRICE, PRICE, 100.0))
    context = Context(
        signal_model=_EthBuyModel(),
        exchange=exchange,
        groq=reviewers.groq,
        ollama=reviewers.ollama,
        sizer=reviewers.sizer,
        policy=TradingPolicy(),  # +40 bps expected clears the costs and the margin
    )
    features = {
        "ret_60": 0.001,
        "volatility_60": 0.001,
        "rsi_14": 55.0,
        "macd_hist": 1e-5,
        "range_pct_mean_10": 0.001,
        "trade_intensity": None,
    }
    state = {
        "run_id": run_id,
        "trigger": "bar",
        "bar_ts": BAR,
        "markets": {
            "KRW-ETH": {
                "close": PRICE,
                "features": features,
                "blocked": None,
                "recent_closes": [PRICE] * 25,
            }
        },
        "account": {"krw": "1000000", "equity": "1000000", "positions": {}},
        "recent_results": [],
        "events": [],
    }
    return context, state


async def run_once(reviewers: Reviewers, *, run_id: str = "llm-run") -> dict[str, Any]:
    context, state = eth_cycle(reviewers, run_id)
    graph = build_graph(InMemorySaver())
    return await graph.ainvoke(state, {"configurable": {"thread_id": run_id}}, context=context)


class _EthBuyModel:
    model_id = "eth-buy-test-model"

    def predict(self, features: Any) -> dict[str, Any]:
        from ml.predict import Prediction

        return {
            m: Prediction(
                p_buy=0.5 if m == "KRW-ETH" else 0.0,
                p_sell=0.05,
                expected_return=0.004 if m == "KRW-ETH" else None,
            )
            for m in features
        }


async def test_all_agree_through_real_clients_trades_and_records_both_calls(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(verdict("buy"))
    ollama_server.script(verdict("buy"), sizing(0.3))
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), MemoryResponseCache())

    result = await run_once(reviewers)

    assert result["decision"] == {"action": "buy", "market": "KRW-ETH", "reason": "agreed"}
    assert result["groq"]["reviewer"] == "groq:llama-3.1-8b-instant"
    assert result["ollama"]["reviewer"] == "ollama:qwen2.5:14b"
    assert result["groq"]["call"]["prompt_ref"].startswith("groq_check@")
    assert result["ollama"]["call"]["prompt_ref"].startswith("ollama_check@")
    assert result["sizing"]["call"]["prompt_ref"].startswith("sizing@")
    assert result["groq"]["call"]["input_tokens"] > 0
    assert result["order"]["state"] == "done"
    groq_body = groq_server.chat_requests[0].json
    assert groq_body["response_format"] == {"type": "json_object"}
    ollama_body = ollama_server.chat_requests[0].json
    assert ollama_body["format"]["properties"]["verdict"]["enum"] == ["buy", "sell", "hold"]
    assert "KRW-ETH" in ollama_body["messages"][-1]["content"]


@pytest.mark.parametrize("groq_says", ["hold", "sell"])
async def test_groq_disagreeing_holds_and_ollama_never_sees_a_request(
    groq_server: GroqServer, ollama_server: OllamaServer, groq_says: str
) -> None:
    groq_server.script(verdict(groq_says))
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), None)

    result = await run_once(reviewers)

    assert result["decision"]["reason"] == "groq_disagreed"
    assert ollama_server.requests == []


async def test_ollama_disagreeing_holds_without_sizing(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(verdict("buy"))
    ollama_server.script(verdict("hold"))
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), None)

    result = await run_once(reviewers)

    assert result["decision"]["reason"] == "ollama_disagreed"
    assert len(ollama_server.chat_requests) == 1  # the sizer was not asked


async def test_429_then_success_honours_retry_after_and_trades(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(HttpError(429, headers={"Retry-After": "3"}), verdict("buy"))
    ollama_server.script(verdict("buy"), sizing())
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), None)
    recorder = Recorder()
    reviewers.groq.provider.sleep = recorder  # type: ignore[attr-defined]

    result = await run_once(reviewers)

    assert recorder.delays == [3.0]
    assert result["groq"]["call"]["attempts"] == 2
    assert result["decision"]["action"] == "buy"


async def test_500s_open_the_breaker_and_later_runs_hold_without_calling(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(*[HttpError(500)] * 3)
    reviewers = build_reviewers(
        llm_settings(groq_server, ollama_server, llm_breaker_failures=3), None
    )
    reviewers.groq.provider.sleep = Recorder()  # type: ignore[attr-defined]

    first = await run_once(reviewers, run_id="r1")
    second = await run_once(reviewers, run_id="r2")

    assert first["decision"]["reason"] == "groq_error"
    assert len(groq_server.chat_requests) == 3
    assert second["decision"]["reason"] == "groq_error"
    assert "circuit breaker open" in second["groq"]["error"]
    assert ollama_server.requests == []


async def test_timeout_holds_with_the_reason(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(Delay(5.0, then=verdict("buy")))
    reviewers = build_reviewers(
        llm_settings(groq_server, ollama_server, llm_timeout_s=0.3, llm_max_retries=0), None
    )

    result = await run_once(reviewers)

    assert result["decision"]["reason"] == "groq_error"
    assert "timed out" in result["groq"]["error"] or "Timeout" in result["groq"]["error"]


@pytest.mark.parametrize(
    ("ollama_reply", "what"),
    [
        (Truncated('{"verdict": "buy", "conf', cut_connection=False), "stream ended"),
        (Truncated('{"verdict": "buy", "conf'), "RemoteProtocolError"),
        (Text("I think you should buy."), "unparseable"),
        (Text('{"decision": "buy", "confidence": 0.9}'), "unparseable"),
        (Text("", think="The proposal looks fine, so the verdict is buy"), "unparseable"),
        (Garbage(b"\x00\xffnot ndjson"), "JSONDecodeError"),
    ],
)
async def test_broken_ollama_answers_hold_and_keep_what_was_said(
    groq_server: GroqServer, ollama_server: OllamaServer, ollama_reply: Any, what: str
) -> None:
    groq_server.script(verdict("buy"))
    ollama_server.script(ollama_reply)
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server, llm_max_retries=0), None)

    result = await run_once(reviewers)

    assert result["decision"]["action"] == "hold"
    assert result["decision"]["reason"] == "ollama_error"
    assert what in result["ollama"]["error"]
    assert "order" not in result


async def test_think_block_then_answer_is_read_and_the_thinking_kept(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(verdict("buy"))
    answer = json.dumps({"verdict": "buy", "confidence": 0.7, "reasoning": "ok", "risks": []})
    ollama_server.script(Text(answer, think="RSI is 55, MACD positive"), sizing())
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), None)

    result = await run_once(reviewers)

    assert result["ollama"]["verdict"] == "buy"
    assert "RSI is 55" in result["ollama"]["call"]["thinking"]
    assert result["decision"]["action"] == "buy"


async def test_a_ratio_of_seven_and_a_half_is_clamped_and_recorded(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(verdict("buy"))
    ollama_server.script(verdict("buy"), sizing(ratio=7.5, stop=9.0))
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), None)

    result = await run_once(reviewers)

    clamps = {c["field"]: c for c in result["sizing"]["clamps"]}
    assert clamps["investment_ratio"]["proposed"] == 7.5
    assert clamps["investment_ratio"]["clamped_to"] <= 1.0
    assert clamps["stop_loss_pct"]["clamped_to"] == 3.0
    assert result["decision"]["action"] == "buy"
    assert [e["field"] for e in result["events"] if e["type"] == "clamp"] == [
        "investment_ratio",
        "stop_loss_pct",
    ]


async def test_the_same_prompt_twice_is_answered_from_the_cache(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(verdict("hold"))
    cache = MemoryResponseCache()
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), cache)

    first = await run_once(reviewers, run_id="same")
    second = await run_once(reviewers, run_id="same-again")

    assert len(groq_server.chat_requests) == 1
    assert second["groq"]["call"]["cached"] is True
    assert second["groq"]["reasoning"] == first["groq"]["reasoning"]


async def test_ollama_tokens_stream_into_the_custom_stream(
    groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    groq_server.script(verdict("buy"))
    ollama_server.script(verdict("hold"))
    reviewers = build_reviewers(llm_settings(groq_server, ollama_server), None)
    context, state = eth_cycle(reviewers, "stream")
    graph = build_graph(InMemorySaver())

    tokens = [
        chunk["text"]
        async for mode, chunk in graph.astream(
            state,
            {"configurable": {"thread_id": "stream"}},
            context=context,
            stream_mode=["custom"],
        )
        if chunk.get("type") == "llm_token" and chunk.get("node") == "ollama_check"
    ]

    assert len(tokens) > 1
    assert json.loads("".join(tokens))["verdict"] == "hold"


def test_a_prompt_with_an_undeclared_variable_stops_the_service_naming_it(
    tmp_path: Path, groq_server: GroqServer, ollama_server: OllamaServer
) -> None:
    from prompts.loader import DEFAULT_PROMPTS_DIR, PromptError

    for prompt in DEFAULT_PROMPTS_DIR.glob("*.md"):
        (tmp_path / prompt.name).write_text(prompt.read_text(encoding="utf-8"), encoding="utf-8")
    edited = tmp_path / "ollama_check.md"
    edited.write_text(
        edited.read_text(encoding="utf-8").replace("{{ market }}", "{{ market }} {{ mood }}", 1),
        encoding="utf-8",
    )
    settings = llm_settings(groq_server, ollama_server, prompts_dir=tmp_path)

    with pytest.raises(PromptError, match=r"ollama_check\.md.*'mood'"):
        build_reviewers(settings, None)
