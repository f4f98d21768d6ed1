"""The Upbit WebSocket client against a local fake Upbit replaying real candles as trades."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pytest
from fake_upbit_ws import FakeUpbitWS

from exchange.bars import BarBuilder, LiveBarClose
from exchange.upbit_ws import (
    FeedEvent,
    MessageError,
    OrderbookSnapshot,
    SeenIds,
    Status,
    Trade,
    UnknownMessage,
    UpbitWebSocket,
    parse_message,
    subscription,
)

MARKETS = ["KRW-BTC", "KRW-ETH", "KRW-SOL", "KRW-XRP"]
BUNDLED_CANDLES = (
    Path(__file__).resolve().parents[2] / "app" / "demo" / "candles_upbit_1m_demo.parquet"
)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    """The first 40 minutes of the bundled real Upbit candles (2025-09-19), 4 markets."""
    frame = pd.read_parquet(BUNDLED_CANDLES)
    return frame[frame["ts"] < frame["ts"].min() + pd.Timedelta(minutes=40)]


class Recorder:
    """Collect what the client delivers."""

    def __init__(self) -> None:
        self.trades: list[Trade] = []
        self.orderbooks: list[OrderbookSnapshot] = []
        self.events: list[FeedEvent] = []
        self.builder = BarBuilder(MARKETS)
        self.closes: list[LiveBarClose] = []

    async def on_trade(self, trade: Trade) -> None:
        self.trades.append(trade)
        self.closes.extend(self.builder.add_trade(trade, 0.0))

    async def on_orderbook(self, snapshot: OrderbookSnapshot) -> None:
        self.orderbooks.append(snapshot)
        self.builder.add_orderbook(snapshot)

    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def make_client(fake: FakeUpbitWS, seen: Recorder, **overrides: Any) -> UpbitWebSocket:
    options: dict[str, Any] = {
        "on_trade": seen.on_trade,
        "on_orderbook": seen.on_orderbook,
        "on_event": seen.events.append,
        "rest_url": fake.rest_url,
        "stale_after_s": 30.0,
        "clock": fake.clock.now,
        "check_interval_s": 0.05,
        "backoff_initial_s": 0.02,
        "backoff_max_s": 0.1,
        "seed": 7,
    }
    options.update(overrides)
    return UpbitWebSocket(fake.ws_url, MARKETS, **options)


async def run_until(
    client: UpbitWebSocket, done: Callable[[], bool], timeout_s: float = 20.0
) -> None:
    """Run the client until `done()` holds (checked as the loop turns), then stop it."""
    task = asyncio.create_task(client.run())
    try:
        async with asyncio.timeout(timeout_s):
            while not done():
                await asyncio.sleep(0.01)
    finally:
        client.stop()
        await task


def lockstep(holder: dict[str, UpbitWebSocket]) -> Callable[[], int]:
    """Let the fake wait for the client to read each frame (the client is made later)."""
    return lambda: holder["client"].stats.messages if "client" in holder else 0


def ids(trades: list[Trade]) -> list[int]:
    return [t.sequential_id for t in trades]


async def test_stall_of_30s_raises_one_stale_alarm_then_backfill_has_no_duplicate_or_gap(
    candles: pd.DataFrame,
) -> None:
    start = int(pd.Timestamp(candles["ts"].min()).timestamp() * 1000)
    stall = (start + 20 * 60_000 + 10_000, start + 20 * 60_000 + 55_000)  # no data 00:20:00-59
    holder: dict[str, UpbitWebSocket] = {}
    seen = Recorder()
    fake = FakeUpbitWS(candles, status_interval_s=5.0, stall_ms=stall, consumed=lockstep(holder))
    async with fake:
        client = holder["client"] = make_client(fake, seen)
        await run_until(
            client, lambda: len(seen.trades) >= len(fake.trades) and fake.finished.is_set()
        )

    withheld = {t["sequential_id"] for t in fake.trades} - set(fake.sent_live)
    assert withheld, "the stall withheld no trade: the test would prove nothing"
    assert seen.kinds().count("stale") == 1
    stale = next(e for e in seen.events if e.kind == "stale")
    assert stale.detail["seconds_without_data"] >= 30.0
    assert client.stats.stale_alarms == 1
    assert "backfill" in seen.kinds()
    assert seen.kinds().index("stale") < seen.kinds().index("backfill")
    assert len(ids(seen.trades)) == len(set(ids(seen.trades)))  # no duplicate
    assert set(ids(seen.trades)) == {t["sequential_id"] for t in fake.trades}  # none missing
    assert withheld <= set(ids(seen.trades))
    times = [t.ts_ms for t in seen.trades]
    assert times == sorted(times)  # the backfill lands in time order, before later live trades
    assert client.stats.backfilled >= len(withheld)
    # Keep-alive: a text PING at least every 60 s of market time, inside Upbit's 120 s limit.
    gaps = [
        later - earlier
        for (conn, earlier), (next_conn, later) in zip(fake.pings, fake.pings[1:], strict=False)
        if conn == next_conn
    ]
    assert len(fake.pings) >= 30 and max(gaps) <= 61.0


async def test_bars_built_from_the_streamed_trades_equal_the_source_candles(
    candles: pd.DataFrame,
) -> None:
    holder: dict[str, UpbitWebSocket] = {}
    seen = Recorder()
    fake = FakeUpbitWS(candles, status_interval_s=10.0, consumed=lockstep(holder))
    async with fake:
        client = holder["client"] = make_client(fake, seen)
        await run_until(client, lambda: len(seen.trades) >= len(fake.trades))
    seen.closes.extend(seen.builder.flush_idle(1e9))  # the stream ended: close the last minute

    source = candles.sort_values(["ts", "market"]).reset_index(drop=True)
    built = pd.DataFrame(
        [
            {
                "market": m,
                "ts": pd.Timestamp(b.ts),
                "open": b.open,
                "high": b.high,
                "low": b.low,
                "close": b.close,
                "volume": b.volume,
            }
            for close in seen.closes
            for m, b in close.bars.items()
        ]
    )
    built = built.sort_values(["ts", "market"]).reset_index(drop=True)
    assert len(built) == len(source)
    assert (built["market"] == source["market"]).all()
    assert (built["ts"] == source["ts"]).all()
    for column in ("open", "high", "low", "close"):
        assert (built[column].to_numpy() == source[column].to_numpy()).all(), column
    assert built["volume"].to_numpy() == pytest.approx(source["volume"].to_numpy(), rel=1e-12)
    features = seen.closes[5].live["KRW-BTC"]
    assert -1.0 <= features.trade_intensity <= 1.0
    assert features.orderbooks == 1 and features.spread_bps > 0
    assert math.isfinite(features.bid_depth_krw) and features.bid_depth_krw > 0


BAD_FRAMES: list[bytes | str] = [
    b"not json at all",
    b"[1, 2, 3]",
    b'{"type": "trade", "code": "KRW-BTC"}',
    b'{"type": "trade", "code": "KRW-BTC", "trade_price": "abc", "trade_volume": 1,'
    b' "ask_bid": "BID", "trade_timestamp": 1, "sequential_id": 1}',
    b'{"type": "trade", "code": "KRW-BTC", "trade_price": 100.0, "trade_volume": 1,'
    b' "ask_bid": "SIDEWAYS", "trade_timestamp": 1, "sequential_id": 1}',
    b'{"type": "trade", "code": "KRW-BTC", "trade_price": -5, "trade_volume": 1,'
    b' "ask_bid": "BID", "trade_timestamp": 1, "sequential_id": 1}',
    b'{"type": "orderbook", "code": "KRW-BTC", "timestamp": 1, "total_ask_size": 1,'
    b' "total_bid_size": 1, "orderbook_units": [7]}',
    b"\xff\xfe\x00garbage",
    b'{"type": "ticker", "code": "KRW-BTC", "trade_price": 1}',
    b'{"error": {"name": "INVALID_PARAM", "message": "bad"}}',
    "PONG",
]
MALFORMED = 9
UNKNOWN = 2


async def test_malformed_and_unknown_messages_are_logged_and_skipped_never_fatal(
    candles: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    holder: dict[str, UpbitWebSocket] = {}
    seen = Recorder()
    fake = FakeUpbitWS(
        candles.iloc[:40], inject=BAD_FRAMES, consumed=lockstep(holder), status_interval_s=10.0
    )
    caplog.set_level(logging.WARNING, logger="exchange.upbit_ws")
    async with fake:
        client = holder["client"] = make_client(fake, seen)
        await run_until(client, lambda: len(seen.trades) >= len(fake.trades))

    assert client.stats.malformed == MALFORMED
    assert client.stats.unknown == UNKNOWN
    assert client.stats.connects == 1 and client.stats.reconnects == 0
    assert set(ids(seen.trades)) == {t["sequential_id"] for t in fake.trades}
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == MALFORMED + UNKNOWN
    assert any("unknown message type 'ticker'" in message for message in skipped)


@pytest.mark.parametrize("how", ["drop", "close"])
async def test_reconnects_after_the_server_drops_or_closes_and_backfills_the_gap(
    candles: pd.DataFrame, how: str
) -> None:
    seen = Recorder()
    events = 0
    frame = candles[candles["ts"] < candles["ts"].min() + pd.Timedelta(minutes=15)]
    cut = {150}
    kwargs = {"drop_at": cut} if how == "drop" else {"close_at": cut}
    fake = FakeUpbitWS(frame, status_interval_s=10.0, pace_s=0.002, **kwargs)
    async with fake:
        events = len(fake.events)
        # Small pages make the backfill walk back with the cursor over several pages.
        client = make_client(fake, seen, backfill_page=3, clock=lambda: 0.0)
        await run_until(
            client, lambda: len(seen.trades) >= len(fake.trades) and fake.finished.is_set()
        )

    assert events > 150
    assert client.stats.connects >= 2 and client.stats.reconnects >= 1
    assert "disconnected" in seen.kinds() or how == "close"
    assert len(ids(seen.trades)) == len(set(ids(seen.trades)))
    assert set(ids(seen.trades)) == {t["sequential_id"] for t in fake.trades}
    missed_live = {t["sequential_id"] for t in fake.trades} - set(fake.sent_live)
    assert missed_live, "no trade happened while disconnected: nothing was backfilled"
    assert client.stats.backfilled >= len(missed_live)


async def test_failed_backfill_is_reported_and_the_stream_goes_on(candles: pd.DataFrame) -> None:
    seen = Recorder()
    frame = candles[candles["ts"] < candles["ts"].min() + pd.Timedelta(minutes=10)]
    fake = FakeUpbitWS(frame, status_interval_s=10.0, pace_s=0.002, drop_at={60})
    async with fake:
        client = make_client(fake, seen, rest_url="http://127.0.0.1:9", clock=lambda: 0.0)
        await run_until(client, lambda: fake.finished.is_set() and client.stats.connects >= 2)

    assert "backfill_failed" in seen.kinds()
    assert client.stats.backfill_failures >= 1
    assert len(seen.trades) > 0


def test_trade_message_parses_upbit_field_names() -> None:
    raw = orjson.dumps(
        {
            "type": "trade",
            "code": "KRW-BTC",
            "timestamp": 1758240000007,
            "trade_date": "2025-09-19",
            "trade_time": "00:00:00",
            "trade_timestamp": 1758240000000,
            "trade_price": 160_000_000.0,
            "trade_volume": 0.0123,
            "ask_bid": "ASK",
            "prev_closing_price": 159_000_000.0,
            "change": "RISE",
            "change_price": 1_000_000.0,
            "sequential_id": 17582400000000001,
            "stream_type": "REALTIME",
        }
    )

    trade = parse_message(raw)

    assert trade == Trade("KRW-BTC", 1758240000000, 160_000_000.0, 0.0123, "ASK", 17582400000000001)
    assert trade.ts.isoformat() == "2025-09-19T00:00:00+00:00"


def test_orderbook_message_gives_spread_in_bps_and_depth_in_krw() -> None:
    raw = orjson.dumps(
        {
            "type": "orderbook",
            "code": "KRW-XRP",
            "timestamp": 1,
            "total_ask_size": 30.0,
            "total_bid_size": 50.0,
            "orderbook_units": [
                {"ask_price": 1001.0, "bid_price": 999.0, "ask_size": 10.0, "bid_size": 20.0},
                {"ask_price": 1002.0, "bid_price": 998.0, "ask_size": 20.0, "bid_size": 30.0},
            ],
        }
    )

    book = parse_message(raw)

    assert isinstance(book, OrderbookSnapshot)
    assert book.spread_bps == pytest.approx(20.0)  # 2 KRW on a 1000 KRW mid
    assert book.depth_krw() == pytest.approx((999 * 20 + 998 * 30, 1001 * 10 + 1002 * 20))


def test_status_and_bad_messages_parse_to_status_or_a_named_error() -> None:
    assert parse_message(b'{"status": "UP"}') == Status("UP")
    with pytest.raises(UnknownMessage, match="ticker"):
        parse_message(b'{"type": "ticker"}')
    with pytest.raises(MessageError, match="trade_volume"):
        parse_message(
            b'{"type": "trade", "code": "KRW-BTC", "trade_price": 1.0, "ask_bid": "BID",'
            b' "trade_timestamp": 1, "sequential_id": 1}'
        )
    with pytest.raises(MessageError, match="not JSON"):
        parse_message(b"{")


def test_subscription_request_has_upbit_format() -> None:
    request = orjson.loads(subscription(["KRW-BTC", "KRW-ETH"], ticket="t-1"))

    assert request == [
        {"ticket": "t-1"},
        {"type": "trade", "codes": ["KRW-BTC", "KRW-ETH"]},
        {"type": "orderbook", "codes": ["KRW-BTC", "KRW-ETH"]},
        {"format": "DEFAULT"},
    ]


def test_backoff_grows_exponentially_with_jitter_and_stays_under_the_cap() -> None:
    client = UpbitWebSocket(
        "ws://127.0.0.1:1", MARKETS, backoff_initial_s=0.5, backoff_max_s=8.0, seed=3
    )

    delays = [client.backoff_delay(attempt) for attempt in range(8)]

    for attempt, delay in enumerate(delays):
        ceiling = min(8.0, 0.5 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling
    assert delays[4] > delays[0] * 4


def test_keepalive_must_stay_under_upbits_idle_limit() -> None:
    with pytest.raises(ValueError, match="120 s"):
        UpbitWebSocket("ws://127.0.0.1:1", MARKETS, keepalive_s=130)


def test_seen_ids_are_unordered_and_forget_the_oldest_beyond_capacity() -> None:
    seen = SeenIds(capacity=3)

    assert [seen.add("KRW-BTC", i) for i in (50, 10, 30)] == [True, True, True]
    assert seen.add("KRW-BTC", 10) is False  # unique, not ordered: 10 after 50 is a repeat
    assert seen.add("KRW-ETH", 10) is True  # ids are per market
    seen.add("KRW-BTC", 70)
    assert ("KRW-BTC", 50) not in seen and ("KRW-BTC", 70) in seen


async def test_a_server_that_goes_silent_is_dropped_after_the_idle_timeout() -> None:
    async def silent(ws: Any) -> None:
        await ws.recv()  # the subscription; then nothing, not even a status
        await ws.wait_closed()

    from websockets.asyncio.server import serve

    seen = Recorder()
    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        client = UpbitWebSocket(
            f"ws://127.0.0.1:{port}",
            MARKETS,
            on_event=seen.events.append,
            rest_url=None,
            idle_timeout_s=0.2,
            check_interval_s=0.05,
            backoff_initial_s=0.01,
        )
        await run_until(client, lambda: client.stats.connects >= 2, timeout_s=10)

    assert any(e.kind == "disconnected" and "no message" in e.detail["error"] for e in seen.events)
