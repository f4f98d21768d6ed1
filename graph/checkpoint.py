"""One factory for the checkpointers: in-memory (tests), SQLite (default) and Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver

POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


class CheckpointerURLError(ValueError):
    """The checkpointer URL has a scheme this factory does not know."""


def checkpointer_kind(url: str) -> str:
    """Return 'memory', 'sqlite', 'postgres' or 'none' for a checkpointer URL, or raise.

    'none' is internal (backtests); the LXA_CHECKPOINT_URL setting does not accept it.
    """
    scheme = url.split("://", 1)[0].lower() if "://" in url else url.lower()
    if scheme == "memory":
        return "memory"
    if scheme == "none":
        return "none"
    if scheme == "sqlite":
        return "sqlite"
    if scheme in POSTGRES_SCHEMES:
        return "postgres"
    raise CheckpointerURLError(
        f"unknown checkpointer URL scheme {scheme!r} (LXA_CHECKPOINT_URL): "
        "use 'memory', sqlite:///path or postgresql://..."
    )


def sqlite_path(url: str) -> Path:
    """Return the file path of a sqlite:/// URL."""
    path = url.split("://", 1)[1]
    if path.startswith("/") and not path.startswith("//"):
        path = path[1:]  # sqlite:///relative/path
    elif path.startswith("//"):
        path = path[1:]  # sqlite:////absolute/path
    return Path(path)


def postgres_conninfo(url: str) -> str:
    """Return a libpq connection string for a Postgres URL (drops a SQLAlchemy driver)."""
    rest = url.split("://", 1)[1]
    return f"postgresql://{rest}"


@asynccontextmanager
async def open_checkpointer(url: str) -> AsyncIterator[BaseCheckpointSaver | None]:
    """Open the checkpointer `url` names, create its tables, and close it afterwards.

    "none" (a backtest, which nothing resumes or forks) yields no checkpointer at all.
    """
    kind = checkpointer_kind(url)
    if kind == "none":
        yield None
    elif kind == "memory":
        yield InMemorySaver()
    elif kind == "sqlite":
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        path = sqlite_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(
            conninfo=postgres_conninfo(url),
            min_size=1,
            max_size=4,
            open=False,
            # a connection a database restart broke is replaced, not handed to the next run
            check=AsyncConnectionPool.check_connection,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
        )
        await pool.open(wait=True, timeout=10)
        try:
            postgres = AsyncPostgresSaver(pool)  # type: ignore[arg-type]
            await postgres.setup()
            yield postgres
        finally:
            await pool.close()
