"""Items, coin tagging and the lexicon scorer: pure functions over text.

Every headline here is SYNTHETIC (written for these tests); the Upbit notice titles follow
the shape of Upbit's real ones ("[거래] 유의 종목 지정 안내 (...)").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from news.coins import CoinTagger
from news.items import NewsItem, canonical_link, classify_notice, link_key, title_key
from news.scoring import CoinScore, LexiconScorer, Scorer

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TAGGER = CoinTagger()


# ---- items: canonical links, titles, notice kinds, usable times ------------------------------


@pytest.mark.parametrize(
    ("link", "canonical"),
    [
        (
            "http://www.CoinDesk.com/markets/2026/12/01/story/?utm_source=rss&utm_medium=x#top",
            "https://coindesk.com/markets/2026/12/01/story",
        ),
        ("https://example.test/a?b=2&a=1&fbclid=xyz", "https://example.test/a?a=1&b=2"),
        (
            "https://upbit.com/service_center/notice?id=4321",
            "https://upbit.com/service_center/notice?id=4321",
        ),
    ],
)
def test_canonical_link_drops_what_varies_between_copies(link: str, canonical: str) -> None:
    assert canonical_link(link) == canonical


def test_copies_of_a_story_share_their_keys_and_other_stories_do_not() -> None:
    a = link_key("https://www.example.test/story/?utm_campaign=feed", "Bitcoin Rises")
    b = link_key("http://example.test/story", "another title entirely")

    assert a == b
    assert title_key("Bitcoin rises!  ") == title_key("BITCOIN RISES")
    assert title_key("Bitcoin rises") != title_key("Bitcoin falls")
    assert link_key("", "Bitcoin rises") != link_key("", "Bitcoin falls")


@pytest.mark.parametrize(
    ("title", "kind"),
    [
        ("[거래] 유의 종목 지정 안내 (XYZ)", "warning"),
        ("[거래] 유의 종목 지정 기간 연장 안내 (XYZ)", "warning"),
        ("[거래] 유의 종목 지정 해제 안내 (XYZ)", "other"),
        ("[거래지원종료] 엑스와이지(XYZ) 거래지원 종료 안내", "delisting"),
        ("[거래] 유의 종목 지정 및 거래지원 종료 안내 (XYZ)", "delisting"),
        ("[입출금] 솔라나(SOL) 입출금 일시 중단 안내", "suspension"),
        ("[입출금] 이더리움(ETH) 네트워크 업그레이드에 따른 입금 중단 안내", "suspension"),
        ("[이벤트] 신규 회원 이벤트 안내", "other"),
        ("[거래] 신규 거래지원 안내 (ABC)", "other"),
    ],
)
def test_notice_kind_from_upbit_titles(title: str, kind: str) -> None:
    assert classify_notice(title) == kind


def test_event_time_is_the_published_time_capped_at_first_seen_and_none_when_untrustworthy() -> (
    None
):
    def item(published: datetime | None) -> NewsItem:
        return NewsItem("s", "Synthetic", "https://x.test/1", T0, published_at=published)

    assert item(T0 - timedelta(hours=2)).event_time == T0 - timedelta(hours=2)
    assert item(T0 + timedelta(minutes=3)).event_time == T0  # a clock slightly ahead
    assert item(T0 + timedelta(hours=3)).event_time is None  # far ahead: not usable
    assert item(None).event_time is None


def test_an_item_refuses_naive_times_no_title_and_a_notice_without_kind() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        NewsItem("s", "t", "https://x.test", datetime(2026, 12, 1))
    with pytest.raises(ValueError, match="no title"):
        NewsItem("s", "  ", "https://x.test", T0)
    with pytest.raises(ValueError, match="notice_kind"):
        NewsItem("s", "t", "https://x.test", T0, kind="notice")


# ---- coin tagging ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "markets"),
    [
        ("Bitcoin tops $120K as ETH lags", ("KRW-BTC", "KRW-ETH")),
        ("$SOL and KRW-XRP lead the board", ("KRW-XRP", "KRW-SOL")),
        ("SOLution providers raise funds", ()),
        ("ETHos of the industry, whether or not", ()),
        ("Solana and Ripple partner", ("KRW-XRP", "KRW-SOL")),
        ("Ether slips; solana rallies", ("KRW-ETH", "KRW-SOL")),
        ("Bitcoin Cash and Ethereum Classic jump", ()),
        ("비트코인이 급등했다", ("KRW-BTC",)),
        ("이더리움·솔라나 동반 하락", ("KRW-ETH", "KRW-SOL")),
        ("리플, 엑스알피 레저 업그레이드", ("KRW-XRP",)),
        ("트리플 위칭데이와 리플레이 공격", ()),
        ("비트코인캐시 급등, 이더리움클래식 하락", ()),
        ("sol is the sun in Spanish", ()),
    ],
)
def test_coins_are_tagged_by_ticker_and_names_on_word_boundaries(
    text: str, markets: tuple[str, ...]
) -> None:
    assert TAGGER.tag(text) == markets


# ---- the lexicon scorer ----------------------------------------------------------------------


def scored(title: str, summary: str = "") -> dict[str, CoinScore]:
    item = NewsItem(
        "s", title, "https://x.test", T0, summary=summary, coins=TAGGER.tag(title, summary)
    )
    return {s.market: s for s in LexiconScorer(TAGGER).score_item(item)}


def test_each_coin_gets_the_words_of_its_own_clause() -> None:
    scores = scored("Bitcoin rises while Solana plunges after exploit")

    assert scores["KRW-BTC"].score == pytest.approx(0.4)
    assert scores["KRW-SOL"].score == -1.0  # -0.8 - 0.8, clipped
    assert "rises" in scores["KRW-BTC"].reason
    assert "plunges" in scores["KRW-SOL"].reason and "exploit" in scores["KRW-SOL"].reason
    assert "plunges" not in scores["KRW-BTC"].reason


def test_korean_words_score_and_are_named_in_the_reason() -> None:
    scores = scored("비트코인 급등…이더리움은 하락")
    warning = scored("[거래] 유의 종목 지정 안내 (리플)")

    assert scores["KRW-BTC"].score == pytest.approx(0.8)
    assert scores["KRW-ETH"].score == pytest.approx(-0.4)
    assert warning["KRW-XRP"].score == pytest.approx(-0.9)
    assert warning["KRW-XRP"].reason.startswith("lexicon: 유의 종목(-0.90 title)")


def test_a_negated_word_flips_and_halves() -> None:
    plain = scored("Ethereum crashes")["KRW-ETH"]
    negated = scored("Ethereum does not crash")["KRW-ETH"]

    assert plain.score == pytest.approx(-0.8)
    assert negated.score == pytest.approx(0.4)


def test_context_clauses_count_half_and_the_summary_half_again() -> None:
    title_only = scored("Bitcoin ETF: SEC approves the funds")["KRW-BTC"]
    in_summary = scored("Bitcoin weekly", summary="Bitcoin surges on inflows.")["KRW-BTC"]

    assert title_only.score == pytest.approx(0.25)  # "approves" 0.5, in a clause naming no coin
    assert in_summary.score == pytest.approx((0.7 + 0.4) * 0.5)
    assert in_summary.relevance == 1.0  # named in the title
    assert scored("Weekly wrap", summary="Solana slips")["KRW-SOL"].relevance == 0.6


def test_no_scored_words_is_zero_with_a_reason_saying_so_and_no_coin_is_no_score() -> None:
    neutral = scored("Bitcoin developers meet in Lisbon")["KRW-BTC"]
    item = NewsItem("s", "Markets wrap up the week", "https://x.test", T0)

    assert neutral.score == 0.0
    assert neutral.reason == "lexicon: no scored words"
    assert neutral.scorer == "lexicon"
    assert LexiconScorer().score_item(item) == []


async def test_the_lexicon_scorer_is_a_scorer() -> None:
    scorer = LexiconScorer()
    item = NewsItem("s", "XRP soars", "https://x.test", T0, coins=("KRW-XRP",))

    assert isinstance(scorer, Scorer)
    assert [s.score for s in await scorer.score(item)] == [pytest.approx(0.7)]


def test_a_score_outside_its_range_is_refused() -> None:
    with pytest.raises(ValueError, match="score"):
        CoinScore("KRW-BTC", 1.5, 1.0, "x", "lexicon")
    with pytest.raises(ValueError, match="relevance"):
        CoinScore("KRW-BTC", 0.5, -0.1, "x", "lexicon")
