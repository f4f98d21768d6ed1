"""GET /api/summary and /api/trades over a journal a real replay wrote: the money first.

A paper replay of the bundled candles with a policy loose enough to trade (the bundled model
has no edge, so the default policy never does) writes the journal; the figures the API
computes must equal the journal's own: equity against the start is realised plus unrealised
P&L, the fees are the fills', each `position_closed` event is a closed trip with its reason.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from app.session import demo_settings, run_replay_session
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS
from ml.registry import latest_model_dir
from store.bus import InProcessBus
from store.journal import Journal

MINUTES = 300  # the first stop-loss of this policy comes 112 bars in


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Journal, Any]]:
    data = tmp_path_factory.mktemp("money")
    base = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data,
        model_dir=latest_model_dir(BUNDLED_MODELS),
        policy_entry_margin_bps=-1000.0,
        policy_exit_margin_bps=-1000.0,
        policy_reentry_pause_minutes=0,
        policy_max_entries_per_day=1440,
    )
    settings, session_id = demo_settings(base, resume=False)
    summary = asyncio.run(
        run_replay_session(
            settings,
            candles_paths=[BUNDLED_CANDLES],
            session_id=session_id,
            account_path=data / "paper_account.json",
            minutes=MINUTES,
            pace_seconds=0.0,
        )
    )
    with Journal.open(settings.database_url) as journal:
        yield journal, summary


def client(journal: Journal) -> TestClient:
    return TestClient(create_app(journal=journal, bus=InProcessBus()))


def test_the_summary_equals_the_journals_own_figures(replayed: tuple[Journal, Any]) -> None:
    journal, session = replayed
    body = client(journal).get("/api/summary").json()

    history = journal.equity_history(session.session_id)
    start = Decimal(str(history[0]["account"]["equity"]))
    equity = Decimal(str(history[-1]["account"]["equity"]))
    assert Decimal(body["start_equity"]) == start
    assert Decimal(body["equity"]) == equity
    assert body["source"] == "journal"
    assert body["return_pct"] == pytest.approx(float((equity / start - 1) * 100))
    assert Decimal(body["fees"]) == journal.total_fees() > 0
    # Every KRW the account gained or lost is realised or unrealised P&L (fees included).
    pnl = Decimal(body["realised_pnl"]) + Decimal(body["unrealised_pnl"])
    assert pnl == pytest.approx(equity - start, abs=Decimal("0.05"))
    closed_events = journal.events_of_type(("position_closed",), limit=10_000)
    assert body["since_start"]["trades_closed"] == len(closed_events) > 0
    wins = sum(1 for e in closed_events if e["payload"]["return"] > 0)
    assert body["since_start"]["wins"] == wins
    # Buy-and-hold over the same bars, as the replay's own summary measured it.
    assert float(body["buy_and_hold_equity"]) == pytest.approx(
        session.buy_and_hold_equity, abs=0.01
    )
    assert body["vs_buy_and_hold_pct"] == pytest.approx(
        body["return_pct"] - body["buy_and_hold_return_pct"]
    )
    assert body["cash_return_pct"] == 0.0
    assert 0.0 <= body["drawdown_pct"] <= body["since_start"]["max_drawdown_pct"]
    assert body["today_date"] == "2025-09-19"
    assert body["state"]["code"] == "unproven_model_paper"
    assert "no evidence of an edge" in body["state"]["reason"]


def test_every_closed_position_is_a_trade_with_its_exit_reason(
    replayed: tuple[Journal, Any],
) -> None:
    journal, _ = replayed
    api = client(journal)
    body = api.get("/api/trades").json()

    closed = [t for t in body["trades"] if t["status"] == "closed"]
    events = journal.events_of_type(("position_closed",), limit=10_000)
    assert {t["exit_order"] for t in closed} == {e["payload"]["identifier"] for e in events}
    expected = {"graph": "ml_exit", "stop_loss": "stop_loss", "take_profit": "take_profit"}
    by_order = {t["exit_order"]: t for t in closed}
    for event in events:
        trip = by_order[event["payload"]["identifier"]]
        assert trip["exit_kind"] == expected[event["payload"]["reason"]]
        assert trip["closed_event_id"] == event["id"]
        # The event's return is measured as the ledger does (proceeds after fee over cost).
        assert trip["return_pct"] == pytest.approx(event["payload"]["return"] * 100, abs=0.02)
    assert {t["exit_kind"] for t in closed} >= {"ml_exit", "stop_loss"}
    for trip in closed:
        if trip["exit_kind"] == "ml_exit":
            assert trip["exit_run_id"] and trip["exit_detail"]
    # Newest first; the filters; the CSV holds the same trips.
    exits = [t["exit_ts"] or t["entry_ts"] for t in body["trades"]]
    assert exits == sorted(exits, reverse=True)
    stops = api.get("/api/trades", params={"exit_kind": "stop_loss"}).json()
    assert stops["total"] == sum(1 for t in closed if t["exit_kind"] == "stop_loss")
    sol = api.get("/api/trades", params={"market": "KRW-SOL"}).json()
    assert {t["market"] for t in sol["trades"]} <= {"KRW-SOL"}
    late = api.get("/api/trades", params={"since": "2025-09-19T04:00:00Z"}).json()
    assert all(t["exit_ts"] >= "2025-09-19T04:00:00Z" for t in late["trades"] if t["exit_ts"])
    exported = api.get("/api/trades.csv", params={"exit_kind": "stop_loss"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["exit_order"] for r in rows] == [t["exit_order"] for t in stops["trades"]]
    assert api.get("/api/trades", params={"exit_kind": "nope"}).status_code == 422


def test_prices_cover_the_whole_session_downsampled(replayed: tuple[Journal, Any]) -> None:
    journal, _ = replayed
    api = client(journal)
    full = api.get("/api/prices", params={"market": "KRW-BTC"}).json()
    thin = api.get("/api/prices", params={"market": "KRW-BTC", "max_points": 50}).json()

    assert full["bars"] == len(full["points"]) == MINUTES
    assert thin["bars"] == MINUTES and len(thin["points"]) <= 50
    assert thin["points"][0]["ts"] == full["points"][0]["ts"]
    assert thin["points"][-1]["close"] == full["points"][-1]["close"]
    assert sum(p["bars"] for p in thin["points"]) == MINUTES
    closes = [Decimal(p["close"]) for p in full["points"]]
    assert max(Decimal(p["high"]) for p in thin["points"]) == max(closes)
    assert min(Decimal(p["low"]) for p in thin["points"]) == min(closes)


def test_the_state_says_halted_in_words(tmp_path: Path) -> None:
    with Journal.open(f"sqlite:///{tmp_path / 'j.db'}") as journal:
        journal.write_trading_control("halted", "checking the exchange", by="cli")
        body = client(journal).get("/api/summary").json()
    assert body["state"]["code"] == "halted"
    assert body["state"]["reason"] == "checking the exchange"
    assert body["equity"] is None and body["note"]
    assert body["since_start"]["trades_closed"] == 0
