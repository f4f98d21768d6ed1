"""News reaching the engine: the watchdog's news sell, Upbit's notices, the prompts, point in time.

A local server answers like the news sources (tests/news_server.py: real RSS 2.0 and Upbit
notice formats; the headlines are SYNTHETIC, written here). The engine, the paper account, the
journal and the Groq client are the real ones; the candles are the bundled real Upbit bars.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from llm_servers import GroqServer, Text
from news_server import Feed, NewsServer, rss, upbit_notices

from app.backtest import BacktestError, run_backtest
from app.engine.news import load_journal_news
from app.news import item_row, running_news, score_rows
from app.session import collect_closes
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, open_services
from exchange.feed import BarClose
from exchange.types import OrderRequest, OrderType, Side
from ml.data import load_candles
from ml.features import WARMUP_BARS
from ml.registry import latest_model_dir
from news.items import NewsItem
from news.scoring import CoinScore
from news.service import ScoredNews
from store.journal import Journal

MARKET = "KRW-XRP"
NOTICES_PATH = "/api/v1/announcements"


@pytest.fixture(scope="module")
def closes() -> list[BarClose]:
    return asyncio.run(collect_closes(load_candles([BUNDLED_CANDLES])))


@pytest.fixture
def server() -> NewsServer:
    with NewsServer() as news:
        yield news  # type: ignore[misc]


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
        markets=[MARKET],
        news_poll_interval_s=5.0,
        **values,
    )


async def buy(services: Any) -> None:
    await services.engine.exchange.place_order(
        OrderRequest(MARKET, Side.BID, OrderType.PRICE, "test-buy-xrp", price=Decimal(200_000))
    )


async def until(check: Any, seconds: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


def news_triggers(journal: Journal) -> list[dict[str, Any]]:
    events = journal.events_after(0, limit=10_000)
    return [
        e["payload"]
        for e in events
        if e["type"] == "watchdog_trigger" and e["payload"]["detector"] == "news"
    ]


async def test_a_strongly_negative_item_about_a_held_coin_sells_it_with_the_item_in_the_event(
    tmp_path: Path, server: NewsServer, closes: list[BarClose]
) -> None:
    title = "XRP crashes after Ripple hack; exchanges halt XRP withdrawals amid fraud probe"
    now = datetime.now(UTC)
    server.serve(
        "/feed/",
        Feed(
            rss(
                [
                    {"title": title, "link": "https://news.test/xrp-hack", "published": now},
                    {"title": "Solana upgrade ships", "link": "https://news.test/sol"},
                ]
            )
        ),
    )
    settings = settings_for(tmp_path, news_feeds=[f"wire={server.url('/feed/')}"])
    async with open_services(settings, session_id="n", account_path=tmp_path / "a.json") as svc:
        svc.engine.warm_up(closes[:WARMUP_BARS])
        await buy(svc)
        assert MARKET in (await svc.exchange.get_account()).positions

        async with running_news(settings, svc.engine, svc.journal, svc.bus):
            await until(lambda: bool(news_triggers(svc.journal)))
            await until(lambda: svc.engine.emergency.background == set())

        assert MARKET not in (await svc.exchange.get_account()).positions
        (trigger,) = news_triggers(svc.journal)
        assert trigger["details"]["title"] == title
        assert trigger["details"]["link"] == "https://news.test/xrp-hack"
        assert trigger["details"]["index"] <= settings.watchdog_sentiment_threshold
        assert "hack" in trigger["details"]["reason"]
        sells = [o for o in svc.journal.list_orders(market=MARKET) if o["side"] == "ask"]
        assert len(sells) == 1 and "-emergency-news" in sells[0]["identifier"]
        assert sells[0]["run_id"] is None  # outside the graph
        stored = svc.journal.news_items(market=MARKET)
        assert [row["title"] for row in stored] == [title]


async def test_an_upbit_warning_notice_sells_the_coin_and_bars_entries_across_a_restart(
    tmp_path: Path, server: NewsServer, closes: list[BarClose]
) -> None:
    notice = "[거래] 리플(XRP) 투자 유의 종목 지정 안내"
    server.serve(
        NOTICES_PATH,
        Feed(
            upbit_notices([{"id": 5001, "title": notice, "listed_at": datetime.now(UTC)}]),
            media_type="application/json",
        ),
    )
    settings = settings_for(tmp_path, news_feeds=[f"upbit={server.url(NOTICES_PATH)}"])
    async with open_services(settings, session_id="w", account_path=tmp_path / "a.json") as svc:
        svc.engine.warm_up(closes[:WARMUP_BARS])
        await buy(svc)
        async with running_news(settings, svc.engine, svc.journal, svc.bus):
            await until(lambda: bool(news_triggers(svc.journal)))
            await until(lambda: svc.engine.emergency.background == set())
            reason = svc.engine.blocked_reason(MARKET, datetime.now(UTC))

        assert MARKET not in (await svc.exchange.get_account()).positions
        (trigger,) = news_triggers(svc.journal)
        assert trigger["details"]["notice"] == "warning"
        assert trigger["details"]["title"] == notice
        assert reason is not None and "warning notice" in reason and notice in reason

    # A restart: the notice is in the journal, so the block holds before any new poll.
    server.serve(NOTICES_PATH, Feed(b"<html>maintenance</html>", media_type="text/html"))
    async with (
        open_services(settings, session_id="w2", account_path=tmp_path / "a.json") as svc,
        running_news(settings, svc.engine, svc.journal, svc.bus),
    ):
        later = datetime.now(UTC) + timedelta(hours=1)
        assert "warning notice" in (svc.engine.blocked_reason(MARKET, later) or "")
        after_block = later + timedelta(hours=settings.news_notice_block_hours)
        assert svc.engine.blocked_reason(MARKET, after_block) is None


async def test_an_old_notice_a_first_poll_sees_neither_sells_nor_bars(
    tmp_path: Path, server: NewsServer, closes: list[BarClose]
) -> None:
    notice = "[거래] 리플(XRP) 투자 유의 종목 지정 안내"
    issued = datetime.now(UTC) - timedelta(days=30)
    server.serve(
        NOTICES_PATH,
        Feed(
            upbit_notices([{"id": 4001, "title": notice, "listed_at": issued}]),
            media_type="application/json",
        ),
    )
    settings = settings_for(tmp_path, news_feeds=[f"upbit={server.url(NOTICES_PATH)}"])
    async with open_services(settings, session_id="o", account_path=tmp_path / "a.json") as svc:
        svc.engine.warm_up(closes[:WARMUP_BARS])
        await buy(svc)
        async with running_news(settings, svc.engine, svc.journal, svc.bus):
            await until(lambda: bool(svc.journal.news_items(market=MARKET)))
            await svc.engine.news.check(datetime.now(UTC))  # type: ignore[union-attr]
            reason = svc.engine.blocked_reason(MARKET, datetime.now(UTC))

        assert news_triggers(svc.journal) == []
        assert reason is None
        assert MARKET in (await svc.exchange.get_account()).positions


def store_item(journal: Journal, title: str, seen: datetime, score: float) -> None:
    item = NewsItem(
        source="wire",
        title=title,
        link=f"https://news.test/{seen:%H%M}",
        first_seen_at=seen,
        published_at=seen - timedelta(minutes=2),
        coins=(MARKET,),
    )
    scores = (CoinScore(MARKET, score, 1.0, "lexicon: synthetic", "lexicon"),)
    scored = ScoredNews(item, scores)
    journal.record_news(item_row(scored), score_rows(scored), title_window=timedelta(days=7))


async def test_a_replay_shows_a_decision_only_items_first_seen_by_its_bar_in_state_and_prompt(
    tmp_path: Path, closes: list[BarClose]
) -> None:
    bars = closes[: WARMUP_BARS + 30]
    first = bars[WARMUP_BARS].ts
    seen_at = [first + timedelta(minutes=m, seconds=30) for m in (5, 12, 40)]  # the last: later
    news_journal = Journal.open(f"sqlite:///{tmp_path / 'news.db'}")
    titles = ["XRP ETF filing advances", "XRP payments volume rises", "XRP news after the replay"]
    for title, seen in zip(titles, seen_at, strict=True):
        store_item(news_journal, title, seen, 0.4)
    news = load_journal_news(
        news_journal,
        since=first - timedelta(days=1),
        until=seen_at[-1],
        half_life=timedelta(hours=6),
    )
    news_journal.close()

    def answer(request_json: dict[str, Any]) -> Text:
        user = " ".join(str(m.get("content", "")) for m in request_json.get("messages", []))
        action = "sell" if "Proposed action: sell" in user else "buy"
        body = {"verdict": action, "confidence": 0.9, "reasoning": "test", "risks": []}
        return Text(json.dumps(body), prompt_tokens=100, completion_tokens=20)

    with GroqServer(default=answer) as groq:
        settings = settings_for(
            tmp_path,
            groq_api_key="test-key",
            groq_base_url=groq.base_url,
            llm_max_retries=0,
            policy_entry_margin_bps=-1000.0,  # proposals on most bars: the check is asked
            policy_max_entries_per_day=1440,
            policy_reentry_pause_minutes=0,
        )
        async with open_services(settings, session_id="r", account_path=tmp_path / "a.json") as svc:
            svc.engine.attach_news(news, timedelta(days=7))
            svc.engine.warm_up(bars[:WARMUP_BARS])
            for close in bars[WARMUP_BARS:]:
                await svc.engine.on_bar_close(close)
            decisions = svc.journal.list_decisions(limit=1000, session_id="r")
            prompts = [
                " ".join(m["content"] for m in r.json["messages"]) for r in groq.chat_requests
            ]

    shown: dict[str, set[str]] = {}
    for decision in decisions:
        bar_close = decision["bar_ts"] + timedelta(minutes=1)
        items = decision["nodes"]["input"]["news"].get(MARKET) or []
        for item in items:
            assert datetime.fromisoformat(item["first_seen_at"]) <= bar_close
        shown[str(decision["bar_ts"])] = {item["title"] for item in items}
    assert len(shown) == 30
    assert any(titles[0] in s for s in shown.values()) and any(
        titles[1] in s for s in shown.values()
    )
    assert not any(titles[2] in s for s in shown.values())  # first seen after the last bar
    assert any(titles[0] in p for p in prompts)
    assert not any(titles[2] in p for p in prompts)


async def test_lxa_backtest_with_a_news_journal_shows_each_decision_only_what_was_seen_by_it(
    tmp_path: Path, closes: list[BarClose]
) -> None:
    first = closes[WARMUP_BARS].ts
    url = f"sqlite:///{tmp_path / 'news.db'}"
    seen_at = [first + timedelta(minutes=m, seconds=30) for m in (3, 9, 60)]  # the last: later
    titles = ["XRP ETF filing advances", "XRP payments volume rises", "XRP after the backtest"]
    with Journal.open(url) as news_journal:
        for title, seen in zip(titles, seen_at, strict=True):
            store_item(news_journal, title, seen, 0.4)
    settings = settings_for(tmp_path, policy_entry_margin_bps=-1000.0)

    metrics = await run_backtest(
        settings,
        candles_paths=[BUNDLED_CANDLES],
        report_dir=tmp_path / "report",
        minutes=20,
        news_journal=url,
    )

    with Journal.open(f"sqlite:///{tmp_path / 'report' / 'journal.db'}") as report:
        decisions = report.list_decisions(limit=100)
    shown = {}
    for decision in decisions:
        items = decision["nodes"]["input"]["news"].get(MARKET) or []
        for item in items:
            assert datetime.fromisoformat(item["first_seen_at"]) <= decision["bar_ts"] + timedelta(
                minutes=1
            )
        shown[decision["bar_ts"]] = {item["title"] for item in items}
    assert len(shown) == 20
    assert titles[0] not in shown[first + timedelta(minutes=2)]
    assert titles[0] in shown[first + timedelta(minutes=3)]  # the close after its first sighting
    assert titles[1] in shown[first + timedelta(minutes=19)]
    assert not any(titles[2] in s for s in shown.values())
    assert metrics["news"]["items"] == 2  # what the journal held over the bars
    assert any(note.startswith("news: 2 item(s)") for note in metrics["notes"])


async def test_lxa_backtest_refuses_a_news_journal_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_text("garbage")
    with pytest.raises(BacktestError, match="news cannot be read"):
        await run_backtest(
            settings_for(tmp_path),
            candles_paths=[BUNDLED_CANDLES],
            report_dir=tmp_path / "report",
            minutes=5,
            news_journal=f"sqlite:///{tmp_path / 'not-a-db'}",
        )
