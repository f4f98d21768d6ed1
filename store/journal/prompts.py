"""Prompt versions: every saved prompt text, with who saved it, why, and the diff."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from store.journal.base import JournalTables, as_dicts, new_id
from store.schema import prompt_versions, utc_now

__all__ = ["PromptVersions"]


class PromptVersions(JournalTables):
    """Append prompt versions and read a prompt's history."""

    def record_prompt_version(
        self,
        name: str,
        sha256: str,
        text: str,
        *,
        created_by: str,
        message: str = "",
        previous_sha256: str | None = None,
        diff: str = "",
    ) -> dict[str, Any]:
        """Append one prompt version and return it."""
        values = {
            "name": name,
            "sha256": sha256,
            "text": text,
            "created_at": utc_now(),
            "created_by": created_by,
            "message": message,
            "previous_sha256": previous_sha256,
            "diff": diff,
        }
        with self.engine.begin() as connection:
            version_id = new_id(connection.execute(prompt_versions.insert().values(**values)))
        return {"id": version_id, **values}

    def prompt_versions(self, name: str, *, with_text: bool = False) -> list[dict[str, Any]]:
        """Return a prompt's versions newest first (texts only when asked)."""
        columns = [c for c in prompt_versions.c if with_text or c.name != "text"]
        stmt = (
            sa.select(*columns)
            .where(prompt_versions.c.name == name)
            .order_by(prompt_versions.c.id.desc())
        )
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))

    def prompt_version(self, version_id: int) -> dict[str, Any] | None:
        """Return one prompt version with its text, or None."""
        stmt = prompt_versions.select().where(prompt_versions.c.id == version_id)
        with self.engine.connect() as connection:
            row = connection.execute(stmt).first()
        return None if row is None else dict(row._mapping)
