"""The viewer's money pages in headless Chromium, at desktop and phone sizes, over a real replay.

A paper replay of the bundled candles, with a policy loose enough to trade (the bundled model
has no edge, so the default policy never does) and the rule-based reviewers, writes a journal
with round trips closed by the policy and by the stop-loss; the API and viewer stay up over it.
The browser checks that the home view's figures are the journal's, that every round trip is
on the trades page with its exit reason, that charts span the replayed bars only, that no
element is wider than a 390 px screen, that the Korean view has no English label from the
list below and that no console error occurs. Screenshots: `tests/web/artifacts/money/`.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from test_viewer_browser import CHROMIUM, DIST_INDEX, _free_port, _missing

from app.session import demo_settings, run_replay_session
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS
from ml.registry import latest_model_dir
from store.journal import Journal

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "money"
MINUTES = 300  # the first stop-loss of this policy comes 112 bars in
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}
PAGES = ["", "trades", "live", "runs", "charts", "prompts", "reviewers"]
# English labels that must not be left in the Korean view of the pages below.
ENGLISH_LABELS = [
    "Home",
    "Trades",
    "Equity",
    "Return",
    "Realised",
    "Unrealised",
    "Fees",
    "Drawdown",
    "Win rate",
    "Trading state",
    "since start",
    "today",
    "Market",
    "Exit reason",
    "Export CSV",
    "policy exit",
    "stop-loss",
    "exit signal",
    "closed",
    "Apply",
    "Reset",
    "buy-and-hold",
    "Watchdog",
    "Recent triggers",
    "source",
    "Paper trading",
]
# Reason codes and reviewer words that must not be left in the Korean runs and reviewers pages.
ENGLISH_CODES = [
    "agreed",
    "no_signal",
    "no_edge",
    "exit_signal",
    "min_hold",
    "ollama_disagreed",
    "groq_disagreed",
    "veto rate",
    "vetoed",
    "let through",
    "not asked",
    "Reviewers",
    "bar close",
]

# Elements that stick out of the viewport and are not inside a panel that scrolls them.
_TOO_WIDE = """() => {
  const width = document.documentElement.clientWidth;
  const scrolls = (el) => {
    for (let node = el.parentElement; node; node = node.parentElement) {
      const style = getComputedStyle(node);
      if (['auto', 'scroll', 'hidden'].includes(style.overflowX) && node !== document.body
          && node !== document.documentElement) return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.querySelectorAll('body *')) {
    const rect = el.getBoundingClientRect();
    if (rect.width === 0 || rect.height === 0) continue;
    if ((rect.right > width + 1 || rect.left < -1) && !scrolls(el)) {
      const where = `${Math.round(rect.left)}..${Math.round(rect.right)}`;
      out.push(`${el.tagName.toLowerCase()}.${el.className} ${where}`);
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, width, out: out.slice(0, 10)};
}"""


@dataclass
class Served:
    url: str = ""
    database_url: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    replayed: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A replay that traded, its API and viewer kept up until the tests end."""
    yield from replay_served(
        tmp_path_factory.mktemp("money-web"),
        MINUTES,
        policy_entry_margin_bps=-1000.0,
        policy_exit_margin_bps=-1000.0,
    )


def replay_served(data: Path, minutes: int, **policy: Any) -> Iterator[Served]:
    """Replay `minutes` bundled bars on paper with `policy`, then keep the API and viewer up."""
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    if not DIST_INDEX.is_file():
        _missing(f"{DIST_INDEX} is missing (cd web && npm ci && npm run build)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("the playwright package is not installed (pip install -e '.[dev]')")
    base = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data,
        model_dir=latest_model_dir(BUNDLED_MODELS),
        api_port=_free_port(),
        api_token="browser-test-token",  # type: ignore[arg-type]
        policy_reentry_pause_minutes=0,
        policy_max_entries_per_day=1440,
        **policy,
    )
    settings, session_id = demo_settings(base, resume=False)
    server = Served(database_url=settings.database_url)

    async def keep_serving() -> None:
        server.replayed.set()
        while not server.stop.is_set():
            await asyncio.sleep(0.05)

    def on_ready(url: str) -> None:
        server.url = url.rstrip("/")
        server.ready.set()

    def run() -> None:
        try:
            asyncio.run(
                run_replay_session(
                    settings,
                    candles_paths=[BUNDLED_CANDLES],
                    session_id=session_id,
                    account_path=data / "paper_account.json",
                    minutes=minutes,
                    pace_seconds=0.0,
                    serve=True,
                    keep_serving=keep_serving,
                    on_ready=on_ready,
                )
            )
        except Exception as exc:  # reported by the test, not lost in a thread
            server.error = exc
        finally:
            server.ready.set()
            server.replayed.set()

    thread = threading.Thread(target=run, name="money-session", daemon=True)
    thread.start()
    try:
        assert server.replayed.wait(180), "the replay did not finish"
        assert server.error is None, server.error
        yield server
    finally:
        server.stop.set()
        thread.join(30)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


def krw(value: Decimal) -> str:
    return f"{round(value):,}"


def signed_krw(value: Decimal) -> str:
    rounded = round(value)
    return f"{'+' if rounded > 0 else ''}{rounded:,}"


def journal_figures(database_url: str) -> dict[str, Any]:
    """What the journal says, computed here without the API."""
    with Journal.open(database_url) as journal:
        session = journal.latest_session_id()
        assert session is not None
        history = journal.equity_history(session)
        closed = journal.events_of_type(("position_closed",), limit=10_000)
        return {
            "start": Decimal(str(history[0]["account"]["equity"])),
            "equity": Decimal(str(history[-1]["account"]["equity"])),
            "first_bar": history[0]["bar_ts"],
            "last_bar": history[-1]["bar_ts"],
            "fees": journal.total_fees(),
            "trips": journal.round_trips(),
            "closed": closed,
        }


def _browse(viewport: dict[str, int]) -> Iterator[tuple[Any, list[str]]]:
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = browser.new_page(viewport=viewport)  # type: ignore[arg-type]
            page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
            page.on(
                "console",
                lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None,
            )
            yield page, errors
        finally:
            browser.close()


def test_home_and_trades_show_the_journals_money_at_desktop_size(
    served: Served, artifacts: Path
) -> None:
    from playwright.sync_api import expect

    figures = journal_figures(served.database_url)
    trips = figures["trips"]
    realised = sum((t["realised_pnl"] for t in trips), Decimal(0))
    closed = [t for t in trips if t["status"] == "closed"]
    wins = sum(1 for t in closed if t["realised_pnl"] > 0)
    assert closed and {t["exit_kind"] for t in closed} >= {"ml_exit", "stop_loss"}

    for page, errors in _browse(DESKTOP):
        page.goto(served.url + "/")
        money = page.get_by_test_id("home-money")
        expect(page.get_by_test_id("fig-equity-value")).to_have_text(f"₩{krw(figures['equity'])}")
        ret = (figures["equity"] / figures["start"] - 1) * 100
        expect(page.get_by_test_id("fig-return-value")).to_have_text(
            f"{'+' if ret > 0 else ''}{ret:.2f}%"
        )
        expect(page.get_by_test_id("fig-realised-value")).to_have_text(signed_krw(realised))
        expect(page.get_by_test_id("fig-fees-value")).to_have_text(krw(figures["fees"]))
        expect(page.get_by_test_id("fig-win-rate-value")).to_have_text(
            f"{wins / len(closed) * 100:.1f}%"
        )
        expect(page.get_by_test_id("fig-win-rate")).to_contain_text(f"{wins} / {len(closed)}")
        expect(page.get_by_test_id("home-state-words")).to_contain_text("unproven model")
        expect(money).to_be_visible()
        page.screenshot(path=str(artifacts / "desktop-home.png"), full_page=True)

        # Every round trip, with why it closed; each closed position's event is one of them.
        page.get_by_role("link", name="Trades", exact=True).click()
        rows = page.get_by_test_id("trade-row")
        expect(rows).to_have_count(len(trips))
        shown = {
            row.get_attribute("data-exit-order"): row.get_attribute("data-row-exit")
            for row in rows.all()
        }
        names = {"graph": "ml_exit", "stop_loss": "stop_loss", "take_profit": "take_profit"}
        for event in figures["closed"]:
            payload = event["payload"]
            assert shown[payload["identifier"]] == names[payload["reason"]]
        stop_row = page.locator("[data-testid=trade-row]:has([data-exit-kind=stop_loss])").first
        expect(stop_row).to_contain_text("stop-loss")
        policy_row = page.locator("[data-testid=trade-row]:has([data-exit-kind=ml_exit])").first
        expect(policy_row).to_contain_text("policy exit · exit signal")
        page.screenshot(path=str(artifacts / "desktop-trades.png"), full_page=True)
        # The filter and the CSV export.
        page.locator("select[name=exit_kind]").select_option("stop_loss")
        page.get_by_role("button", name="Apply").click()
        stops = sum(1 for t in closed if t["exit_kind"] == "stop_loss")
        expect(rows).to_have_count(stops)
        href = page.get_by_test_id("trades-csv").get_attribute("href")
        assert href == "/api/trades.csv?exit_kind=stop_loss"
        csv_text = page.request.get(served.url + href).text()
        assert len(csv_text.strip().splitlines()) == stops + 1

        # Charts on bar time: both axes span the replayed bars, not the wall clock.
        page.get_by_role("link", name="Charts", exact=True).click()
        for chart in ("equity-canvas", "price-canvas"):
            canvas = page.get_by_test_id(chart)
            expect(canvas).not_to_have_attribute("data-points", "0")
            low = datetime.fromisoformat(canvas.get_attribute("data-x-min") or "")
            high = datetime.fromisoformat(canvas.get_attribute("data-x-max") or "")
            assert low == figures["first_bar"].astimezone(UTC)
            assert high == figures["last_bar"].astimezone(UTC)
        expect(page.get_by_test_id("price-canvas")).to_have_attribute(
            "data-line-points", str(MINUTES)
        )
        page.screenshot(path=str(artifacts / "desktop-charts.png"), full_page=True)

        # The veto ledger: each reviewer's veto rate and returns, the agreement table, and
        # a plain warning that rule-based stand-ins answered (no LLM is configured here).
        ledger = page.request.get(served.url + "/api/reviewers").json()
        assert ledger["reviewers"]["groq"]["asked"] > 0
        page.get_by_role("link", name="Reviewers", exact=True).click()
        expect(page.get_by_test_id("reviewers-intro")).to_contain_text("earns its place")
        expect(page.get_by_test_id("reviewers-rule-based")).to_be_visible()
        for name, figures in ledger["reviewers"].items():
            rate = figures["veto_rate"]
            shown = "-" if rate is None else f"{rate * 100:.1f}%"
            expect(page.get_by_test_id(f"veto-rate-{name}")).to_have_text(shown)
            expect(page.get_by_test_id(f"vetoed-{name}")).to_contain_text(
                f"n={figures['vetoed_net_return']['n']}"
            )
        expect(page.locator("[data-testid=agreement-table] tbody tr")).to_have_count(
            len(ledger["agreement"])
        )
        page.screenshot(path=str(artifacts / "desktop-reviewers.png"), full_page=True)

        # Honest prompt editing: the rule-based reviewers read no prompt, so a proposal they
        # reviewed offers no replay and says what it would take.
        runs = page.request.get(served.url + "/api/runs?action=buy&limit=1").json()["runs"]
        assert runs and runs[0]["reviewer_labels"]["groq_check"] == "rule-based"
        run_id = runs[0]["run_id"]
        page.goto(f"{served.url}/#/runs/{run_id}")
        expect(page.get_by_test_id("run-id")).to_have_text(run_id)
        expect(page.get_by_test_id("replay-link")).to_have_count(0)
        expect(page.get_by_test_id("replay-why")).to_contain_text("No LLM ran")
        expect(page.get_by_test_id("confidence").first).to_have_text("100%")
        page.goto(f"{served.url}/#/prompts/groq_check/{run_id}")
        note = page.get_by_test_id("prompt-reviewer")
        expect(note).to_have_attribute("data-reviewer-kind", "rule-based")
        expect(note).to_contain_text("LXA_GROQ_API_KEY")
        expect(page.get_by_test_id("replay-run")).to_have_value(run_id)
        expect(page.get_by_test_id("replay-why")).to_contain_text("LXA_OLLAMA_HOST")
        expect(page.get_by_test_id("replay-button")).to_be_disabled()
        page.screenshot(path=str(artifacts / "desktop-prompt-rule-based.png"), full_page=True)
        assert errors == []


def test_every_page_fits_a_phone_and_reads_in_korean(served: Served, artifacts: Path) -> None:
    from playwright.sync_api import expect

    for page, errors in _browse(PHONE):
        page.goto(served.url + "/")
        expect(page.get_by_test_id("fig-equity-value")).not_to_have_text("")
        # The header collapses: the language switch and the connection stay on screen.
        for always in ("lang", "connection", "menu"):
            box = page.get_by_test_id(always).bounding_box()
            assert box is not None and box["x"] + box["width"] <= PHONE["width"], always
        for lang in ("en", "ko"):
            if lang == "ko":
                page.get_by_test_id("lang").click()
                expect(page.get_by_test_id("lang")).to_have_text("English")
            for name in PAGES:
                page.goto(f"{served.url}/#/{name}")
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(300)
                wide = page.evaluate(_TOO_WIDE)
                assert wide["scrollWidth"] <= PHONE["width"], (lang, name, wide)
                assert wide["out"] == [], (lang, name, wide)
                page.screenshot(
                    path=str(artifacts / f"phone-{lang}-{name or 'home'}.png"), full_page=True
                )
                if lang == "ko" and name in ("", "trades", "charts", "runs", "reviewers"):
                    text = page.locator("body").inner_text()
                    words = ENGLISH_LABELS + ENGLISH_CODES
                    left = [w for w in words if re.search(rf"\b{re.escape(w)}\b", text)]
                    assert left == [], (name, left)
        # The menu opens the tabs on a phone.
        page.get_by_test_id("menu").click()
        expect(page.get_by_role("link", name="거래 내역")).to_be_visible()
        page.screenshot(path=str(artifacts / "phone-ko-menu.png"))
        assert errors == []


def test_docs_render_with_the_network_blocked(served: Served, artifacts: Path) -> None:
    from playwright.sync_api import expect

    outside: list[str] = []

    def block(route: Any) -> None:
        outside.append(route.request.url)
        route.abort()

    for page, errors in _browse(DESKTOP):
        page.route(re.compile(r"^https?://(?!127\.0\.0\.1[:/])"), block)
        page.goto(served.url + "/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("AutoTrader-LXA")
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        page.screenshot(path=str(artifacts / "desktop-docs.png"))
        assert outside == []
        assert errors == []
