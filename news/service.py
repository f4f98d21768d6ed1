"""The news service: poll the sources, drop what was seen, tag, score, hand new items on.

`NewsService.poll_once()` polls every source that is due (each at most once per its
`min_interval_s`, conditionally, backing off after errors), all at the same time. A source
that fails is counted in its `SourceStats` and skipped; the others go on. New items (not
seen before by canonical link, nor by normalised title within `TITLE_DEDUP_WINDOW`) are
tagged with the coins they name, scored by each scorer, added to the live `SentimentIndex`
at once (a journal that is away never blinds the live readers) and handed, in one batch per
poll, to the `sink` the app composes (the journal writer and the event bus). A batch the
sink refuses is kept and handed again, with the next poll's, until it is taken (at most
`PENDING_LIMIT` items are kept; beyond that the oldest are dropped and counted).

`run(stop)` polls every `poll_interval_s` until `stop` is set. Everything the engine, the
watchdog, the prompts and the features need is read here without I/O: `reading(market)`,
`recent(market)`, `notices(market)`, `stats()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from news.coins import CoinTagger
from news.index import IndexView, ScorePoint, SentimentIndex, SentimentReading
from news.items import TITLE_DEDUP_WINDOW, NewsItem, NoticeKind, utc
from news.scoring import CoinScore, LexiconScorer, Scorer
from news.sources import SourceConfig, SourceError, SourceState, SourceStats, fetch, parse

__all__ = ["USER_AGENT", "NewsService", "NewsSink", "ScoredNews", "utc_now"]

log = logging.getLogger(__name__)

USER_AGENT = "AutoTrader-LXA/0.1 news reader (polls politely, conditional GET)"
# In-memory dedup keys and live points are kept this long; the journal keeps items forever.
MEMORY = timedelta(days=30)
RECENT_LIMIT = 2000
SCORING_AT_ONCE = 8  # items of one poll scored at the same time (an LLM scorer's calls)
# Items kept for a sink that keeps failing (the journal away for long): the newest this many.
PENDING_LIMIT = 5000
# A fetch may take this many of its source's timeouts in all before it counts as timed out.
TOTAL_TIMEOUTS = 3


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ScoredNews:
    """A new item and its scores (one per coin and scorer)."""

    item: NewsItem
    scores: tuple[CoinScore, ...]

    def score_for(self, market: str, scorer: str | None = None) -> CoinScore | None:
        """The item's score for `market` (by `scorer`, else the first scorer's)."""
        for score in self.scores:
            if score.market == market and (scorer is None or score.scorer == scorer):
                return score
        return None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: for the event bus and `lxa news --json`."""
        item = self.item
        return {
            "source": item.source,
            "kind": item.kind,
            "notice_kind": item.notice_kind,
            "title": item.title,
            "link": item.link,
            "published_at": None if item.published_at is None else item.published_at.isoformat(),
            "first_seen_at": item.first_seen_at.isoformat(),
            "coins": list(item.coins),
            "scores": [
                {
                    "market": s.market,
                    "score": s.score,
                    "relevance": s.relevance,
                    "reason": s.reason,
                    "scorer": s.scorer,
                }
                for s in self.scores
            ],
        }


NewsSink = Callable[[Sequence[ScoredNews]], Awaitable[None] | None]


