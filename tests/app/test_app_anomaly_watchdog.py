"""The autoencoder detector inside the watchdog: numpy scoring per closed bar, edge-triggered.

A small autoencoder is trained here on the bundled real candles (KRW-XRP, 2025-09-19..21);
the crash fed to it afterwards is SYNTHETIC (bars made up in the test, labelled as such).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, build_watchdog, open_services
from exchange.feed import BarClose
from exchange.types import Bar, OrderRequest, OrderType, Side
from exchange.watchdog import Watchdog, WatchdogConfig
from ml.anomaly import AnomalyModel, BarAnomalyScorer, windows_from_bars
from ml.data import load_candles
from ml.features import WARMUP_BARS

torch = pytest.importorskip("torch")
from ml.models import AutoencoderConfig  # noqa: E402
from ml.training.torch_loops import train_autoencoder  # noqa: E402

XRP = "KRW-XRP"


@pytest.fixture(scope="module")
def xrp_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 30-bar autoencoder trained on the bundled real XRP candles, exported to .npz."""
    candles = load_candles([BUNDLED_CANDLES])
    xrp = candles[candles["market"] == XRP].sort_values("ts")
    windows = windows_from_bars(
        xrp["high"].to_numpy(),
        xrp["low"].to_numpy(),
        xrp["close"].to_numpy(),
        xrp["volume"].to_numpy(),
        30,
    )
    windows = windows[np.isfinite(windows).all(axis=(1, 2))]
    _, model, _ = train_autoencoder(windows, AutoencoderConfig(), epochs=3, threads=1)
    path = tmp_path_factory.mktemp("ae") / "anomaly.npz"
    model.save(path)
    return path


def calm_then_crash(start: datetime, price: float) -> list[Bar]:
    """SYNTHETIC bars: 40 quiet minutes, then a -12% minute on 40x the volume, then quiet."""
    bars = []
    for i in range(60):
        ts = start + timedelta(minutes=i)
        if i == 40:
            bars.append(Bar(XRP, ts, price, price, price * 0.88, price * 0.88, 4000.0))
            price *= 0.88
        else:
            bars.append(Bar(XRP, ts, price, price * 1.0004, price * 0.9996, price, 100.0))
    return bars


def test_the_crash_bar_fires_the_autoencoder_once_and_calm_bars_never(xrp_model: Path) -> None:
    watchdog = Watchdog([XRP], WatchdogConfig(), BarAnomalyScorer(AnomalyModel.load(xrp_model)))
    triggers = []
    for bar in calm_then_crash(datetime(2026, 1, 1, tzinfo=UTC), 3000.0):
        trigger = watchdog.on_bar(XRP, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume)
        if trigger is not None:
            triggers.append((bar.ts, trigger))

    assert len(triggers) == 1  # edge-triggered: the crash stays in the window for 30 bars
    ts, trigger = triggers[0]
    assert ts == datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=40)
    assert trigger.detector == "autoencoder"
    assert trigger.details["score"] >= 0.95


def test_without_an_autoencoder_the_detector_is_off() -> None:
    watchdog = Watchdog([XRP], WatchdogConfig())
    for bar in calm_then_crash(datetime(2026, 1, 1, tzinfo=UTC), 3000.0):
        assert (
            watchdog.on_bar(XRP, bar.ts, bar.open, bar.high, bar.low, bar.close, bar.volume) is None
        )


async def test_the_engine_sells_on_an_autoencoder_trigger_outside_the_graph(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose], xrp_model: Path
) -> None:
    async with open_services(
        settings, session_id="ae", account_path=tmp_path / "acct.json"
    ) as services:
        engine = services.engine
        engine.watchdog = build_watchdog(settings, xrp_model)
        assert engine.watchdog is not None and engine.watchdog.anomaly is not None
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        await services.exchange.place_order(
            OrderRequest(XRP, Side.BID, OrderType.PRICE, "manual-buy", price=Decimal(100_000))
        )
        last = bundled_closes[WARMUP_BARS - 1].bars[XRP]
        decisions_before = services.journal.count_decisions()
        # SYNTHETIC: a +8% minute on ordinary volume. A crash would be sold first by the tick
        # detectors (drop); a jump up is what only the autoencoder sees.
        p = last.close
        jump = Bar(XRP, last.ts + timedelta(minutes=1), p, p * 1.08, p, p * 1.08, last.volume)

        await engine.on_bar_close(BarClose(ts=jump.ts, bars={XRP: jump}))

        triggers = services.journal.events_of_type(["watchdog_trigger"])
        sells = [o for o in services.journal.list_orders(market=XRP) if o["side"] == "ask"]
        position = (await services.exchange.get_account()).positions.get(XRP)
        decision = services.journal.list_decisions(limit=1)[0]
        blocked = engine.blocked_reason(XRP, jump.ts + timedelta(minutes=2))
    assert [t["payload"]["detector"] for t in triggers] == ["autoencoder"]
    assert position is None
    assert len(sells) == 1 and sells[0]["run_id"] is None  # outside the graph
    assert services.journal.count_decisions() == decisions_before + 1
    assert decision["action"] == "hold"
    assert blocked is not None and "autoencoder" in blocked  # ml_signal will not re-enter
