"""The fast simulator's inputs from the service's settings (evaluation.arrays does the work)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pandas as pd

from app.settings import Settings
from app.wiring import watchdog_config
from evaluation.arrays import Prepared
from evaluation.arrays import prepare as prepare_arrays
from ml.predict import Predictor
from policy.simulate import SimulationSettings

__all__ = ["Prepared", "prepare", "simulation_settings"]


def simulation_settings(settings: Settings) -> SimulationSettings:
    """The engine's configuration as the simulator reads it."""
    return SimulationSettings(
        initial_krw=float(settings.initial_capital_krw),
        slippage_base_bps=settings.slippage_bps,
        cooldown_s=settings.watchdog_cooldown_s,
        risk_level=settings.risk_level,
        stop_loss_cap_pct=settings.stop_loss_cap_pct,
    )


def prepare(
    candles: pd.DataFrame,
    predictor: Predictor,
    settings: Settings,
    *,
    markets: Sequence[str] | None = None,
    start: datetime | None = None,
) -> Prepared:
    """`evaluation.arrays.prepare` with the watchdog the settings configure (or none)."""
    config = watchdog_config(settings)
    return prepare_arrays(candles, predictor, config, markets=markets, start=start)
