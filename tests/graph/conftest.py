"""Fixtures for graph tests; the helpers themselves live in graph_kit.py."""

from __future__ import annotations

import pytest
from graph_kit import make_exchange

from exchange.paper import PaperExchange


@pytest.fixture
async def exchange() -> PaperExchange:
    return await make_exchange()
