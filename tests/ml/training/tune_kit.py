"""Objectives for the distributed tuning tests, importable by the spawned worker processes.

Both wrap the real LightGBM objective (`ml.training.tune.lightgbm_objective`) on real Upbit
candles; what they add is synchronisation through the shared study, never a timed sleep:

- `gated`: trial 0 waits until another worker has started a trial, so two workers provably
  share the study;
- `stalling`: trial 1 never returns (its worker is killed by the test while it runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from ml.training.full_set import FullConfig
from ml.training.tune import lightgbm_objective

WAIT_S = 60.0


def _real(candles: pd.DataFrame) -> Callable[[Any], float]:
    return lightgbm_objective(candles, rounds=5, config=FullConfig(threads=1))


def gated(candles: pd.DataFrame) -> Callable[[Any], float]:
    """The real objective; its trial 0 returns only once a second trial exists in the study."""
    real = _real(candles)

    def objective(trial: Any) -> float:
        deadline = time.monotonic() + WAIT_S
        while trial.number == 0 and len(trial.study.get_trials(deepcopy=False)) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("no second worker joined the study")
            time.sleep(0.05)  # polling the shared study, not timing
        return real(trial)

    return objective


def stalling(candles: pd.DataFrame) -> Callable[[Any], float]:
    """The real objective, except that trial 1 runs until its process is killed."""
    real = _real(candles)

    def objective(trial: Any) -> float:
        while trial.number == 1:
            time.sleep(0.05)
        return real(trial)

    return objective
