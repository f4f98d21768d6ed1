"""The news service composed: settings to sources, new items to the journal and the bus.

`build_news_service` makes the `news.NewsService` the settings describe, remembering what the
journal already holds (so a restart hands on nothing twice) and writing each batch through
`journal_sink`: items stored once with their scores (`store.journal.news`), then one `news`
event per stored item on the bus. `index_from_journal` rebuilds the sentiment index from the
journal for a backtest or replay, point in time (only items first seen by `until`, only
items with a usable time).

What the later integration calls (#17): `NewsService.reading(market, at)` (the watchdog's
index and the features), `NewsService.recent(market)` and `notices(market)` (the prompts'
headlines, the watchdog's notices), `index_from_journal(...).index_at(market, bar_ts)` in a
backtest, `headlines_from_journal` for a replayed decision's prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx

from app.engine import Engine
from app.engine.news import HEADLINES_WITHIN, LiveNews, load_journal_news
from app.settings import Settings
from news.index import IndexView, ScorePoint, SentimentIndex
from news.items import CLOCK_SKEW, TITLE_DEDUP_WINDOW
from news.scoring import LEXICON_SCORER
from news.service import NewsService, NewsSink, ScoredNews, utc_now
from store.bus import EventBus
from store.journal import Journal
from store.rows import NewsItemRow, NewsScoreRow

__all__ = [
    "build_news_service",
    "headlines_from_journal",
    "index_from_journal",
    "item_row",
    "journal_sink",
    "poll_news",
    "running_news",
    "score_point",
    "score_rows",
]

log = logging.getLogger(__name__)

# How far back the service's dedup memory reaches into the journal at start.
REMEMBER = timedelta(days=30)


def item_row(scored: ScoredNews) -> NewsItemRow:
    """The journal row of a scored item."""
    item = scored.item
    return {
        "link_key": item.link_key,
        "title_key": item.title_key,
        "source": item.source,
        "kind": item.kind,
        "notice_kind": item.notice_kind,
        "title": item.title,
        "link": item.link,
        "summary": item.summary,
        "published_raw": item.published_raw,
        "published_at": item.published_at,
        "first_seen_at": item.first_seen_at,
        "coins": list(item.coins),
    }


def score_rows(scored: ScoredNews) -> list[NewsScoreRow]:
    """The journal rows of an item's scores."""
    return [
        {
            "market": s.market,
            "scorer": s.scorer,
            "score": s.score,
            "relevance": s.relevance,
            "reason": s.reason,
            "scored_at": scored.item.first_seen_at,
        }
        for s in scored.scores
    ]


def store_batch(journal: Journal, batch: Sequence[ScoredNews]) -> list[ScoredNews]:
    """Store each item once with its scores; the items that were new to the journal."""
    stored = []
    for scored in batch:
        item_id = journal.record_news(
            item_row(scored), score_rows(scored), title_window=TITLE_DEDUP_WINDOW
        )
        if item_id is not None:
            stored.append(scored)
    return stored


def journal_sink(journal: Journal, bus: EventBus | None = None) -> NewsSink:
    """A sink that stores a batch (off the event loop), then publishes what was new."""

    async def sink(batch: Sequence[ScoredNews]) -> None:
        stored = await asyncio.to_thread(store_batch, journal, batch)
        if bus is not None:
            for scored in stored:
                bus.publish({"type": "news", **scored.as_dict()})

    return sink


def build_news_service(
    settings: Settings,
    *,
    journal: Journal | None = None,
    bus: EventBus | None = None,
    sink: NewsSink | None = None,
    client: httpx.AsyncClient | None = None,
) -> NewsService:
    """The service the settings describe; with a journal, it stores and remembers through it."""
    key = settings.news_cryptopanic_key
    if sink is None and journal is not None:
        sink = journal_sink(journal, bus)
    service = NewsService(
        settings.news_sources,
        sink=sink,
        half_life=timedelta(minutes=settings.news_half_life_minutes),
        poll_interval_s=settings.news_poll_interval_s,
        cryptopanic_key=key.get_secret_value() if key is not None else None,
        client=client,
    )
    if journal is not None:
        service.remember(journal.news_seen_keys(utc_now() - REMEMBER))
    return service


def _event_time(row: dict[str, Any]) -> datetime | None:
    published, first_seen = row["published_at"], row["first_seen_at"]
    if published is None or published > first_seen + CLOCK_SKEW:
        return None
    return min(published, first_seen)


