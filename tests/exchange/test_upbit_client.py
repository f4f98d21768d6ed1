"""The thin Upbit client and UpbitExchange against the fake: auth, typed errors, no leaked keys."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from exchange.ratelimit import RateLimiter
from exchange.types import ExchangeError, OrderRequest, OrderState, OrderType, Side
from exchange.upbit import UpbitExchange, order_from_upbit, pyupbit_signer
from exchange.upbit_client import (
    MalformedReply,
    UpbitApiError,
    UpbitKeys,
    UpbitRestClient,
    UpbitTransportError,
    jwt_headers,
    query_string,
    request_group,
)

BTC = "KRW-BTC"
KEYS = UpbitKeys(ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price(BTC, Decimal(50_000_000))
        yield server


def jwt_payload(headers: dict[str, str]) -> dict[str, Any]:
    token = headers["Authorization"].removeprefix("Bearer ")
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


# -- authentication ------------------------------------------------------------------------


def test_query_hash_is_sha512_of_the_documented_query_string() -> None:
    params = {"market": BTC, "states[]": ["wait", "watch"], "limit": 100}

    payload = jwt_payload(jwt_headers(KEYS, params))

    expected = "market=KRW-BTC&states[]=wait&states[]=watch&limit=100"
    assert query_string(params) == expected
    assert payload["query_hash"] == hashlib.sha512(expected.encode()).hexdigest()
    assert payload["query_hash_alg"] == "SHA512"
    assert payload["access_key"] == ACCESS_KEY


def test_pyupbit_signer_hashes_the_same_query() -> None:
    params = {"market": BTC, "side": "bid", "price": "10000", "ord_type": "price"}

    ours = jwt_payload(jwt_headers(KEYS, params))
    theirs = jwt_payload(pyupbit_signer(KEYS)(params))

    assert theirs["query_hash"] == ours["query_hash"]
    assert theirs["nonce"] != ours["nonce"]


@pytest.mark.parametrize("signed_by", ["thin client", "pyupbit"])
async def test_signed_calls_with_parameters_pass_the_fakes_jwt_check(
    fake: FakeUpbit, signed_by: str
) -> None:
    signer = pyupbit_signer(KEYS) if signed_by == "pyupbit" else None
    client = UpbitRestClient(fake.base_url, keys=KEYS, signer=signer)
    try:
        chance = await client.order_chance(BTC)
        opened = await client.open_orders(BTC)
        created = await client.create_order(
            {"market": BTC, "side": "bid", "price": "10000", "ord_type": "price", "identifier": "a"}
        )
    finally:
        await client.aclose()

    assert chance["market"]["id"] == BTC
    assert opened == []
    assert created["identifier"] == "a"
    assert fake.auth_failures == []


async def test_a_query_hash_over_other_parameters_is_refused(fake: FakeUpbit) -> None:
    client = UpbitRestClient(
        fake.base_url, signer=lambda params: jwt_headers(KEYS, {"market": "KRW-ETH"})
    )
    try:
        with pytest.raises(UpbitApiError, match="401 invalid_query_payload"):
            await client.order_chance(BTC)
    finally:
        await client.aclose()

    assert fake.auth_failures == ["query_hash mismatch"]


async def test_a_wrong_secret_is_refused(fake: FakeUpbit) -> None:
    client = UpbitRestClient(fake.base_url, keys=UpbitKeys(ACCESS_KEY, "not-the-secret"))
    try:
        with pytest.raises(UpbitApiError, match="401 jwt_verification: bad signature"):
            await client.accounts()
    finally:
        await client.aclose()


def test_request_groups_follow_upbits_limits() -> None:
    assert request_group("POST", "/v1/orders") == "order"
    assert request_group("DELETE", "/v1/order") == "order"
    assert request_group("GET", "/v1/order") == "default"
    assert request_group("GET", "/v1/orderbook") == "quotation"
    assert request_group("GET", "/v1/trades/ticks") == "quotation"


def test_rest_url_must_be_http() -> None:
    with pytest.raises(ValueError, match="http:// or https://"):
        UpbitRestClient("ftp://example", keys=KEYS)


# -- errors are exceptions, never None -----------------------------------------------------


async def test_server_error_is_an_exchange_error_naming_the_call(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    fake.fail_next(4, status=500, path="/v1/accounts")  # the read and its three retries

    with pytest.raises(UpbitApiError, match=r"GET /v1/accounts answered 500 server_error"):
        await venue.get_account()
    assert venue.client.read_retries == 3


async def test_a_transient_read_failure_is_retried_and_never_reaches_the_caller(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    fake.fail_next(1, status=502, path="/v1/accounts")
    fake.malformed_next("GET", "/v1/orders/open", body="<html>Bad Gateway</html>")

    account = await venue.get_account()
    orders = await venue.open_orders()

    assert account.krw > 0 and orders == []
    assert venue.client.read_retries == 2


async def test_a_refused_read_is_not_retried(fake: FakeUpbit, venue: UpbitExchange) -> None:
    fake.fail_next(1, status=400, path="/v1/accounts")

    with pytest.raises(UpbitApiError, match="400"):
        await venue.get_account()
    assert venue.client.read_retries == 0


async def test_non_json_reply_is_malformed_not_empty(fake: FakeUpbit, venue: UpbitExchange) -> None:
    fake.malformed_next("GET", "/v1/accounts", body="<html>oops</html>", times=4)

    with pytest.raises(MalformedReply, match="not JSON: '<html>oops</html>'"):
        await venue.get_account()


async def test_json_with_a_missing_field_is_malformed(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    fake.malformed_next("GET", "/v1/accounts", body='[{"currency": "KRW", "locked": "0"}]')

    with pytest.raises(MalformedReply, match="field 'balance' is missing"):
        await venue.get_account()


async def test_order_lookup_with_an_unexpected_shape_is_malformed(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    fake.malformed_next("GET", "/v1/order", body='["not", "an", "order"]')

    with pytest.raises(MalformedReply, match="expected a JSON object"):
        await venue.get_order("anything")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"state": "exploded"}, "unknown state 'exploded'"),
        ({"side": "sideways"}, "'sideways' is not a valid Side"),
        ({"executed_volume": "NaN"}, "'executed_volume' is not a finite amount"),
        ({"created_at": "yesterday"}, "'created_at' is not a time"),
        ({"trades": "many"}, "trades is not a list"),
        ({"executed_volume": "1"}, "differs from the sum of its trades"),
    ],
)
def test_order_json_with_bad_fields_is_refused_with_the_field_named(
    change: dict[str, Any], message: str
) -> None:
    good = {
        "uuid": "u-1",
        "side": "bid",
        "ord_type": "price",
        "price": "10000",
        "state": "done",
        "market": BTC,
        "created_at": "2026-11-25T21:00:00+09:00",
        "volume": None,
        "executed_volume": "0.0002",
        "paid_fee": "5",
        "identifier": "i-1",
        "trades": [
            {
                "uuid": "t-1",
                "price": "50000000",
                "volume": "0.0002",
                "funds": "10000",
                "created_at": "2026-11-25T21:00:00+09:00",
            }
        ],
    }
    assert order_from_upbit(good, fee_rate=Decimal("0.0005")).state is OrderState.DONE

    with pytest.raises(MalformedReply, match=message):
        order_from_upbit({**good, **change}, fee_rate=Decimal("0.0005"))


async def test_unreachable_exchange_is_a_transport_error_that_never_left() -> None:
    client = UpbitRestClient("http://127.0.0.1:9", keys=KEYS, timeout_s=1.0)
    try:
        with pytest.raises(UpbitTransportError, match="could not connect") as caught:
            await client.accounts()
    finally:
        await client.aclose()

    assert caught.value.maybe_delivered is False


async def test_missing_order_is_none_only_on_order_not_found(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    assert await venue.get_order("never-sent") is None

    fake.fail_next(4, status=500, path="/v1/order")
    with pytest.raises(ExchangeError):
        await venue.get_order("never-sent")


# -- the exchange --------------------------------------------------------------------------


async def test_market_sell_returns_its_fill_and_moves_balances(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    fake.set_balance("BTC", Decimal("0.01"), Decimal(40_000_000))

    order = await venue.place_order(
        OrderRequest(BTC, Side.ASK, OrderType.MARKET, "s-1", volume=Decimal("0.01"))
    )
    account = await venue.get_account()

    assert order.state is OrderState.DONE
    assert [(f.price, f.volume) for f in order.fills] == [(Decimal(49_999_000), Decimal("0.01"))]
    assert order.paid_fee == Decimal("249.995")
    assert account.krw == Decimal(1_000_000) + Decimal(499_990) - Decimal("249.995")
    assert BTC not in account.positions


async def test_chance_supplies_the_rules_and_a_missing_market_falls_back_to_the_table(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    from_exchange = await venue.rules(BTC)
    fallback = await venue.rules("KRW-DOGE")

    assert (from_exchange.source, from_exchange.bid_fee) == ("chance", Decimal("0.0005"))
    assert (fallback.source, fallback.bid_min_total) == ("fallback", Decimal(5000))


async def test_resting_limit_order_is_listed_then_cancelled(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    await venue.place_order(
        OrderRequest(
            BTC,
            Side.BID,
            OrderType.LIMIT,
            "l-1",
            price=Decimal(40_000_000),
            volume=Decimal("0.001"),
        )
    )
    listed = await venue.open_orders(BTC)
    cancelled = await venue.cancel_order("l-1")
    account = await venue.get_account()

    assert [o.identifier for o in listed] == ["l-1"]
    assert cancelled.state is OrderState.CANCEL
    assert account.krw == Decimal(1_000_000) and account.krw_locked == 0


async def test_emergency_sell_returns_once_the_request_left(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    fake.set_balance("BTC", Decimal("0.01"), Decimal(40_000_000))

    sent_at, reply = await venue.send_market_sell(BTC, Decimal("0.01"), "e-1")
    response = await reply

    assert sent_at > 0
    assert response.status_code == 201
    assert fake.order_by_identifier("e-1").state == "done"


# -- secrets -------------------------------------------------------------------------------


async def test_keys_never_appear_in_reprs_errors_or_logs(
    fake: FakeUpbit, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    limiter = RateLimiter(backoff_s=0.01)
    venue = UpbitExchange.connect(
        fake.base_url, access_key=ACCESS_KEY, secret_key=SECRET_KEY, limiter=limiter
    )
    errors: list[str] = []
    fake.penalty_s = 0.0  # this client backs off briefly; the 418 rule is tested elsewhere
    faults = (
        lambda: fake.fail_next(4, status=500),  # a read and its three retries
        lambda: (fake.inject_429(2), fake.malformed_next("GET", "/v1/accounts", times=4)),
        lambda: None,
    )
    calls = (venue.get_account, venue.get_account, lambda: venue.rules("KRW-NOPE"))
    try:
        for fault, call in zip(faults, calls, strict=True):
            fault()
            try:
                await call()
            except ExchangeError as exc:
                errors.append(str(exc) + repr(exc))
        bad = UpbitExchange.connect(
            fake.base_url, access_key=ACCESS_KEY, secret_key="wrong-secret-" + "x" * 32
        )
        try:
            await bad.get_account()
        except ExchangeError as exc:
            errors.append(str(exc) + repr(exc))
        finally:
            await bad.aclose()
    finally:
        await venue.aclose()

    text = "\n".join(errors) + caplog.text + repr(KEYS) + str(KEYS) + repr(venue.client.__dict__)
    assert len(errors) >= 3
    assert SECRET_KEY not in text
    assert ACCESS_KEY not in text
    assert fake.seen_tokens  # tokens were sent, and none of them shows up either
    assert not any(token in text for token in fake.seen_tokens)


async def test_an_order_reply_without_identifier_is_labelled_with_the_one_asked_for(
    fake: FakeUpbit, venue: UpbitExchange
) -> None:
    reply = {
        "uuid": "u-9",
        "side": "ask",
        "ord_type": "market",
        "state": "done",
        "market": BTC,
        "created_at": "2026-11-25T21:00:00+09:00",
        "volume": "0.001",
        "executed_volume": "0.001",
        "paid_fee": "25",
        "trades": [{"uuid": "t-9", "price": "50000000", "volume": "0.001", "funds": "50000"}],
    }
    fake.malformed_next("GET", "/v1/order", body=json.dumps(reply))

    order = await venue.get_order("asked-for")

    assert order is not None
    assert order.identifier == "asked-for"
    assert [f.order_identifier for f in order.fills] == ["asked-for"]
