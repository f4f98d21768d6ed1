"""The outcome job on a journal whose answers are known by construction (learning_journal)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from learning_journal import (
    FEE,
    HORIZON,
    HOURS,
    T0,
    bundled_candles,
    closes_by_market,
    scripted_decisions,
    scripted_journal,
    true_net,
)
from typer.testing import CliRunner

from app.cli import app
from app.outcomes import decision_outcomes, periodic_outcomes, record_outcomes, trade_outcomes
from evaluation.outcomes import CloseBook, window_end
from store.journal import Journal
from store.journal.trades import round_trips_from_fills

END = T0 + timedelta(hours=3)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return bundled_candles()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def journal(
    request: pytest.FixtureRequest, tmp_path: Path, candles: pd.DataFrame
) -> Iterator[Journal]:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    journal = scripted_journal(url, candles)
    yield journal
    journal.close()


def test_every_proposal_and_verdict_gets_its_known_outcome_from_the_journaled_closes(
    journal: Journal, candles: pd.DataFrame
) -> None:
    btc = closes_by_market(candles)["KRW-BTC"]

    summary = record_outcomes(journal, now=END, since=T0, fee_rate=FEE)

    ml = journal.list_outcomes(subject="ml")
    # proposals every 5 minutes (buy) and 5+2 (sell) over 3 hours, less those whose horizon
    # bar is past the last journaled close (the last 10 minutes have no close 10 minutes on)
    expected = [T0 + timedelta(minutes=m) for m in range(180 - HORIZON) if m % 5 in (0, 2)]
    assert [row["bar_ts"] for row in ml] == expected
    assert summary["outcomes_written"] == len(journal.list_outcomes())
    for row in ml:
        net = true_net(btc, row["bar_ts"], row["action"])
        assert row["net_return"] == pytest.approx(net)
        assert row["correct"] is (net > 0)
        assert row["window_end"] == row["bar_ts"] + timedelta(minutes=HORIZON + 1)
    for reviewer in ("groq", "ollama"):
        rows = journal.list_outcomes(subject=reviewer)
        hour0 = [r["correct"] for r in rows if r["bar_ts"] < T0 + timedelta(hours=1)]
        hour1 = [r["correct"] for r in rows if r["bar_ts"] >= T0 + timedelta(hours=1)]
        assert hour0 == [True] * 24  # the oracles
        assert hour1 == [False] * 24  # the anti-oracles
        assert all(r["bar_ts"] < T0 + timedelta(hours=2) for r in rows)  # hour 2: not asked


def test_candles_give_the_same_outcomes_as_the_journaled_closes(
    journal: Journal, candles: pd.DataFrame
) -> None:
    record_outcomes(journal, now=END + timedelta(hours=1), since=T0, candles=candles)

    ml = journal.list_outcomes(subject="ml")

    # with candles, the last proposals' horizons are known too (the candles go on)
    assert len(ml) == len([m for m in range(180) if m % 5 in (0, 2)])


def test_no_outcome_before_its_window_has_closed(journal: Journal) -> None:
    first = T0  # a buy proposal at minute 0, judged on the bar opened at minute 10

    record_outcomes(journal, now=window_end(first, HORIZON) - timedelta(seconds=1), since=T0)
    assert journal.list_outcomes() == []

    record_outcomes(journal, now=window_end(first, HORIZON), since=T0)
    assert [r["bar_ts"] for r in journal.list_outcomes(subject="ml")] == [first]


def test_no_outcome_reads_a_bar_after_its_decision_plus_horizon(candles: pd.DataFrame) -> None:
    decisions = [d for d in scripted_decisions(candles) if d["run_id"].endswith(("0", "5"))]
    clean = decision_outcomes(
        decisions,
        CloseBook.from_candles(candles),
        horizon_minutes=HORIZON,
        fee_rate=FEE,
        now=END + timedelta(hours=1),
    )
    assert len(clean) > 50
    rng = np.random.default_rng(3)
    for decision in decisions[::7]:
        last_allowed = pd.Timestamp(decision["bar_ts"]) + pd.Timedelta(minutes=HORIZON)
        poisoned = candles.copy()
        later = poisoned["ts"] > last_allowed
        # every later bar is a NaN or an absurd price (synthetic values, on purpose)
        poisoned.loc[later, "close"] = np.where(rng.random(int(later.sum())) < 0.5, np.nan, 1e15)
        again = decision_outcomes(
            [decision],
            CloseBook.from_candles(poisoned),
            horizon_minutes=HORIZON,
            fee_rate=FEE,
            now=END + timedelta(hours=1),
        )
        assert again == [r for r in clean if r["run_id"] == decision["run_id"]]


def test_a_closed_round_trip_gives_its_runs_the_realised_pnl_from_the_fills(
    journal: Journal,
) -> None:
    entry_run, exit_run = "learn-0000", "learn-0005"
    for identifier, run_id, side, price, minute in (
        ("o-buy", entry_run, "bid", "100000", 1),
        ("o-sell", exit_run, "ask", "101000", 6),
    ):
        journal.record_order(
            {
                "identifier": identifier,
                "run_id": run_id,
                "market": "KRW-BTC",
                "side": side,
                "ord_type": "limit",
                "state": "done",
            }
        )
        journal.record_fill(
            {
                "order_identifier": identifier,
                "market": "KRW-BTC",
                "side": side,
                "price": Decimal(price),
                "volume": Decimal("0.1"),
                "fee": Decimal("5"),
                "ts": T0 + timedelta(minutes=minute, seconds=5),
            }
        )

    record_outcomes(journal, now=END, since=T0)

    trades = journal.list_outcomes(subject="trade")
    # bought 0.1 at 100,000 (+5 fee), sold at 101,000 (-5 fee): 100 - 10 = 90 KRW
    assert [(t["run_id"], t["realised_pnl"], t["correct"]) for t in trades] == [
        (entry_run, Decimal("90.0"), True),
        (exit_run, Decimal("90.0"), True),
    ]
    trips = round_trips_from_fills(journal.fills_with_orders())
    assert trade_outcomes(trips, {entry_run: T0}, now=T0 + timedelta(minutes=6)) == []


def test_running_the_job_twice_writes_each_outcome_once(journal: Journal) -> None:
    first = record_outcomes(journal, now=END, since=T0)
    second = record_outcomes(journal, now=END, since=T0)

    assert first["outcomes_written"] > 0
    assert second["outcomes_written"] == 0


def test_lxa_outcomes_writes_the_known_outcomes_of_the_settings_journal(
    tmp_path: Path, candles: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'journal.db'}"
    scripted_journal(url, candles).close()
    monkeypatch.setenv("LXA_DATABASE_URL", url)
    monkeypatch.setenv("LXA_DATA_DIR", str(tmp_path))

    first = CliRunner().invoke(app, ["outcomes", "--since", T0.isoformat(), "--json"])
    again = CliRunner().invoke(app, ["outcomes", "--since", T0.isoformat(), "--json"])

    assert first.exit_code == 0, first.output
    written = json.loads(first.output)["outcomes_written"]
    with Journal.open(url) as journal:
        assert written == len(journal.list_outcomes()) > 0
    assert json.loads(again.output)["outcomes_written"] == 0


async def test_the_service_writes_outcomes_as_their_windows_close_and_survives_a_failed_run(
    candles: pd.DataFrame, tmp_path: Path
) -> None:
    journal = scripted_journal(f"sqlite:///{tmp_path / 'j.db'}", candles)
    clock = [T0 + timedelta(minutes=30)]  # half an hour in: only the first windows closed
    runs: list[dict[str, Any]] = []
    calls = 0
    real = journal.decisions_without_outcomes

    def flaky(**kwargs: Any) -> Any:  # the database away on the first run only
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database away")
        return real(**kwargs)

    journal.decisions_without_outcomes = flaky  # type: ignore[method-assign]
    async with periodic_outcomes(journal, every_s=0.05, clock=lambda: clock[0], on_run=runs.append):
        for _ in range(200):
            if runs:
                break
            await asyncio.sleep(0.02)
        early = {row["bar_ts"] for row in journal.list_outcomes()}
        clock[0] = T0 + timedelta(hours=HOURS, minutes=HORIZON + 2)  # every window closed
        seen = len(runs)
        for _ in range(200):
            if len(runs) > seen:
                break
            await asyncio.sleep(0.02)
    late = journal.list_outcomes()
    journal.close()

    assert calls >= 3 and runs  # the failed first run did not end the job
    assert early and max(early) <= T0 + timedelta(minutes=30 - HORIZON - 1)
    assert len(late) > len(early)
    assert len({(row["run_id"], row["subject"]) for row in late}) == len(late)