def score_point(row: dict[str, Any]) -> ScorePoint:
    """A journal score row (`Journal.news_scores`) as a point of the sentiment index."""
    return ScorePoint(
        market=row["market"],
        score=row["score"],
        relevance=row["relevance"],
        first_seen_at=row["first_seen_at"],
        event_time=_event_time(row),
        title=row["title"],
        source=row["source"],
        scorer=row["scorer"],
        notice_kind=row["notice_kind"],
    )


def index_from_journal(
    journal: Journal,
    markets: Iterable[str],
    *,
    until: datetime,
    half_life: timedelta,
    since: datetime | None = None,
    scorer: str = LEXICON_SCORER,
    view: IndexView = "backtest",
) -> SentimentIndex:
    """The sentiment index of `markets` from the journal, holding only items first seen by
    `until` (and, in the backtest view, only items with a usable time); read it with
    `index_at(market, bar_ts)` for any bar up to `until`."""
    index = SentimentIndex(half_life)
    for market in markets:
        rows = journal.news_scores(
            market, seen_by=until, since=since, scorer=scorer, require_time=view == "backtest"
        )
        index.extend(score_point(row) for row in rows)
    return index


def headlines_from_journal(
    journal: Journal,
    market: str,
    *,
    at: datetime,
    within: timedelta = timedelta(hours=24),
    limit: int = 5,
    view: IndexView = "backtest",
) -> list[dict[str, Any]]:
    """The newest items about `market` first seen in (at - within, at], with their scores:
    what a decision at `at` could have read (the prompts' `news` later)."""
    return journal.news_items(
        seen_by=at,
        since=at - within,
        market=market,
        require_time=view == "backtest",
        limit=limit,
    )


async def poll_news(
    settings: Settings,
    *,
    on_poll: Callable[[list[ScoredNews], NewsService], None],
    follow: bool = False,
    polls: int | None = None,
    store: bool = False,
    wait: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> NewsService:
    """Poll the sources once (or, following, every poll interval, `polls` times or until
    cancelled) and hand each poll's new items to `on_poll`; with `store`, journal them too."""
    journal = Journal.open(settings.journal_url) if store else None
    service = build_news_service(settings, journal=journal)
    try:
        done = 0
        while True:
            on_poll(await service.poll_once(force=done == 0), service)
            done += 1
            if not follow or (polls is not None and done >= polls):
                return service
            await wait(settings.news_poll_interval_s)
    finally:
        await service.aclose()
        if journal is not None:
            journal.close()


@asynccontextmanager
async def running_news(
    settings: Settings, engine: Engine, journal: Journal, bus: EventBus | None = None
) -> AsyncIterator[NewsService | None]:
    """Poll the news while a live session runs (nothing without `LXA_NEWS_ENABLED`).

    Each poll's new items are stored and published (`journal_sink`), then the engine's
    `NewsWatch` acts on them at once: notices and a falling index sell through the watchdog's
    fast path, outside the graph. The engine reads the headlines for its prompts from here,
    and from what the journal held at start (notices stay in force across a restart).
    """
    if not settings.news_enabled:
        yield None
        return
    service = build_news_service(settings, journal=journal, bus=bus)
    half_life = timedelta(minutes=settings.news_half_life_minutes)
    block = timedelta(hours=settings.news_notice_block_hours)
    start = utc_now()
    earlier = load_journal_news(
        journal, since=start - max(block, HEADLINES_WITHIN), until=start, half_life=half_life,
        require_time=False,
    )  # fmt: skip
    for market in engine.markets:  # the index goes on from what was stored
        service.index.extend(earlier.index.points(market))
    watch = engine.attach_news(LiveNews(service, earlier), block)
    await watch.check(start)  # what the journal holds acts now: a restart keeps the blocks
    stop = asyncio.Event()

    async def poll_and_watch() -> None:  # `NewsService.run`, then the watch on what came
        while not stop.is_set():
            try:
                if await service.poll_once() and engine.news is not None:
                    await engine.news.check(utc_now())
            except Exception:  # a bug in one poll must not end the service
                log.exception("news poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=settings.news_poll_interval_s)

    task = asyncio.create_task(poll_and_watch(), name="news")
    try:
        yield service
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5.0)
        await service.aclose()
