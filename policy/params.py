"""The policy's parameters: costs, margins, holding rules, turnover and loss caps."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import numpy.typing as npt

# Positions in the float64 array the compiled rules read (policy.rules).
K_ENTRY_THRESHOLD = 0  # expected return an entry must exceed (costs + entry margin), fraction
K_EXIT_THRESHOLD = 1  # expected return under which exiting beats holding, fraction
K_COST = 2  # round-trip cost, fraction
K_MIN_HOLD = 3  # minutes before an ML exit
K_MAX_HOLD = 4  # minutes after which a position is closed (0: never)
K_PAUSE = 5  # minutes after an exit before the market may be entered again
K_MAX_ENTRIES = 6  # entries per market per KST day
K_MAX_POSITIONS = 7
KERNEL_SIZE = 8


class PolicyParamsError(ValueError):
    """A policy parameter is out of range; the message names it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PolicyParams:
    """What the trading rules compare against (LXA_POLICY_* settings).

    Costs: a round trip pays `fee_rate` twice and `slippage_bps` twice (the paper exchange's
    base slippage; a large order's impact comes on top). An entry needs the model's expected
    return over the label horizon to exceed that cost plus `entry_margin_bps`. A held coin is
    sold by the model only after `min_hold_minutes`, and only once its expected return falls
    below minus `exit_margin_bps` (selling then beats holding by that margin): the band between
    the two thresholds is the hysteresis that stops a coin being bought and sold on alternate
    bars. Stop-loss, take-profit, the watchdog and the operator exit at any time.
    """

    horizon_minutes: int = 10  # the model's label horizon
    fee_rate: float = 0.0005  # Upbit KRW markets, each side
    slippage_bps: float = 2.0  # each side
    entry_margin_bps: float = 10.0
    exit_margin_bps: float = 5.0
    min_hold_minutes: int = 10
    max_hold_minutes: int = 0  # 0: no time stop
    reentry_pause_minutes: int = 30
    max_entries_per_day: int = 3  # per market, KST calendar day
    max_open_positions: int = 2
    daily_loss_limit_pct: float = 3.0
    monthly_loss_cap_pct: float = 3.0

    def __post_init__(self) -> None:
        for name in (
            "horizon_minutes",
            "min_hold_minutes",
            "max_hold_minutes",
            "reentry_pause_minutes",
            "max_entries_per_day",
            "max_open_positions",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise PolicyParamsError(f"{name} must be a whole number >= 0, got {value!r}")
        if self.horizon_minutes < 1:
            raise PolicyParamsError(f"horizon_minutes must be >= 1, got {self.horizon_minutes}")
        if self.max_open_positions < 1:
            raise PolicyParamsError(
                f"max_open_positions must be >= 1, got {self.max_open_positions}"
            )
        if self.min_hold_minutes < self.horizon_minutes:
            raise PolicyParamsError(
                f"min_hold_minutes ({self.min_hold_minutes}) must be at least the label "
                f"horizon ({self.horizon_minutes}): the model's forecast is for that long"
            )
        if self.max_hold_minutes and self.max_hold_minutes < self.min_hold_minutes:
            raise PolicyParamsError(
                f"max_hold_minutes ({self.max_hold_minutes}) must be 0 (off) or at least "
                f"min_hold_minutes ({self.min_hold_minutes})"
            )
        _bounded("fee_rate", self.fee_rate, 0.0, 0.01)
        _bounded("slippage_bps", self.slippage_bps, 0.0, 100.0)
        _bounded("entry_margin_bps", self.entry_margin_bps, -1000.0, 1000.0)
        _bounded("exit_margin_bps", self.exit_margin_bps, -1000.0, 1000.0)
        _bounded("daily_loss_limit_pct", self.daily_loss_limit_pct, 0.0, 100.0, low_open=True)
        _bounded("monthly_loss_cap_pct", self.monthly_loss_cap_pct, 0.0, 100.0, low_open=True)

    @property
    def round_trip_cost(self) -> float:
        """Fees and base slippage of buying and later selling, as a fraction."""
        return 2.0 * (self.fee_rate + self.slippage_bps / 10_000)

    @property
    def entry_threshold(self) -> float:
        """Expected return (fraction) an entry must exceed: costs plus the entry margin."""
        return self.round_trip_cost + self.entry_margin_bps / 10_000

    @property
    def exit_threshold(self) -> float:
        """Expected return (fraction) under which an ML exit beats holding."""
        return -self.exit_margin_bps / 10_000

    def kernel_array(self) -> npt.NDArray[np.float64]:
        """Pack the numbers the compiled rules read (see the K_* positions)."""
        array = np.zeros(KERNEL_SIZE, dtype=np.float64)
        array[K_ENTRY_THRESHOLD] = self.entry_threshold
        array[K_EXIT_THRESHOLD] = self.exit_threshold
        array[K_COST] = self.round_trip_cost
        array[K_MIN_HOLD] = self.min_hold_minutes
        array[K_MAX_HOLD] = self.max_hold_minutes
        array[K_PAUSE] = self.reentry_pause_minutes
        array[K_MAX_ENTRIES] = self.max_entries_per_day
        array[K_MAX_POSITIONS] = self.max_open_positions
        return array

    def to_json(self) -> dict[str, Any]:
        """The parameters as stored with a model set's evaluation and a backtest's metrics."""
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> PolicyParams:
        """Rebuild from `to_json` output; unknown keys are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise PolicyParamsError(f"unknown policy parameters {unknown}")
        return cls(**values)


def _bounded(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    number = float(value)
    below = number <= low if low_open else number < low
    if not math.isfinite(number) or below or number > high:
        bracket = "(" if low_open else "["
        raise PolicyParamsError(f"{name} must be in {bracket}{low}, {high}], got {value!r}")
