"""The journal's database: URL normalisation, the engine (SQLite pragmas, JSON), migrations."""

from __future__ import annotations

import json
import math
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "MIGRATIONS_DIR",
    "JournalUnavailable",
    "alembic_config",
    "create_engine",
    "display_url",
    "json_default",
    "normalise_url",
    "upgrade",
]

MIGRATIONS_DIR = Path(__file__).resolve().parents[1] / "migrations"

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite"}
_POSTGRES_SCHEMES = {"postgres", "postgresql"}
# Any constant works: it only serialises concurrent `Journal.open` calls on one Postgres database.
_MIGRATION_LOCK_KEY = 0x4C5841_5354


class JournalUnavailable(RuntimeError):
    """The journal's database cannot be opened or migrated.

    The message is one line: the database (its URL, without a password), what is wrong and
    what to do, e.g. `journal sqlite:///x.db cannot be opened: the file is not a database or
    is damaged; move it aside or restore a backup`.
    """


# SQLite's words for a file it cannot use, and what the operator can do about each.
_SQLITE_REASONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("file is not a database", "malformed", "file is encrypted"),
        "the file is not a database or is damaged; move it aside or restore a backup",
    ),
    (
        ("unable to open database file",),
        "the file cannot be opened; check that the path is a file in a writable folder",
    ),
    (
        ("readonly database", "read-only"),
        "the file is read-only; make it and its folder writable",
    ),
    (
        ("database is locked",),
        "the file is locked by another process; stop it or wait, then try again",
    ),
    (
        ("disk i/o error", "database or disk is full"),
        "the disk failed or is full; free space or check the disk",
    ),
)


def display_url(url: str | URL) -> str:
    """The journal URL as an operator wrote it: `sqlite:///path`, or the URL without password."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return str(url)
    if parsed.drivername in _SQLITE_DRIVERS:
        return f"sqlite:///{parsed.database}" if parsed.database else "sqlite://"
    backend = parsed.drivername.split("+", 1)[0]
    return parsed.set(drivername=backend).render_as_string(hide_password=True)


def _unavailable_reason(exc: sa.exc.DBAPIError) -> str:
    """What is wrong with the database, in words, from the driver's error."""
    detail = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
    lowered = detail.lower()
    for words, reason in _SQLITE_REASONS:
        if any(word in lowered for word in words):
            return reason
    return detail


def normalise_url(url: str | URL) -> URL:
    """Parse a journal URL; Postgres URLs get the psycopg 3 driver.

    Raises ValueError naming the scheme when it is neither SQLite nor PostgreSQL.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ValueError(f"not a database URL: {url!r}") from exc
    scheme = parsed.drivername
    if scheme in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite+pysqlite")
    if scheme.split("+", 1)[0] in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"unsupported journal URL scheme {scheme!r}: use sqlite:///path.db or postgresql://..."
    )


def json_default(value: Any) -> Any:
    """Encode the non-JSON values the journal and the event stream carry (Decimal, datetime)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _finite_only(value: Any) -> Any:
    """Replace NaN and infinities (not JSON; PostgreSQL refuses them) with null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite_only(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_only(item) for item in value]
    return value


def _json_dumps(value: Any) -> str:
    try:  # the usual case, all finite: the same text without first copying the value
        return json.dumps(value, default=json_default, ensure_ascii=False, allow_nan=False)
    except ValueError:
        pass
    return json.dumps(
        _finite_only(value), default=json_default, ensure_ascii=False, allow_nan=False
    )


def create_engine(url: URL) -> Engine:
    """The engine for a normalised journal URL: JSON columns encoded by `json_default`.

    SQLite files get WAL and a 30 s busy timeout (their folders are created, else
    `JournalUnavailable`); an in-memory database is one connection shared by every thread.
    """
    if url.drivername.startswith("sqlite"):
        database = url.database or ""
        in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if in_memory:
            engine = sa.create_engine(
                url,
                json_serializer=_json_dumps,
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            folder = Path(database).expanduser().parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise JournalUnavailable(
                    f"journal {display_url(url)} cannot be opened: its folder {folder} cannot "
                    f"be created ({exc.strerror or exc}); check the path and its permissions"
                ) from exc
            engine = sa.create_engine(url, json_serializer=_json_dumps)

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
                    cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.execute("PRAGMA busy_timeout=30000")
            finally:
                cursor.close()

        return engine
    return sa.create_engine(url, json_serializer=_json_dumps, pool_pre_ping=True)


def alembic_config() -> Config:
    """Return an Alembic config for the store migrations (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the journal schema to `revision` in one transaction.

    This is the journal's first connection: a database that cannot be opened or read (a
    damaged or foreign file, a server that does not answer) raises `JournalUnavailable`.
    """
    config = alembic_config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
    except sa.exc.DBAPIError as exc:
        raise JournalUnavailable(
            f"journal {display_url(engine.url)} cannot be opened: {_unavailable_reason(exc)}"
        ) from exc
