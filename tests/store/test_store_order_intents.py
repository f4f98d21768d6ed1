"""Order intents and once-only fills in the journal, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from store.journal import Journal

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def journal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Journal]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/journal.db"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Journal.open(url)
    try:
        yield opened
    finally:
        opened.close()


def intent(identifier: str, **overrides: Any) -> dict[str, Any]:
    return {
        "identifier": identifier,
        "market": "KRW-BTC",
        "side": "bid",
        "ord_type": "price",
        "price": Decimal("100000"),
        "state": "pending",
        "attempts": 0,
        **overrides,
    }


def fill(trade_uuid: str | None, **overrides: Any) -> dict[str, Any]:
    return {
        "order_identifier": "i-1",
        "market": "KRW-BTC",
        "side": "bid",
        "price": Decimal("50000000"),
        "volume": Decimal("0.002"),
        "fee": Decimal("50"),
        "ts": T0,
        "trade_uuid": trade_uuid,
        **overrides,
    }


def test_intent_moves_through_its_states(journal: Journal) -> None:
    journal.record_order_intent(intent("i-1"))
    journal.update_order_intent("i-1", {"state": "sent", "attempts": 1})
    journal.update_order_intent(
        "i-1", {"state": "done", "uuid": "u-1", "executed_volume": Decimal("0.002")}
    )

    row = journal.get_order_intent("i-1")

    assert row is not None
    assert (row["state"], row["uuid"], row["attempts"]) == ("done", "u-1", 1)
    assert row["executed_volume"] == Decimal("0.002")
    assert row["price"] == Decimal("100000")
    assert row["updated_at"] >= row["created_at"]


def test_an_identifier_is_journaled_once(journal: Journal) -> None:
    journal.record_order_intent(intent("i-1"))

    with pytest.raises(ValueError, match="already journaled"):
        journal.record_order_intent(intent("i-1"))


def test_unknown_state_and_missing_intent_are_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="state must be one of"):
        journal.record_order_intent(intent("i-1", state="lost"))
    with pytest.raises(KeyError, match="no order intent"):
        journal.update_order_intent("nope", {"state": "done"})


def test_intents_are_listed_by_state(journal: Journal) -> None:
    journal.record_order_intent(intent("a", state="unknown"))
    journal.record_order_intent(intent("b", state="done"))
    journal.record_order_intent(intent("c", state="sent"))

    unresolved = journal.list_order_intents(["pending", "sent", "unknown", "open"])

    assert sorted(i["identifier"] for i in unresolved) == ["a", "c"]
    assert len(journal.list_order_intents()) == 3


def test_a_fill_with_a_known_trade_uuid_is_recorded_once(journal: Journal) -> None:
    first = journal.record_fill(fill("t-1"))
    again = journal.record_fill(fill("t-1"))
    other = journal.record_fill(fill("t-2"))
    journal.record_fill(fill(None))
    journal.record_fill(fill(None))

    assert first == again
    assert other != first
    assert len(journal.fills_for_order("i-1")) == 4


def test_a_claimed_intent_reads_back_exactly_like_a_recorded_one(journal: Journal) -> None:
    """The emergency path's one-statement insert writes the same row as `record_order_intent`."""
    stamp = {"created_at": T0, "updated_at": T0}
    journal.record_order_intent(intent("rec-1", volume=Decimal("0.00012345"), **stamp))
    assert (
        journal.claim_order_intent(intent("clm-1", volume=Decimal("0.00012345"), **stamp)) is None
    )

    recorded = journal.get_order_intent("rec-1")
    claimed = journal.get_order_intent("clm-1")
    assert recorded is not None and claimed is not None
    recorded.pop("identifier")
    claimed.pop("identifier")
    assert claimed == recorded
    assert claimed["executed_volume"] == Decimal(0) and claimed["created_at"] == T0


def test_a_second_claim_changes_nothing_and_returns_the_first(journal: Journal) -> None:
    assert journal.claim_order_intent(intent("dup-1", state="sent", attempts=1)) is None

    earlier = journal.claim_order_intent(intent("dup-1", state="pending", price=Decimal(1)))

    assert earlier is not None
    assert (earlier["state"], earlier["attempts"], earlier["price"]) == ("sent", 1, Decimal(100000))
    assert journal.get_order_intent("dup-1") == earlier
    with pytest.raises(ValueError, match="already journaled"):
        journal.record_order_intent(intent("dup-1"))


def test_a_bad_claim_is_refused_and_the_next_one_still_works(journal: Journal) -> None:
    with pytest.raises(ValueError, match="state"):
        journal.claim_order_intent(intent("bad-1", state="shipped"))
    with pytest.raises(TypeError, match="Decimal"):
        journal.claim_order_intent(intent("bad-2", price=1.5))
    assert journal.claim_order_intent(intent("good-1")) is None
    assert journal.get_order_intent("bad-2") is None
    assert journal.get_order_intent("good-1") is not None


def test_a_claim_on_a_connection_that_died_is_retried_on_a_fresh_one(
    journal: Journal, caplog: pytest.LogCaptureFixture
) -> None:
    assert journal.claim_order_intent(intent("first-1")) is None
    held = journal._claim._connection  # type: ignore[union-attr]
    if journal.engine.dialect.name == "postgresql":
        with journal.engine.begin() as admin:  # the server drops the held session
            pid = held.dbapi_connection.info.backend_pid
            admin.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
    else:
        held.dbapi_connection.close()  # the driver's connection is gone under the pool

    assert journal.claim_order_intent(intent("after-1")) is None

    assert journal.get_order_intent("after-1") is not None
    assert journal._claim._connection is not held  # type: ignore[union-attr]
    assert "retrying on a new connection" in caplog.text


def test_the_claim_connection_never_runs_a_checkpoint_and_is_given_back_as_it_was(
    tmp_path: Path,
) -> None:
    """A WAL checkpoint inside an emergency sell's commit stalls it for milliseconds."""
    with Journal.open(f"sqlite:///{tmp_path}/journal.db") as journal:
        assert journal.claim_order_intent(intent("c-1")) is None
        driver = journal._claim._connection.dbapi_connection  # type: ignore[union-attr]
        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        with journal.engine.connect() as other:  # the journal's other connections still do
            assert other.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000

        journal.close_claims()

        assert driver.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
