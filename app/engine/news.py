"""News on the engine: the watchdog's news sells, Upbit's notices, the prompts' headlines.

The engine reads the news through a `NewsReader`, always point in time:

- `LiveNews` reads the running `news.NewsService` in memory (no I/O);
- `JournalNews` reads what the journal stored, loaded once: at each bar only items first seen
  by that bar and with a usable time, so a backtest or replay never shows a decision an item
  first seen after it.

`NewsWatch` acts on what is new, outside the graph, through the same fast path as the other
watchdog triggers (`Engine.on_trigger` -> `EmergencyExits`), with the item in the event:

- an Upbit trading warning (유의 종목) or delisting notice about a market sells what is held of
  it at once and bars entries into it for `notice_block` after the notice was issued (its
  published time; a notice issued longer ago than that does nothing);
- a market's sentiment index at or below the watchdog's threshold (the plan's -0.6, settable)
  sells it (`Watchdog.on_sentiment`: one trigger each time the index crosses down).

Live, `check` runs as soon as a poll brings items and again at each bar close; in a backtest
at each bar close. It starts `notice_block` back, so notices a restart did not see act at once.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from exchange.watchdog import Trigger, Watchdog
from news.index import ScorePoint, SentimentIndex, SentimentReading
from news.items import event_time
from news.service import NewsService, ScoredNews
from store.journal import Journal

HEADLINES = 5  # items a reviewer is shown per market
HEADLINES_WITHIN = timedelta(hours=24)
BLOCKING_NOTICES = ("warning", "delisting")
PAGE = 1000


class NewsReader(Protocol):
    """What the engine reads of the news (point in time)."""

    def items(self, market: str, since: datetime, at: datetime) -> list[dict[str, Any]]:
        """Items about `market` first seen in (since, at], newest first (`headline`'s shape)."""
        ...

    def reading(self, market: str, at: datetime) -> SentimentReading:
        """The market's sentiment index at `at`."""
        ...


def headline(scored: ScoredNews, market: str) -> dict[str, Any]:
    """An item as the engine keeps it: title, source, when, its notice kind, its score."""
    item, score = scored.item, scored.score_for(market)
    return {
        "title": item.title,
        "link": item.link,
        "source": item.source,
        "first_seen_at": item.first_seen_at,
        "published_at": item.published_at,
        "notice": item.notice_kind,
        "score": None if score is None else round(score.score, 3),
        "relevance": None if score is None else round(score.relevance, 3),
        "reason": None if score is None else score.reason,
        "scorer": None if score is None else score.scorer,
    }


def row_headline(row: dict[str, Any], market: str) -> dict[str, Any]:
    """A journal item row (`Journal.news_items`, with its scores) in `headline`'s shape."""
    score = next((s for s in row.get("scores") or [] if s.get("market") == market), None)
    return {
        "title": row["title"],
        "link": row["link"],
        "source": row["source"],
        "first_seen_at": row["first_seen_at"],
        "published_at": row.get("published_at"),
        "notice": row.get("notice_kind"),
        "score": None if score is None else round(float(score["score"]), 3),
        "relevance": None if score is None else round(float(score["relevance"]), 3),
        "reason": None if score is None else score.get("reason"),
        "scorer": None if score is None else score.get("scorer"),
    }


def first_scores(row: dict[str, Any]) -> list[dict[str, Any]]:
    """An item row's first score per market (the LLM's when it answered, else the lexicon's:
    the service's scorers in order, `app.news`), as the live index reads them."""
    taken: dict[str, dict[str, Any]] = {}
    for score in row.get("scores") or []:
        taken.setdefault(score["market"], score)
    return list(taken.values())


def for_prompt(item: dict[str, Any]) -> dict[str, Any]:
    """What a reviewer is shown of an item (JSON: the time as text, no link)."""
    hidden = ("link", "scorer", "published_at")
    shown = {k: v for k, v in item.items() if k not in hidden and v is not None}
    shown["first_seen_at"] = item["first_seen_at"].isoformat()
    return shown


def notice_time(item: dict[str, Any]) -> datetime:
    """When a notice was issued: its usable published time (`news.items.event_time`), else
    when it was first seen."""
    return event_time(item.get("published_at"), item["first_seen_at"]) or item["first_seen_at"]


@dataclass
class LiveNews:
    """The running news service, read in memory; `earlier`: what the journal held at start
    (so a restart still sees the notices and headlines it stored before)."""

    service: NewsService
    earlier: JournalNews | None = None

    def items(self, market: str, since: datetime, at: datetime) -> list[dict[str, Any]]:
        found = self.service.recent(market, since=since, limit=200)
        new = [headline(s, market) for s in found if since < s.item.first_seen_at <= at]
        if self.earlier is None:
            return new
        links = {item["link"] for item in new}
        old = [i for i in self.earlier.items(market, since, at) if i["link"] not in links]
        return sorted(new + old, key=lambda item: item["first_seen_at"], reverse=True)

    def reading(self, market: str, at: datetime) -> SentimentReading:
        return self.service.reading(market, at)


@dataclass
class JournalNews:
    """The journal's items and scores, loaded once, read as known at each bar (backtest view).

    `rows` are `Journal.news_items` rows with a usable time (their `scores` included);
    `index` holds the same items' score points (`app.news.index_from_journal`).
    """

    rows: Sequence[dict[str, Any]]
    index: SentimentIndex
    _by_market: dict[str, tuple[list[datetime], list[dict[str, Any]]]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        ordered = sorted(self.rows, key=lambda row: row["first_seen_at"])
        for row in ordered:
            for score in first_scores(row):
                seen, items = self._by_market.setdefault(score["market"], ([], []))
                seen.append(row["first_seen_at"])
                items.append(row_headline(row, score["market"]))

    def items(self, market: str, since: datetime, at: datetime) -> list[dict[str, Any]]:
        seen, items = self._by_market.get(market, ([], []))
        start, stop = bisect.bisect_right(seen, since), bisect.bisect_right(seen, at)
        return items[start:stop][::-1]

    def reading(self, market: str, at: datetime) -> SentimentReading:
        return self.index.index_at(market, at, view="backtest")

    @classmethod
    def of(cls, rows: Iterable[dict[str, Any]], half_life: timedelta) -> JournalNews:
        """From journal item rows alone: the index is built from their scores."""
        rows = list(rows)
        index = SentimentIndex(half_life)
        for row in rows:
            for score in first_scores(row):
                index.add(
                    ScorePoint(
                        market=score["market"],
                        score=float(score["score"]),
                        relevance=float(score["relevance"]),
                        first_seen_at=row["first_seen_at"],
                        event_time=event_time(row["published_at"], row["first_seen_at"]),
                        title=row["title"],
                        source=row["source"],
                        scorer=str(score.get("scorer") or ""),
                        notice_kind=row.get("notice_kind"),
                    )
                )
        return cls(rows, index)


def load_journal_news(
    journal: Journal,
    *,
    since: datetime,
    until: datetime,
    half_life: timedelta,
    require_time: bool = True,
) -> JournalNews:
    """The journal's items first seen in [since, until] (with a usable time, unless
    `require_time` is off: live use), loaded once for `JournalNews`."""
    rows: list[dict[str, Any]] = []
    while True:
        page = journal.news_items(
            seen_by=until, since=since, require_time=require_time, limit=PAGE, offset=len(rows)
        )
        rows.extend(page)
        if len(page) < PAGE:
            return JournalNews.of(rows, half_life)


TriggerSink = Callable[[Trigger, datetime], Awaitable[None]]


@dataclass
class NewsWatch:
    """Sells on notices and a falling index, bars entries on notices (module docstring)."""

    reader: NewsReader
    watchdog: Watchdog | None
    on_trigger: TriggerSink
    markets: Sequence[str]
    notice_block: timedelta = timedelta(days=7)
    checked_until: datetime | None = None
    _blocks: dict[str, tuple[datetime, str]] = field(init=False, default_factory=dict)

    def headlines(self, market: str, at: datetime) -> list[dict[str, Any]]:
        """The newest items about `market` a decision at `at` could have read, for a prompt."""
        found = self.reader.items(market, at - HEADLINES_WITHIN, at)
        return [for_prompt(item) for item in found[:HEADLINES]]

    def blocked_reason(self, market: str, at: datetime) -> str | None:
        """Why an Upbit notice bars entries into `market` at `at`, or None."""
        block = self._blocks.get(market)
        if block is None:
            return None
        until, reason = block
        if at >= until:
            del self._blocks[market]
            return None
        return reason

    async def check(self, at: datetime) -> list[Trigger]:
        """Act on what was first seen since the last check, up to `at`; the triggers sent."""
        since = self.checked_until if self.checked_until is not None else at - self.notice_block
        if at <= since:
            return []
        self.checked_until = at
        fired = []
        ts_ms = int(at.timestamp() * 1000)
        for market in self.markets:
            new = self.reader.items(market, since, at)
            trigger = self._notice(market, new, at, ts_ms)
            if trigger is None:
                trigger = self._sentiment(market, new, at, ts_ms)
            if trigger is not None:
                await self.on_trigger(trigger, at)
                fired.append(trigger)
        return fired

    def _notice(
        self, market: str, new: list[dict[str, Any]], at: datetime, ts_ms: int
    ) -> Trigger | None:
        # A notice issued longer than `notice_block` ago (an old one the first poll after a
        # start sees for the first time) neither sells nor bars.
        notices = [
            item
            for item in new
            if item["notice"] in BLOCKING_NOTICES and notice_time(item) > at - self.notice_block
        ]
        if not notices:
            return None
        # A delisting outranks a warning; the newest of a kind otherwise.
        notice = max(notices, key=lambda n: (n["notice"] == "delisting", notice_time(n)))
        until = notice_time(notice) + self.notice_block
        current = self._blocks.get(market)
        if current is None or current[0] < until:
            kind, title = notice["notice"], notice["title"]
            reason = f"Upbit {kind} notice, until {until.isoformat()}: {title}"
            self._blocks[market] = (until, reason[:300])
        return Trigger(market, "news", ts_ms, None, _details(notice))

    def _sentiment(
        self, market: str, new: list[dict[str, Any]], at: datetime, ts_ms: int
    ) -> Trigger | None:
        if self.watchdog is None:
            return None
        reading = self.reader.reading(market, at)
        if reading.index is None:
            return None
        trigger = self.watchdog.on_sentiment(market, reading.index, ts_ms)
        if trigger is None:
            return None
        details = {**trigger.details, "index": reading.index, "items": reading.items}
        scored = [item for item in new if item["score"] is not None]
        if scored:  # the item that tipped it: the most negative new one
            details.update(_details(min(scored, key=lambda item: item["score"])))
        return Trigger(market, trigger.detector, ts_ms, None, details)


def _details(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "notice": item["notice"],
        "title": item["title"],
        "link": item["link"],
        "source": item["source"],
        "first_seen_at": item["first_seen_at"].isoformat(),
        "item_score": item["score"],
        "reason": item["reason"],
    }
