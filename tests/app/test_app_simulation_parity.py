"""The fast simulator and the engine make the same trades on real candles.

Both replay the bundled real Upbit candles (2025-09-19..21) with the bundled model set, the
policy set loose enough to trade often (the default policy does not trade this model: no edge),
so every path is exercised: entries, exits by the policy's signal and its time stop, stop-loss,
the watchdog's emergency sell and cooldown, the re-entry pause, the daily count and the monthly
loss cap stopping entries. Every fill must agree: time, market, side, price and volume.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app.backtest import backtest_settings
from app.backtest import simulate as engine_backtest
from app.session import collect_closes
from app.settings import Settings
from app.simulation import prepare, simulation_settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, policy_params_from
from ml.data import load_candles
from ml.predict import Predictor
from ml.registry import latest_model_dir
from policy.simulate import FILL_REASONS, simulate

LOOSE = {
    "policy_entry_margin_bps": -1000.0,  # any forecast clears it: trade as often as allowed
    "policy_max_entries_per_day": 20,
    "policy_reentry_pause_minutes": 5,
}
CASES = {
    # Sell at the minimum hold on the exit signal; a volume spike sells SOL at 15:04 UTC.
    "exit-signal-and-watchdog": ({**LOOSE, "policy_exit_margin_bps": -1000.0}, 900),
    # Keep positions until the 45-minute time stop or the stop-loss.
    "time-stop-and-stop-loss": ({**LOOSE, "policy_max_hold_minutes": 45}, 900),
    # A 1% monthly loss cap stops the entries early on.
    "monthly-cap": (
        {**LOOSE, "policy_exit_margin_bps": -1000.0, "monthly_loss_cap_pct": 1.0},
        1500,
    ),
}
EXPECTED_EXITS = {
    "exit-signal-and-watchdog": {"exit_signal", "stop_loss", "watchdog:volume_spike"},
    "time-stop-and-stop-loss": {"exit_time", "stop_loss"},
    "monthly-cap": {"exit_signal"},
}


def _both_paths(
    tmp_path: Path, overrides: dict[str, Any], minutes: int | None
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], float, float, list[str]]:
    model = latest_model_dir(BUNDLED_MODELS)
    assert model is not None
    candles = load_candles([BUNDLED_CANDLES])
    base = Settings(_env_file=None, data_dir=tmp_path, **overrides)  # type: ignore[call-arg]
    settings = backtest_settings(
        base, report_dir=tmp_path, markets=sorted(candles["market"].unique()), model_dir=model
    )
    closes = asyncio.run(collect_closes(candles))
    engine = asyncio.run(engine_backtest(settings, closes, report_dir=tmp_path, minutes=minutes))
    engine_fills = [
        (
            pd.Timestamp(f["ts"]),
            f["market"],
            f["side"],
            float(str(f["price"])),
            float(str(f["volume"])),
        )
        for f in engine.fills
    ]
    predictor = Predictor.load(model)
    prepared = prepare(candles, predictor, settings)
    if minutes is not None:
        prepared = prepared.head(minutes)
    result = simulate(
        prepared.arrays, policy_params_from(settings, predictor.meta), simulation_settings(settings)
    )
    markets = prepared.arrays.markets
    fast_fills = [
        (
            pd.Timestamp(float(t), unit="s", tz="UTC"),
            markets[int(m)],
            "bid" if side == 1 else "ask",
            float(price),
            float(volume),
        )
        for t, m, side, price, volume in zip(
            result.fills["time_s"],
            result.fills["market"],
            result.fills["side"],
            result.fills["price"],
            result.fills["volume"],
            strict=True,
        )
    ]
    reasons = [FILL_REASONS[int(r)] for r in result.fills["reason"]]
    return (
        engine_fills,
        fast_fills,
        float(engine.equity.iloc[-1]),
        float(result.equity[-1]),
        reasons,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_the_simulator_makes_the_engines_trades_on_real_candles(tmp_path: Path, case: str) -> None:
    overrides, minutes = CASES[case]

    engine, fast, engine_equity, fast_equity, reasons = _both_paths(tmp_path, overrides, minutes)

    assert len(engine) > 10  # the case really trades
    assert [f[:3] for f in fast] == [f[:3] for f in engine]
    for (_, _, _, price, volume), (_, _, _, fast_price, fast_volume) in zip(
        engine, fast, strict=True
    ):
        assert fast_price == pytest.approx(price, rel=1e-12)
        assert fast_volume == pytest.approx(volume, abs=1e-8)
    assert fast_equity == pytest.approx(engine_equity, rel=1e-9)
    assert EXPECTED_EXITS[case] <= set(reasons)
    if case == "monthly-cap":
        # The loose policy enters whenever allowed: hours without a fill are the cap at work.
        assert engine[-1][0] < pd.Timestamp("2025-09-19T16:00:00Z")
