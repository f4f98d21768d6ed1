"""News settings, `lxa news` as a user runs it, and the follow loop, against a local news server.

Headlines are SYNTHETIC; the payload formats are the real ones (tests/news_server.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from news_server import Feed, NewsServer, rss, upbit_notices
from pydantic import SecretStr

import app.news as app_news
from app.settings import Settings, SettingsError, load_settings
from news.service import NewsService, ScoredNews
from store.journal import Journal

LXA = [sys.executable, "-m", "app.cli"]
NOW = datetime.now(UTC).replace(microsecond=0)
ITEMS = [
    {
        "title": "Bitcoin surges past record as funds pile in",
        "link": "https://news.example.test/btc-record/",
        "published": NOW - timedelta(minutes=3),
    },
    {
        "title": "XRP tumbles after exchange delists it",
        "link": "https://news.example.test/xrp-delist/",
        "published": NOW - timedelta(minutes=8),
    },
]
NOTICES = [
    {
        "id": 6001,
        "title": "[거래] 유의 종목 지정 안내 (솔라나)",
        "listed_at": NOW - timedelta(minutes=1),
    }
]


def settings_from(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


# ---- settings --------------------------------------------------------------------------------


def test_default_sources_are_upbit_notices_and_english_and_korean_feeds() -> None:
    sources = settings_from().news_sources

    kinds = {s.name: s.kind for s in sources}
    assert kinds["upbit"] == "upbit_notices"
    assert {"coindesk", "cointelegraph", "decrypt", "blockmedia", "tokenpost"} <= set(kinds)
    assert {s.min_interval_s for s in sources if s.kind == "feed"} == {300.0}
    assert next(s for s in sources if s.name == "upbit").min_interval_s == 60.0
    assert "cryptopanic" not in kinds


def test_a_cryptopanic_key_adds_its_source_and_is_never_printed() -> None:
    settings = settings_from(news_cryptopanic_key=SecretStr("secret-key-123"))

    (cryptopanic,) = [s for s in settings.news_sources if s.kind == "cryptopanic"]
    assert cryptopanic.url.startswith("https://cryptopanic.com/api/v1/posts/")
    assert "secret-key-123" not in repr(settings)
    assert "secret-key-123" not in cryptopanic.url


def test_feeds_from_the_environment_infer_their_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LXA_NEWS_FEEDS",
        "mine=http://127.0.0.1:9/feed.xml, notices=http://127.0.0.1:9/api/v1/announcements?x=1,"
        "cp=https://cryptopanic.com/api/v1/posts/?public=true",
    )
    monkeypatch.setenv("LXA_NEWS_FEED_MIN_INTERVAL_S", "120")

    sources = load_settings(_env_file=None).news_sources

    assert [(s.name, s.kind, s.min_interval_s) for s in sources] == [
        ("mine", "feed", 120.0),
        ("notices", "upbit_notices", 60.0),
        ("cp", "cryptopanic", 120.0),
    ]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("LXA_NEWS_FEEDS", "no-equals-sign", "must be name=URL"),
        ("LXA_NEWS_FEEDS", "a=ftp://example.test/feed", "must be http"),
        ("LXA_NEWS_FEEDS", "a=https://x.test/1,a=https://x.test/2", "named twice: a"),
        ("LXA_NEWS_FEEDS", "Bad Name=https://x.test/1", "source name"),
        ("LXA_NEWS_POLL_INTERVAL_S", "1", "greater than or equal to 5"),
        ("LXA_NEWS_HALF_LIFE_MINUTES", "0", "greater than 0"),
    ],
)
def test_bad_news_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(SettingsError, match=variable) as raised:
        load_settings(_env_file=None)

    assert message in str(raised.value)


# ---- lxa news ----------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[NewsServer]:
    with NewsServer() as running:
        running.serve("/feed/", Feed(rss(ITEMS), etag='"e1"'))
        running.serve("/api/v1/announcements", Feed(upbit_notices(NOTICES), "application/json"))
        running.serve("/broken", Feed(b"<html>maintenance</html>", "text/html", status=503))
        yield running


def _env(tmp_path: Path, server: NewsServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env["LXA_DATA_DIR"] = str(tmp_path / "data")
    env["LXA_NEWS_FEEDS"] = ",".join(
        [
            f"wire={server.url('/feed/')}",
            f"upbit={server.url('/api/v1/announcements?os=web&page=1&per_page=20')}",
            f"broken={server.url('/broken')}",
        ]
    )
    return env


def test_lxa_news_json_prints_the_items_and_each_sources_state_and_stores_them(
    tmp_path: Path, server: NewsServer
) -> None:
    result = subprocess.run(
        [*LXA, "news", "--json", "--store"],
        env=_env(tmp_path, server),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    by_title = {item["title"]: item for item in payload["items"]}
    assert set(by_title) == {ITEMS[0]["title"], ITEMS[1]["title"], NOTICES[0]["title"]}
    assert by_title[ITEMS[1]["title"]]["coins"] == ["KRW-XRP"]
    assert by_title[ITEMS[1]["title"]]["scores"][0]["score"] < 0
    assert by_title[NOTICES[0]["title"]]["notice_kind"] == "warning"
    assert payload["sources"]["broken"]["errors"] == {"http": 1}
    assert payload["sources"]["wire"]["new_items"] == 2
    with Journal.open(f"sqlite:///{tmp_path / 'data' / 'journal.db'}") as journal:
        assert journal.count_news() == 3


def test_lxa_news_prints_a_table_and_names_the_failing_source(
    tmp_path: Path, server: NewsServer
) -> None:
    result = subprocess.run(
        [*LXA, "news", "--market", "krw-btc"],
        env={**_env(tmp_path, server), "COLUMNS": "200"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    assert "1 new item(s)" in result.stdout
    assert ITEMS[0]["title"] in result.stdout
    assert "BTC +" in result.stdout
    assert ITEMS[1]["title"] not in result.stdout
    assert "broken: 1 poll(s)" in result.stdout and "errors: http 1" in result.stdout
    assert not (tmp_path / "data" / "journal.db").exists()  # nothing stored without --store


async def test_following_polls_each_interval_and_hands_each_poll_on(server: NewsServer) -> None:
    settings = settings_from(news_feeds=[f"wire={server.url('/feed/')}"], news_poll_interval_s=30.0)
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    polls: list[int] = []

    def on_poll(batch: list[ScoredNews], service: NewsService) -> None:
        polls.append(len(batch))

    await app_news.poll_news(settings, on_poll=on_poll, follow=True, polls=3, wait=no_wait)

    assert polls == [2, 0, 0]
    assert waits == [30.0, 30.0]
    # The feed's 300 s floor: one request, the later polls were not due.
    assert len(server.requests("/feed/")) == 1


def test_lxa_news_exits_1_when_no_source_answers(tmp_path: Path, server: NewsServer) -> None:
    env = {**_env(tmp_path, server), "LXA_NEWS_FEEDS": f"broken={server.url('/broken')}"}

    result = subprocess.run(
        [*LXA, "news", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert "no news source answered" in result.stderr
    assert json.loads(result.stdout)["sources"]["broken"]["last_error"] == "http: HTTP 503"


# ---- two scorers in the journal: the LLM's first, the lexicon's after ------------------------


def test_the_journal_reads_each_items_first_score_as_the_live_index_does(tmp_path: Path) -> None:
    from app.engine.news import load_journal_news
    from news.items import NewsItem
    from news.scoring import CoinScore

    journal = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    seen = NOW - timedelta(minutes=10)
    item = NewsItem(
        source="wire",
        title="XRP validators schedule an emergency patch",
        link="https://news.example.test/xrp-patch",
        first_seen_at=seen,
        published_at=seen - timedelta(minutes=1),
        coins=("KRW-XRP",),
    )
    scored = ScoredNews(
        item,
        (
            CoinScore("KRW-XRP", -0.9, 1.0, "an unplanned patch", "groq:llama-3.1-8b-instant"),
            CoinScore("KRW-XRP", 0.2, 1.0, "lexicon: no scored words", "lexicon"),
        ),
    )
    journal.record_news(app_news.item_row(scored), app_news.score_rows(scored))
    half_life = timedelta(days=1000)  # no decay to speak of

    news = load_journal_news(
        journal, since=seen - timedelta(hours=1), until=NOW, half_life=half_life
    )
    first = app_news.index_from_journal(journal, ["KRW-XRP"], until=NOW, half_life=half_life)
    lexicon = app_news.index_from_journal(
        journal, ["KRW-XRP"], until=NOW, half_life=half_life, scorer="lexicon"
    )

    (headline,) = news.items("KRW-XRP", seen - timedelta(hours=1), NOW)  # once, not per scorer
    assert headline["scorer"] == "groq:llama-3.1-8b-instant" and headline["score"] == -0.9
    reading = news.reading("KRW-XRP", NOW)
    assert reading.items == 1 and reading.index == pytest.approx(-0.9, abs=1e-3)
    assert first.index_at("KRW-XRP", NOW).index == pytest.approx(-0.9, abs=1e-3)
    assert lexicon.index_at("KRW-XRP", NOW).index == pytest.approx(0.2, abs=1e-3)
    journal.close()
