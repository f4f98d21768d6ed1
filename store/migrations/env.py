"""Alembic environment for the journal; `store.journal.upgrade` hands it an open connection."""

from __future__ import annotations

from alembic import context

from store.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    """Run the migrations on the connection passed in `config.attributes["connection"]`."""
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError(
            "store migrations need an open connection in config.attributes['connection'];"
            " run them through store.journal.upgrade(engine)"
        )
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) mode is not supported for the store migrations")
run_migrations_online()
