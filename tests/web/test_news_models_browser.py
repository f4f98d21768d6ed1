"""News and the learning loop in headless Chromium, over one short demo replay.

The replay (rule-based reviewers, a policy that enters at once) stays served for the module,
with a model registry beside it (a champion and a challenger it refused) and, written into
its journal once it ends, three news items (one an Upbit warning notice), a decision whose
reviewers were shown news, and a news watchdog trigger. The browser checks that the News page
lists the items with scores coloured by sign, notice badges and KST times, filters by coin and
shows a live `news` event as it arrives; that a run shows the news its reviewers were shown;
that the triggers table shows a news trigger's headline; that the Models page shows the
versions, the refused promotion with its figures and the reviewers' record as the API gives
it; that the Korean view and a 390 px screen hold. Screenshots: `tests/web/artifacts/news/`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from test_money_browser import _TOO_WIDE, DESKTOP, PHONE, Served, _browse, replay_served

import app.session
from app.wiring import BUNDLED_MODELS
from ml.champion import ModelRegistry
from ml.registry import latest_model_dir
from store.journal import Journal

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "news"
MINUTES = 40
KST_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$")
REFUSED = (
    "did not beat the champion: -1.250% (4 entries) against champion-b's +0.300% (2 entries) "
    "after fees on 2025-09-18T00:00:00+00:00 .. 2025-09-20T00:00:00+00:00"
)
# English labels that must not be left in the Korean view of the News and Models pages.
ENGLISH_LABELS = [
    "Headline",
    "First seen",
    "Scores",
    "Sources",
    "warning",
    "Model versions",
    "Champion",
    "Challenger",
    "Promotion decisions",
    "not promoted",
    "did not beat",
    "Accuracy",
    "right",
    "wrong",
]


class Captured:
    """The replay's bus and event loop, so a test can publish a live event on them."""

    bus: Any = None
    loop: asyncio.AbstractEventLoop | None = None

    def publish(self, event: dict[str, Any]) -> None:
        assert self.loop is not None and self.bus is not None
        self.loop.call_soon_threadsafe(self.bus.publish, event)


def _registry(models_dir: Path) -> None:
    """`champion-b` serving, `challenger-c` judged on the newest window and refused."""
    bundled = latest_model_dir(BUNDLED_MODELS)
    assert bundled is not None
    meta = json.loads((bundled / "meta.json").read_text())
    for model_id, created in (
        ("champion-b", "2026-02-01T00:00:00Z"),
        ("challenger-c", "2026-03-01T00:00:00Z"),
    ):
        path = models_dir / model_id
        path.mkdir(parents=True)
        (path / "meta.json").write_text(
            json.dumps({**meta, "model_id": model_id, "created_at": created})
        )
    registry = ModelRegistry(models_dir)
    registry.promote("champion-b", by="operator", reason="promoted by hand")
    window = {"first_ts": "2025-09-18T00:00:00+00:00", "last_ts": "2025-09-20T00:00:00+00:00"}
    registry.record(
        "challenger-c",
        "candidate",
        REFUSED,
        {
            "promote": False,
            "reason": REFUSED,
            "champion": {"window": window, "total_return": 0.003, "entries": 2},
            "challenger": {"window": window, "total_return": -0.0125, "entries": 4},
        },
    )


@pytest.fixture(scope="module")
def captured() -> Captured:
    return Captured()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, captured: Captured) -> Iterator[Served]:
    """A short replay with a registry beside it, served until the module ends."""
    data = tmp_path_factory.mktemp("news-web")
    _registry(data / "models")
    real = app.session.open_services

    @contextlib.asynccontextmanager
    async def capturing(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        async with real(*args, **kwargs) as services:
            captured.bus, captured.loop = services.bus, asyncio.get_running_loop()
            yield services

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app.session, "open_services", capturing)
        yield from replay_served(
            data,
            MINUTES,
            models_dir=data / "models",
            policy_entry_margin_bps=-1000.0,
            policy_exit_margin_bps=1000.0,
        )


def _item(journal: Journal, title: str, at: datetime, scores: dict[str, float], **kw: Any) -> None:
    link = f"https://news.example/{abs(hash(title))}"
    journal.record_news(
        {
            "link_key": link,
            "title_key": title.lower(),
            "source": kw.get("source", "coindesk"),
            "kind": kw.get("kind", "news"),
            "notice_kind": kw.get("notice_kind"),
            "title": title,
            "link": link,
            "published_at": at - timedelta(minutes=3),
            "first_seen_at": at,
            "coins": list(scores),
        },
        [
            {
                "market": market,
                "scorer": "lexicon",
                "score": score,
                "relevance": 1.0,
                "reason": "lexicon: hack" if score < 0 else "lexicon: rally",
                "scored_at": at,
            }
            for market, score in scores.items()
        ],
    )


