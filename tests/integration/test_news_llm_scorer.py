"""The LLM news scorer against local servers speaking Groq's and Ollama's protocols.

The news server (tests/news_server.py) serves real-format RSS with SYNTHETIC headlines; the
Groq and Ollama clients, the provider (cache, meter, budget), the journal and the news service
are the real ones. Each item is scored by the LLM first and the lexicon second; the index
reads the LLM's score when it answered, the lexicon's when it did not.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from llm_servers import GroqServer, OllamaServer, Text
from news_server import Feed, NewsServer, rss

import news.service as news_service
from app.llm import build_news_scorer, news_scorer_choice
from app.news import LLMScorer, build_news_service, running_news
from app.session import collect_closes
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, open_services
from exchange.types import OrderRequest, OrderType, Side
from llm.cache import MemoryResponseCache
from llm.cost import CallMeter
from ml.data import load_candles
from ml.features import WARMUP_BARS
from ml.registry import latest_model_dir
from news.service import NewsService
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptError
from store.journal import Journal
from store.schema import llm_calls

GROQ = "groq:llama-3.1-8b-instant"
# llama-3.1-8b-instant: $0.05 in, $0.08 out per million tokens (llm.cost.DEFAULT_PRICES).
CALL_COST = (100 * 0.05 + 20 * 0.08) / 1e6
XRP_TITLE = "Ripple's XRP ledger validators schedule an unplanned emergency patch"
BTC_SOL_TITLE = "Bitcoin and Solana developers publish their quarterly roadmaps"
NEGATIVE = {"KRW-XRP": -0.9}


def markets_asked(request_json: dict[str, Any]) -> list[str]:
    user = request_json["messages"][-1]["content"]
    found = re.search(r"## Markets to score\n(\[.*?\])", user)
    assert found is not None, user
    return list(json.loads(found.group(1)))


def answer(request_json: dict[str, Any]) -> Text:
    """Scores every market asked: -0.9 for XRP, 0.4 for the others."""
    scores = [
        {"market": m, "score": NEGATIVE.get(m, 0.4), "relevance": 1.0, "reason": f"llm on {m}"}
        for m in markets_asked(request_json)
    ]
    return Text(json.dumps({"scores": scores}), prompt_tokens=100, completion_tokens=20)


@pytest.fixture
def news() -> NewsServer:
    with NewsServer() as server:
        now = datetime.now(UTC)
        server.serve(
            "/feed/",
            Feed(
                rss(
                    [
                        {"title": XRP_TITLE, "link": "https://news.test/xrp", "published": now},
                        {"title": BTC_SOL_TITLE, "link": "https://news.test/btc-sol"},
                    ]
                )
            ),
        )
        yield server  # type: ignore[misc]


def groq_settings(tmp_path: Path, news: NewsServer, groq: GroqServer, **values: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        groq_api_key="test-key",
        groq_base_url=groq.base_url,
        llm_max_retries=0,
        news_feeds=[f"wire={news.url('/feed/')}"],
        **values,
    )


async def poll(service: NewsService) -> None:
    try:
        await service.poll_once(force=True)
    finally:
        await service.aclose()


def call_rows(journal: Journal) -> list[dict[str, Any]]:
    with journal.engine.connect() as connection:
        rows = connection.execute(llm_calls.select().order_by(llm_calls.c.id)).mappings()
        return [dict(row) for row in rows]


def scorers_by_market(journal: Journal) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for item in journal.news_items():
        for score in item["scores"]:
            found.setdefault(score["market"], []).append(score["scorer"])
    return found


def sells(journal: Journal) -> list[dict[str, Any]]:
    return [o for o in journal.list_orders(market="KRW-XRP") if o["side"] == "ask"]


def llm_scorer(service: NewsService) -> LLMScorer:
    (scorer, _lexicon) = service._scorers  # the two the settings built, in order
    assert isinstance(scorer, LLMScorer)
    return scorer


async def test_items_scored_by_the_llm_are_stored_with_its_name_and_cost_and_the_index_reads_it(
    tmp_path: Path, news: NewsServer, groq_server: GroqServer
) -> None:
    groq_server.default = answer
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    meter = CallMeter()
    service = build_news_service(
        groq_settings(tmp_path, news, groq_server), journal=journal, meter=meter
    )

    await poll(service)

    assert len(groq_server.chat_requests) == 2
    # The LLM's score first, then the lexicon's, for every coin of every item.
    assert scorers_by_market(journal) == {
        "KRW-XRP": [GROQ, "lexicon"],
        "KRW-BTC": [GROQ, "lexicon"],
        "KRW-SOL": [GROQ, "lexicon"],
    }
    calls = call_rows(journal)
    assert [c["node"] for c in calls] == ["news_sentiment", "news_sentiment"]
    assert all(c["run_id"].startswith("news-") and not c["cached"] for c in calls)
    assert all(c["prompt_ref"].startswith("news_sentiment@") for c in calls)
    assert [c["response"]["cost_usd"] for c in calls] == pytest.approx([CALL_COST, CALL_COST])
    assert calls[0]["response"]["scores"][0]["market"] == "KRW-XRP"
    assert meter.totals()["cost_usd"] == pytest.approx(2 * CALL_COST, abs=1e-6)
    # The lexicon finds nothing in the XRP headline; the index holds the LLM's -0.9.
    reading = service.reading("KRW-XRP")
    assert reading.index == pytest.approx(-0.9, abs=1e-3)
    (recent,) = service.recent("KRW-XRP")
    first = recent.score_for("KRW-XRP")
    assert first is not None and first.scorer == GROQ and first.reason == "llm on KRW-XRP"
    assert recent.score_for("KRW-XRP", "lexicon").score == 0.0  # type: ignore[union-attr]
    assert llm_scorer(service).scorer.figures.scored == 2
    journal.close()


async def test_a_cached_rerun_makes_no_call_and_records_the_cached_answers_at_no_cost(
    tmp_path: Path, news: NewsServer, groq_server: GroqServer
) -> None:
    groq_server.default = answer
    cache = MemoryResponseCache()
    settings = groq_settings(tmp_path, news, groq_server)
    first = Journal.open(f"sqlite:///{tmp_path / 'first.db'}")
    await poll(build_news_service(settings, journal=first, cache=cache))
    asked = len(groq_server.chat_requests)

    second = Journal.open(f"sqlite:///{tmp_path / 'second.db'}")  # the items are new to it
    meter = CallMeter()
    service = build_news_service(settings, journal=second, cache=cache, meter=meter)
    await poll(service)

    assert asked == 2
    assert len(groq_server.chat_requests) == 2  # no call the second time
    assert scorers_by_market(second)["KRW-XRP"] == [GROQ, "lexicon"]
    calls = call_rows(second)
    assert [(c["cached"], c["response"]["cost_usd"]) for c in calls] == [(True, 0.0)] * 2
    assert meter.totals() == {"calls": 0, "cache_hits": 2, "cost_usd": 0.0, "tokens": 0}
    assert llm_scorer(service).scorer.figures.cached == 2
    assert service.reading("KRW-XRP").index == pytest.approx(-0.9, abs=1e-3)
    first.close()
    second.close()


@pytest.mark.parametrize(
    "garbage",
    [
        "The XRP news looks bad to me.",  # no JSON
        '{"scores": [{"market": "KRW-XRP", "score": -3, "relevance": 1, "reason": "x"}]}',
        '{"scores": [{"market": "KRW-DOGE", "score": -0.5, "relevance": 1, "reason": "x"}]}',
        '{"scores": []}',
    ],
    ids=["prose", "out-of-range", "unknown-market", "empty"],
)
async def test_a_garbage_answer_keeps_the_lexicon_score_and_is_counted(
    tmp_path: Path, news: NewsServer, groq_server: GroqServer, garbage: str
) -> None:
    groq_server.default = lambda _request: Text(garbage, prompt_tokens=100, completion_tokens=20)
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    service = build_news_service(groq_settings(tmp_path, news, groq_server), journal=journal)

    await poll(service)

    assert len(groq_server.chat_requests) == 2
    assert scorers_by_market(journal) == {
        "KRW-XRP": ["lexicon"],
        "KRW-BTC": ["lexicon"],
        "KRW-SOL": ["lexicon"],
    }
    figures = llm_scorer(service).scorer.figures
    assert (figures.unparseable, figures.scored, figures.fallbacks) == (2, 0, 2)
    calls = call_rows(journal)
    assert len(calls) == 2
    assert all(c["error"].startswith("unparseable answer") for c in calls)
    assert all(c["response"]["outcome"] == "unparseable" for c in calls)
    (recent,) = service.recent("KRW-XRP")
    assert recent.score_for("KRW-XRP").scorer == "lexicon"  # type: ignore[union-attr]


async def test_a_spent_budget_leaves_the_lexicon_scoring(
    tmp_path: Path, news: NewsServer, groq_server: GroqServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One item scored at a time: the budget is checked as each call starts, so calls already
    # on their way when it is spent still finish (at most news.service.SCORING_AT_ONCE).
    monkeypatch.setattr(news_service, "SCORING_AT_ONCE", 1)
    groq_server.default = answer
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    spent: list[str] = []
    meter = CallMeter(daily_budget_usd=CALL_COST / 2, on_spent=spent.append)  # one call's worth
    service = build_news_service(
        groq_settings(tmp_path, news, groq_server), journal=journal, meter=meter
    )

    await poll(service)

    assert len(groq_server.chat_requests) == 1  # the second item found the budget spent
    assert scorers_by_market(journal) == {
        "KRW-XRP": [GROQ, "lexicon"],
        "KRW-BTC": ["lexicon"],
        "KRW-SOL": ["lexicon"],
    }
    figures = llm_scorer(service).scorer.figures
    assert (figures.scored, figures.budget) == (1, 1)
    assert len(spent) == 1 and "budget" in spent[0]
    assert len(call_rows(journal)) == 1  # a refused call never went out: nothing to journal


async def test_with_items_scored_at_once_the_budget_is_overshot_only_by_calls_in_flight(
    tmp_path: Path, groq_server: GroqServer
) -> None:
    groq_server.default = answer
    items = [
        {"title": f"XRP item {n} (SYNTHETIC)", "link": f"https://news.test/{n}"}
        for n in range(3 * news_service.SCORING_AT_ONCE)
    ]
    with NewsServer() as server:
        server.serve("/feed/", Feed(rss(items)))
        journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
        meter = CallMeter(daily_budget_usd=CALL_COST / 2, on_spent=lambda _: None)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            groq_api_key="test-key",
            groq_base_url=groq_server.base_url,
            llm_max_retries=0,
            news_feeds=[f"wire={server.url('/feed/')}"],
        )
        service = build_news_service(settings, journal=journal, meter=meter)
        await poll(service)

    calls = len(groq_server.chat_requests)
    assert 1 <= calls <= news_service.SCORING_AT_ONCE < len(items)
    assert journal.count_news() == len(items)  # every item stored, the rest by the lexicon
    assert llm_scorer(service).scorer.figures.budget == len(items) - calls


async def test_ollama_scores_through_its_json_schema_format(
    tmp_path: Path, news: NewsServer, ollama_server: OllamaServer
) -> None:
    ollama_server.default = answer
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        ollama_host=ollama_server.base_url,
        llm_max_retries=0,
        news_feeds=[f"wire={news.url('/feed/')}"],
    )
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    service = build_news_service(settings, journal=journal)

    await poll(service)

    requests = ollama_server.chat_requests
    assert len(requests) == 2
    schema = requests[0].json["format"]
    assert schema["required"] == ["scores"]  # the answer's schema, as Ollama compiles it
    assert scorers_by_market(journal)["KRW-XRP"] == [f"ollama:{settings.ollama_model}", "lexicon"]
    assert service.reading("KRW-XRP").index == pytest.approx(-0.9, abs=1e-3)


def test_the_scorer_is_the_llm_configured_unless_named() -> None:
    def choice(**values: Any) -> str:
        return news_scorer_choice(Settings(_env_file=None, **values))  # type: ignore[call-arg]

    assert choice() == "lexicon"
    assert choice(ollama_host="http://127.0.0.1:1") == "ollama"
    assert choice(groq_api_key="k", ollama_host="http://127.0.0.1:1") == "groq"
    assert choice(groq_api_key="k", news_scorer="lexicon") == "lexicon"
    with pytest.raises(ValueError, match="LXA_OLLAMA_HOST is not set"):
        choice(news_scorer="ollama")


async def test_a_headline_only_the_llm_finds_bad_sells_the_held_coin_through_the_watchdog(
    tmp_path: Path, news: NewsServer, groq_server: GroqServer
) -> None:
    groq_server.default = answer
    settings = groq_settings(
        tmp_path,
        news,
        groq_server,
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
        markets=["KRW-XRP"],
        news_poll_interval_s=5.0,
    )
    bars = await collect_closes(load_candles([BUNDLED_CANDLES]))
    async with open_services(settings, session_id="n", account_path=tmp_path / "a.json") as svc:
        svc.engine.warm_up(bars[:WARMUP_BARS])
        await svc.engine.exchange.place_order(
            OrderRequest("KRW-XRP", Side.BID, OrderType.PRICE, "buy-xrp", price=Decimal(200_000))
        )
        async with running_news(settings, svc.engine, svc.journal, svc.bus, meter=svc.meter):
            deadline = asyncio.get_running_loop().time() + 15
            while not sells(svc.journal) or svc.engine.emergency.background:
                assert asyncio.get_running_loop().time() < deadline, "no sell"
                await asyncio.sleep(0.05)
        account = await svc.exchange.get_account()
        triggers = [
            e["payload"]
            for e in svc.journal.events_after(0, limit=1000)
            if e["type"] == "watchdog_trigger"
        ]

    assert "KRW-XRP" not in account.positions
    (trigger,) = triggers
    assert trigger["detector"] == "news" and trigger["details"]["title"] == XRP_TITLE
    assert trigger["details"]["reason"] == "llm on KRW-XRP"  # the LLM's, not the lexicon's
    assert svc.meter.totals()["calls"] >= 1  # on the checks' meter: the same daily budget


async def test_a_coin_the_answer_leaves_out_keeps_the_lexicon_score_the_others_the_llms(
    tmp_path: Path, news: NewsServer, groq_server: GroqServer
) -> None:
    def only_bitcoin(request_json: dict[str, Any]) -> Text:
        asked = markets_asked(request_json)
        scores = [
            {"market": m, "score": 0.6, "relevance": 1.0, "reason": "roadmap"}
            for m in asked
            if m != "KRW-SOL"
        ]
        return Text(json.dumps({"scores": scores}), prompt_tokens=100, completion_tokens=20)

    groq_server.default = only_bitcoin
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    service = build_news_service(groq_settings(tmp_path, news, groq_server), journal=journal)

    await poll(service)

    assert scorers_by_market(journal) == {
        "KRW-XRP": [GROQ, "lexicon"],
        "KRW-BTC": [GROQ, "lexicon"],
        "KRW-SOL": ["lexicon"],
    }
    figures = llm_scorer(service).scorer.figures
    assert (figures.scored, figures.partial) == (1, 1)
    partial = [c for c in call_rows(journal) if c["response"]["outcome"] == "partial"]
    assert [c["response"]["missing"] for c in partial] == [["KRW-SOL"]]


async def test_a_call_the_journal_refuses_is_kept_and_written_with_the_next(
    tmp_path: Path, news: NewsServer, groq_server: GroqServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    groq_server.default = answer
    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    record = journal.record_llm_call
    refused: list[str] = []

    def away_once(row: Any) -> int:
        if not refused:
            refused.append(row["run_id"])
            raise ConnectionError("the journal is away")
        return record(row)

    monkeypatch.setattr(journal, "record_llm_call", away_once)
    service = build_news_service(groq_settings(tmp_path, news, groq_server), journal=journal)

    await poll(service)

    assert len(refused) == 1
    rows = call_rows(journal)
    assert len(rows) == 2 and rows[0]["run_id"] == refused[0]  # written later, in order
    assert llm_scorer(service).journal_errors == 1


def test_a_prompt_folder_without_the_news_prompt_uses_the_shipped_one(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for name in ("groq_check", "ollama_check", "sizing"):  # a copy made before it shipped
        (folder / f"{name}.md").write_bytes((DEFAULT_PROMPTS_DIR / f"{name}.md").read_bytes())
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        groq_api_key="k",
        prompts_dir=folder,
    )

    scorer = build_news_scorer(settings, MemoryResponseCache())

    assert scorer is not None and scorer.name == GROQ
    assert scorer.prompts.directory == DEFAULT_PROMPTS_DIR


def test_an_invalid_news_prompt_in_the_folder_is_refused_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "prompts"
    folder.mkdir()
    shipped = (DEFAULT_PROMPTS_DIR / "news_sentiment.md").read_text(encoding="utf-8")
    (folder / "news_sentiment.md").write_text(
        shipped.replace("{{ markets | tojson }}", "{{ coins }}"), encoding="utf-8"
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        groq_api_key="k",
        prompts_dir=folder,
    )

    with pytest.raises(PromptError, match="news_sentiment"):
        build_news_scorer(settings, MemoryResponseCache())
