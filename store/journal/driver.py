"""The journal's per-bar statements, compiled once by SQLAlchemy and sent to the driver directly.

The engine writes a `run_started` event, then a decision with its events, and reads the trading
control row, at every bar close. Through SQLAlchemy Core each statement costs several times the
SQLite work itself (connection wrapper, execution context, cache lookup, result wrapping), and
the backtest runs thousands of bars a second. Here the SQL text comes from SQLAlchemy's own
compiler and every value goes through the column's own bind (or result) processor, as in
`store.journal.intents._ClaimStatement`, so rows read back exactly as the Core path writes them.

SQLite only (qmark parameters, `lastrowid`); a statement that would need a column default the
row does not carry is refused (`None`), and the caller uses Core instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect, Engine

__all__ = ["DriverInsert", "DriverSelectOne", "driver_cursor", "supports"]

Processor = Callable[[Any], Any]


def supports(engine: Engine) -> bool:
    """Whether this journal's statements can go to the driver directly (SQLite)."""
    return engine.dialect.name == "sqlite" and engine.dialect.paramstyle == "qmark"


@contextlib.contextmanager
def driver_cursor(engine: Engine) -> Iterator[Any]:
    """One transaction on a pooled DBAPI connection: commit on success, else roll back."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()
        connection.commit()
    except BaseException:
        with contextlib.suppress(Exception):
            connection.rollback()
        raise
    finally:
        connection.close()  # back to the pool


def _bind_processors(
    table: sa.Table, names: list[str], dialect: Dialect
) -> list[tuple[int, Processor]]:
    processors: list[tuple[int, Processor]] = []
    for index, name in enumerate(names):
        column_type = table.c[name].type.dialect_impl(dialect)
        processor = column_type.bind_processor(dialect)
        if processor is not None:
            processors.append((index, processor))
    return processors


class DriverInsert:
    """`INSERT INTO table (exactly these columns)`, its values bound as SQLAlchemy binds them."""

    def __init__(self, table: sa.Table, sql: str, names: list[str], dialect: Dialect) -> None:
        self.table = table
        self.sql = sql
        self.names = names
        self._processors = _bind_processors(table, names, dialect)

    @classmethod
    def compile(
        cls, table: sa.Table, keys: frozenset[str], dialect: Dialect
    ) -> DriverInsert | None:
        """Compile the insert of rows with `keys`; None when SQLAlchemy would add a default."""
        compiled = table.insert().compile(dialect=dialect, column_keys=sorted(keys))
        names = list(compiled.positiontup or ())
        if set(names) != set(keys) or len(names) != len(keys):
            return None  # a Python-side column default (or an unexpected bind) is involved
        return cls(table, str(compiled), names, dialect)

    def parameters(self, row: Mapping[str, Any]) -> list[Any]:
        """The row's values in statement order, converted by their columns' bind processors."""
        values = [row[name] for name in self.names]
        for index, processor in self._processors:
            values[index] = processor(values[index])
        return values

    def insert(self, cursor: Any, row: Mapping[str, Any]) -> int:
        """Insert one row on `cursor`; return its rowid (the autoincrement id)."""
        cursor.execute(self.sql, self.parameters(row))
        return int(cursor.lastrowid)


class DriverSelectOne:
    """`SELECT * FROM table WHERE key = ?`, its columns converted as SQLAlchemy converts them."""

    def __init__(self, table: sa.Table, key: str, dialect: Dialect) -> None:
        compiled = (
            table.select().where(table.c[key] == sa.bindparam("key")).compile(dialect=dialect)
        )
        self.sql = str(compiled)
        self.names = [column.key for column in table.c]
        self._processors: list[Processor | None] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in table.c
        ]
        key_type = table.c[key].type.dialect_impl(dialect)
        self._key_processor = key_type.bind_processor(dialect)

    def fetch(self, cursor: Any, key: Any) -> dict[str, Any] | None:
        """Return the row with `key` as a dict of column values, or None."""
        bound = self._key_processor(key) if self._key_processor is not None else key
        cursor.execute(self.sql, (bound,))
        row = cursor.fetchone()
        if row is None:
            return None
        return {
            name: value if processor is None else processor(value)
            for name, value, processor in zip(self.names, row, self._processors, strict=True)
        }
