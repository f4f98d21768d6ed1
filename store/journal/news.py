"""News: items as first seen, stored once, and their scores per coin; read point in time.

An item is a duplicate when its `link_key` is stored (the unique constraint guarantees it
even against a concurrent writer) or its `title_key` is, first seen within `title_window`
before it (the same story syndicated; the same notice title months later is a new notice).
Every read takes `seen_by`: only items first seen at or before it are returned, so a
backtest or replay at a bar sees what the live service could have seen then. With
`require_time`, items without a usable published time (None, or further ahead of first seen
than the skew a source's clock may have) are left out, as a backtest must.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from store.journal.base import JournalTables, as_dicts, check_page, checked
from store.rows import NewsItemRow, NewsScoreRow
from store.schema import news_items, news_scores, utc_now

__all__ = ["CLOCK_SKEW", "TITLE_WINDOW", "NewsJournal"]

# The defaults of news.items (TITLE_DEDUP_WINDOW, CLOCK_SKEW): the store imports no project
# package, so the service passes its own when they differ.
TITLE_WINDOW = timedelta(days=7)
CLOCK_SKEW = timedelta(minutes=10)

_SCORE_COLUMNS = (
    news_scores.c.item_id,
    news_scores.c.market,
    news_scores.c.scorer,
    news_scores.c.score,
    news_scores.c.relevance,
    news_scores.c.reason,
    news_scores.c.scored_at,
)
_ITEM_COLUMNS = (
    news_items.c.source,
    news_items.c.kind,
    news_items.c.notice_kind,
    news_items.c.title,
    news_items.c.link,
    news_items.c.published_at,
    news_items.c.first_seen_at,
)


def _insert_ignoring(connection: Connection, table: sa.Table) -> Any:
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _usable(row: dict[str, Any], skew: timedelta) -> bool:
    published = row["published_at"]
    return published is not None and published <= row["first_seen_at"] + skew


class NewsJournal(JournalTables):
    """Store news items once with their scores; read them and the scores point in time."""

    def record_news(
        self,
        item: NewsItemRow,
        scores: Sequence[NewsScoreRow] = (),
        *,
        title_window: timedelta = TITLE_WINDOW,
    ) -> int | None:
        """Store a new item and its scores in one transaction; its id, or None if a duplicate."""
        values = checked(news_items, item)
        values.setdefault("coins", [])
        first_seen = values["first_seen_at"]
        duplicate = sa.select(news_items.c.id).where(
            sa.or_(
                news_items.c.link_key == values["link_key"],
                sa.and_(
                    news_items.c.title_key == values["title_key"],
                    news_items.c.first_seen_at > first_seen - title_window,
                    news_items.c.first_seen_at <= first_seen + title_window,
                ),
            )
        )
        with self.engine.begin() as connection:
            if connection.execute(duplicate.limit(1)).first() is not None:
                return None
            stmt = (
                _insert_ignoring(connection, news_items)
                .values(**values)
                .on_conflict_do_nothing(index_elements=[news_items.c.link_key])
                .returning(news_items.c.id)
            )
            item_id = connection.execute(stmt).scalar()
            if item_id is None:  # a concurrent writer stored the same link first
                return None
            self._insert_scores(connection, int(item_id), scores)
        return int(item_id)

    def record_news_scores(self, item_id: int, scores: Sequence[NewsScoreRow]) -> int:
        """Add scores to a stored item (a later scorer), each once; how many were new."""
        with self.engine.begin() as connection:
            return self._insert_scores(connection, item_id, scores)

    def _insert_scores(
        self, connection: Connection, item_id: int, scores: Sequence[NewsScoreRow]
    ) -> int:
        if not scores:
            return 0
        now = utc_now()
        rows = []
        for score in scores:
            row = checked(news_scores, score)
            row["item_id"] = item_id
            row.setdefault("scored_at", now)
            rows.append(row)
        added = 0
        for row in rows:
            stmt = (
                _insert_ignoring(connection, news_scores)
                .values(**row)
                .on_conflict_do_nothing(
                    index_elements=[
                        news_scores.c.item_id,
                        news_scores.c.market,
                        news_scores.c.scorer,
                    ]
                )
                .returning(news_scores.c.id)
            )
            added += connection.execute(stmt).scalar() is not None
        return added

    def news_items(
        self,
        *,
        seen_by: datetime | None = None,
        since: datetime | None = None,
        market: str | None = None,
        kind: str | None = None,
        require_time: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Items first seen in [since, seen_by], newest first, each with its `scores` list.

        `market`: only items scored for it; `kind`: "news" or "notice"; `require_time`: only
        items with a usable published time (the backtest view; a page may then be short).
        """
        check_page(limit, offset)
        conditions = self._window(seen_by, since, require_time)
        if kind is not None:
            conditions.append(news_items.c.kind == kind)
        if market is not None:
            conditions.append(
                sa.exists().where(
                    news_scores.c.item_id == news_items.c.id, news_scores.c.market == market
                )
            )
        stmt = (
            news_items.select()
            .where(*conditions)
            .order_by(news_items.c.first_seen_at.desc(), news_items.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self.engine.connect() as connection:
            items = as_dicts(connection.execute(stmt))
            ids = [item["id"] for item in items]
            scores: dict[int, list[dict[str, Any]]] = {item_id: [] for item_id in ids}
            if ids:
                rows = connection.execute(
                    sa.select(*_SCORE_COLUMNS)
                    .where(news_scores.c.item_id.in_(ids))
                    .order_by(news_scores.c.id)
                )
                for row in as_dicts(rows):
                    scores[row["item_id"]].append(row)
        for item in items:
            item["scores"] = scores[item["id"]]
        if require_time:
            items = [item for item in items if _usable(item, CLOCK_SKEW)]
        return items

    def news_scores(
        self,
        market: str,
        *,
        seen_by: datetime,
        since: datetime | None = None,
        scorer: str | None = None,
        require_time: bool = False,
    ) -> list[dict[str, Any]]:
        """A market's scores of items first seen in [since, seen_by], oldest first.

        Each row carries the item's times, title, source, link, kind and notice kind: what
        `news.index.ScorePoint` needs to rebuild the sentiment index at any time up to `seen_by`.
        """
        conditions = [news_scores.c.market == market, *self._window(seen_by, since, require_time)]
        if scorer is not None:
            conditions.append(news_scores.c.scorer == scorer)
        stmt = (
            sa.select(*_SCORE_COLUMNS, *_ITEM_COLUMNS)
            .select_from(news_scores.join(news_items, news_scores.c.item_id == news_items.c.id))
            .where(*conditions)
            .order_by(news_items.c.first_seen_at, news_scores.c.id)
        )
        with self.engine.connect() as connection:
            rows = as_dicts(connection.execute(stmt))
        return [row for row in rows if _usable(row, CLOCK_SKEW)] if require_time else rows

    def news_seen_keys(self, since: datetime) -> list[tuple[str, str, datetime]]:
        """(link key, title key, first seen) of items first seen since `since`: the service's
        dedup memory after a restart."""
        stmt = sa.select(
            news_items.c.link_key, news_items.c.title_key, news_items.c.first_seen_at
        ).where(news_items.c.first_seen_at >= since)
        with self.engine.connect() as connection:
            return [(row[0], row[1], row[2]) for row in connection.execute(stmt)]

    def count_news(self, *, seen_by: datetime | None = None) -> int:
        """How many items are stored (first seen by `seen_by`)."""
        stmt = sa.select(sa.func.count()).select_from(news_items)
        if seen_by is not None:
            stmt = stmt.where(news_items.c.first_seen_at <= seen_by)
        with self.engine.connect() as connection:
            return int(connection.execute(stmt).scalar_one())

    @staticmethod
    def _window(
        seen_by: datetime | None, since: datetime | None, require_time: bool
    ) -> list[sa.ColumnElement[bool]]:
        conditions: list[sa.ColumnElement[bool]] = []
        if seen_by is not None:
            conditions.append(news_items.c.first_seen_at <= seen_by)
        if since is not None:
            conditions.append(news_items.c.first_seen_at >= since)
        if require_time:  # and, in Python, not further ahead of first seen than CLOCK_SKEW
            conditions.append(news_items.c.published_at.is_not(None))
        return conditions
