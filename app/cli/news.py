"""`lxa news`: poll the news sources once (or follow them) and print what the service sees."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from app.cli.common import fail, load, out, print_json_line

if TYPE_CHECKING:
    from news.service import NewsService, ScoredNews

KST = timezone(timedelta(hours=9))


def _kst(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(KST).strftime("%m-%d %H:%M")


def _scores(scored: ScoredNews) -> str:
    return " ".join(f"{s.market.removeprefix('KRW-')} {s.score:+.2f}" for s in scored.scores) or "-"


def print_items(batch: list[ScoredNews], *, market: str | None, limit: int) -> None:
    """The items as a table, newest first (first seen and published in KST)."""
    rows = [s for s in batch if market is None or market in s.item.coins]
    rows.sort(key=lambda s: s.item.published_at or s.item.first_seen_at, reverse=True)
    table = Table(title=f"{len(rows)} new item(s)", title_justify="left")
    for column in ("seen (KST)", "published", "source", "coins", "score", "title"):
        table.add_column(column, overflow="fold" if column == "title" else "ellipsis")
    for scored in rows[:limit]:
        item = scored.item
        title = item.title if item.notice_kind is None else f"[{item.notice_kind}] {item.title}"
        table.add_row(
            _kst(item.first_seen_at),
            _kst(item.published_at),
            item.source,
            " ".join(c.removeprefix("KRW-") for c in item.coins) or "-",
            _scores(scored),
            title,
        )
    out.print(table)


def print_sources(service: NewsService) -> None:
    """One line per source: polls, 304s, items, and its errors by kind."""
    for name, stats in service.stats().items():
        errors = ", ".join(f"{kind} {count}" for kind, count in sorted(stats.errors.items()))
        line = (
            f"{name}: {stats.polls} poll(s), {stats.not_modified} not modified, "
            f"{stats.items} item(s), {stats.new_items} new"
        )
        if errors:
            line += f"; errors: {errors} (last: {stats.last_error})"
        out.print(line, highlight=False)


def news(
    follow: Annotated[
        bool, typer.Option("--follow", help="Keep polling every LXA_NEWS_POLL_INTERVAL_S.")
    ] = False,
    polls: Annotated[
        int | None, typer.Option(min=1, help="With --follow: stop after this many polls.")
    ] = None,
    market: Annotated[
        str | None, typer.Option(help="Only items about this market (KRW-BTC).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows per table.")] = 40,
    store: Annotated[
        bool, typer.Option("--store", help="Also store the new items in the journal.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON line per poll: the items and the sources.")
    ] = False,
) -> None:
    """Poll the news sources and print the new items: time, source, coins, score, title.

    Feeds, Upbit's notices and (with LXA_NEWS_CRYPTOPANIC_KEY) CryptoPanic, as LXA_NEWS_FEEDS
    lists them; scored by the lexicon scorer. A source that fails is named with its error
    below the table; the others are shown all the same. Exits 1 when no source answered.
    """
    import asyncio

    from app.news import poll_news

    settings = load()
    wanted = market.upper() if market else None

    def on_poll(batch: list[ScoredNews], service: NewsService) -> None:
        if as_json:
            payload: dict[str, Any] = {
                "items": [s.as_dict() for s in batch if wanted is None or wanted in s.item.coins],
                "sources": {name: st.as_dict() for name, st in service.stats().items()},
            }
            print_json_line(payload)
            return
        print_items(batch, market=wanted, limit=limit)
        print_sources(service)

    service = asyncio.run(
        poll_news(settings, on_poll=on_poll, follow=follow, polls=polls, store=store)
    )
    if all(stats.last_ok_at is None for stats in service.stats().values()):
        fail("no news source answered (each one's error is above)", 1)
