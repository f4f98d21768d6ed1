"""The trader's tools in headless Chromium over one demo: candles, zoom, sell now, Korean.

A paper replay of the bundled candles with a policy that enters at once and never leaves by
itself (so coins are held when it ends) stays served for the module. The browser checks that
the price chart draws candles with volume over the replayed bars only, entries on the same
axis, that zooming (range buttons, dragging, the wheel) asks the server for finer candles and
zooming out gives the whole session back; that "sell now" asks first and then sells through
the engine, the trip closing as the operator's exit; that nothing is wider than a 390 px
screen; that the Korean view translates live events, the policy's and the rule-based
reviewers' sentences and the node JSON's keys. Screenshots: `tests/web/artifacts/trader/`.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_money_browser import _TOO_WIDE, DESKTOP, PHONE, Served, _browse, replay_served

from store.journal import Journal

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "trader"
MINUTES = 90  # both entries (bars 10 and 12) are still held; the first stop comes at 106
TOKEN = "browser-test-token"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A replay that bought and still holds, its API and viewer up until the module ends."""
    yield from replay_served(
        tmp_path_factory.mktemp("trader-web"),
        MINUTES,
        policy_entry_margin_bps=-1000.0,
        policy_exit_margin_bps=1000.0,
    )


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def _bars(database_url: str) -> tuple[datetime, datetime]:
    with Journal.open(database_url) as journal:
        session = journal.latest_session_id()
        assert session is not None
        first, last = journal.first_bar_ts(session), journal.last_bar_ts(session)
        assert first is not None and last is not None
        return first.astimezone(UTC), last.astimezone(UTC)


def _axis(page: object) -> tuple[datetime, datetime]:
    chart = page.get_by_test_id("price-canvas")  # type: ignore[attr-defined]
    low = datetime.fromisoformat(chart.get_attribute("data-x-min") or "")
    high = datetime.fromisoformat(chart.get_attribute("data-x-max") or "")
    return low, high


