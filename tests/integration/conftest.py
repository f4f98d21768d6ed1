"""Fixtures: local Groq- and Ollama-compatible servers (see llm_servers.py).

One server of each kind runs for the whole session (start-up is ~10 ms but a clean stop takes
~0.25 s); the per-test fixtures reset it, so every test starts with an empty script, no
recorded requests and the default reply `Text("OK")`. A test that needs a differently
configured server (an API key, other model names) starts its own with `with GroqServer(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from llm_servers import GroqServer, OllamaServer


@pytest.fixture(scope="session")
def _groq_server_session() -> Iterator[GroqServer]:
    with GroqServer() as server:
        yield server


@pytest.fixture(scope="session")
def _ollama_server_session() -> Iterator[OllamaServer]:
    with OllamaServer() as server:
        yield server


@pytest.fixture
def groq_server(_groq_server_session: GroqServer) -> Iterator[GroqServer]:
    """Yield the running Groq-compatible server, reset for this test."""
    _groq_server_session.reset()
    yield _groq_server_session
    _groq_server_session.reset()


@pytest.fixture
def ollama_server(_ollama_server_session: OllamaServer) -> Iterator[OllamaServer]:
    """Yield the running Ollama-compatible server, reset for this test."""
    _ollama_server_session.reset()
    yield _ollama_server_session
    _ollama_server_session.reset()
