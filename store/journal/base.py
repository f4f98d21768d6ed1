"""What every table group of the journal shares: the engine, row checks, upserts and filters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from store.journal.driver import DriverInsert, supports

__all__ = [
    "JournalTables",
    "as_dicts",
    "check_page",
    "checked",
    "equal_to",
    "in_period",
    "new_id",
    "upsert",
]


class JournalTables:
    """The base of each table group: its SQLAlchemy engine, and SQLite's driver shortcut.

    `store.journal.Journal` is every group over one engine; a group alone works too.
    """

    def __init__(self, engine: Engine) -> None:
        """Wrap an engine whose database is already migrated; prefer `Journal.open`."""
        self.engine = engine
        # The per-bar statements (store.journal.driver) go to SQLite's driver directly.
        self._driver = supports(engine)
        self._driver_inserts: dict[tuple[str, frozenset[str]], DriverInsert | None] = {}

    def _driver_plan(
        self, rows: Sequence[tuple[sa.Table, Mapping[str, Any]]]
    ) -> list[DriverInsert] | None:
        """The driver-level insert of each row, or None when any must go through Core."""
        if not self._driver:
            return None
        plan = []
        for table, row in rows:
            key = (table.name, frozenset(row))
            if key not in self._driver_inserts:
                self._driver_inserts[key] = DriverInsert.compile(table, key[1], self.engine.dialect)
            statement = self._driver_inserts[key]
            if statement is None:
                return None
            plan.append(statement)
        return plan


def checked(table: sa.Table, row: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `row`; ValueError naming any key that is not a column of `table`."""
    unknown = sorted(set(row) - set(table.c.keys()))
    if unknown:
        raise ValueError(f"unknown column(s) for {table.name}: {', '.join(unknown)}")
    return dict(row)


def as_dicts(result: sa.CursorResult[Any]) -> list[dict[str, Any]]:
    """Every row of `result` as a dict of column values."""
    return [dict(row._mapping) for row in result]


def new_id(result: sa.CursorResult[Any]) -> int:
    """The id of the row an insert wrote."""
    key = result.inserted_primary_key
    if key is None or key[0] is None:  # pragma: no cover - both backends report the new id
        raise RuntimeError("the database did not report the new row's id")
    return int(key[0])


def upsert(
    connection: Connection,
    table: sa.Table,
    key: str,
    values: dict[str, Any],
    keep_on_update: frozenset[str],
) -> None:
    """Update the given columns of the row with `values[key]`, or insert it when missing.

    A partial row can update an existing one; inserting needs every NOT NULL column. The
    insert still carries ON CONFLICT so that a concurrent insert of the same key updates.
    """
    updates = {name: value for name, value in values.items() if name != key}
    updates = {name: value for name, value in updates.items() if name not in keep_on_update}
    if updates:
        result = connection.execute(
            table.update().where(table.c[key] == values[key]).values(**updates)
        )
        if result.rowcount:
            return
    dialect = connection.dialect.name
    insert: Any
    if dialect == "sqlite":
        insert = sqlite.insert(table)
    elif dialect == "postgresql":
        insert = postgresql.insert(table)
    else:  # pragma: no cover - normalise_url admits only these two
        raise ValueError(f"unsupported dialect {dialect!r}")
    stmt = insert.values(**values)
    if updates:
        excluded = {name: stmt.excluded[name] for name in updates}
        stmt = stmt.on_conflict_do_update(index_elements=[table.c[key]], set_=excluded)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=[table.c[key]])
    connection.execute(stmt)


# ---- the filters of the list, page and count queries ------------------------------------


def equal_to(table: sa.Table, **values: Any) -> list[sa.ColumnElement[bool]]:
    """`column == value` for each given value that is not None (None means: any)."""
    return [table.c[name] == value for name, value in values.items() if value is not None]


def in_period(
    column: sa.ColumnElement[Any], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    """`since <= column < until`, each bound only when given."""
    conditions: list[sa.ColumnElement[bool]] = []
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)
    return conditions


def check_page(limit: int, offset: int) -> None:
    """Refuse a negative page size or offset with a ValueError naming both."""
    if limit < 0 or offset < 0:
        raise ValueError(f"limit and offset must be >= 0, got limit={limit} offset={offset}")
