"""The sentiment index: decay, point in time, and the backtest view without untimed items."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from news.index import ScorePoint, SentimentIndex, sentiment_at

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def point(
    score: float,
    seen: datetime,
    *,
    published: datetime | None = None,
    timed: bool = True,
    relevance: float = 1.0,
    market: str = "KRW-BTC",
) -> ScorePoint:
    event = (published or seen) if timed else None
    return ScorePoint(market, score, relevance, seen, event)


def test_one_fresh_item_is_its_score_and_halves_every_half_life() -> None:
    index = SentimentIndex(half_life=HOUR)
    index.add(point(-0.8, T0))

    assert index.index_at("KRW-BTC", T0).index == pytest.approx(-0.8)
    assert index.index_at("KRW-BTC", T0 + HOUR).index == pytest.approx(-0.4)
    assert index.index_at("KRW-BTC", T0 + 2 * HOUR).index == pytest.approx(-0.2)


def test_many_fresh_items_give_their_relevance_weighted_mean() -> None:
    index = SentimentIndex(half_life=HOUR)
    index.extend([point(-0.9, T0), point(0.3, T0), point(0.6, T0, relevance=0.5)])

    reading = index.index_at("KRW-BTC", T0)

    assert reading.index == pytest.approx((-0.9 + 0.3 + 0.3) / 2.5)
    assert reading.items == 3
    assert reading.weight == pytest.approx(2.5)


def test_no_items_is_none_not_zero_and_other_markets_do_not_count() -> None:
    index = SentimentIndex(half_life=HOUR)
    index.add(point(0.9, T0, market="KRW-ETH"))

    reading = index.index_at("KRW-BTC", T0 + HOUR)

    assert reading.index is None
    assert reading.items == 0


def test_an_item_first_seen_after_t_never_counts_even_if_published_before() -> None:
    index = SentimentIndex(half_life=HOUR)
    index.add(point(0.5, T0))
    # Published long before, but this process only saw it at T0 + 2h.
    index.add(point(-1.0, T0 + 2 * HOUR, published=T0 - HOUR))

    before = index.index_at("KRW-BTC", T0 + 2 * HOUR - timedelta(seconds=1))
    at = index.index_at("KRW-BTC", T0 + 2 * HOUR)

    assert before.items == 1
    assert before.index == pytest.approx(0.5 * 0.5 ** (7199 / 3600))
    assert at.items == 2


def test_an_old_story_first_seen_late_weighs_by_its_published_age() -> None:
    index = SentimentIndex(half_life=HOUR)
    index.add(point(-1.0, T0, published=T0 - 3 * HOUR))

    assert index.index_at("KRW-BTC", T0).index == pytest.approx(-1.0 / 8)


def test_untimed_items_count_live_but_never_in_the_backtest_view() -> None:
    index = SentimentIndex(half_life=HOUR)
    index.add(point(-0.6, T0, timed=False))

    live = index.index_at("KRW-BTC", T0, view="live")
    backtest = index.index_at("KRW-BTC", T0, view="backtest")

    assert live.index == pytest.approx(-0.6)
    assert backtest.index is None


def test_pruning_forgets_old_points_only() -> None:
    index = SentimentIndex(half_life=HOUR)
    index.extend([point(0.1, T0), point(0.2, T0 + HOUR), point(0.3, T0 + 2 * HOUR)])

    removed = index.prune(T0 + HOUR)

    assert removed == 1
    assert [p.score for p in index.points("KRW-BTC")] == [0.2, 0.3]


def test_a_naive_time_and_a_non_positive_half_life_are_refused() -> None:
    index = SentimentIndex(half_life=HOUR)
    with pytest.raises(ValueError, match="naive"):
        index.index_at("KRW-BTC", datetime(2026, 12, 1))
    with pytest.raises(ValueError, match="half_life"):
        SentimentIndex(half_life=timedelta(0))


@settings(max_examples=60, deadline=None)
@given(
    seen_minutes=st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=30),
    scores=st.lists(st.floats(min_value=-1, max_value=1), min_size=30, max_size=30),
    at_minute=st.integers(min_value=0, max_value=600),
)
def test_the_index_at_t_equals_the_index_of_the_items_seen_by_t_alone(
    seen_minutes: list[int], scores: list[float], at_minute: int
) -> None:
    points = [
        point(scores[i], T0 + timedelta(minutes=m), published=T0 + timedelta(minutes=m - 30))
        for i, m in enumerate(seen_minutes)
    ]
    at = T0 + timedelta(minutes=at_minute)
    index = SentimentIndex(half_life=HOUR)
    index.extend(points)

    reading = index.index_at("KRW-BTC", at)
    alone = sentiment_at(
        [p for p in points if p.first_seen_at <= at], "KRW-BTC", at, half_life=HOUR
    )

    assert reading == alone
    assert all(p.first_seen_at <= at for p in index.points("KRW-BTC", at))