def test_candles_with_volume_span_the_session_and_zoom_asks_for_finer_ones(
    served: Served, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    first, last = _bars(served.database_url)
    for page, errors in _browse(DESKTOP):
        page.goto(served.url + "/#/charts")
        chart = page.get_by_test_id("price-canvas")
        expect(chart).to_have_attribute("data-candles", str(MINUTES))
        expect(chart).to_have_attribute("data-bucket-minutes", "1")
        expect(chart).to_have_attribute("data-volume", "yes")
        assert _axis(page) == (first, last)
        # Entries on the same axis: each marker lies within the replayed bars.
        assert int(chart.get_attribute("data-points") or 0) > MINUTES
        page.screenshot(path=str(artifacts / "desktop-candles.png"), full_page=True)

        # A range button: the last hour, asked again of the server.
        page.locator("[data-range='1h']").click()
        expect(chart).to_have_attribute("data-zoomed", "yes")
        expect(chart).to_have_attribute("data-candles", "61")
        assert _axis(page) == (last - timedelta(minutes=60), last)

        # Back to the whole session, then drag across the middle of the chart.
        page.locator("[data-range='all']").click()
        expect(chart).to_have_attribute("data-zoomed", "no")
        box = chart.bounding_box()
        assert box is not None
        y = box["y"] + box["height"] * 0.4
        page.mouse.move(box["x"] + box["width"] * 0.35, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=5)
        page.mouse.up()
        expect(chart).to_have_attribute("data-zoomed", "yes")
        low, high = _axis(page)
        assert first < low < high < last
        expect(chart).not_to_have_attribute("data-candles", str(MINUTES))
        page.screenshot(path=str(artifacts / "desktop-candles-zoomed.png"), full_page=True)
        # The wheel zooms back out until the whole session shows again.
        page.mouse.move(box["x"] + box["width"] * 0.5, y)
        for _ in range(12):
            page.mouse.wheel(0, 300)
            page.wait_for_timeout(60)
        expect(chart).to_have_attribute("data-zoomed", "no")
        assert _axis(page) == (first, last)
        assert errors == []


def test_sell_now_asks_first_then_the_trip_closes_as_the_operators(
    served: Served, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    held = served_positions(served)
    assert held, "the replay ended holding nothing"
    market = held[0]
    for page, errors in _browse(DESKTOP):
        page.add_init_script(f"localStorage.setItem('lxa-token', '{TOKEN}')")
        # Live lists the positions with the button too; Home, the money first, is where we sell.
        page.goto(served.url + "/#/live")
        expect(page.get_by_test_id(f"sell-{market}")).to_be_visible()
        page.goto(served.url + "/")
        cell = page.get_by_test_id(f"sell-{market}")
        cell.get_by_test_id("sell-now").click()
        dialog = cell.get_by_test_id("sell-confirm")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text(market)
        page.screenshot(path=str(artifacts / "desktop-sell-confirm.png"), full_page=True)
        # Cancel changes nothing.
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
        assert market in served_positions(served)

        cell.get_by_test_id("sell-now").click()
        cell.get_by_test_id("sell-confirm-yes").click()
        notice = page.get_by_test_id("sold-notice")
        expect(notice).to_contain_text(market)
        expect(notice).to_contain_text("no new entry before")
        expect(page.get_by_test_id(f"sell-{market}")).to_have_count(0)
        assert market not in served_positions(served)
        page.screenshot(path=str(artifacts / "desktop-sold.png"), full_page=True)

        trades = page.request.get(f"{served.url}/api/trades?market={market}").json()["trades"]
        sold = [t for t in trades if t["status"] == "closed" and t["exit_kind"] == "flatten"]
        assert len(sold) == 1
        page.goto(served.url + "/#/trades")
        row = page.locator(f"[data-exit-order='{sold[0]['exit_order']}']")
        expect(row).to_contain_text("operator")
        assert errors == []


def served_positions(served: Served) -> list[str]:
    with Journal.open(served.database_url) as journal:
        return sorted(journal.positions())


def test_phone_pages_fit_and_korean_reads_the_engines_sentences(
    served: Served, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    for page, errors in _browse(PHONE):
        page.add_init_script(
            f"localStorage.setItem('lxa-token', '{TOKEN}'); localStorage.setItem('lxa-lang', 'ko')"
        )
        page.goto(served.url + "/")
        if page.get_by_test_id("lang").inner_text() != "English":
            page.get_by_test_id("lang").click()
        for name in ("", "charts", "live"):
            page.goto(f"{served.url}/#/{name}")
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(300)
            wide = page.evaluate(_TOO_WIDE)
            assert wide["scrollWidth"] <= PHONE["width"], (name, wide)
            assert wide["out"] == [], (name, wide)
            page.screenshot(path=str(artifacts / f"phone-ko-{name or 'home'}.png"), full_page=True)
        # Live events: their types in Korean.
        page.request.post(
            served.url + "/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}, data={}
        )
        types = page.locator(".events .etype")
        expect(types.first).to_be_visible()
        shown = types.all_inner_texts()
        assert not [text for text in shown if re.fullmatch(r"[a-z_]+", text)], shown

        # A run the rule-based reviewers checked: the policy's and their sentences in Korean,
        # the node JSON's keys glossed.
        runs = page.request.get(served.url + "/api/runs?action=buy&limit=1").json()["runs"]
        page.goto(f"{served.url}/#/runs/{runs[0]['run_id']}")
        policy = page.get_by_test_id("run-policy")
        expect(policy).to_contain_text("기대 순수익")
        reasoning = page.get_by_test_id("verdict-reasoning").first
        expect(reasoning).to_contain_text("규칙 기반")
        assert "rule-based" not in page.get_by_test_id("reasoning").inner_text()
        expect(page.get_by_test_id("sizing-reasoning")).to_contain_text("규칙 기반 사이징")
        node_io = page.get_by_test_id("node-io")
        expect(node_io).to_contain_text("proposal · 제안")
        page.screenshot(path=str(artifacts / "phone-ko-run.png"), full_page=True)
        wide = page.evaluate(_TOO_WIDE)
        assert wide["out"] == [], wide

        # The prompt page says what the engine is configured with, not only what a run saw.
        page.goto(f"{served.url}/#/prompts/groq_check")
        note = page.get_by_test_id("prompt-reviewer")
        expect(note).to_have_attribute("data-reviewer-kind", "rule-based")
        expect(note).to_contain_text("현재 엔진 설정")
        assert errors == []
