"""Stored answers, keyed by everything that determines them."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class ResponseCache(Protocol):
    """Stored answers keyed by provider, model, prompt hash and rendered-input hash."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: Mapping[str, Any]) -> None: ...


@dataclass
class MemoryResponseCache:
    """A response cache that lives as long as the process."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored answer or None."""
        return self.entries.get(key)

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Store an answer."""
        self.entries[key] = dict(value)


def cache_key(provider: str, model: str, prompt_ref: str, input_sha256: str) -> str:
    """Key a response by everything that determines it."""
    return hashlib.sha256(f"{provider}|{model}|{prompt_ref}|{input_sha256}".encode()).hexdigest()