@pytest.fixture(scope="module")
def written(served: Served) -> dict[str, Any]:
    """News, a decision that was shown news and a news trigger, in the demo's journal."""
    with Journal.open(served.database_url) as journal:
        session = journal.latest_session_id()
        assert session is not None
        last = journal.last_bar_ts(session)
        assert last is not None
        at = last.astimezone(UTC)
        _item(
            journal, "Bitcoin rallies on ETF inflows", at - timedelta(minutes=20), {"KRW-BTC": 0.6}
        )
        _item(
            journal,
            "Exchange hacked: BTC and ETH fall",
            at - timedelta(minutes=10),
            {"KRW-BTC": -0.7, "KRW-ETH": -0.5},
        )
        notice = "[거래유의] 리플(XRP) 유의 종목 지정"
        _item(
            journal, notice, at - timedelta(minutes=5), {"KRW-XRP": -1.0},
            source="upbit-notices", kind="notice", notice_kind="warning",
        )  # fmt: skip
        shown = {
            "title": "Exchange hacked: BTC and ETH fall",
            "source": "coindesk",
            "first_seen_at": (at - timedelta(minutes=10)).isoformat(),
            "score": -0.7,
            "relevance": 1.0,
            "reason": "lexicon: hack",
        }
        journal.record_decision(
            {
                "run_id": "news-shown-run",
                "session_id": session,
                "bar_ts": at,
                "created_at": at + timedelta(seconds=2),
                "trigger": "manual",
                "action": "hold",
                "market": None,
                "reason": "no_signal",
                "reviewer_labels": {"groq_check": None, "ollama_check": None, "sizing": None},
                "nodes": {
                    "input": {
                        "closes": {"KRW-BTC": 1.0},
                        "news": {"KRW-BTC": [shown], "KRW-ETH": []},
                    },
                    "ml_signal": {"proposal": {"action": "hold", "market": None}},
                },
                "ml": {},
                "verdicts": {"groq": None, "ollama": None},
                "sizing": None,
                "duration_ms": 1.0,
            }
        )
        journal.record_event(
            None,
            "watchdog_trigger",
            {
                "market": "KRW-XRP",
                "detector": "news",
                "price": None,
                "details": {
                    "notice": "warning",
                    "title": "[거래유의] 리플(XRP) 유의 종목 지정",
                    "link": "https://upbit.example/notice/1",
                    "source": "upbit-notices",
                    "item_score": -1.0,
                    "reason": "lexicon: 유의",
                },
            },
            datetime.now(UTC),
        )
    return {"last": at}


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def test_news_page_lists_items_by_coin_and_shows_a_live_one_as_it_arrives(
    served: Served, written: dict[str, Any], captured: Captured, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    for page, errors in _browse(DESKTOP):
        page.goto(served.url + "/#/news")
        rows = page.get_by_test_id("news-row")
        expect(rows).to_have_count(3)
        first = rows.first  # newest first: the warning notice
        expect(first.get_by_test_id("notice-badge")).to_have_attribute("data-notice", "warning")
        expect(first).to_contain_text("upbit-notices")
        assert KST_TIME.match(first.locator("td").first.inner_text())
        hack = rows.nth(1)
        expect(hack.locator(".score.bad")).to_have_count(2)
        expect(rows.nth(2).locator(".score.ok")).to_have_text("KRW-BTC +0.60")
        expect(page.get_by_test_id("no-news-service")).to_be_visible()  # a replay polls nothing

        page.get_by_test_id("news-market").select_option("KRW-XRP")
        expect(rows).to_have_count(1)
        page.get_by_test_id("news-market").select_option("")
        expect(rows).to_have_count(3)
        expect(page.get_by_test_id("connection")).to_have_class(re.compile(r"\bon\b"))

        captured.publish(
            {
                "type": "news",
                "source": "coindesk",
                "kind": "news",
                "notice_kind": None,
                "title": "Live: Solana network halts",
                "link": "https://news.example/live-sol",
                "published_at": None,
                "first_seen_at": (written["last"] + timedelta(minutes=1)).isoformat(),
                "coins": ["KRW-SOL"],
                "scores": [
                    {
                        "market": "KRW-SOL",
                        "score": -0.8,
                        "relevance": 1.0,
                        "reason": "lexicon: halt",
                        "scorer": "lexicon",
                    }
                ],
            }
        )
        expect(rows).to_have_count(4)
        expect(rows.first).to_have_attribute("data-link", "https://news.example/live-sol")
        expect(rows.first.locator(".score.bad")).to_have_text("KRW-SOL -0.80")
        page.screenshot(path=str(artifacts / "desktop-news.png"), full_page=True)

        # A run: the news its reviewers were shown, under the inputs.
        page.goto(served.url + "/#/runs/news-shown-run")
        shown = page.get_by_test_id("shown-news")
        expect(shown).to_contain_text("Exchange hacked: BTC and ETH fall")
        expect(shown.locator(".score.bad")).to_have_text("-0.70")

        # The news page opened for one coin (the charts' link).
        page.goto(served.url + "/#/news/KRW-XRP")
        expect(rows).to_have_count(1)
        expect(page.get_by_test_id("news-market")).to_have_value("KRW-XRP")

        # The charts: the shown coin's latest news beside its candles.
        page.goto(served.url + "/#/charts")
        page.get_by_label("Market").first.select_option("KRW-ETH")
        coin = page.get_by_test_id("coin-news")
        expect(coin).to_contain_text("KRW-ETH")
        expect(coin.get_by_test_id("news-row")).to_have_count(1)
        expect(coin.locator(".score.bad")).to_have_text(["KRW-BTC -0.70", "KRW-ETH -0.50"])

        # The triggers table: a news trigger's headline with its notice.
        headline = page.get_by_test_id("trigger-headline").first
        expect(headline).to_contain_text("리플(XRP) 유의 종목 지정")
        expect(headline.get_by_test_id("notice-badge")).to_have_text("warning")
        assert errors == []


def test_models_page_shows_versions_the_refused_promotion_and_the_record(
    served: Served, written: dict[str, Any], artifacts: Path
) -> None:
    from playwright.sync_api import expect

    for page, errors in _browse(DESKTOP):
        record = page.request.get(served.url + "/api/reviewers/record?days=30").json()
        page.goto(served.url + "/#/models")
        expect(page.get_by_test_id("champion")).to_contain_text("champion-b")
        versions = page.get_by_test_id("model-versions")
        expect(versions.locator("tr[data-model]")).to_have_count(2)
        expect(versions.locator("tr[data-model='champion-b']")).to_have_attribute(
            "data-status", "champion"
        )
        refused = page.get_by_test_id("promotion-decisions").locator(
            "tr[data-model='challenger-c']"
        )
        expect(refused).to_have_attribute("data-promote", "false")
        expect(refused).to_contain_text("-1.250%")
        expect(refused).to_contain_text("+0.300%")
        expect(refused).to_contain_text("-1.550%")  # the challenger's shortfall
        groq = record["totals"]["groq"]
        row = page.get_by_test_id("record-totals").locator("tr[data-reviewer='groq']")
        expect(row).to_contain_text(str(groq["right"]))
        shown = "-" if groq["accuracy"] is None else f"{round(groq['accuracy'] * 100)}%"
        expect(page.get_by_test_id("accuracy-groq")).to_have_text(shown)
        page.screenshot(path=str(artifacts / "desktop-models.png"), full_page=True)
        assert errors == []


def test_news_and_models_fit_a_phone_and_read_in_korean(
    served: Served, written: dict[str, Any], artifacts: Path
) -> None:
    from playwright.sync_api import expect

    for page, errors in _browse(PHONE):
        page.add_init_script("localStorage.setItem('lxa-lang', 'ko')")
        for name in ("news", "models"):
            page.goto(f"{served.url}/#/{name}")
            page.wait_for_load_state("networkidle")
            expect(page.get_by_test_id(name)).to_be_visible()
            wide = page.evaluate(_TOO_WIDE)
            assert wide["scrollWidth"] <= PHONE["width"], (name, wide)
            assert wide["out"] == [], (name, wide)
            text = page.locator("main").inner_text()
            left = [label for label in ENGLISH_LABELS if label in text]
            assert left == [], (name, left)
            page.screenshot(path=str(artifacts / f"phone-ko-{name}.png"), full_page=True)
        page.goto(f"{served.url}/#/news")
        expect(page.get_by_test_id("notice-badge").first).to_have_text("유의 종목")
        page.goto(f"{served.url}/#/models")
        expect(page.get_by_test_id("promotion-decisions")).to_contain_text("챔피언을 이기지 못함")
        assert errors == []
