"""Journal round trips on SQLite (always) and PostgreSQL (marked `services`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store.journal import Journal, normalise_url
from store.schema import metadata, utc_now

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
SMALL = Decimal("0.00012345")
LARGE = Decimal("123456789.123456789")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.services)])
def journal_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/nested/dir/journal.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def journal(journal_url: str) -> Iterator[Journal]:
    opened = Journal.open(journal_url)
    try:
        yield opened
    finally:
        opened.close()


def decision_row(run_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run_id,
        "session_id": "session-a",
        "bar_ts": T0,
        "created_at": T0 + timedelta(seconds=2),
        "trigger": "bar",
        "action": "hold",
        "market": None,
        "reason": "no candidate above threshold",
        "reviewer_labels": {"groq_check": "rule-based", "ollama_check": "ollama"},
        "nodes": {"ml_signal": {"input": {"markets": 4}, "output": {"proposal": None}}},
        "ml": {"KRW-BTC": {"features": {"rsi_14": 41.5}, "entry_probability": 0.42}},
        "verdicts": {"groq_check": {"approve": False, "why": "spread too wide"}},
        "sizing": None,
        "duration_ms": 12.5,
    }
    row.update(overrides)
    return row


def llm_call_row(run_id: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "run_id": run_id,
        "node": "groq_check",
        "provider": "groq",
        "model": "llama-3.1-8b-instant",
        "prompt_ref": "groq_check@1a2b3c4d",
        "request": {"messages": [{"role": "user", "content": "check KRW-BTC"}]},
        "response": {"approve": True, "confidence": 0.8},
        "verdict": "approve",
        "latency_ms": 321.0,
        "created_at": T0 + timedelta(seconds=1),
        "error": None,
    }
    row.update(overrides)
    return row


def order_row(identifier: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "identifier": identifier,
        "run_id": "run-1",
        "market": "KRW-BTC",
        "side": "bid",
        "ord_type": "limit",
        "price": LARGE,
        "volume": SMALL,
        "state": "wait",
        "reason": "entry",
        "created_at": T0,
        "updated_at": T0,
        "executed_volume": Decimal("0"),
        "paid_fee": Decimal("0"),
    }
    row.update(overrides)
    return row


def fill_row(order_identifier: str, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "order_identifier": order_identifier,
        "market": "KRW-BTC",
        "side": "bid",
        "price": LARGE,
        "volume": SMALL,
        "fee": Decimal("7.6207"),
        "ts": T0 + timedelta(seconds=5),
    }
    row.update(overrides)
    return row


# ---- round trips -------------------------------------------------------------------------


def test_decision_round_trips_every_column(journal: Journal) -> None:
    row = decision_row(
        "run-1",
        action="buy",
        market="KRW-BTC",
        sizing={"investment_ratio": 0.1, "krw": "50000"},
    )

    journal.record_decision(row)
    stored = journal.get_decision("run-1")

    assert stored is not None
    for column, value in row.items():
        assert stored[column] == value, column
    assert stored["bar_ts"].tzinfo is not None
    assert stored["bar_ts"].utcoffset() == timedelta(0)


def test_decision_without_sizing_stores_sql_null(journal: Journal) -> None:
    journal.record_decision(decision_row("run-1"))

    with journal.engine.connect() as connection:
        null_count = connection.execute(
            sa.text("SELECT count(*) FROM decisions WHERE sizing IS NULL")
        ).scalar_one()

    assert null_count == 1


def test_datetime_in_other_timezone_comes_back_as_same_instant_in_utc(journal: Journal) -> None:
    kst = timezone(timedelta(hours=9))
    bar_ts_kst = datetime(2026, 3, 1, 18, 0, tzinfo=kst)

    journal.record_decision(decision_row("run-1", bar_ts=bar_ts_kst))
    stored = journal.get_decision("run-1")

    assert stored is not None
    assert stored["bar_ts"] == bar_ts_kst
    assert stored["bar_ts"].utcoffset() == timedelta(0)
    assert stored["bar_ts"].hour == 9


def test_llm_call_round_trips_and_attaches_to_its_decision(journal: Journal) -> None:
    journal.record_decision(decision_row("run-1"))
    row = llm_call_row("run-1")

    call_id = journal.record_llm_call(row)
    stored = journal.get_decision("run-1")

    assert stored is not None
    assert len(stored["llm_calls"]) == 1
    call = stored["llm_calls"][0]
    assert call["id"] == call_id
    for column, value in row.items():
        assert call[column] == value, column


def test_order_round_trips_decimals_exactly(journal: Journal) -> None:
    row = order_row("ord-1", executed_volume=SMALL, paid_fee=Decimal("0.000000000001"))

    journal.record_order(row)
    [stored] = journal.list_orders()

    for column, value in row.items():
        assert stored[column] == value, column
    assert isinstance(stored["price"], Decimal)
    assert str(stored["price"]) == "123456789.123456789"
    assert str(stored["volume"]) == "0.00012345"


def test_record_order_with_known_identifier_updates_it_and_keeps_created_at(
    journal: Journal,
) -> None:
    journal.record_order(order_row("ord-1"))
    later = T0 + timedelta(minutes=1)

    journal.record_order(
        {
            "identifier": "ord-1",
            "state": "done",
            "executed_volume": SMALL,
            "paid_fee": Decimal("7.6207"),
            "created_at": later,
            "updated_at": later,
        }
    )
    orders = journal.list_orders()

    assert len(orders) == 1
    assert orders[0]["state"] == "done"
    assert orders[0]["executed_volume"] == SMALL
    assert orders[0]["paid_fee"] == Decimal("7.6207")
    assert orders[0]["created_at"] == T0
    assert orders[0]["updated_at"] == later
    assert orders[0]["price"] == LARGE


def test_fill_round_trips_decimals_exactly(journal: Journal) -> None:
    row = fill_row("ord-1")

    fill_id = journal.record_fill(row)
    [stored] = journal.list_fills()

    assert stored["id"] == fill_id
    for column, value in row.items():
        assert stored[column] == value, column


def test_position_upsert_updates_and_keeps_opened_at_then_delete_removes_it(
    journal: Journal,
) -> None:
    journal.upsert_position(
        {
            "market": "KRW-ETH",
            "volume": SMALL,
            "avg_buy_price": LARGE,
            "stop_loss_price": Decimal("4000000.5"),
            "take_profit_price": None,
            "opened_at": T0,
            "updated_at": T0,
            "run_id": "run-1",
        }
    )
    later = T0 + timedelta(hours=1)

    journal.upsert_position(
        {
            "market": "KRW-ETH",
            "volume": Decimal("0.00024690"),
            "avg_buy_price": Decimal("4100000"),
            "opened_at": later,
            "updated_at": later,
        }
    )
    position = journal.positions()["KRW-ETH"]

    assert position["volume"] == Decimal("0.00024690")
    assert str(position["volume"]) == "0.00024690"
    assert position["avg_buy_price"] == Decimal("4100000")
    assert position["stop_loss_price"] == Decimal("4000000.5")
    assert position["take_profit_price"] is None
    assert position["opened_at"] == T0
    assert position["updated_at"] == later
    assert position["run_id"] == "run-1"
    assert journal.delete_position("KRW-ETH") is True
    assert journal.positions() == {}
    assert journal.delete_position("KRW-ETH") is False


def test_events_get_increasing_ids_and_events_after_pages_them(journal: Journal) -> None:
    ids = [
        journal.record_event("run-1", "node", {"node": f"n{i}", "krw": Decimal("1.5")}, T0)
        for i in range(5)
    ]

    after_second = journal.events_after(ids[1])
    first_two = journal.events_after(0, limit=2)

    assert ids == sorted(ids)
    assert len(set(ids)) == 5
    assert [e["id"] for e in after_second] == ids[2:]
    assert [e["id"] for e in first_two] == ids[:2]
    assert after_second[0]["payload"] == {"node": "n2", "krw": "1.5"}
    assert after_second[0]["ts"] == T0
    assert after_second[0]["type"] == "node"


# ---- record_run ----------------------------------------------------------------------


def test_record_run_writes_decision_llm_calls_and_events_together(journal: Journal) -> None:
    event_ids = journal.record_run(
        decision_row("run-1"),
        [llm_call_row("run-1"), llm_call_row("run-1", node="ollama_check", provider="ollama")],
        [
            {"ts": T0, "type": "node", "payload": {"node": "ml_signal"}},
            {"ts": T0, "type": "decision", "payload": {"action": "hold"}},
        ],
    )
    journal.record_order(order_row("ord-1", run_id="run-1"))

    stored = journal.get_decision("run-1")

    assert stored is not None
    assert [c["node"] for c in stored["llm_calls"]] == ["groq_check", "ollama_check"]
    assert [e["id"] for e in stored["events"]] == event_ids
    assert [e["run_id"] for e in stored["events"]] == ["run-1", "run-1"]
    assert [o["identifier"] for o in stored["orders"]] == ["ord-1"]


def test_record_run_with_a_failing_llm_call_writes_nothing(journal: Journal) -> None:
    bad_call = llm_call_row("run-1")
    del bad_call["node"]  # NOT NULL column

    with pytest.raises(sa.exc.IntegrityError):
        journal.record_run(
            decision_row("run-1"),
            [llm_call_row("run-1"), bad_call],
            [{"ts": T0, "type": "node", "payload": {}}],
        )

    assert journal.get_decision("run-1") is None
    assert journal.count_decisions() == 0
    assert journal.events_after(0) == []


def test_unknown_column_is_refused_naming_it(journal: Journal) -> None:
    with pytest.raises(ValueError, match="decisions: colour"):
        journal.record_decision({**decision_row("run-1"), "colour": "red"})


def test_naive_datetime_is_refused(journal: Journal) -> None:
    with pytest.raises(sa.exc.StatementError, match="naive datetime"):
        journal.record_decision(decision_row("run-1", bar_ts=datetime(2026, 3, 1, 9, 0)))


def test_float_for_a_decimal_column_is_refused(journal: Journal) -> None:
    with pytest.raises(sa.exc.StatementError, match="not float"):
        journal.record_order(order_row("ord-1", price=0.1))


# ---- queries -------------------------------------------------------------------------


@pytest.fixture
def populated(journal: Journal) -> Journal:
    rows = [
        decision_row("r1", bar_ts=T0, action="hold", reason="no signal"),
        decision_row("r2", bar_ts=T0 + timedelta(minutes=1), action="buy", market="KRW-BTC"),
        decision_row("r3", bar_ts=T0 + timedelta(minutes=2), action="hold", reason="no signal"),
        decision_row("r4", bar_ts=T0 + timedelta(minutes=3), action="hold", reason="groq rejected"),
        decision_row(
            "r5",
            bar_ts=T0 + timedelta(minutes=4),
            action="sell",
            market="KRW-BTC",
            session_id="session-b",
        ),
        decision_row(
            "r6",
            bar_ts=T0 + timedelta(minutes=5),
            action="hold",
            reason="no signal",
            session_id="session-b",
        ),
    ]
    for row in rows:
        journal.record_decision(row)
    return journal


def test_list_decisions_is_newest_first_and_pages(populated: Journal) -> None:
    first_page = populated.list_decisions(limit=4)
    second_page = populated.list_decisions(limit=4, offset=4)

    assert [d["run_id"] for d in first_page] == ["r6", "r5", "r4", "r3"]
    assert [d["run_id"] for d in second_page] == ["r2", "r1"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"action": "hold"}, ["r6", "r4", "r3", "r1"]),
        ({"market": "KRW-BTC"}, ["r5", "r2"]),
        ({"session_id": "session-b"}, ["r6", "r5"]),
        ({"since": T0 + timedelta(minutes=2)}, ["r6", "r5", "r4", "r3"]),
        ({"until": T0 + timedelta(minutes=2)}, ["r2", "r1"]),
        (
            {"since": T0 + timedelta(minutes=1), "until": T0 + timedelta(minutes=4)},
            ["r4", "r3", "r2"],
        ),
        ({"action": "hold", "session_id": "session-a", "limit": 2}, ["r4", "r3"]),
    ],
)
def test_list_decisions_filters(
    populated: Journal, filters: dict[str, Any], expected: list[str]
) -> None:
    assert [d["run_id"] for d in populated.list_decisions(**filters)] == expected


def test_count_decisions_counts_all_or_one_session(populated: Journal) -> None:
    assert populated.count_decisions() == 6
    assert populated.count_decisions("session-b") == 2
    assert populated.count_decisions(action="hold") == 4


def test_hold_reasons_counts_hold_decisions_by_reason(populated: Journal) -> None:
    assert populated.hold_reasons() == {"no signal": 3, "groq rejected": 1}
    assert populated.hold_reasons("session-a") == {"no signal": 2, "groq rejected": 1}
    assert populated.hold_reasons("session-z") == {}


def test_get_decision_of_unknown_run_is_none(journal: Journal) -> None:
    assert journal.get_decision("nope") is None


def test_list_orders_filters_by_run_and_market(journal: Journal) -> None:
    journal.record_order(order_row("o1", run_id="run-1", market="KRW-BTC", created_at=T0))
    journal.record_order(
        order_row("o2", run_id="run-2", market="KRW-ETH", created_at=T0 + timedelta(seconds=1))
    )
    journal.record_order(
        order_row("o3", run_id=None, market="KRW-BTC", created_at=T0 + timedelta(seconds=2))
    )

    assert [o["identifier"] for o in journal.list_orders()] == ["o1", "o2", "o3"]
    assert [o["identifier"] for o in journal.list_orders(run_id="run-2")] == ["o2"]
    assert [o["identifier"] for o in journal.list_orders(market="KRW-BTC")] == ["o1", "o3"]


def test_fills_and_total_fees_by_session_and_time(journal: Journal) -> None:
    journal.record_decision(decision_row("run-a", session_id="session-a"))
    journal.record_decision(decision_row("run-b", session_id="session-b"))
    journal.record_order(order_row("oa", run_id="run-a"))
    journal.record_order(order_row("ob", run_id="run-b"))
    journal.record_order(order_row("ow", run_id=None))  # a watchdog sell, in no session
    journal.record_fill(fill_row("oa", fee=Decimal("0.00000001"), ts=T0))
    journal.record_fill(fill_row("oa", fee=Decimal("0.1"), ts=T0 + timedelta(minutes=1)))
    journal.record_fill(fill_row("ob", fee=Decimal("2.5"), ts=T0 + timedelta(minutes=2)))
    journal.record_fill(fill_row("ow", fee=Decimal("10"), ts=T0 + timedelta(minutes=3)))

    session_a = journal.list_fills(session_id="session-a")
    since_two = journal.list_fills(since=T0 + timedelta(minutes=2))

    assert [f["fee"] for f in session_a] == [Decimal("0.00000001"), Decimal("0.1")]
    assert [f["order_identifier"] for f in since_two] == ["ob", "ow"]
    assert journal.total_fees(session_id="session-a") == Decimal("0.10000001")
    assert journal.total_fees() == Decimal("12.60000001")
    assert journal.total_fees(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3)) == (
        Decimal("2.6")
    )
    assert journal.total_fees(session_id="session-z") == Decimal(0)


# ---- opening and migrations --------------------------------------------------------------


def test_opening_twice_keeps_data_and_schema_at_head(journal_url: str) -> None:
    first = Journal.open(journal_url)
    first.record_decision(decision_row("run-1"))
    first.close()

    second = Journal.open(journal_url)
    try:
        with second.engine.connect() as connection:
            version = connection.execute(sa.text("SELECT version_num FROM alembic_version"))
            versions = [row[0] for row in version]
        assert second.count_decisions() == 1
        assert versions == ["0008"]
    finally:
        second.close()


def test_migrated_schema_matches_schema_module(journal: Journal) -> None:
    with journal.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)

    assert differences == []


@pytest.mark.parametrize("url", ["mysql://user@host/db", "redis://127.0.0.1:6379/0"])
def test_unsupported_url_scheme_is_refused_naming_it(url: str) -> None:
    scheme = url.split(":", 1)[0]

    with pytest.raises(ValueError, match=f"unsupported journal URL scheme '{scheme}'"):
        Journal.open(url)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:5432/db",
        "postgres://postgres@127.0.0.1:5432/db",
        "postgresql+psycopg://postgres@127.0.0.1:5432/db",
        "postgresql+psycopg2://postgres@127.0.0.1:5432/db",
    ],
)
def test_postgres_urls_use_psycopg3(url: str) -> None:
    assert normalise_url(url).drivername == "postgresql+psycopg"


def test_sqlite_file_gets_parent_dirs_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "journal.db"

    journal = Journal.open(f"sqlite:///{path}")
    journal.close()

    connection = sqlite3.connect(path)
    try:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        connection.close()
    assert path.exists()
    assert mode == "wal"


def test_in_memory_sqlite_journal_works() -> None:
    with Journal.open("sqlite://") as journal:
        journal.record_decision(decision_row("run-1"))
        assert journal.count_decisions() == 1


def test_nan_and_infinity_in_json_columns_are_stored_as_null(tmp_path: Path) -> None:
    journal = Journal.open(f"sqlite:///{tmp_path / 'nan.db'}")
    try:
        journal.record_event("r1", "x", {"a": float("nan"), "b": [float("inf"), 1.5]}, utc_now())

        (event,) = journal.events_after(0)
    finally:
        journal.close()

    assert event["payload"] == {"a": None, "b": [None, 1.5]}


def test_llm_response_cache_round_trips_and_keeps_the_first_answer(journal_url: str) -> None:
    from store.journal import JournalResponseCache

    journal = Journal.open(journal_url)
    try:
        cache = JournalResponseCache(journal)
        value = {"raw": '{"verdict": "buy"}', "provider": "groq", "model": "m", "prompt_ref": "p@1"}

        assert cache.get("k1") is None
        cache.put("k1", value)
        cache.put("k1", {**value, "raw": "second"})

        assert cache.get("k1") == value
    finally:
        journal.close()


# ---- fills and the position they leave, together (issue #15: a crash between them) -------


def _position(market: str = "KRW-BTC", **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "market": market,
        "volume": SMALL,
        "avg_buy_price": LARGE,
        "stop_loss_price": Decimal("100"),
        "take_profit_price": None,
        "opened_at": T0,
        "updated_at": T0,
        "run_id": "run-1",
    }
    row.update(overrides)
    return row


def test_settled_fills_and_their_position_are_written_together(journal: Journal) -> None:
    journal.settle_fills("KRW-BTC", [fill_row("o1"), fill_row("o1")], _position())

    assert len(journal.list_fills()) == 2
    assert journal.positions()["KRW-BTC"]["volume"] == SMALL


def test_a_failed_settlement_writes_neither_the_fills_nor_the_position(journal: Journal) -> None:
    broken = _position(avg_buy_price=None)  # NOT NULL: the position cannot be written

    with pytest.raises(sa.exc.IntegrityError):
        journal.settle_fills("KRW-BTC", [fill_row("o2")], broken)

    assert journal.list_fills() == []
    assert journal.positions() == {}


def test_a_settlement_that_leaves_the_market_flat_deletes_its_position(journal: Journal) -> None:
    journal.settle_fills("KRW-BTC", [fill_row("o3")], _position())
    sell = fill_row("o4", side="ask", trade_uuid="t-4")

    journal.settle_fills("KRW-BTC", [sell, sell], None)

    assert journal.positions() == {}
    assert [f["side"] for f in journal.list_fills()] == ["bid", "ask"]  # the uuid once


def test_a_settlement_refuses_a_position_of_another_market(journal: Journal) -> None:
    with pytest.raises(ValueError, match="not KRW-BTC"):
        journal.settle_fills("KRW-BTC", [], _position("KRW-ETH"))
