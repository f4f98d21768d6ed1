"""Start-up reconciliation: the exchange's balances and orders against the journal.

Run before trading. Orders the journal left unresolved (pending, sent, unknown, open) are
looked up by identifier: found ones are adopted with their fills (fills missed while the
process was down are recorded), never-seen ones are closed as never sent. Then orders
resting on the exchange that the journal does not know, and coin balances that differ from
the journal's positions by more than what the adopted fills explain, are reported as
differences; a report with differences means: do not trade, and it says exactly what differs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from exchange.orders import UNRESOLVED_STATES, OrderJournal, OrderManager
from exchange.types import ExchangeError, Side
from store.rows import PositionRow

__all__ = ["PositionJournal", "ReconcileReport", "reconcile"]

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)


class PositionJournal(OrderJournal, Protocol):
    """The journal's positions, next to its order intents (`store.journal.Journal`)."""

    def positions(self) -> dict[str, dict[str, Any]]:
        """Open positions keyed by market."""
        ...

    def upsert_position(self, row: PositionRow) -> None:
        """Insert or update a position."""
        ...

    def delete_position(self, market: str) -> bool:
        """Remove a position."""
        ...


@dataclass
class ReconcileReport:
    """What reconciliation did and what it could not make agree."""

    adopted: list[str] = field(default_factory=list)  # identifiers found on the exchange
    never_sent: list[str] = field(default_factory=list)  # intents the exchange never saw
    fills_recorded: int = 0
    positions_aligned: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether trading may start."""
        return not self.differences

    def summary(self) -> str:
        """One paragraph for logs, alerts and the refusal message."""
        head = (
            f"adopted {len(self.adopted)} order(s), closed {len(self.never_sent)} never-sent "
            f"intent(s), recorded {self.fills_recorded} missed fill(s)"
        )
        if self.ok:
            return head + "; the journal agrees with the exchange"
        return head + "; differences:\n  - " + "\n  - ".join(self.differences)


async def reconcile(
    manager: OrderManager,
    journal: PositionJournal,
    *,
    markets: Sequence[str],
    tolerance: Decimal = Decimal("0.00000001"),
) -> ReconcileReport:
    """Reconcile the venue behind `manager` with `journal` for `markets`; never sends orders.

    Raises `ExchangeError` when the exchange cannot be read at all (then nothing is known:
    the caller must not trade either).
    """
    report = ReconcileReport()
    fills_before = _fill_count(journal)
    net_fills: dict[str, Decimal] = {}
    for intent in journal.list_order_intents(UNRESOLVED_STATES):
        identifier = intent["identifier"]
        try:
            order = await manager.resolve(identifier)
        except ExchangeError as exc:
            report.differences.append(
                f"order {identifier} ({intent['state']} in the journal) could not be looked up: "
                f"{exc}"
            )
            continue
        if order is None:
            report.never_sent.append(identifier)
            continue
        report.adopted.append(identifier)
        before = intent.get("executed_volume") or _ZERO
        moved = order.executed_volume - before
        sign = 1 if order.side is Side.BID else -1
        net_fills[order.market] = net_fills.get(order.market, _ZERO) + sign * moved
    report.fills_recorded = _fill_count(journal) - fills_before

    known = {i["identifier"] for i in journal.list_order_intents()}
    for order in await manager.open_orders():
        if order.market in markets and order.identifier not in known:
            label = order.identifier or "(no identifier)"
            report.differences.append(
                f"open order {label} (uuid {order.uuid}) on Upbit, {order.side.value} "
                f"{order.volume} {order.market} at {order.price}, is not in the journal"
            )

    account = await manager.get_account()
    journal_positions = journal.positions()
    for market in markets:
        held = account.positions.get(market)
        upbit_volume = held.volume if held is not None else _ZERO
        row = journal_positions.get(market)
        journal_volume = Decimal(str(row["volume"])) if row is not None else _ZERO
        explained = journal_volume + net_fills.get(market, _ZERO)
        if abs(upbit_volume - journal_volume) <= tolerance:
            continue
        if abs(upbit_volume - explained) <= tolerance and market in net_fills:
            _align(journal, market, held, row)
            report.positions_aligned.append(market)
            continue
        report.differences.append(
            f"{market}: Upbit holds {upbit_volume:f}, the journal {journal_volume:f}"
            + (f" (+{net_fills[market]:f} from adopted orders)" if net_fills.get(market) else "")
        )
    logger.info("reconciliation: %s", report.summary())
    return report


def _align(journal: PositionJournal, market: str, held: Any, row: Mapping[str, Any] | None) -> None:
    """Set the journal's position to the exchange's (fills explained the whole difference)."""
    if held is None or held.volume == 0:
        journal.delete_position(market)
        return
    values: PositionRow = {
        "market": market,
        "volume": held.volume,
        "avg_buy_price": held.avg_buy_price,
    }
    if row is None:
        values.update({"stop_loss_price": None, "take_profit_price": None, "run_id": None})
    journal.upsert_position(values)


def _fill_count(journal: OrderJournal) -> int:
    """Count journaled fills of the intents (through the journal's own query when it has one)."""
    counter = getattr(journal, "fills_for_order", None)
    if counter is None:
        return 0
    return sum(len(counter(i["identifier"])) for i in journal.list_order_intents())
