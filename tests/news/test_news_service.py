"""The news service against a local server speaking RSS 2.0, Atom, Upbit notices and CryptoPanic.

Each test runs a `NewsServer` on 127.0.0.1 and a `NewsService` with a fake clock (the
schedule is the service's, not the wall clock's). Items reach the journal through the app's
sink (`app.news.journal_sink`). Every headline is SYNTHETIC; the payloads' formats are real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from news_server import Feed, NewsServer, atom, cryptopanic_posts, rss, upbit_notices

import news.service
from app.news import headlines_from_journal, index_from_journal, journal_sink
from news.items import NewsItem
from news.scoring import CoinScore, LexiconScorer
from news.service import NewsService, ScoredNews
from news.sources import SourceConfig
from store.bus import InProcessBus
from store.journal import Journal

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ETAG = '"v1-abc"'
KEY = "cp-test-key"

RSS_ITEMS = [
    {
        "title": "Bitcoin surges to record high as ETF inflows jump",
        "link": "https://news.example.test/markets/2026/12/01/bitcoin-record/",
        "published": T0 - timedelta(minutes=20),
        "summary": "Synthetic: spot funds took in more than expected.",
    },
    {
        "title": "Solana network outage halts block production",
        "link": "https://news.example.test/tech/2026/12/01/solana-outage/",
        "published": T0 - timedelta(minutes=40),
    },
    {
        "title": "SOLution-minded startups raise seed rounds",
        "link": "https://news.example.test/business/2026/12/01/startups/",
        "published": T0 - timedelta(minutes=50),
    },
    {  # the first story again, with tracking parameters: the same link
        "title": "Bitcoin surges to record high as ETF inflows jump",
        "link": "http://www.news.example.test/markets/2026/12/01/bitcoin-record?utm_source=rss",
        "published": T0 - timedelta(minutes=20),
    },
]
ATOM_ENTRIES = [
    {
        "title": "XRP plunges after Ripple lawsuit ruling",
        "link": "https://atom.example.test/2026/12/xrp-ruling",
        "published": T0 - timedelta(minutes=15),
    },
    {  # syndicated: the RSS story's title under another link
        "title": "Bitcoin Surges to Record High as ETF Inflows Jump!",
        "link": "https://atom.example.test/2026/12/syndicated-bitcoin",
        "published": T0 - timedelta(minutes=19),
    },
]
NOTICES = [
    {
        "id": 5101,
        "title": "[거래] 유의 종목 지정 안내 (리플)",
        "listed_at": T0 - timedelta(minutes=5),
    },
    {
        "id": 5100,
        "title": "[입출금] 이더리움(ETH) 입출금 일시 중단 안내",
        "category": "입출금",
        "listed_at": T0 - timedelta(minutes=30),
    },
]
POSTS = [
    {
        "title": "Ether ETF approval odds rise, analysts say",
        "published": T0 - timedelta(minutes=10),
        "currencies": ["ETH"],
    }
]


class Clock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def server() -> Iterator[NewsServer]:
    with NewsServer() as running:
        running.serve("/feed/", Feed(rss(RSS_ITEMS), etag=ETAG, last_modified=T0))
        running.serve(
            "/atom.xml", Feed(atom(ATOM_ENTRIES), "application/atom+xml", last_modified=T0)
        )
        running.serve(
            "/api/v1/announcements",
            Feed(upbit_notices(NOTICES), "application/json", etag='W/"n1"'),
        )
        running.serve(
            "/api/v1/posts/",
            Feed(cryptopanic_posts(POSTS), "application/json", require_token=KEY),
        )
        yield running


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(f"sqlite:///{tmp_path / 'journal.db'}") as opened:
        yield opened


def sources(server: NewsServer, *extra: SourceConfig) -> list[SourceConfig]:
    return [
        SourceConfig("rss", server.url("/feed/")),
        SourceConfig("atom", server.url("/atom.xml")),
        SourceConfig(
            "upbit",
            server.url("/api/v1/announcements?os=web&page=1&per_page=20&category=all"),
            "upbit_notices",
            min_interval_s=60,
        ),
        SourceConfig(
            "cryptopanic", server.url("/api/v1/posts/?public=true&kind=news"), "cryptopanic"
        ),
        *extra,
    ]


def service_for(
    server: NewsServer,
    journal: Journal,
    clock: Clock,
    *extra: SourceConfig,
    key: str | None = KEY,
    bus: InProcessBus | None = None,
) -> NewsService:
    return NewsService(
        sources(server, *extra),
        sink=journal_sink(journal, bus),
        cryptopanic_key=key,
        clock=clock,
        half_life=timedelta(hours=1),
    )


def by_title(journal: Journal) -> dict[str, dict[str, object]]:
    return {row["title"]: row for row in journal.news_items(limit=1000)}


async def test_one_poll_stores_each_item_once_tagged_and_scored(
    server: NewsServer, journal: Journal
) -> None:
    bus = InProcessBus()
    service = service_for(server, journal, Clock(), bus=bus)
    try:
        handed = await service.poll_once()
    finally:
        await service.aclose()

    items = by_title(journal)
    assert len(handed) == len(items) == 7  # 4 + 2 + 2 + 1 served, 2 duplicates
    assert journal.count_news() == 7
    assert bus.last_seq == 7  # one news event per stored item
    record = items["Bitcoin surges to record high as ETF inflows jump"]
    assert record["coins"] == ["KRW-BTC"]
    assert record["published_at"] == T0 - timedelta(minutes=20)
    assert record["first_seen_at"] == T0
    (btc,) = record["scores"]  # type: ignore[misc]
    assert btc["market"] == "KRW-BTC" and btc["score"] > 0.5 and btc["scorer"] == "lexicon"
    outage = items["Solana network outage halts block production"]
    assert outage["coins"] == ["KRW-SOL"]
    assert outage["scores"][0]["score"] < 0  # type: ignore[index]
    assert items["SOLution-minded startups raise seed rounds"]["coins"] == []
    warning = items["[거래] 유의 종목 지정 안내 (리플)"]
    assert (warning["kind"], warning["notice_kind"], warning["coins"]) == (
        "notice",
        "warning",
        ["KRW-XRP"],
    )
    assert warning["link"] == "https://upbit.com/service_center/notice?id=5101"
    assert warning["published_at"] == T0 - timedelta(minutes=5)  # +09:00 read as KST
    suspension = items["[입출금] 이더리움(ETH) 입출금 일시 중단 안내"]
    assert (suspension["notice_kind"], suspension["coins"]) == ("suspension", ["KRW-ETH"])
    assert items["Ether ETF approval odds rise, analysts say"]["coins"] == ["KRW-ETH"]
    assert server.requests("/api/v1/posts/")[0].query["auth_token"] == KEY


async def test_a_second_poll_is_a_conditional_get_and_stores_nothing_again(
    server: NewsServer, journal: Journal
) -> None:
    clock = Clock()
    service = service_for(server, journal, clock)
    try:
        await service.poll_once()
        clock.advance(301)
        again = await service.poll_once()
    finally:
        await service.aclose()

    rss_requests = server.requests("/feed/")
    atom_requests = server.requests("/atom.xml")
    assert again == []
    assert journal.count_news() == 7
    assert [r.status for r in rss_requests] == [200, 304]
    assert rss_requests[1].headers["if-none-match"] == ETAG
    assert "if-none-match" not in rss_requests[0].headers
    assert [r.status for r in atom_requests] == [200, 304]  # by Last-Modified alone
    assert atom_requests[1].headers["if-modified-since"] == "Tue, 01 Dec 2026 09:00:00 GMT"
    stats = service.stats()
    assert (stats["rss"].fetched, stats["rss"].not_modified) == (1, 1)
    assert stats["cryptopanic"].not_modified == 0  # no validators: fetched, all duplicates
    assert stats["cryptopanic"].new_items == 1


async def test_each_source_is_polled_no_more_often_than_its_floor(
    server: NewsServer, journal: Journal
) -> None:
    clock = Clock()
    service = service_for(server, journal, clock)
    try:
        await service.poll_once()
        clock.advance(61)  # past Upbit's 60 s floor, not the feeds' 300 s
        await service.poll_once()
        clock.advance(240)
        await service.poll_once()
    finally:
        await service.aclose()

    assert len(server.requests("/api/v1/announcements")) == 3
    assert len(server.requests("/feed/")) == 2
    assert len(server.requests("/atom.xml")) == 2


async def test_broken_sources_are_counted_and_skipped_and_the_others_go_on(
    server: NewsServer, journal: Journal
) -> None:
    server.serve("/garbage", Feed(b"\x00\xff\xfe garbage <<<", "application/octet-stream"))
    server.serve(
        "/moved",
        Feed(b"<html><body><h1>We moved!</h1></body></html>", "text/html; charset=utf-8"),
    )
    server.serve("/error", Feed(b"upstream error", "text/plain", status=500))
    server.serve("/slow", Feed(rss(RSS_ITEMS), hang=True))
    server.serve(
        "/changed",
        Feed(b'{"success": true, "data": {"list": []}}', "application/json"),
    )
    broken = [
        SourceConfig("garbage", server.url("/garbage")),
        SourceConfig("moved", server.url("/moved")),
        SourceConfig("error", server.url("/error")),
        SourceConfig("slow", server.url("/slow"), timeout_s=0.3),
        SourceConfig("changed", server.url("/changed"), "upbit_notices"),
    ]
    clock = Clock()
    service = service_for(server, journal, clock, *broken)
    try:
        handed = await service.poll_once()
    finally:
        await service.aclose()

    stats = service.stats()
    assert len(handed) == journal.count_news() == 7  # the good sources, as without the bad
    assert stats["garbage"].errors == {"parse": 1}
    assert stats["moved"].errors == {"format": 1}
    assert stats["error"].errors == {"http": 1}
    assert stats["error"].last_error == "http: HTTP 500"
    assert stats["slow"].errors == {"timeout": 1}
    assert stats["changed"].errors == {"format": 1}
    assert "no data.notices list" in str(stats["changed"].last_error)
    assert all(stats[name].error_count == 0 for name in ("rss", "atom", "upbit", "cryptopanic"))


async def test_a_failing_source_backs_off_and_a_429_waits_its_retry_after(
    server: NewsServer, journal: Journal
) -> None:
    server.serve("/error", Feed(b"", "text/plain", status=500))
    server.serve(
        "/limited", Feed(b"slow down", "text/plain", status=429, headers={"Retry-After": "900"})
    )
    clock = Clock()
    service = service_for(
        server,
        journal,
        clock,
        SourceConfig("error", server.url("/error"), min_interval_s=60),
        SourceConfig("limited", server.url("/limited"), min_interval_s=60),
    )
    try:
        for _ in range(4):  # at 0, 61, 122 and 183 s
            await service.poll_once()
            clock.advance(61)
        clock.advance(900 - 4 * 61)
        await service.poll_once()
    finally:
        await service.aclose()

    # The error source at 0 s (then waits 60), 61 s (120), 183 s (240), and 900 s; not at 122.
    assert len(server.requests("/error")) == 4
    assert len(server.requests("/limited")) == 2  # at 0 s and after its Retry-After of 900 s
    assert service.stats()["error"].consecutive_errors == 4
    assert service.stats()["limited"].errors == {"http": 2}


async def test_a_wrong_or_missing_cryptopanic_key_is_an_error_of_that_source_only(
    server: NewsServer, journal: Journal
) -> None:
    wrong = service_for(server, journal, Clock(), key="not-the-key")
    missing = service_for(server, journal, Clock(), key=None)
    try:
        await wrong.poll_once()
        await missing.poll_once()
    finally:
        await wrong.aclose()
        await missing.aclose()

    assert wrong.stats()["cryptopanic"].errors == {"http": 1}
    assert wrong.stats()["cryptopanic"].last_error == "http: HTTP 401"
    assert "API key" in str(missing.stats()["cryptopanic"].last_error)
    assert len(server.requests("/api/v1/posts/")) == 1  # the missing key sent nothing
    assert journal.count_news() == 6


async def test_a_sink_that_fails_gets_the_batch_again_and_the_live_index_has_it_at_once(
    server: NewsServer,
) -> None:
    batches: list[int] = []
    fail = [True]

    async def flaky(batch: Sequence[ScoredNews]) -> None:
        batches.append(len(batch))
        if fail[0]:
            raise ConnectionError("database away")

    # Upbit's list without validators: fetched again in full, its notices already kept.
    server.serve("/api/v1/announcements", Feed(upbit_notices(NOTICES), "application/json"))
    clock = Clock()
    service = NewsService(sources(server), sink=flaky, cryptopanic_key=KEY, clock=clock)
    try:
        first = await service.poll_once()
        reading = service.reading("KRW-XRP")
        clock.advance(61)
        second = await service.poll_once()
        fail[0] = False
        clock.advance(61)
        third = await service.poll_once()
        clock.advance(301)
        fourth = await service.poll_once()
    finally:
        await service.aclose()

    assert len(first) == 7  # new, and in the live index although the sink failed
    assert reading.items == 2 and reading.index is not None and reading.index < 0
    assert second == third == fourth == []  # nothing new: the kept batch is not new again
    assert batches == [7, 7, 7]  # failed, failed, taken; then nothing left to hand on
    assert service.sink_errors == 2
    assert service.sink_dropped == 0


async def test_a_sink_that_never_recovers_keeps_only_the_newest_items_and_counts_the_rest(
    server: NewsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(news.service, "PENDING_LIMIT", 3)
    batches: list[list[str]] = []

    async def away(batch: Sequence[ScoredNews]) -> None:
        batches.append([s.item.title for s in batch])
        raise ConnectionError("database away")

    clock = Clock()
    service = NewsService(sources(server), sink=away, cryptopanic_key=KEY, clock=clock)
    try:
        first = await service.poll_once()
        clock.advance(61)
        await service.poll_once()
    finally:
        await service.aclose()

    assert [len(b) for b in batches] == [7, 3]
    assert batches[1] == [s.item.title for s in first][-3:]
    assert service.sink_dropped == 4
    assert service.sink_errors == 2


async def test_after_a_restart_the_journal_keeps_the_service_from_handing_on_twice(
    server: NewsServer, journal: Journal
) -> None:
    handed: list[int] = []

    async def counting(batch: Sequence[ScoredNews]) -> None:
        handed.append(len(batch))

    first = service_for(server, journal, Clock())
    second = NewsService(sources(server), sink=counting, cryptopanic_key=KEY, clock=Clock())
    try:
        await first.poll_once()
        second.remember(journal.news_seen_keys(T0 - timedelta(days=30)))
        again = await second.poll_once()
    finally:
        await first.aclose()
        await second.aclose()

    assert again == []
    assert handed == []


async def test_the_index_and_the_prompts_read_only_what_was_seen_by_then(
    server: NewsServer, journal: Journal
) -> None:
    clock = Clock()
    service = service_for(server, journal, clock)
    late = {
        "title": "Bitcoin crashes as exchange hack drains hot wallets",
        "link": "https://news.example.test/2026/12/01/hack/",
        "published": T0 - timedelta(minutes=25),  # published before T0, seen at T0 + 10 min
    }
    try:
        await service.poll_once()
        clock.advance(600)
        server.serve("/feed/", Feed(rss([late, *RSS_ITEMS]), etag='"v2"'))
        await service.poll_once()
    finally:
        await service.aclose()

    before = service.reading("KRW-BTC", T0 + timedelta(minutes=9))
    after = service.reading("KRW-BTC", T0 + timedelta(minutes=10))
    rebuilt = index_from_journal(
        journal, ["KRW-BTC"], until=T0 + timedelta(hours=1), half_life=timedelta(hours=1)
    )
    assert before.items == 1 and before.index is not None and before.index > 0
    assert after.items == 2 and after.index is not None and after.index < before.index
    assert rebuilt.index_at("KRW-BTC", T0 + timedelta(minutes=9)) == before
    assert rebuilt.index_at("KRW-BTC", T0 + timedelta(minutes=10)) == after
    assert [s.item.title for s in service.recent("KRW-BTC")] == [
        late["title"],
        RSS_ITEMS[0]["title"],
    ]
    assert [s.item.notice_kind for s in service.notices("KRW-XRP")] == ["warning"]
    seen_before = headlines_from_journal(journal, "KRW-BTC", at=T0 + timedelta(minutes=9))
    seen_after = headlines_from_journal(journal, "KRW-BTC", at=T0 + timedelta(minutes=10))
    assert [h["title"] for h in seen_before] == [RSS_ITEMS[0]["title"]]
    assert [h["title"] for h in seen_after] == [late["title"], RSS_ITEMS[0]["title"]]
    assert seen_after[0]["scores"][0]["score"] < 0


async def test_an_item_without_a_usable_time_is_kept_for_live_but_not_the_backtest(
    server: NewsServer, journal: Journal
) -> None:
    undated = {
        "title": "Solana rallies on upgrade news",
        "link": "https://news.example.test/undated/",
        "pub_raw": "sometime last week",
    }
    server.serve("/undated.xml", Feed(rss([undated])))
    service = NewsService(
        [SourceConfig("undated", server.url("/undated.xml"))],
        sink=journal_sink(journal),
        clock=Clock(),
        half_life=timedelta(hours=1),
    )
    try:
        await service.poll_once()
    finally:
        await service.aclose()

    (row,) = journal.news_items()
    backtest = index_from_journal(
        journal, ["KRW-SOL"], until=T0 + timedelta(hours=1), half_life=timedelta(hours=1)
    )
    assert row["published_at"] is None
    assert row["published_raw"] == "sometime last week"
    assert service.reading("KRW-SOL", T0, view="live").index is not None
    assert backtest.index_at("KRW-SOL", T0 + timedelta(minutes=1)).index is None


async def test_a_korean_feed_in_euc_kr_is_read_by_the_charset_its_server_names(
    server: NewsServer, journal: Journal
) -> None:
    document = rss(
        [
            {
                "title": "솔라나 급락, 네트워크 장애 우려",
                "link": "https://ko.example.test/sol/",
                "published": T0 - timedelta(minutes=5),
            }
        ]
    ).decode()
    body = document.replace('<?xml version="1.0" encoding="UTF-8"?>', '<?xml version="1.0"?>')
    server.serve("/ko.xml", Feed(body.encode("euc-kr"), "application/rss+xml; charset=EUC-KR"))
    service = NewsService(
        [SourceConfig("ko", server.url("/ko.xml"), language="ko")],
        sink=journal_sink(journal),
        clock=Clock(),
    )
    try:
        await service.poll_once()
    finally:
        await service.aclose()

    (row,) = journal.news_items()
    assert row["title"] == "솔라나 급락, 네트워크 장애 우려"
    assert row["coins"] == ["KRW-SOL"]
    assert row["scores"][0]["score"] < 0


class FailingScorer:
    """A scorer whose model is away (an LLM scorer that times out)."""

    name = "llm"

    async def score(self, item: NewsItem) -> Sequence[CoinScore]:
        raise TimeoutError("model did not answer")


async def test_a_failing_scorer_leaves_the_items_with_the_other_scorers_scores(
    server: NewsServer, journal: Journal
) -> None:
    service = NewsService(
        [SourceConfig("rss", server.url("/feed/"))],
        sink=journal_sink(journal),
        scorers=[FailingScorer(), LexiconScorer()],
        clock=Clock(),
    )
    try:
        handed = await service.poll_once()
    finally:
        await service.aclose()

    assert len(handed) == journal.count_news() == 3
    assert {s.scorer for scored in handed for s in scored.scores} == {"lexicon"}
    assert service.reading("KRW-BTC", T0).items == 1


class SlowScorer:
    """A scorer that takes a while per item (an LLM) and counts how many it scores at once."""

    name = "slow"

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0

    async def score(self, item: NewsItem) -> Sequence[CoinScore]:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.01)
        self.in_flight -= 1
        return [CoinScore(m, 0.0, 0.5, f"slow: {item.title}", self.name) for m in item.coins]


async def test_a_polls_items_are_scored_at_the_same_time_with_a_bound_and_keep_their_order(
    server: NewsServer,
) -> None:
    items = [
        {"title": f"Bitcoin item {n} (SYNTHETIC)", "link": f"https://news.test/{n}"}
        for n in range(20)
    ]
    server.serve("/many/", Feed(rss(items)))
    scorer = SlowScorer()
    service = NewsService([SourceConfig("many", server.url("/many/"))], scorers=[scorer])
    try:
        handed = await service.poll_once()
    finally:
        await service.aclose()

    assert scorer.most == news.service.SCORING_AT_ONCE < len(items)
    assert [scored.item.title for scored in handed] == [item["title"] for item in items]
    assert all(scored.scores[0].reason == f"slow: {scored.item.title}" for scored in handed)


async def test_notices_filter_by_kind_and_by_how_recent_their_published_time_is(
    server: NewsServer, journal: Journal
) -> None:
    old_warning = {
        "id": 4000,
        "title": "[거래] 유의 종목 지정 안내 (솔라나)",
        "listed_at": T0 - timedelta(days=20),  # found by the first poll after a start
    }
    server.serve(
        "/api/v1/announcements",
        Feed(upbit_notices([*NOTICES, old_warning]), "application/json"),
    )
    service = service_for(server, journal, Clock())
    try:
        await service.poll_once()
    finally:
        await service.aclose()

    warnings = service.notices("KRW-SOL", kinds=["warning", "delisting"])
    fresh = service.notices("KRW-SOL", kinds=["warning"], published_within=timedelta(hours=1))
    eth = service.notices("KRW-ETH", kinds=["warning", "delisting"])
    assert [s.item.title for s in warnings] == [old_warning["title"]]
    assert fresh == []
    assert eth == []
    assert [s.item.notice_kind for s in service.notices("KRW-ETH")] == ["suspension"]
    assert [
        s.item.title
        for s in service.notices("KRW-XRP", kinds=["warning"], published_within=timedelta(hours=1))
    ] == [NOTICES[0]["title"]]


async def test_run_polls_until_it_is_stopped(
    server: NewsServer,
) -> None:
    stop = asyncio.Event()
    batches: list[int] = []

    async def sink(batch: Sequence[ScoredNews]) -> None:
        batches.append(len(batch))
        stop.set()

    service = NewsService(
        [SourceConfig("rss", server.url("/feed/"))], sink=sink, poll_interval_s=3600
    )
    try:
        await asyncio.wait_for(service.run(stop), timeout=30)
    finally:
        await service.aclose()

    assert batches == [3]
    assert service.stats()["rss"].polls == 1
