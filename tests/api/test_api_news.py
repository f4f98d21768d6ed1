"""GET /api/news (the journal's items with their scores) and GET /api/news/sources."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from api.app import create_app
from app.engine.news import LiveNews
from app.serve import EngineBridge
from news.service import NewsService
from news.sources import SourceConfig
from store.bus import InProcessBus
from store.journal import Journal

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def store_item(
    journal: Journal,
    title: str,
    minute: int,
    scores: dict[str, float],
    *,
    kind: str = "news",
    notice_kind: str | None = None,
    published: bool = True,
) -> None:
    seen = T0 + timedelta(minutes=minute)
    journal.record_news(
        {
            "link_key": f"https://news.example/{minute}",
            "title_key": title.lower(),
            "source": "upbit-notice" if kind == "notice" else "coindesk",
            "kind": kind,
            "notice_kind": notice_kind,
            "title": title,
            "link": f"https://news.example/{minute}",
            "published_at": seen - timedelta(minutes=2) if published else None,
            "first_seen_at": seen,
            "coins": list(scores),
        },
        [
            {
                "market": market,
                "scorer": "lexicon",
                "score": score,
                "relevance": 0.8,
                "reason": "lexicon: hack",
                "scored_at": seen,
            }
            for market, score in scores.items()
        ],
    )


def client_for(journal: Journal, **kwargs: Any) -> httpx.AsyncClient:
    app = create_app(journal=journal, bus=InProcessBus(), **kwargs)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_items_come_newest_first_with_their_scores_notice_and_times(
    journal: Journal,
) -> None:
    store_item(journal, "Bitcoin rallies", 0, {"KRW-BTC": 0.5})
    store_item(journal, "Exchange hacked, ETH and BTC fall", 5, {"KRW-BTC": -0.7, "KRW-ETH": -0.6})
    store_item(
        journal, "[거래유의] 리플 유의 종목 지정", 9, {"KRW-XRP": -1.0}, kind="notice",
        notice_kind="warning", published=False,
    )  # fmt: skip
    async with client_for(journal) as client:
        every = (await client.get("/api/news")).json()
        btc = (await client.get("/api/news", params={"market": "KRW-BTC", "limit": 1})).json()
        later = (await client.get("/api/news", params={"since": "2026-03-01T00:04:00Z"})).json()
        notices = (await client.get("/api/news", params={"kind": "notice"})).json()

    titles = [item["title"] for item in every["items"]]
    assert titles == [
        "[거래유의] 리플 유의 종목 지정",
        "Exchange hacked, ETH and BTC fall",
        "Bitcoin rallies",
    ]
    notice = every["items"][0]
    assert (notice["kind"], notice["notice_kind"], notice["source"]) == (
        "notice", "warning", "upbit-notice",
    )  # fmt: skip
    assert notice["published_at"] is None
    assert datetime.fromisoformat(notice["first_seen_at"]) == T0 + timedelta(minutes=9)
    hack = every["items"][1]
    assert {s["market"]: s["score"] for s in hack["scores"]} == {"KRW-BTC": -0.7, "KRW-ETH": -0.6}
    assert hack["link"] == "https://news.example/5"
    assert [i["title"] for i in btc["items"]] == ["Exchange hacked, ETH and BTC fall"]
    assert btc["market"] == "KRW-BTC" and btc["limit"] == 1
    assert len(later["items"]) == 2
    assert [i["notice_kind"] for i in notices["items"]] == ["warning"]


@pytest.mark.parametrize(
    "params",
    [{"market": "btc"}, {"limit": 0}, {"limit": 501}, {"since": "yesterday"}, {"kind": "rumour"}],
)
async def test_a_bad_filter_is_a_422_naming_it(journal: Journal, params: dict[str, Any]) -> None:
    async with client_for(journal) as client:
        response = await client.get("/api/news", params=params)
    assert response.status_code == 422
    assert next(iter(params)) in response.text


async def test_sources_say_none_runs_without_an_engines_news_service(journal: Journal) -> None:
    async with client_for(journal) as client:
        body = (await client.get("/api/news/sources")).json()
    assert body["running"] is False and body["sources"] == []
    assert "LXA_NEWS_ENABLED" in body["note"]


async def test_sources_are_the_running_services_with_their_counters(journal: Journal) -> None:
    service = NewsService(
        [
            SourceConfig("coindesk", "https://feeds.example/rss", min_interval_s=60.0),
            SourceConfig("upbit-notice", "https://api.example/notices", kind="upbit_notices"),
        ]
    )
    stats = service.stats()["coindesk"]
    stats.polls, stats.fetched, stats.new_items = 3, 2, 7
    stats.errors["timeout"] = 1
    stats.last_error = "timeout after 10.0 s"
    engine = SimpleNamespace(news=SimpleNamespace(reader=LiveNews(service)))
    bridge = EngineBridge(engine, settings=None)  # type: ignore[arg-type]
    try:
        async with client_for(journal, account_source=bridge) as client:
            body = (await client.get("/api/news/sources")).json()
    finally:
        await service.aclose()
    assert body["running"] is True
    coindesk, notices = body["sources"]
    assert (coindesk["name"], coindesk["url"], coindesk["min_interval_s"]) == (
        "coindesk", "https://feeds.example/rss", 60.0,
    )  # fmt: skip
    assert (coindesk["polls"], coindesk["fetched"], coindesk["new_items"]) == (3, 2, 7)
    assert coindesk["errors"] == {"timeout": 1}
    assert coindesk["last_error"] == "timeout after 10.0 s"
    assert (notices["kind"], notices["polls"]) == ("upbit_notices", 0)
