"""News items stored once with their scores, and read point in time, on SQLite and PostgreSQL.

The headlines here are SYNTHETIC (written for these tests), in the shape the news service
stores them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from store.journal import Journal
from store.rows import NewsItemRow, NewsScoreRow

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def news_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/journal.db"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Journal.open(url)
    try:
        yield opened
    finally:
        opened.close()


def item_row(
    n: int,
    *,
    seen: datetime = T0,
    published: datetime | None = None,
    title: str | None = None,
    coins: tuple[str, ...] = ("KRW-BTC",),
    kind: str = "news",
) -> NewsItemRow:
    return {
        "link_key": f"{n:064x}",
        "title_key": f"{(title or str(n)).encode().hex():0>64}"[:64],
        "source": "synthetic",
        "kind": kind,
        "notice_kind": "warning" if kind == "notice" else None,
        "title": title or f"Synthetic headline {n}",
        "link": f"https://example.test/{n}",
        "published_at": published,
        "published_raw": None if published is None else published.isoformat(),
        "first_seen_at": seen,
        "coins": list(coins),
    }


def score_row(market: str = "KRW-BTC", score: float = -0.5) -> NewsScoreRow:
    return {
        "market": market,
        "scorer": "lexicon",
        "score": score,
        "relevance": 1.0,
        "reason": "lexicon: synthetic",
    }


def test_an_item_is_stored_once_by_link_with_its_scores(news_journal: Journal) -> None:
    first = news_journal.record_news(item_row(1), [score_row(), score_row("KRW-ETH", 0.25)])
    again = news_journal.record_news(item_row(1, seen=T0 + timedelta(hours=1)), [score_row()])

    (stored,) = news_journal.news_items()
    assert isinstance(first, int)
    assert again is None
    assert news_journal.count_news() == 1
    assert stored["first_seen_at"] == T0
    assert stored["coins"] == ["KRW-BTC"]
    assert [(s["market"], s["score"]) for s in stored["scores"]] == [
        ("KRW-BTC", -0.5),
        ("KRW-ETH", 0.25),
    ]


def test_the_same_title_is_a_duplicate_within_the_window_and_new_after_it(
    news_journal: Journal,
) -> None:
    title = "[입출금] 솔라나(SOL) 입출금 일시 중단 안내"
    first = news_journal.record_news(item_row(1, title=title))
    syndicated = news_journal.record_news(item_row(2, title=title, seen=T0 + timedelta(days=2)))
    months_later = news_journal.record_news(item_row(3, title=title, seen=T0 + timedelta(days=60)))

    assert first is not None
    assert syndicated is None
    assert months_later is not None
    assert news_journal.count_news() == 2


def test_reads_never_return_an_item_first_seen_after_seen_by(news_journal: Journal) -> None:
    for n in range(5):
        news_journal.record_news(
            item_row(n, seen=T0 + timedelta(minutes=n)), [score_row(score=-0.1 * n)]
        )
    cut = T0 + timedelta(minutes=2)

    items = news_journal.news_items(seen_by=cut)
    scores = news_journal.news_scores("KRW-BTC", seen_by=cut)

    assert [i["first_seen_at"] for i in items] == [cut, cut - timedelta(minutes=1), T0]
    assert all(s["first_seen_at"] <= cut for s in scores)
    assert [s["score"] for s in scores] == [0.0, -0.1, -0.2]
    assert news_journal.count_news(seen_by=cut) == 3


def test_the_backtest_view_leaves_out_items_without_a_usable_time(news_journal: Journal) -> None:
    news_journal.record_news(item_row(1, published=T0 - timedelta(minutes=5)), [score_row()])
    news_journal.record_news(item_row(2, published=None), [score_row()])
    # A source clock an hour ahead: not a usable time.
    news_journal.record_news(item_row(3, published=T0 + timedelta(hours=1)), [score_row()])
    at = T0 + timedelta(hours=2)

    backtest = news_journal.news_scores("KRW-BTC", seen_by=at, require_time=True)
    live = news_journal.news_scores("KRW-BTC", seen_by=at)
    backtest_items = news_journal.news_items(seen_by=at, require_time=True)

    assert [s["title"] for s in backtest] == ["Synthetic headline 1"]
    assert len(live) == 3
    assert [i["title"] for i in backtest_items] == ["Synthetic headline 1"]


def test_items_filter_by_market_and_kind(news_journal: Journal) -> None:
    news_journal.record_news(item_row(1), [score_row("KRW-BTC")])
    news_journal.record_news(
        item_row(2, coins=("KRW-SOL",), kind="notice"), [score_row("KRW-SOL", -0.9)]
    )

    sol = news_journal.news_items(market="KRW-SOL")
    notices = news_journal.news_items(kind="notice")

    assert [i["title"] for i in sol] == ["Synthetic headline 2"]
    assert [i["notice_kind"] for i in notices] == ["warning"]


def test_a_later_scorer_adds_its_scores_once(news_journal: Journal) -> None:
    item_id = news_journal.record_news(item_row(1), [score_row()])
    assert item_id is not None
    llm = {**score_row(score=-0.8), "scorer": "groq:llama"}

    added = news_journal.record_news_scores(item_id, [llm, llm])

    (stored,) = news_journal.news_items()
    assert added == 1
    assert sorted(s["scorer"] for s in stored["scores"]) == ["groq:llama", "lexicon"]


def test_seen_keys_since_give_the_service_its_memory_back(news_journal: Journal) -> None:
    news_journal.record_news(item_row(1, seen=T0))
    news_journal.record_news(item_row(2, seen=T0 + timedelta(days=3)))

    keys = news_journal.news_seen_keys(T0 + timedelta(days=1))

    assert keys == [(f"{2:064x}", item_row(2)["title_key"], T0 + timedelta(days=3))]


def test_concurrent_writers_of_one_link_store_it_once(news_journal: Journal) -> None:
    results: list[int | None] = []
    barrier = threading.Barrier(4)

    def write() -> None:
        barrier.wait()
        results.append(news_journal.record_news(item_row(7), [score_row()]))

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r is not None for r in results) == 1
    assert news_journal.count_news() == 1


def test_a_naive_first_seen_time_is_refused(news_journal: Journal) -> None:
    row = item_row(1, seen=datetime(2026, 12, 1, 9, 0))

    with pytest.raises(Exception, match="naive datetime"):
        news_journal.record_news(row)
