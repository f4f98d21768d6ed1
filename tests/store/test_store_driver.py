"""The per-bar journal writes that go to SQLite's driver directly store what Core stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from store.journal import Journal

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
TABLES = ("decisions", "llm_calls", "events")


@pytest.fixture
def journals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Journal, Journal]]:
    """A journal on the driver path and one held to SQLAlchemy Core, on separate files."""
    driver = Journal.open(f"sqlite:///{tmp_path / 'driver.db'}")
    with monkeypatch.context() as patch:
        patch.setattr("store.journal.base.supports", lambda engine: False)
        core = Journal.open(f"sqlite:///{tmp_path / 'core.db'}")
    try:
        yield driver, core
    finally:
        driver.close()
        core.close()


def _run(run_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    decision = {
        "run_id": run_id,
        "session_id": "s",
        "bar_ts": T0,
        "created_at": T0 + timedelta(seconds=1),
        "trigger": "bar",
        "action": "buy",
        "market": "KRW-BTC",
        "reason": "agreed",
        "reviewer_labels": {"groq_check": "llm-off", "sizing": None},
        "nodes": {"input": {"krw": Decimal("1000000.50"), "closes": (1.5, float("nan"))}},
        "ml": {"features": {"KRW-BTC": {"rsi_14": 41.5, "spread_bps": None, "x": 1e-05}}},
        "verdicts": {"groq": {"verdict": "buy"}},
        "sizing": None,
        "duration_ms": 1.25,
    }
    call = {
        "node": "groq_check",
        "provider": "llm-off",
        "model": "llm-off",
        "prompt_ref": None,
        "request": {"system": None},
        "response": {"verdict": "buy", "confidence": float("inf")},
        "verdict": "buy",
        "latency_ms": 0.5,
        "input_tokens": None,
        "output_tokens": None,
        "cached": False,
        "attempts": None,
        "created_at": T0,
        "error": None,
    }
    events = [
        {"type": "proposal", "payload": {"signals": {"KRW-BTC": 0.1}}, "ts": T0},
        {"type": "decision", "payload": {"action": "buy", "when": T0}, "ts": T0},
    ]
    return decision, [call], events


def _stored(journal: Journal) -> dict[str, list[tuple[Any, ...]]]:
    with journal.engine.connect() as connection:
        return {
            table: [
                tuple(row)
                for row in connection.execute(sa.text(f"SELECT * FROM {table} ORDER BY rowid"))
            ]
            for table in TABLES
        }


def test_runs_and_events_are_stored_as_core_stores_them(
    journals: tuple[Journal, Journal],
) -> None:
    driver, core = journals
    results = []
    for journal in (driver, core):
        ids = [journal.record_event("r-1", "run_started", {"trigger": "bar"}, T0)]
        ids += journal.record_run(*_run("r-1"))
        ids.append(journal.record_event(None, "odd", {"nan": float("nan")}, T0))
        results.append((ids, journal.get_decision("r-1")))

    assert results[0] == results[1]
    assert results[0][0] == [1, 2, 3, 4]
    assert _stored(driver) == _stored(core)


def test_the_control_row_reads_as_core_reads_it(
    journals: tuple[Journal, Journal], monkeypatch: pytest.MonkeyPatch
) -> None:
    driver, _ = journals
    monkeypatch.setattr("store.journal.base.supports", lambda engine: False)
    core_reader = Journal(driver.engine)  # the same database, read through Core
    unwritten = (driver.read_trading_control(), core_reader.read_trading_control())

    driver.write_trading_control("halted", "operator", flatten=True, by="cli")

    assert unwritten[0] == unwritten[1]
    assert unwritten[0]["state"] == "active" and unwritten[0]["updated_at"] is None
    after = driver.read_trading_control()
    assert after == core_reader.read_trading_control()
    assert after["state"] == "halted" and after["flatten_requested"] is True
    assert after["updated_at"].tzinfo is not None


def test_a_failing_run_raises_the_core_error_and_writes_nothing(
    journals: tuple[Journal, Journal],
) -> None:
    driver, _ = journals
    decision, calls, events = _run("r-1")
    driver.record_run(decision, calls, events)

    with pytest.raises(sa.exc.IntegrityError):  # the same run id again
        driver.record_run(decision, calls, events)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        driver.record_run(
            {**decision, "run_id": "r-2"}, calls, [{**events[0], "ts": datetime(2026, 3, 1)}]
        )

    assert driver.count_decisions() == 1
    assert len(driver.events_after(0)) == 2
