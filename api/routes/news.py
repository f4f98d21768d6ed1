"""News as the journal stored it (items with their per-coin scores), and the live sources.

Items come from the journal (`store/journal/news.py`), so a server without the engine (or
after a restart) shows what was collected; the sources' counters exist only while the
engine's news service runs (`app/news.running_news`), handed in with the engine bridge.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, status

from api.deps import JournalDep, NewsSourceStats, ServicesDep, error, require_read_access
from api.routes.runs import Time, as_utc
from api.schemas import MARKET_PATTERN, NewsItemOut, NewsList, NewsSourceOut, NewsSourcesOut

router = APIRouter(prefix="/api", tags=["news"], dependencies=[Depends(require_read_access)])

NO_SERVICE = (
    "no news service runs here: set LXA_NEWS_ENABLED=1 for a live session "
    "(a replay or a server without the engine only reads the journal)"
)
RUNNING = "the engine's news service: each source's polls, items and errors since it started"


@router.get(
    "/news",
    response_model=NewsList,
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: error("a filter is malformed", unprocessable=True)
    },
)
def list_news(
    journal: JournalDep,
    market: Annotated[
        str | None,
        Query(max_length=32, pattern=MARKET_PATTERN, description="Only items scored for it."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500, description="At most this many items.")] = 50,
    since: Annotated[
        Time | None, Query(description="Items first seen from this time on (no zone means UTC).")
    ] = None,
    kind: Annotated[
        Literal["news", "notice"] | None, Query(description="news, or Upbit's notices.")
    ] = None,
) -> NewsList:
    """Items newest first (by when the service first saw them), each with its scores per coin.

    A notice carries its `notice_kind` (warning, delisting, suspension, ...); `published_at`
    is the source's own time (null when it gave none).
    """
    since_utc = as_utc(since, "since")
    rows = journal.news_items(since=since_utc, market=market, kind=kind, limit=limit)
    return NewsList(
        items=[NewsItemOut.model_validate(row) for row in rows],
        market=market,
        since=since_utc,
        limit=limit,
    )


@router.get("/news/sources", response_model=NewsSourcesOut)
def news_sources(services: ServicesDep) -> NewsSourcesOut:
    """The sources the engine's news service polls, with their counters.

    `running` is false (and `sources` empty) when no news service runs in this process.
    """
    source = services.account
    found = source.news_sources() if isinstance(source, NewsSourceStats) else None
    if found is None:
        return NewsSourcesOut(running=False, note=NO_SERVICE, sources=[])
    return NewsSourcesOut(
        running=True,
        note=RUNNING,
        sources=[NewsSourceOut.model_validate(row) for row in found],
    )
