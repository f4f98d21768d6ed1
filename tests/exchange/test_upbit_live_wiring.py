"""Live trading wired end to end against the fake Upbit: reconcile first, refuse on differences."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit
from typer.testing import CliRunner

from app.cli import app as cli
from app.settings import Settings
from app.wiring import BUNDLED_MODELS, LiveTradingRefused, open_services
from exchange.orders import OrderManager
from exchange.ratelimit import ExchangeBlocked
from exchange.risk import TradingState
from exchange.types import OrderRequest, OrderType, Side
from exchange.upbit import UpbitExchange
from ml.registry import latest_model_dir

BTC = "KRW-BTC"


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price(BTC, Decimal(50_000_000))
        yield server


def live_settings(tmp_path: Path, rest_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
        markets=[BTC],
        live=True,
        upbit_access_key=ACCESS_KEY,
        upbit_secret_key=SECRET_KEY,
        upbit_rest_url=rest_url,
        upbit_timeout_s=2.0,
    )


async def test_live_services_trade_on_upbit_through_the_guard_and_the_order_manager(
    fake: FakeUpbit, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = live_settings(tmp_path, fake.base_url)

    async with open_services(
        settings, session_id="live", account_path=tmp_path / "unused.json"
    ) as services:
        services.engine.venue.on_tick(BTC, services.exchange.now(), 50_000_000.0)
        order = await services.engine.exchange.place_order(
            OrderRequest(BTC, Side.BID, OrderType.PRICE, "lxa-live-1", price=Decimal(100_000)),
            purpose="entry",
        )
        intent = services.journal.get_order_intent("lxa-live-1")
        events = services.journal.events_after(0)
        assert isinstance(services.exchange, UpbitExchange)
        # The ledger journals around the guard, which checks before the order manager sends.
        assert isinstance(services.engine.exchange.inner.inner, OrderManager)
        assert services.exchange.initial_krw == Decimal(1_000_000)

    assert order.executed_volume == Decimal("0.002")
    assert fake.order_by_identifier("lxa-live-1") is not None
    assert intent is not None and intent["state"] == "done"
    reconciliation = [e for e in events if e["type"] == "reconciliation"]
    assert reconciliation and reconciliation[0]["payload"]["ok"] is True
    written = json.dumps([e["payload"] for e in events]) + caplog.text
    assert SECRET_KEY not in written and ACCESS_KEY not in written


async def test_live_start_is_refused_naming_what_differs(fake: FakeUpbit, tmp_path: Path) -> None:
    fake.set_balance("BTC", Decimal("0.3"), Decimal(45_000_000))
    settings = live_settings(tmp_path, fake.base_url)

    with pytest.raises(
        LiveTradingRefused, match=r"KRW-BTC: Upbit holds 0\.3, the journal 0"
    ) as caught:
        async with open_services(settings, session_id="live", account_path=tmp_path / "a.json"):
            pytest.fail("services must not open when reconciliation disagrees")

    assert caught.value.report is not None and not caught.value.report.ok
    assert fake.order_posts() == []


async def test_live_start_is_refused_when_upbit_cannot_be_read(tmp_path: Path) -> None:
    settings = live_settings(tmp_path, "http://127.0.0.1:9")

    with pytest.raises(LiveTradingRefused, match="could not be read"):
        async with open_services(settings, session_id="live", account_path=tmp_path / "a.json"):
            pytest.fail("services must not open without Upbit")


async def test_a_418_halts_trading_in_the_journal_and_the_guard(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    settings = live_settings(tmp_path, fake.base_url)

    async with open_services(settings, session_id="live", account_path=tmp_path / "a.json") as s:
        fake.blocked = True
        with pytest.raises(ExchangeBlocked):
            await s.engine.exchange.place_order(
                OrderRequest(BTC, Side.BID, OrderType.PRICE, "lxa-live-2", price=Decimal(10_000)),
                purpose="entry",
            )
        control = s.journal.read_trading_control()
        state = s.engine.guard.state

    assert control["state"] == "halted" and "418" in control["reason"]
    assert state is TradingState.HALTED
    assert fake.order_posts() == []


def cli_env(tmp_path: Path, rest_url: str, **extra: str) -> dict[str, str]:
    model_dir = latest_model_dir(BUNDLED_MODELS)
    return {
        "LXA_DATA_DIR": str(tmp_path / "data"),
        "LXA_CHECKPOINT_URL": "memory",
        "LXA_MODEL_DIR": str(model_dir),
        "LXA_MARKETS": BTC,
        "LXA_UPBIT_REST_URL": rest_url,
        "LXA_UPBIT_ACCESS_KEY": ACCESS_KEY,
        "LXA_UPBIT_SECRET_KEY": SECRET_KEY,
        **extra,
    }


def test_run_live_without_the_typed_confirmation_starts_nothing(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli,
        ["run", "--live", "--minutes", "1"],
        input="yes\n",
        env=cli_env(tmp_path, fake.base_url),
    )

    assert result.exit_code == 1
    assert "Type LIVE" in result.output
    assert "not confirmed" in result.output
    assert fake.records == []


def test_run_live_without_keys_says_which_is_missing(fake: FakeUpbit, tmp_path: Path) -> None:
    env = cli_env(tmp_path, fake.base_url, LXA_UPBIT_SECRET_KEY="")

    result = CliRunner().invoke(cli, ["run", "--live"], input="LIVE\n", env=env)

    assert result.exit_code == 2
    assert "LXA_UPBIT_SECRET_KEY" in result.output
    assert fake.records == []


def test_run_live_confirmed_but_not_reconciled_refuses_with_the_difference(
    fake: FakeUpbit, tmp_path: Path
) -> None:
    fake.set_balance("BTC", Decimal("0.3"), Decimal(45_000_000))

    result = CliRunner().invoke(
        cli,
        ["run", "--live", "--minutes", "1"],
        input="LIVE\n",
        env=cli_env(tmp_path, fake.base_url),
    )

    assert result.exit_code == 1, result.output
    assert "refusing to trade live" in result.output
    assert "KRW-BTC: Upbit holds 0.3, the journal 0" in result.output
    assert SECRET_KEY not in result.output and ACCESS_KEY not in result.output
    assert fake.order_posts() == []
