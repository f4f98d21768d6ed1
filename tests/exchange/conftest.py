"""Fixtures shared by the exchange tests (each test module defines its own `fake` server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from exchange.upbit import UpbitExchange


@pytest.fixture
async def venue(fake: FakeUpbit) -> AsyncIterator[UpbitExchange]:
    """`UpbitExchange` over the module's fake Upbit (pyupbit signs, fills polled every 10 ms)."""
    exchange = UpbitExchange.connect(
        fake.base_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, fill_poll_s=0.01
    )
    try:
        yield exchange
    finally:
        await exchange.aclose()
