"""Start-up reconciliation: the exchange's balances and orders against the journal.

Run before trading; never sends an order. The journal's positions are what its own fills add
up to, so reconciliation works from the fills:

1. Orders the journal left unresolved (pending, sent, unknown, open), and answered orders whose
   fills the journal lacks (a process that died between the answer and the settlement), are
   looked up by identifier. Their missing fills are written together with the position they
   imply (`settle_from_fills`); never-seen intents are closed as never sent.
2. Per market, what Upbit holds is compared with the journal's position. Where they differ but
   the journal's own fills explain Upbit's balance, the position is rebuilt from the fills.
3. What is left (a balance the fills do not explain, an open order the journal does not know)
   is a difference: do not trade. `adopt` turns a balance difference into a recorded adoption
   fill at Upbit's average price, so positions stay the sum of the fills (`lxa reconcile
   --adopt`); an unknown open order must be cancelled on Upbit first.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from exchange.orders import UNRESOLVED_STATES, OrderJournal, OrderManager
from exchange.types import AccountSnapshot, ExchangeError, Order
from exchange.views import fill_row
from store.rows import FillRow

__all__ = ["ADOPTED_PREFIX", "PositionJournal", "ReconcileReport", "reconcile"]

ADOPTED_PREFIX = "adopted-"  # the order identifier of an adoption fill

logger = logging.getLogger(__name__)

_ZERO = Decimal(0)


class PositionJournal(OrderJournal, Protocol):
    """The journal's fills and positions, next to its order intents (`store.journal.Journal`)."""

    def positions(self) -> dict[str, dict[str, Any]]:
        """Open positions keyed by market."""
        ...

    def list_fills(self) -> list[dict[str, Any]]:
        """Every fill, oldest first."""
        ...

    def holdings_from_fills(self) -> dict[str, Any]:
        """Per market, the volume the fills add up to (`.volume`)."""
        ...

    def settle_from_fills(self, market: str, fill_rows: list[FillRow]) -> int:
        """Add missing fills and rebuild the market's position from its fills, together."""
        ...

    def rebuild_position(self, market: str) -> Any:
        """Set the market's position to what its fills imply."""
        ...


@dataclass
class ReconcileReport:
    """What reconciliation did and what it could not make agree."""

    adopted: list[str] = field(default_factory=list)  # identifiers found on the exchange
    never_sent: list[str] = field(default_factory=list)  # intents the exchange never saw
    fills_recorded: int = 0
    positions_aligned: list[str] = field(default_factory=list)
    adopted_balances: list[str] = field(default_factory=list)  # recorded as adoption fills
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether trading may start."""
        return not self.differences

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-friendly values (the journal's event, `lxa reconcile --json`)."""
        return {
            "ok": self.ok,
            "adopted": self.adopted,
            "never_sent": self.never_sent,
            "fills_recorded": self.fills_recorded,
            "positions_aligned": self.positions_aligned,
            "adopted_balances": self.adopted_balances,
            "differences": self.differences,
        }

    def summary(self) -> str:
        """One paragraph for logs, alerts and the refusal message."""
        head = (
            f"adopted {len(self.adopted)} order(s), closed {len(self.never_sent)} never-sent "
            f"intent(s), recorded {self.fills_recorded} missed fill(s)"
        )
        if self.adopted_balances:
            head += "; adopted Upbit's balance of " + ", ".join(self.adopted_balances)
        if self.ok:
            return head + "; the journal agrees with the exchange"
        return (
            head
            + "; differences:\n  - "
            + "\n  - ".join(self.differences)
            + "\nTo take Upbit's balances as the journal's (recorded as adoption fills), run "
            "`lxa reconcile --adopt`; cancel open orders the journal does not know on Upbit."
        )


async def reconcile(
    manager: OrderManager,
    journal: PositionJournal,
    *,
    markets: Sequence[str],
    tolerance: Decimal = Decimal("0.00000001"),
    adopt: bool = False,
) -> ReconcileReport:
    """Reconcile the venue behind `manager` with `journal` for `markets`; never sends orders.

    `adopt` records each balance the fills cannot explain as an adoption fill (a person's
    decision: `lxa reconcile --adopt`). Raises `ExchangeError` when the exchange cannot be
    read at all (then nothing is known: the caller must not trade either).
    """
    report = ReconcileReport()
    await _settle_orders(manager, journal, report)
    known = {i["identifier"] for i in journal.list_order_intents()}
    for order in await manager.open_orders():
        if order.market in markets and order.identifier not in known:
            label = order.identifier or "(no identifier)"
            report.differences.append(
                f"open order {label} (uuid {order.uuid}) on Upbit, {order.side.value} "
                f"{order.volume} {order.market} at {order.price}, is not in the journal"
            )
    account = await manager.get_account()
    _compare_balances(journal, account, markets, tolerance, adopt, report)
    logger.info("reconciliation: %s", report.summary())
    return report


