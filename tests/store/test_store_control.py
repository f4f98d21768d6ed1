"""The trading control row (halt, resume, flatten) on SQLite and PostgreSQL, with its events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from store.journal import Journal


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def control_journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/journal.db"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Journal.open(url)
    try:
        yield opened
    finally:
        opened.close()


def trading_state_events(journal: Journal) -> list[dict[str, object]]:
    return [e["payload"] for e in journal.events_after(0) if e["type"] == "trading_state"]


def test_a_fresh_journal_reads_active_with_no_writer(control_journal: Journal) -> None:
    row = control_journal.read_trading_control()

    assert row == {
        "state": "active",
        "reason": "",
        "flatten_requested": False,
        "updated_at": None,
        "updated_by": None,
    }


def test_halt_round_trips_and_is_recorded_as_an_event(control_journal: Journal) -> None:
    before = datetime.now(UTC)

    written = control_journal.write_trading_control("halted", "kill switch", flatten=True, by="cli")
    read = control_journal.read_trading_control()

    assert read == written
    assert read["state"] == "halted"
    assert read["reason"] == "kill switch"
    assert read["flatten_requested"] is True
    assert read["updated_by"] == "cli"
    updated_at = read["updated_at"]
    assert isinstance(updated_at, datetime) and updated_at.tzinfo is not None
    assert updated_at >= before
    (event,) = trading_state_events(control_journal)
    assert event["state"] == "halted"
    assert event["previous_state"] == "active"
    assert event["updated_by"] == "cli"


def test_resume_overwrites_the_single_row_and_drops_a_pending_flatten(
    control_journal: Journal,
) -> None:
    control_journal.write_trading_control("halted", "kill switch", flatten=True, by="api")

    control_journal.write_trading_control("active", "all clear", by="api")

    row = control_journal.read_trading_control()
    assert (row["state"], row["reason"], row["flatten_requested"]) == ("active", "all clear", False)
    assert [e["previous_state"] for e in trading_state_events(control_journal)] == [
        "active",
        "halted",
    ]


def test_a_pending_flatten_survives_a_second_halt(control_journal: Journal) -> None:
    control_journal.write_trading_control("halted", "first", flatten=True, by="cli")

    row = control_journal.write_trading_control("halted", "second", by="api")

    assert row["flatten_requested"] is True
    assert row["reason"] == "second"


def test_clear_flatten_request_clears_once_and_records_it(control_journal: Journal) -> None:
    control_journal.write_trading_control("halted", "kill switch", flatten=True, by="cli")

    first = control_journal.clear_flatten_request()
    second = control_journal.clear_flatten_request()

    row = control_journal.read_trading_control()
    assert (first, second) == (True, False)
    assert row["state"] == "halted"
    assert row["flatten_requested"] is False
    assert row["updated_by"] == "engine"
    assert len(trading_state_events(control_journal)) == 2


def test_the_control_row_persists_across_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/journal.db"
    with Journal.open(url) as first:
        first.write_trading_control("reducing", "wind down", by="engine")

    with Journal.open(url) as second:
        row = second.read_trading_control()

    assert (row["state"], row["reason"], row["updated_by"]) == ("reducing", "wind down", "engine")


@pytest.mark.parametrize(
    ("state", "flatten", "by", "field"),
    [
        ("paused", False, "cli", "state"),
        ("halted", False, "someone", "by"),
        ("active", True, "cli", "flatten"),
    ],
)
def test_bad_writes_are_refused_naming_the_field(
    control_journal: Journal, state: str, flatten: bool, by: str, field: str
) -> None:
    with pytest.raises(ValueError, match=f"^{field} "):
        control_journal.write_trading_control(state, "x", flatten=flatten, by=by)

    assert control_journal.read_trading_control()["updated_by"] is None
