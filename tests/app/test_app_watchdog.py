"""The watchdog end to end: a replayed crash is sold at once, outside the graph, and alerted.

The crash is synthetic (a real bundled bar followed by a bar whose low is 3% under it, made
here); every other bar is the bundled real Upbit data.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alert_server import AlertServer
from pydantic import SecretStr

from alerts.types import Alert
from app.settings import Settings
from app.wiring import open_services
from exchange.feed import BarClose
from exchange.risk import GuardedExchange
from exchange.types import Bar, ExchangeError, OrderRequest, OrderType, Side
from ml.features import WARMUP_BARS

MARKET = "KRW-XRP"
SLACK_PATH = "/services/T1/B1/watchdog-test"


@pytest.fixture
def alert_server() -> AlertServer:
    with AlertServer() as server:
        yield server  # type: ignore[misc]


def crash_after(close: BarClose) -> BarClose:
    """A synthetic next bar: XRP trades 3% under the last close, then recovers a little."""
    bar = close.bars[MARKET]
    low = bar.close * 0.97
    crash = Bar(
        MARKET, close.ts + timedelta(minutes=1), bar.close, bar.close, low, low * 1.005, bar.volume
    )
    bars = {m: dataclasses.replace(b, ts=crash.ts) for m, b in close.bars.items()}
    bars[MARKET] = crash
    return BarClose(crash.ts, bars)


async def buy_xrp(services) -> None:  # type: ignore[no-untyped-def]
    await services.engine.exchange.place_order(
        OrderRequest(MARKET, Side.BID, OrderType.PRICE, "test-buy-xrp", price=Decimal(200_000))
    )


async def test_a_replayed_crash_is_sold_within_one_tick_alerted_and_cooled_down(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose], alert_server: AlertServer
) -> None:
    settings = settings.model_copy(
        update={
            "slack_webhook_url": SecretStr(alert_server.url(SLACK_PATH)),
            # The policy enters on any forecast: only the cooldown stops it.
            "policy_entry_margin_bps": -1000.0,
            "policy_max_entries_per_day": 1440,
            "markets": [MARKET],
        }
    )
    async with open_services(settings, session_id="wd", account_path=tmp_path / "a.json") as svc:
        svc.engine.warm_up(bundled_closes[:WARMUP_BARS])
        await buy_xrp(svc)
        crash = crash_after(bundled_closes[WARMUP_BARS - 1])

        result = await svc.engine.on_bar_close(crash)
        await svc.engine.alerts.drain()  # type: ignore[union-attr]

        assert MARKET not in (await svc.exchange.get_account()).positions
        sells = [o for o in svc.journal.list_orders(market=MARKET) if o["side"] == "ask"]
        assert len(sells) == 1
        assert "-emergency-drop" in sells[0]["identifier"]
        assert sells[0]["run_id"] is None  # the graph was not involved
        fill = svc.journal.list_fills(market=MARKET)[-1]
        # Sold at the crash tick (a down bar's low is its third tick, +30 s), not a tick later.
        assert fill["ts"] == crash.ts + timedelta(seconds=30)
        assert fill["price"] <= Decimal(str(crash.bars[MARKET].low))
        triggers = [e for e in svc.journal.events_after(0) if e["type"] == "watchdog_trigger"]
        assert triggers[0]["payload"]["detector"] == "drop"
        assert triggers[0]["payload"]["details"]["drop_fraction"] > 0.01
        posts = alert_server.posts(SLACK_PATH)
        assert any("긴급 매도" in p.json["text"] and MARKET in p.json["text"] for p in posts)
        assert any("체결" in p.json["text"] for p in posts)  # the fill alert
        assert result.action == "hold" and result.reason == "blocked"


async def test_a_halted_engine_sends_no_order_and_flattens_only_when_asked(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = settings.model_copy(update={"policy_entry_margin_bps": -1000.0, "markets": [MARKET]})
    async with open_services(settings, session_id="h", account_path=tmp_path / "a.json") as svc:
        svc.engine.warm_up(bundled_closes[:WARMUP_BARS])
        await buy_xrp(svc)
        svc.journal.write_trading_control("halted", "test halt", by="cli")

        first = await svc.engine.on_bar_close(bundled_closes[WARMUP_BARS])
        crash = crash_after(bundled_closes[WARMUP_BARS])
        await svc.engine.on_bar_close(crash)  # the watchdog fires, but halted means no order

        assert first.action == "hold"
        assert MARKET in (await svc.exchange.get_account()).positions
        # Only the test's own buy (journaled like every order since the ledger owns them).
        done = [o["identifier"] for o in svc.journal.list_orders() if o["state"] == "done"]
        assert done == ["test-buy-xrp"]
        refused = [e for e in svc.journal.events_after(0) if e["type"] == "emergency_sell_failed"]
        assert refused and "halted" in refused[0]["payload"]["error"]

        svc.journal.write_trading_control("halted", "flatten now", flatten=True, by="cli")
        await svc.engine.on_bar_close(bundled_closes[WARMUP_BARS + 2])

        assert MARKET not in (await svc.exchange.get_account()).positions
        assert svc.journal.read_trading_control()["flatten_requested"] is False


async def test_the_daily_loss_limit_stops_entries_until_the_next_trading_day(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = settings.model_copy(
        update={
            # The policy would enter ETH on every bar and never propose an exit.
            "policy_entry_margin_bps": -1000.0,
            "policy_exit_margin_bps": 1000.0,
            "policy_max_entries_per_day": 1440,
            "policy_reentry_pause_minutes": 0,
            "markets": [MARKET, "KRW-ETH"],
            "daily_loss_limit_pct": 0.1,
            "watchdog_enabled": False,
        }
    )
    async with open_services(settings, session_id="dl", account_path=tmp_path / "a.json") as svc:
        sink = RecordingSink()
        svc.engine.alerts = sink
        svc.engine.warm_up(bundled_closes[:WARMUP_BARS])
        await buy_xrp(svc)
        await svc.engine.on_bar_close(bundled_closes[WARMUP_BARS])  # the day's starting equity
        entries_before = len(svc.journal.list_orders())

        await svc.engine.on_bar_close(crash_after(bundled_closes[WARMUP_BARS]))
        result = await svc.engine.on_bar_close(bundled_closes[WARMUP_BARS + 2])

        assert "daily loss limit" in svc.engine.guard.reason
        assert result.action == "hold" and result.reason == "blocked"
        assert len(svc.journal.list_orders()) == entries_before
        next_day = next(c for c in bundled_closes if c.ts.hour == 15 and c.ts.day == 20)
        await svc.engine.on_bar_close(next_day)
        assert svc.engine.guard.state.value == "active"
        kinds = [a.kind for a in sink.alerts]
        assert "trading_state" in kinds and "daily_summary" in kinds


class RecordingSink:
    """Collects alerts in memory (the engine's AlertSink interface; delivery is tested apart)."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    def publish(self, alert: Alert) -> bool:
        self.alerts.append(alert)
        return True


class FlakyExchange:
    """The paper exchange behind a link that drops the first `failures` orders.

    A stand-in for a network outage between the engine and the exchange: orders never arrive
    while it is down, lookups by identifier work once it is back.
    """

    def __init__(self, inner, failures: int) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.name = inner.name
        self.failures = failures
        self.attempts = 0

    async def place_order(self, request):  # type: ignore[no-untyped-def]
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ExchangeError(f"connection reset (attempt {self.attempts})")
        return await self.inner.place_order(request)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


async def test_an_unreachable_exchange_blocks_entries_and_the_sell_is_retried_until_done(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = settings.model_copy(update={"markets": [MARKET]})
    async with open_services(settings, session_id="nw", account_path=tmp_path / "a.json") as svc:
        engine = svc.engine
        engine.exit_retry_s = (0.0,)
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        await buy_xrp(svc)
        flaky = FlakyExchange(svc.exchange, failures=3)
        engine.use_exchange(
            GuardedExchange(flaky, engine.guard, marks=svc.exchange.marks, clock=svc.exchange.now)
        )
        crash = crash_after(bundled_closes[WARMUP_BARS - 1])

        await engine.on_tick(MARKET, crash.ts, crash.bars[MARKET].low, 1.0)
        blocked_while_down = engine.blocked_reason(MARKET, crash.ts)
        await asyncio.gather(*engine.emergency.background)

        assert blocked_while_down == "exchange unreachable"
        assert flaky.attempts == 4
        assert MARKET not in (await svc.exchange.get_account()).positions
        assert engine.exchange_healthy
        kinds = [e["type"] for e in svc.journal.events_after(0)]
        assert "emergency_sell_failed" in kinds
        network = [
            e
            for e in svc.journal.events_after(0)
            if e["type"] == "watchdog_trigger" and e["payload"]["detector"] == "network"
        ]
        assert len(network) == 1
