"""The fake Upbit itself: it must hold the line the real one holds, or other tests prove nothing."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from exchange.upbit_client import UpbitApiError, UpbitKeys, UpbitRestClient, jwt_headers

BTC = "KRW-BTC"
KEYS = UpbitKeys(ACCESS_KEY, SECRET_KEY)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(
        krw=Decimal(1_000_000), limits={"order": 2, "default": 30, "quotation": 10}
    ) as server:
        server.set_price(BTC, Decimal(50_000_000))
        yield server


@pytest.fixture
async def raw(fake: FakeUpbit) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        yield client


async def test_every_reply_carries_remaining_req(fake: FakeUpbit, raw: httpx.AsyncClient) -> None:
    ok = await raw.get("/v1/accounts", headers=jwt_headers(KEYS, None))
    unauthorised = await raw.get("/v1/accounts")
    public = await raw.get("/v1/orderbook", params={"markets": BTC})

    pattern = re.compile(r"^group=(default|quotation); min=\d+; sec=\d+$")
    assert (ok.status_code, unauthorised.status_code, public.status_code) == (200, 401, 200)
    for reply in (ok, unauthorised, public):
        assert pattern.match(reply.headers["Remaining-Req"]), reply.headers


async def test_a_reused_nonce_is_refused(raw: httpx.AsyncClient) -> None:
    headers = jwt_headers(KEYS, None)

    first = await raw.get("/v1/accounts", headers=headers)
    second = await raw.get("/v1/accounts", headers=headers)

    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json()["error"]["name"] == "nonce_used"


async def test_requests_over_the_per_second_limit_get_429(fake: FakeUpbit) -> None:
    body = {"market": BTC, "side": "bid", "price": "5000", "ord_type": "price"}
    statuses = []
    async with httpx.AsyncClient(base_url=fake.base_url) as raw:
        for n in range(3):
            params = {**body, "identifier": f"burst-{n}"}
            reply = await raw.post("/v1/orders", json=params, headers=jwt_headers(KEYS, params))
            statuses.append(reply.status_code)

    assert statuses == [201, 201, 429]
    assert len(fake.orders) == 2


async def test_trades_ticks_serve_loaded_trades_newest_first_with_a_cursor(fake: FakeUpbit) -> None:
    fake.load_trades(
        BTC,
        [
            {
                "market": BTC,
                "sequential_id": seq,
                "trade_price": 50_000_000.0,
                "trade_volume": 0.1,
                "ask_bid": "BID",
                "timestamp": 1_764_000_000_000 + seq,
            }
            for seq in (101, 102, 103, 104)
        ],
    )
    client = UpbitRestClient(fake.base_url)
    try:
        newest = await client.trades_ticks(BTC, count=2)
        older = await client.trades_ticks(BTC, count=5, cursor="103")
    finally:
        await client.aclose()

    assert [t["sequential_id"] for t in newest] == [104, 103]
    assert [t["sequential_id"] for t in older] == [102, 101]


async def test_market_that_does_not_exist_is_refused(fake: FakeUpbit) -> None:
    client = UpbitRestClient(fake.base_url, keys=KEYS)
    try:
        with pytest.raises(UpbitApiError, match="market_does_not_exist"):
            await client.create_order(
                {
                    "market": "KRW-NOPE",
                    "side": "bid",
                    "price": "5000",
                    "ord_type": "price",
                    "identifier": "x",
                }
            )
    finally:
        await client.aclose()


def test_only_exchange_upbit_imports_pyupbit() -> None:
    importers = sorted(
        str(path.relative_to(ROOT))
        for package in ("graph", "nodes", "ml", "exchange", "store", "prompts", "api", "app")
        for path in (ROOT / package).rglob("*.py")
        if re.search(r"^\s*(import pyupbit|from pyupbit)", path.read_text(encoding="utf-8"), re.M)
    )

    assert importers == ["exchange/upbit.py"]