async def _settle_orders(
    manager: OrderManager, journal: PositionJournal, report: ReconcileReport
) -> None:
    """Look up every order whose outcome or fills the journal lacks; settle what it finds."""
    journaled: dict[str, Decimal] = {}
    for row in journal.list_fills():
        key = row["order_identifier"]
        journaled[key] = journaled.get(key, _ZERO) + Decimal(row["volume"])
    for intent in journal.list_order_intents():
        identifier = intent["identifier"]
        unresolved = intent["state"] in UNRESOLVED_STATES
        executed = intent.get("executed_volume") or _ZERO
        if not unresolved and executed <= journaled.get(identifier, _ZERO):
            continue
        try:
            order = await (
                manager.resolve(identifier) if unresolved else manager.get_order(identifier)
            )
        except ExchangeError as exc:
            report.differences.append(
                f"order {identifier} ({intent['state']} in the journal) could not be looked up: "
                f"{exc}"
            )
            continue
        if order is None:
            if unresolved:
                report.never_sent.append(identifier)
            else:
                report.differences.append(
                    f"order {identifier} is journaled {intent['state']} with {executed} executed "
                    "but Upbit does not find it"
                )
            continue
        report.adopted.append(identifier)
        added = _settle(journal, order)
        report.fills_recorded += added
        if added and order.market not in report.positions_aligned:
            report.positions_aligned.append(order.market)


def _settle(journal: PositionJournal, order: Order) -> int:
    """Write the order's fills the journal lacks, with the position they imply; count them."""
    if not order.fills:
        return 0
    return journal.settle_from_fills(order.market, [fill_row(fill) for fill in order.fills])


def _compare_balances(
    journal: PositionJournal,
    account: AccountSnapshot,
    markets: Sequence[str],
    tolerance: Decimal,
    adopt: bool,
    report: ReconcileReport,
) -> None:
    """Per market: agree, rebuild the position from the fills, adopt, or name the difference."""
    journal_positions = journal.positions()
    from_fills = journal.holdings_from_fills()
    for market in markets:
        held = account.positions.get(market)
        upbit_volume = held.volume if held is not None else _ZERO
        row = journal_positions.get(market)
        journal_volume = Decimal(str(row["volume"])) if row is not None else _ZERO
        filled = from_fills.get(market)
        fills_volume = filled.volume if filled is not None else _ZERO
        if abs(upbit_volume - journal_volume) <= tolerance:
            continue
        if abs(upbit_volume - fills_volume) <= tolerance:
            journal.rebuild_position(market)
            if market not in report.positions_aligned:
                report.positions_aligned.append(market)
            continue
        if adopt:
            gap = upbit_volume - fills_volume
            price = held.avg_buy_price if held is not None and held.avg_buy_price > 0 else None
            if price is None and gap > 0:
                report.differences.append(
                    f"{market}: Upbit holds {upbit_volume:f} with no average buy price to adopt"
                )
                continue
            journal.settle_from_fills(market, [_adoption_fill(market, gap, price or _ZERO)])
            report.adopted_balances.append(f"{market} {upbit_volume:f}")
            continue
        report.differences.append(
            f"{market}: Upbit holds {upbit_volume:f}, the journal {journal_volume:f} "
            f"(its fills add up to {fills_volume:f})"
        )


def _adoption_fill(market: str, gap: Decimal, price: Decimal) -> FillRow:
    """A fill that records taking Upbit's balance as the journal's (no fee, no trade)."""
    stamp = datetime.now(UTC)
    return {
        "order_identifier": f"{ADOPTED_PREFIX}{market}-{stamp:%Y%m%dT%H%M%S%f}",
        "market": market,
        "side": "bid" if gap > 0 else "ask",
        "price": price,
        "volume": abs(gap),
        "fee": _ZERO,
        "ts": stamp,
        "trade_uuid": None,
    }
