"""Round trips read from the journal's fills: entries, exits, P&L and why each one closed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from store.journal import Journal
from store.journal.trades import exit_reason

T0 = datetime(2025, 9, 19, 1, 0, tzinfo=UTC)
S = "lxa-demo-1"


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    with Journal.open(f"sqlite:///{tmp_path / 'journal.db'}") as opened:
        yield opened


def trade(
    journal: Journal,
    identifier: str,
    side: str,
    price: str,
    volume: str,
    minute: int,
    *,
    market: str = "KRW-BTC",
    run_id: str | None = None,
    fee: str = "0",
) -> None:
    journal.record_order(
        {
            "identifier": identifier,
            "run_id": run_id,
            "market": market,
            "side": side,
            "ord_type": "market",
            "state": "done",
        }
    )
    journal.record_fill(
        {
            "order_identifier": identifier,
            "market": market,
            "side": side,
            "price": Decimal(price),
            "volume": Decimal(volume),
            "fee": Decimal(fee),
            "ts": T0 + timedelta(minutes=minute),
        }
    )


@pytest.mark.parametrize(
    ("identifier", "run_id", "expected"),
    [
        (f"{S}-20250919T033530Z-KRW-SOL-stop_loss", None, ("stop_loss", None)),
        (f"{S}-20250919T033530Z-KRW-SOL-take_profit", None, ("take_profit", None)),
        (f"{S}-20250919T033530Z-KRW-SOL-emergency-price_drop", None, ("watchdog", "price_drop")),
        (f"{S}-20250919T033530Z-flatten-KRW-SOL", None, ("flatten", None)),
        ("adopted-KRW-SOL-20250919T033530000000", None, ("adopted", None)),
        (f"{S}-20250919T0203Z-ask", "demo-1-20250919T0203Z", ("ml_exit", "exit_signal")),
        ("someone-else", None, ("other", None)),
    ],
)
def test_the_exit_reason_is_read_from_the_sell_order(
    identifier: str, run_id: str | None, expected: tuple[str, str | None]
) -> None:
    assert exit_reason(identifier, run_id, "exit_signal") == expected


def test_round_trips_add_buys_realise_sells_at_average_cost_and_name_each_exit(
    journal: Journal,
) -> None:
    # A graph entry in two buys, a partial policy exit, then the stop-loss sells the rest.
    trade(journal, f"{S}-a-bid", "bid", "100", "1", 0, run_id="r0", fee="0.05")
    trade(journal, f"{S}-b-bid", "bid", "110", "1", 1, run_id="r1", fee="0.055")
    trade(journal, f"{S}-c-ask", "ask", "120", "1", 2, run_id="r2", fee="0.06")
    trade(journal, f"{S}-20250919T0103Z-KRW-BTC-stop_loss", "ask", "90", "1", 3, fee="0.045")
    # The watchdog sells ETH; an adopted balance of XRP is still held.
    trade(journal, f"{S}-e-bid", "bid", "10", "5", 4, market="KRW-ETH", run_id="r4")
    trade(journal, f"{S}-x-KRW-ETH-emergency-volume_spike", "ask", "9", "5", 5, market="KRW-ETH")
    trade(journal, "adopted-KRW-XRP-1", "bid", "3", "10", 6, market="KRW-XRP")
    journal.record_event(
        None,
        "position_closed",
        {
            "market": "KRW-BTC",
            "return": -0.1,
            "reason": "stop_loss",
            "identifier": f"{S}-20250919T0103Z-KRW-BTC-stop_loss",
        },
        T0 + timedelta(minutes=3),
    )

    trips = journal.round_trips()

    assert [(t["market"], t["status"], t["exit_kind"]) for t in trips] == [
        ("KRW-BTC", "closed", "stop_loss"),
        ("KRW-ETH", "closed", "watchdog"),
        ("KRW-XRP", "open", None),
    ]
    btc, eth, xrp = trips
    cost = Decimal("100") + Decimal("0.05") + Decimal("110") + Decimal("0.055")
    proceeds = Decimal("120") - Decimal("0.06") + Decimal("90") - Decimal("0.045")
    assert btc["cost"] == cost
    assert btc["realised_pnl"] == proceeds - cost
    assert btc["entry_price"] == Decimal("105")
    assert btc["exit_price"] == Decimal("105")
    assert btc["fees"] == Decimal("0.21")
    assert btc["volume"] == Decimal("2")
    assert btc["entry_run_id"] == "r0"
    assert btc["entry_ts"] == T0
    assert btc["exit_ts"] == T0 + timedelta(minutes=3)
    assert btc["closed_reason"] == "stop_loss"
    assert btc["closed_event_id"] is not None
    assert eth["exit_detail"] == "volume_spike"
    assert eth["realised_pnl"] == Decimal("-5")
    assert xrp["entry_kind"] == "adopted"
    assert xrp["volume_open"] == Decimal("10")
    assert xrp["cost_open"] == Decimal("30")
    # The trips add up to the journal's own figures.
    assert sum(t["fees"] for t in trips) == journal.total_fees()


def test_a_sell_with_nothing_held_is_kept_as_an_unmatched_trip(journal: Journal) -> None:
    trade(journal, "adopted-KRW-BTC-1", "ask", "100", "1", 0)

    (lone,) = journal.round_trips()

    assert lone["status"] == "unmatched"
    assert lone["exit_kind"] == "adopted"
    assert lone["entry_ts"] is None
    assert lone["realised_pnl"] == Decimal("100")


def test_round_trips_filter_by_market_and_read_the_policy_rule_of_the_selling_run(
    journal: Journal,
) -> None:
    journal.record_decision(
        {
            "run_id": "r2",
            "session_id": "demo-1",
            "bar_ts": T0,
            "trigger": "bar",
            "action": "sell",
            "market": "KRW-ETH",
            "reason": "agreed",
            "nodes": {"ml_signal": {"proposal": {"action": "sell", "reason": "exit_time"}}},
            "duration_ms": 1.0,
        }
    )
    trade(journal, f"{S}-a-bid", "bid", "100", "1", 0, run_id="r1")
    trade(journal, f"{S}-e-bid", "bid", "10", "1", 0, market="KRW-ETH", run_id="r1")
    trade(journal, f"{S}-e-ask", "ask", "11", "1", 1, market="KRW-ETH", run_id="r2")

    (eth,) = journal.round_trips(market="KRW-ETH")

    assert (eth["exit_kind"], eth["exit_detail"], eth["exit_run_id"]) == (
        "ml_exit",
        "exit_time",
        "r2",
    )


def test_wall_clock_events_are_placed_on_the_bar_of_the_next_recorded_run(
    journal: Journal,
) -> None:
    wall = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    for minute in range(3):
        journal.record_decision(
            {
                "run_id": f"r{minute}",
                "session_id": "demo-1",
                "bar_ts": T0 + timedelta(minutes=minute),
                "created_at": wall + timedelta(seconds=minute),
                "trigger": "bar",
                "action": "hold",
                "market": None,
                "reason": "no_edge",
                "duration_ms": 1.0,
            }
        )

    found = journal.bar_times(
        [wall + timedelta(seconds=0.5), wall + timedelta(seconds=5), wall - timedelta(hours=1)]
    )

    assert found == [T0 + timedelta(minutes=1), T0 + timedelta(minutes=2), T0]