class NewsService:
    """Polls news sources and keeps what is new (module docstring)."""

    def __init__(
        self,
        sources: Sequence[SourceConfig],
        *,
        sink: NewsSink | None = None,
        scorers: Sequence[Scorer] | None = None,
        tagger: CoinTagger | None = None,
        half_life: timedelta = timedelta(hours=6),
        poll_interval_s: float = 60.0,
        cryptopanic_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        names = [s.name for s in sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"news sources named twice: {', '.join(duplicates)}")
        if poll_interval_s <= 0:
            raise ValueError(f"poll_interval_s must be positive, got {poll_interval_s}")
        self._tagger = tagger or CoinTagger()
        self._scorers: tuple[Scorer, ...] = tuple(scorers or (LexiconScorer(self._tagger),))
        self._states = {s.name: SourceState(s) for s in sources}
        self._sink = sink
        self._key = cryptopanic_key
        self._clock = clock
        self.poll_interval_s = poll_interval_s
        self.index = SentimentIndex(half_life)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT}, follow_redirects=True
        )
        self._seen_links: dict[str, datetime] = {}
        self._seen_titles: dict[str, datetime] = {}
        self._pending: list[ScoredNews] = []
        self._recent: list[ScoredNews] = []
        self.sink_errors = 0
        self.sink_dropped = 0

    # ---- what the rest of the app reads ----------------------------------------------------

    @property
    def sources(self) -> tuple[SourceConfig, ...]:
        """The configured sources, in order."""
        return tuple(state.config for state in self._states.values())

    def stats(self) -> dict[str, SourceStats]:
        """Each source's counters (polls, 304s, items, errors by kind, the last error)."""
        return {name: state.stats for name, state in self._states.items()}

    def reading(
        self, market: str, at: datetime | None = None, *, view: IndexView = "live"
    ) -> SentimentReading:
        """The market's sentiment index at `at` (default now), from items first seen by then."""
        return self.index.index_at(market, at or self._clock(), view=view)

    def recent(
        self, market: str | None = None, *, since: datetime | None = None, limit: int = 20
    ) -> list[ScoredNews]:
        """The newest items (about `market`, first seen at or after `since`), newest first."""
        found = []
        for scored in reversed(self._recent):
            item = scored.item
            if since is not None and item.first_seen_at < since:
                continue
            if market is None or market in item.coins:
                found.append(scored)
                if len(found) >= limit:
                    break
        return found

    def notices(
        self,
        market: str,
        *,
        since: datetime | None = None,
        kinds: Iterable[NoticeKind] | None = None,
        published_within: timedelta | None = None,
    ) -> list[ScoredNews]:
        """Upbit notices about `market`, newest first: of `kinds` (warning, delisting,
        suspension, other; default all), first seen since `since`.

        With `published_within`, only notices whose usable time (`NewsItem.event_time`) is that
        recent at the service's clock: the first poll after a start also sees notices weeks
        old, first seen now, and a sell must not follow an old warning that was since lifted.
        """
        wanted = None if kinds is None else set(kinds)
        now = self._clock()
        found = []
        for scored in self.recent(market, since=since, limit=RECENT_LIMIT):
            item = scored.item
            if item.kind != "notice" or (wanted is not None and item.notice_kind not in wanted):
                continue
            if published_within is not None:
                when = item.event_time
                if when is None or now - when > published_within:
                    continue
            found.append(scored)
        return found

    def remember(self, items: Iterable[tuple[str, str, datetime]]) -> None:
        """Mark items seen before (link key, title key, first seen), e.g. from the journal."""
        for link, title, first_seen in items:
            self._seen_links[link] = first_seen
            previous = self._seen_titles.get(title)
            if previous is None or first_seen > previous:
                self._seen_titles[title] = first_seen

    # ---- polling ---------------------------------------------------------------------------

    async def poll_once(self, *, force: bool = False) -> list[ScoredNews]:
        """Poll the due sources (all with `force`) once; return the new items, newest poll's."""
        now = self._clock()
        due = [s for s in self._states.values() if force or s.due(now)]
        results = await asyncio.gather(*(self._poll_source(state) for state in due))
        new: list[NewsItem] = []
        batch_keys: set[str] = set()
        for items in results:
            for item in items:
                keys = {item.link_key, item.title_key}
                if self._is_duplicate(item) or keys & batch_keys:
                    continue
                batch_keys |= keys
                self._states[item.source].stats.new_items += 1
                new.append(self._tagged(item))
        # Scored at the same time, at most SCORING_AT_ONCE at a time: with an LLM scorer a
        # first poll's hundred items would otherwise reach the index (and a notice the
        # watchdog) only after a hundred calls one after another. The order is kept.
        gate = asyncio.Semaphore(SCORING_AT_ONCE)

        async def scored(item: NewsItem) -> ScoredNews:
            async with gate:
                return await self._score(item)

        fresh = list(await asyncio.gather(*(scored(item) for item in new)))
        return await self._hand_on(fresh)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every `poll_interval_s` until `stop` is set (a poll's failure never ends it)."""
        while not stop.is_set():
            try:
                await self.poll_once()
            except Exception:  # a bug in one poll must not end the service
                log.exception("news poll failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.poll_interval_s)

    async def aclose(self) -> None:
        """Close the HTTP client (when this service made it)."""
        if self._own_client:
            await self._client.aclose()

    async def _poll_source(self, state: SourceState) -> list[NewsItem]:
        config = state.config
        stats = state.stats
        started = self._clock()
        stats.polls += 1
        stats.last_polled_at = started
        try:
            if config.kind == "cryptopanic" and not self._key:
                raise SourceError("http", "CryptoPanic needs an API key (LXA_NEWS_CRYPTOPANIC_KEY)")
            try:
                # httpx's timeout bounds each read; this bounds a server that drips the body.
                async with asyncio.timeout(config.timeout_s * TOTAL_TIMEOUTS):
                    fetched = await fetch(self._client, state, api_key=self._key)
            except TimeoutError as exc:
                raise SourceError(
                    "timeout", f"no full answer within {config.timeout_s * TOTAL_TIMEOUTS:g} s"
                ) from exc
            if fetched.body is None:
                stats.not_modified += 1
                state.succeeded(self._clock())
                return []
            items, skipped = parse(
                config.kind, fetched.body, config.name, self._clock(), fetched.headers
            )
        except Exception as exc:  # whatever one source does, the others go on
            error = exc if isinstance(exc, SourceError) else SourceError("other", repr(exc))
            if not isinstance(exc, SourceError):
                log.exception("news source %s: unexpected error", config.name)
            state.failed(self._clock(), error)
            log.warning(
                "news source %s failed (%s, %d in a row): %s",
                config.name,
                error.kind,
                stats.consecutive_errors,
                error,
            )
            return []
        stats.fetched += 1
        stats.items += len(items)
        stats.skipped_entries += skipped
        state.succeeded(self._clock())
        return items

    def _is_duplicate(self, item: NewsItem) -> bool:
        if item.link_key in self._seen_links:
            return True
        seen = self._seen_titles.get(item.title_key)
        return seen is not None and item.first_seen_at - seen < TITLE_DEDUP_WINDOW

    def _tagged(self, item: NewsItem) -> NewsItem:
        named = set(self._tagger.tag(item.title, item.summary)) | set(item.coins)
        coins = tuple(m for m in self._tagger.markets if m in named)
        coins += tuple(sorted(named - set(coins)))
        return item if coins == item.coins else item.with_coins(coins)

    async def _score(self, item: NewsItem) -> ScoredNews:
        scores: list[CoinScore] = []
        for scorer in self._scorers:
            try:
                scores.extend(await scorer.score(item))
            except Exception as exc:  # one scorer failing leaves the others' scores
                log.warning("news scorer %s failed on %r: %s", scorer.name, item.title, exc)
        return ScoredNews(item, tuple(scores))

    async def _hand_on(self, fresh: list[ScoredNews]) -> list[ScoredNews]:
        for scored in fresh:
            self._accept(scored)
        if fresh:
            self._forget(self._clock() - MEMORY)
        batch = [*self._pending, *fresh]
        if not batch or self._sink is None:
            return fresh
        try:
            result = self._sink(batch)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            self.sink_errors += 1
            self.sink_dropped += max(0, len(batch) - PENDING_LIMIT)
            self._pending = batch[-PENDING_LIMIT:]
            log.warning(
                "news sink failed on %d item(s), kept for the next poll: %s", len(batch), exc
            )
        else:
            self._pending = []
        return fresh

    def _accept(self, scored: ScoredNews) -> None:
        item = scored.item
        self.remember([(item.link_key, item.title_key, item.first_seen_at)])
        self._recent.append(scored)
        taken: set[str] = set()
        for score in scored.scores:  # the first scorer to score a market feeds the index
            if score.market in taken:
                continue
            taken.add(score.market)
            self.index.add(
                ScorePoint(
                    market=score.market,
                    score=score.score,
                    relevance=score.relevance,
                    first_seen_at=item.first_seen_at,
                    event_time=item.event_time,
                    title=item.title,
                    source=item.source,
                    scorer=score.scorer,
                    notice_kind=item.notice_kind,
                )
            )

    def _forget(self, before: datetime) -> None:
        before = utc(before)
        self._seen_links = {k: t for k, t in self._seen_links.items() if t >= before}
        self._seen_titles = {k: t for k, t in self._seen_titles.items() if t >= before}
        self._recent = [s for s in self._recent if s.item.first_seen_at >= before][-RECENT_LIMIT:]
        self.index.prune(before)
