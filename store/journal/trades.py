"""Round trips for people: every position from its first buy to the sell that left it flat.

Read-only. Fills are replayed oldest first per market at average cost (buy fees in the cost,
sell fees out of the proceeds), so a trip's realised P&L is what its sells brought in above
what the coins sold had cost, and a closed trip's P&L is its proceeds less its cost. Why a
trip closed is read from what the engine wrote:

- the sell order's identifier: `...-stop_loss` / `...-take_profit` (app/engine/protections),
  `...-emergency-<detector>` (the watchdog, app/engine/emergency), `...-flatten...` (the
  operator's flatten, app/engine/control), `adopted-...` (an adoption fill from
  `lxa reconcile --adopt`: no trade, the journal taking the exchange's balance);
- a sell placed by a graph run (its order's `run_id`): the policy's exit, with the run's
  decision reason (the rule that decided, e.g. `exit_signal`, `exit_time`);
- the `position_closed` event of that order (its `reason` and `return`), when journaled.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from store.journal.base import JournalTables, as_dicts, equal_to
from store.schema import decisions, events, fills, orders

__all__ = ["EXIT_KINDS", "Trades", "exit_reason", "round_trips_from_fills"]

ADOPTED_PREFIX = "adopted-"
# Why a trip closed: the policy's exit, a stop, the watchdog, the operator, an adoption.
EXIT_KINDS = (
    "ml_exit",
    "stop_loss",
    "take_profit",
    "watchdog",
    "flatten",
    "adopted",
    "other",
)
_ZERO = Decimal(0)


def exit_reason(
    identifier: str, run_id: str | None, run_reason: str | None = None
) -> tuple[str, str | None]:
    """Return (kind, detail) for a sell: kind is one of EXIT_KINDS, detail names the rule.

    `detail` is the watchdog's detector, or the policy's rule (the run's decision reason).
    """
    if identifier.startswith(ADOPTED_PREFIX):
        return "adopted", None
    if "-emergency-" in identifier:
        detector = identifier.split("-emergency-", 1)[1]
        return "watchdog", detector or None
    if identifier.endswith("-stop_loss"):
        return "stop_loss", None
    if identifier.endswith("-take_profit"):
        return "take_profit", None
    if "-flatten" in identifier:
        return "flatten", None
    if run_id:
        return "ml_exit", run_reason or None
    return "other", None


class _Open:
    """A position being built from its fills (average cost, fees in the cost)."""

    def __init__(self, fill: dict[str, Any]) -> None:
        self.first = fill
        self.volume = _ZERO
        self.cost = _ZERO  # what the coins held now cost, buy fees included
        self.bought_volume = _ZERO
        self.bought_value = _ZERO
        self.sold_volume = _ZERO
        self.sold_value = _ZERO
        self.fees = _ZERO
        self.spent = _ZERO  # everything paid for the coins, buy fees included
        self.realised = _ZERO
        self.fills: list[int] = []
        self.exit: dict[str, Any] | None = None


def round_trips_from_fills(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold fills (oldest first, each with its order's `run_id` and `run_reason`) into trips.

    A trip opens on a buy while flat, adds the buys that follow and closes on the sell that
    leaves it flat (a trip still holding coins is `open`). Sells with nothing held are kept
    as trips of their own (`unmatched`), so nothing a fill says is lost. Returned oldest first.
    """
    trips: list[dict[str, Any]] = []
    held: dict[str, _Open] = {}
    for row in rows:
        market = row["market"]
        price, volume, fee = Decimal(row["price"]), Decimal(row["volume"]), Decimal(row["fee"])
        trip = held.get(market)
        if row["side"] == "bid":
            if trip is None:
                trip = held[market] = _Open(row)
            trip.volume += volume
            trip.cost += price * volume + fee
            trip.spent += price * volume + fee
            trip.bought_volume += volume
            trip.bought_value += price * volume
            trip.fees += fee
            trip.fills.append(int(row["id"]))
            continue
        if trip is None or trip.volume <= 0:
            lone = _Open(row)
            lone.sold_volume, lone.sold_value, lone.fees = volume, price * volume, fee
            lone.realised = price * volume - fee
            lone.fills.append(int(row["id"]))
            lone.exit = row
            trips.append(_trip(market, lone, status="unmatched"))
            continue
        sold = min(volume, trip.volume)
        cost_of_sold = trip.cost * sold / trip.volume
        trip.realised += price * volume - fee - cost_of_sold
        trip.cost -= cost_of_sold
        trip.volume -= sold
        trip.sold_volume += volume
        trip.sold_value += price * volume
        trip.fees += fee
        trip.fills.append(int(row["id"]))
        if trip.volume <= 0:
            trip.exit = row
            trips.append(_trip(market, trip, status="closed"))
            del held[market]
    for market, trip in held.items():
        trips.append(_trip(market, trip, status="open"))
    trips.sort(key=lambda t: (t["entry_ts"] or t["exit_ts"], t["fill_ids"][0]))
    return trips


def _trip(market: str, trip: _Open, *, status: str) -> dict[str, Any]:
    entry = trip.first if trip.first["side"] == "bid" else None
    last = trip.exit
    kind, detail = (None, None)
    if last is not None:
        kind, detail = exit_reason(
            last["order_identifier"], last.get("run_id"), last.get("run_reason")
        )
    entry_kind = None
    if entry is not None:
        entry_kind = "adopted" if entry["order_identifier"].startswith(ADOPTED_PREFIX) else "entry"
    cost = trip.spent
    return {
        "market": market,
        "status": status,
        "entry_ts": entry["ts"] if entry else None,
        "entry_kind": entry_kind,
        "entry_price": trip.bought_value / trip.bought_volume if trip.bought_volume else None,
        "entry_run_id": entry.get("run_id") if entry else None,
        "entry_order": entry["order_identifier"] if entry else None,
        "exit_ts": last["ts"] if last else None,
        "exit_price": trip.sold_value / trip.sold_volume if trip.sold_volume else None,
        "exit_run_id": last.get("run_id") if last else None,
        "exit_order": last["order_identifier"] if last else None,
        "exit_kind": kind,
        "exit_detail": detail,
        "volume": trip.bought_volume if trip.bought_volume else trip.sold_volume,
        "volume_open": trip.volume if status == "open" else _ZERO,
        "cost_open": trip.cost if status == "open" else _ZERO,
        "cost": cost,
        "fees": trip.fees,
        "realised_pnl": trip.realised,
        "return": float(trip.realised / cost) if status == "closed" and cost > 0 else None,
        "fill_ids": trip.fills,
    }


def _policy_rule(nodes_json: Any) -> str | None:
    """The rule the policy named for a run's proposal (`nodes.ml_signal.proposal.reason`)."""
    signal = (nodes_json or {}).get("ml_signal") if isinstance(nodes_json, dict) else None
    proposal = signal.get("proposal") if isinstance(signal, dict) else None
    reason = proposal.get("reason") if isinstance(proposal, dict) else None
    return str(reason) if reason else None


class Trades(JournalTables):
    """Read round trips, and place wall-clock events on the bar they happened in."""

    def fills_with_orders(self, *, market: str | None = None) -> list[dict[str, Any]]:
        """Every fill oldest first, with its order's `run_id`, and that run's policy rule
        (`run_reason`, else its decision's reason) and decision reason (`run_decision`)."""
        stmt = (
            sa.select(
                *fills.c,
                orders.c.run_id,
                decisions.c.reason.label("run_decision"),
                decisions.c.nodes.label("run_nodes"),
            )
            .select_from(
                fills.outerjoin(orders, orders.c.identifier == fills.c.order_identifier).outerjoin(
                    decisions, decisions.c.run_id == orders.c.run_id
                )
            )
            .where(*equal_to(fills, market=market))
            .order_by(fills.c.ts, fills.c.id)
        )
        with self.engine.connect() as connection:
            rows = as_dicts(connection.execute(stmt))
        for row in rows:
            row["run_reason"] = _policy_rule(row.pop("run_nodes")) or row["run_decision"]
        return rows

    def round_trips(self, *, market: str | None = None) -> list[dict[str, Any]]:
        """Every round trip in the journal, oldest first (see `round_trips_from_fills`).

        Each closed trip carries the `position_closed` event of its last sell, when one was
        journaled (`closed_event_id`, `closed_reason`).
        """
        trips = round_trips_from_fills(self.fills_with_orders(market=market))
        closed = self._position_closed_by_identifier()
        for trip in trips:
            event = closed.get(trip["exit_order"] or "")
            trip["closed_event_id"] = event["id"] if event else None
            trip["closed_reason"] = (event["payload"] or {}).get("reason") if event else None
        return trips

    def _position_closed_by_identifier(self) -> dict[str, dict[str, Any]]:
        stmt = events.select().where(events.c.type == "position_closed").order_by(events.c.id)
        with self.engine.connect() as connection:
            rows = as_dicts(connection.execute(stmt))
        return {
            str((row["payload"] or {}).get("identifier")): row
            for row in rows
            if (row["payload"] or {}).get("identifier")
        }

    def bar_times(self, walls: list[datetime]) -> list[datetime | None]:
        """The bar each wall-clock time fell in: the first run recorded at or after it.

        Events (a watchdog trigger) carry the wall clock; in a replay the bars are months
        earlier. A trigger fires on the ticks of a bar before that bar's run is recorded, so
        the first run recorded after it names its bar; the last run before, when none follows.
        """
        found: list[datetime | None] = []
        with self.engine.connect() as connection:
            for wall in walls:
                after = connection.execute(
                    sa.select(decisions.c.bar_ts)
                    .where(decisions.c.created_at >= wall)
                    .order_by(decisions.c.created_at)
                    .limit(1)
                ).scalar()
                if after is None:
                    after = connection.execute(
                        sa.select(decisions.c.bar_ts)
                        .where(decisions.c.created_at < wall)
                        .order_by(decisions.c.created_at.desc())
                        .limit(1)
                    ).scalar()
                found.append(after)
        return found
