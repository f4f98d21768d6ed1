"""The news service composed: settings to sources, new items to the journal and the bus.

`build_news_service` makes the `news.NewsService` the settings describe, remembering what the
journal already holds (so a restart hands on nothing twice) and writing each batch through
`journal_sink`: items stored once with their scores (`store.journal.news`), then one `news`
event per stored item on the bus. `index_from_journal` rebuilds the sentiment index from the
journal for a backtest or replay, point in time (only items first seen by `until`, only
items with a usable time).

Who scores (`news_scorers`): with an LLM (`LXA_NEWS_SCORER`, default groq with a Groq key,
else ollama with a host, else the lexicon alone) the service holds two scorers, the LLM's
(`LLMScorer` over `llm.news_scorer.LLMNewsScorer`) first and the lexicon second. Both scores
are stored (the LLM's named provider:model, the lexicon's "lexicon"); the index, and so the
watchdog's -0.6 sell, and the prompts' headlines read the first score of each item and coin:
the LLM's when it answered, the lexicon's when it did not (no LLM, a failed call, a bad
answer, a coin the answer left out, the daily budget spent). Each LLM call is journaled in
`llm_calls` like the checks' (node `news_sentiment`, run id `news-<link key>`, its cost in
`response.cost_usd`).

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
from app.llm import build_meter, build_news_scorer
from app.settings import Settings
from llm.cache import MemoryResponseCache, ResponseCache
from llm.cost import CallMeter
from llm.news_scorer import NEWS_SENTIMENT_PROMPT, LLMNewsScorer, NewsScoring
from news.index import IndexView, ScorePoint, SentimentIndex
from news.items import TITLE_DEDUP_WINDOW, NewsItem, event_time
from news.scoring import CoinScore, LexiconScorer, Scorer
from news.service import NewsService, NewsSink, ScoredNews, utc_now
from store.bus import EventBus
from store.journal import Journal, JournalResponseCache
from store.rows import LlmCallRow, NewsItemRow, NewsScoreRow

__all__ = [
    "LLMScorer",
    "build_news_service",
    "headlines_from_journal",
    "index_from_journal",
    "item_row",
    "journal_sink",
    "news_call_row",
    "news_scorers",
    "poll_news",
    "running_news",
    "score_point",
    "score_rows",
]

log = logging.getLogger(__name__)

# How far back the service's dedup memory reaches into the journal at start.
REMEMBER = timedelta(days=30)
# LLM call rows kept while the journal refuses them (written with the next call's).
CALLS_PENDING_LIMIT = 1000


def news_call_row(item: NewsItem, scoring: NewsScoring) -> LlmCallRow:
    """The `llm_calls` row of a news item's scoring call (as the checks' calls are recorded)."""
    call = scoring.call
    assert call is not None
    return {
        "run_id": f"news-{item.link_key}",
        "node": NEWS_SENTIMENT_PROMPT,
        "provider": call.provider,
        "model": call.model,
        "prompt_ref": call.prompt_ref,
        "request": {
            "system": call.system,
            "user": call.user,
            "input_sha256": call.input_sha256,
            "title": item.title,
            "link": item.link,
        },
        "response": {
            "raw": call.raw,
            "thinking": call.thinking,
            "cost_usd": call.cost_usd,
            "outcome": scoring.outcome,
            "missing": list(scoring.missing),
            "scores": [
                {"market": s.market, "score": s.score, "relevance": s.relevance, "reason": s.reason}
                for s in scoring.scores
            ],
        },
        "verdict": None,
        "latency_ms": float(call.latency_ms),
        "input_tokens": call.input_tokens,
        "output_tokens": call.output_tokens,
        "cached": call.cached,
        "attempts": call.attempts,
        "created_at": utc_now(),
        "error": call.error or scoring.error,
    }


class LLMScorer:
    """`news.scoring.Scorer` over the LLM news scorer: its scores as `CoinScore`s, each call
    journaled (`news_call_row`); a call the journal refuses is kept and written with the next."""

    def __init__(self, scorer: LLMNewsScorer, journal: Journal | None = None) -> None:
        self.scorer = scorer
        self.name = scorer.name
        self._journal = journal
        self._calls: list[LlmCallRow] = []
        self._writing = asyncio.Lock()  # a poll's items are scored at the same time
        self.journal_errors = 0

    async def score(self, item: NewsItem) -> list[CoinScore]:
        """The LLM's scores of the item's coins (none where it did not answer)."""
        scoring = await self.scorer.score_item(item)
        call = scoring.call  # one refused before it went out (budget, breaker) is not a call
        if call is not None and (call.attempts or call.cached) and self._journal is not None:
            self._calls.append(news_call_row(item, scoring))
            await self._write_calls()
        return [
            CoinScore(s.market, s.score, s.relevance, s.reason, s.scorer) for s in scoring.scores
        ]

    async def _write_calls(self) -> None:
        async with self._writing:  # one writer at a time keeps the rows in order, once each
            await self._drain()

    async def _drain(self) -> None:
        journal = self._journal
        assert journal is not None
        while self._calls:
            try:
                await asyncio.to_thread(journal.record_llm_call, self._calls[0])
            except Exception as exc:  # the journal away: keep the rows, score on
                self.journal_errors += 1
                self._calls = self._calls[-CALLS_PENDING_LIMIT:]
                log.warning(
                    "news scorer: %d LLM call row(s) wait for the journal: %s",
                    len(self._calls),
                    exc,
                )
                return
            self._calls.pop(0)


def news_scorers(
    settings: Settings,
    *,
    journal: Journal | None = None,
    meter: CallMeter | None = None,
    cache: ResponseCache | None = None,
) -> tuple[Scorer, ...]:
    """The LLM's scorer then the lexicon (module docstring), or the lexicon alone.

    The cache defaults to the journal's (a restart asks nothing twice), else one in memory;
    the meter to a new one from the settings (pass the checks' to share the daily budget).
    """
    if cache is None:
        cache = JournalResponseCache(journal) if journal is not None else MemoryResponseCache()
    llm = build_news_scorer(settings, cache, meter if meter is not None else build_meter(settings))
    lexicon = LexiconScorer()
    return (lexicon,) if llm is None else (LLMScorer(llm, journal), lexicon)


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
    scorers: Sequence[Scorer] | None = None,
    meter: CallMeter | None = None,
    cache: ResponseCache | None = None,
) -> NewsService:
    """The service the settings describe; with a journal, it stores and remembers through it.

    `scorers` default to `news_scorers(settings, ...)`: the LLM's, then the lexicon.
    """
    key = settings.news_cryptopanic_key
    if sink is None and journal is not None:
        sink = journal_sink(journal, bus)
    if scorers is None:
        scorers = news_scorers(settings, journal=journal, meter=meter, cache=cache)
    service = NewsService(
        settings.news_sources,
        sink=sink,
        scorers=scorers,
        half_life=timedelta(minutes=settings.news_half_life_minutes),
        poll_interval_s=settings.news_poll_interval_s,
        cryptopanic_key=key.get_secret_value() if key is not None else None,
        client=client,
    )
    if journal is not None:
        service.remember(journal.news_seen_keys(utc_now() - REMEMBER))
    return service


def score_point(row: dict[str, Any]) -> ScorePoint:
    """A journal score row (`Journal.news_scores`) as a point of the sentiment index."""
    return ScorePoint(
        market=row["market"],
        score=row["score"],
        relevance=row["relevance"],
        first_seen_at=row["first_seen_at"],
        event_time=event_time(row["published_at"], row["first_seen_at"]),
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
    scorer: str | None = None,
    view: IndexView = "backtest",
) -> SentimentIndex:
    """The sentiment index of `markets` from the journal, holding only items first seen by
    `until` (and, in the backtest view, only items with a usable time); read it with
    `index_at(market, bar_ts)` for any bar up to `until`.

    `scorer`: None (default) takes each item's first score per market, as the live index
    reads them (the LLM's where it answered, else the lexicon's), so features put on candles
    for training match the live ones; a name takes only that scorer's ("lexicon": every item)."""
    index = SentimentIndex(half_life)
    for market in markets:
        rows = journal.news_scores(
            market, seen_by=until, since=since, scorer=scorer, require_time=view == "backtest"
        )
        if scorer is None:  # rows come in the order stored: an item's first scorer first
            first: dict[int, dict[str, Any]] = {}
            for row in rows:
                first.setdefault(row["item_id"], row)
            rows = list(first.values())
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
    settings: Settings,
    engine: Engine,
    journal: Journal,
    bus: EventBus | None = None,
    *,
    meter: CallMeter | None = None,
) -> AsyncIterator[NewsService | None]:
    """Poll the news while a live session runs (nothing without `LXA_NEWS_ENABLED`).

    Each poll's new items are stored and published (`journal_sink`), then the engine's
    `NewsWatch` acts on them at once: notices and a falling index sell through the watchdog's
    fast path, outside the graph. The engine reads the headlines for its prompts from here,
    and from what the journal held at start (notices stay in force across a restart).
    `meter`: the checks' (`Services.meter`), so the news scorer's calls share the daily budget.
    """
    if not settings.news_enabled:
        yield None
        return
    service = build_news_service(settings, journal=journal, bus=bus, meter=meter)
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
