"""The LLM response cache kept in the journal database, so answers survive restarts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from store.journal.base import JournalTables
from store.schema import llm_cache, utc_now

__all__ = ["JournalResponseCache", "ResponseCacheTable"]


class ResponseCacheTable(JournalTables):
    """Store and look up LLM answers by their cache key."""

    def cached_response(self, key: str) -> dict[str, Any] | None:
        """Return a stored LLM answer by its cache key, or None."""
        stmt = sa.select(llm_cache.c.response).where(llm_cache.c.key == key)
        with self.engine.connect() as connection:
            return connection.execute(stmt).scalar_one_or_none()

    def store_response(self, key: str, value: Mapping[str, Any]) -> None:
        """Store an LLM answer under its cache key (the first answer stored wins)."""
        row = {
            "key": key,
            "provider": str(value.get("provider", "")),
            "model": str(value.get("model", "")),
            "prompt_ref": str(value.get("prompt_ref", "")),
            "created_at": utc_now(),
            "response": dict(value),
        }
        with self.engine.begin() as connection:
            exists = connection.execute(
                sa.select(llm_cache.c.key).where(llm_cache.c.key == key)
            ).first()
            if exists is None:
                connection.execute(llm_cache.insert().values(**row))


class JournalResponseCache:
    """The LLM client's response cache (`get`, `put`) over the journal's table."""

    def __init__(self, journal: ResponseCacheTable) -> None:
        self._journal = journal

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored answer or None."""
        return self._journal.cached_response(key)

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Store an answer."""
        self._journal.store_response(key, value)
