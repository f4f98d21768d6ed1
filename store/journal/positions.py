"""Positions: the coins held now, and the returns of the positions closed most recently."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from store.journal.base import JournalTables, as_dicts, checked, upsert
from store.journal.orders import _existing_fill_id
from store.rows import FillRow, PositionRow
from store.schema import events, fills, positions, utc_now

__all__ = ["Holding", "Positions", "holdings_from_fills"]

_ZERO = Decimal(0)


class Holding(NamedTuple):
    """What a market's fills add up to: the coin volume held and its average buy price."""

    volume: Decimal
    avg_buy_price: Decimal


def holdings_from_fills(rows: Iterable[Mapping[str, Any]]) -> dict[str, Holding]:
    """Replay fills (oldest first) into the volume held per market and its average buy price.

    Buys move the average (volume-weighted, fees apart as Upbit's `avg_buy_price` does); sells
    reduce the volume and leave the average; a position sold to zero starts afresh. Markets
    left flat are omitted. KRW markets charge fees in KRW, so coin volumes add up exactly.
    """
    held: dict[str, Holding] = {}
    for row in rows:
        market, volume, price = row["market"], Decimal(row["volume"]), Decimal(row["price"])
        before = held.get(market, Holding(_ZERO, _ZERO))
        if row["side"] == "bid":
            total = before.volume + volume
            average = (before.volume * before.avg_buy_price + volume * price) / total
            held[market] = Holding(total, average)
        else:
            left = before.volume - volume
            held[market] = (
                Holding(left, before.avg_buy_price) if left > 0 else Holding(_ZERO, _ZERO)
            )
    return {market: h for market, h in held.items() if h.volume > 0}


class Positions(JournalTables):
    """Write and read open positions; read the results of closed ones."""

    def positions(self) -> dict[str, dict[str, Any]]:
        """Return the open positions keyed by market."""
        with self.engine.connect() as connection:
            rows = as_dicts(connection.execute(positions.select().order_by(positions.c.market)))
        return {row["market"]: row for row in rows}

    def upsert_position(self, row: PositionRow) -> None:
        """Insert or update the position for `row["market"]`.

        `opened_at` is kept from the first insert; `updated_at` defaults to now.
        """
        values = checked(positions, row)
        if "market" not in values:
            raise ValueError("position row needs a market")
        values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            upsert(connection, positions, "market", values, frozenset({"opened_at"}))

    def settle_fills(
        self, market: str, fill_rows: list[FillRow], position: PositionRow | None
    ) -> None:
        """Write an order's fills and the position they leave (None: flat) in one transaction.

        Either both are in the journal or neither: a process that dies here never keeps the
        fills and loses the position. A fill with a known `trade_uuid` is not re-added.
        """
        values = None
        if position is not None:
            values = checked(positions, position)
            if values.get("market") != market:
                raise ValueError(f"position row is for {values.get('market')}, not {market}")
            values.setdefault("updated_at", utc_now())
        with self.engine.begin() as connection:
            for row in fill_rows:
                if _existing_fill_id(connection, row.get("trade_uuid")) is None:
                    connection.execute(fills.insert().values(**checked(fills, row)))
            if values is None:
                connection.execute(positions.delete().where(positions.c.market == market))
            else:
                upsert(connection, positions, "market", values, frozenset({"opened_at"}))

    def holdings_from_fills(self) -> dict[str, Holding]:
        """What the journal's own fills say is held, per market (see `holdings_from_fills`)."""
        with self.engine.connect() as connection:
            return holdings_from_fills(_all_fills(connection))

    def settle_from_fills(self, market: str, fill_rows: list[FillRow]) -> int:
        """Add fills the journal missed and rebuild `market`'s position from all its fills.

        One transaction: the fills (once each by `trade_uuid`) and the position they imply (its
        stop-loss and take-profit kept; deleted when flat). Reconciliation uses it for orders
        that filled while no process was there to settle them. Returns the fills added.
        """
        with self.engine.begin() as connection:
            added = 0
            for row in fill_rows:
                if row["market"] != market:
                    raise ValueError(f"fill for {row['market']} settled as {market}")
                if _existing_fill_id(connection, row.get("trade_uuid")) is None:
                    connection.execute(fills.insert().values(**checked(fills, row)))
                    added += 1
            _rebuild(connection, market)
            return added

    def rebuild_position(self, market: str) -> Holding | None:
        """Set `market`'s position to what its fills imply (stops kept); return it (None: flat)."""
        with self.engine.begin() as connection:
            return _rebuild(connection, market)

    def delete_position(self, market: str) -> bool:
        """Delete the position for `market`; return whether there was one."""
        with self.engine.begin() as connection:
            result = connection.execute(positions.delete().where(positions.c.market == market))
            return bool(result.rowcount)

    def recent_results(self, limit: int = 20) -> list[float]:
        """Return the returns of the last closed positions (`position_closed`), oldest first."""
        stmt = (
            sa.select(events.c.payload)
            .where(events.c.type == "position_closed")
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as connection:
            payloads = [payload for (payload,) in connection.execute(stmt)]
        return [float(p["return"]) for p in reversed(payloads) if p and "return" in p]


def _all_fills(connection: Connection, market: str | None = None) -> list[dict[str, Any]]:
    stmt = fills.select().order_by(fills.c.ts, fills.c.id)
    if market is not None:
        stmt = stmt.where(fills.c.market == market)
    return as_dicts(connection.execute(stmt))


def _rebuild(connection: Connection, market: str) -> Holding | None:
    """Write `market`'s position as its fills imply, inside the caller's transaction."""
    holding = holdings_from_fills(_all_fills(connection, market)).get(market)
    if holding is None:
        connection.execute(positions.delete().where(positions.c.market == market))
        return None
    values = {
        "market": market,
        "volume": holding.volume,
        "avg_buy_price": holding.avg_buy_price,
        "updated_at": utc_now(),
    }
    upsert(connection, positions, "market", checked(positions, values), frozenset({"opened_at"}))
    return holding
