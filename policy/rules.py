"""The entry and exit rules, compiled once and shared by the graph and the fast simulator.

`decide_kernel` sees every market's expected return over the label horizon (NaN when the
model gave none) and the policy's memory of it, and returns one action with the rule that
decided it and the two numbers that rule compared. `Policy.decide` wraps it for the graph
with names and a readable reason; `policy.simulate` calls the kernel from its compiled loop.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from policy.params import (
    K_COST,
    K_ENTRY_THRESHOLD,
    K_EXIT_THRESHOLD,
    K_MAX_ENTRIES,
    K_MAX_HOLD,
    K_MAX_POSITIONS,
    K_MIN_HOLD,
    K_PAUSE,
    PolicyParams,
)

HOLD, BUY, SELL = 0, 1, 2
ACTIONS = ("hold", "buy", "sell")
NEVER = 1 << 40  # minutes since an exit that never happened


class Rule(IntEnum):
    """Which rule decided a cycle (stored by name with every proposal)."""

    NO_SIGNAL = 0  # no market has an expected return (warming up, or no calibration)
    NO_EDGE = 1  # the best expected return does not clear costs plus the entry margin
    ENTER = 2
    EXIT_SIGNAL = 3  # held past the minimum, and selling beats holding by the exit margin
    EXIT_TIME = 4  # held for max_hold_minutes
    MIN_HOLD = 5  # selling would win, but the position is younger than the minimum hold
    BLOCKED = 6  # an entry clears the margin, but a cooldown, the trading state or a cap bars it
    REENTRY_PAUSE = 7  # an entry clears the margin, but the market was exited too recently
    TURNOVER_BUDGET = 8  # an entry clears the margin, but today's entries are spent
    MAX_POSITIONS = 9  # an entry clears the margin, but enough positions are open
    KEEP = 10  # positions are held, none has an exit case, and no other market has a forecast


RULE_NAMES: tuple[str, ...] = tuple(rule.name.lower() for rule in Rule)


@numba.njit(cache=True)
def decide_kernel(
    expected: npt.NDArray[np.float64],
    held: npt.NDArray[np.bool_],
    held_minutes: npt.NDArray[np.int64],
    minutes_since_exit: npt.NDArray[np.int64],
    entries_today: npt.NDArray[np.int64],
    blocked: npt.NDArray[np.bool_],
    params: npt.NDArray[np.float64],
) -> tuple[int, int, int, float, float]:
    """Return (action, market index or -1, rule, value, threshold) for one cycle.

    Exits come first: a held market whose expected return is under the exit threshold is sold
    once it has been held `min_hold` minutes (the most negative first); failing that, one held
    `max_hold` minutes or more (the oldest first). Then entries: among unheld markets whose
    expected return exceeds the entry threshold, the filters apply in order (blocked, re-entry
    pause, turnover budget, open positions) and the best remaining one is bought. `value` and
    `threshold` are what the deciding rule compared (fractions, or minutes for time rules).
    """
    n = expected.shape[0]
    entry_threshold = params[K_ENTRY_THRESHOLD]
    exit_threshold = params[K_EXIT_THRESHOLD]
    cost = params[K_COST]
    min_hold = params[K_MIN_HOLD]
    max_hold = params[K_MAX_HOLD]
    n_held = 0
    exit_at = -1
    exit_value = math.inf
    time_at = -1
    time_value = -1.0
    young_at = -1
    young_value = math.inf
    kept_at = -1
    kept_value = math.inf
    for i in range(n):
        if not held[i]:
            continue
        n_held += 1
        value = expected[i]
        if kept_at < 0 or (not math.isnan(value) and value < kept_value):
            kept_at, kept_value = i, value
        if not math.isnan(value) and value < exit_threshold:
            if held_minutes[i] >= min_hold:
                if value < exit_value:
                    exit_at, exit_value = i, value
            elif value < young_value:
                young_at, young_value = i, value
        if max_hold > 0 and held_minutes[i] >= max_hold and held_minutes[i] > time_value:
            time_at, time_value = i, float(held_minutes[i])
    if exit_at >= 0:
        return SELL, exit_at, 3, exit_value, exit_threshold
    if time_at >= 0:
        return SELL, time_at, 4, time_value, max_hold

    best_any = -1
    best_any_value = -math.inf
    # Each filter keeps the best market it removed, so a hold names the market it concerns.
    stage_best = np.full(5, -1, dtype=np.int64)
    stage_value = np.full(5, -math.inf)
    for i in range(n):
        value = expected[i]
        if held[i] or math.isnan(value):
            continue
        if value > best_any_value:
            best_any, best_any_value = i, value
        if value <= entry_threshold:
            continue
        if blocked[i]:
            stage = 0
        elif minutes_since_exit[i] < params[K_PAUSE]:
            stage = 1
        elif entries_today[i] >= params[K_MAX_ENTRIES]:
            stage = 2
        elif n_held >= params[K_MAX_POSITIONS]:
            stage = 3
        else:
            stage = 4
        if value > stage_value[stage]:
            stage_best[stage], stage_value[stage] = i, value
    if stage_best[4] >= 0:
        return BUY, stage_best[4], 2, stage_value[4] - cost, entry_threshold - cost
    for stage, rule in ((3, 9), (2, 8), (1, 7), (0, 6)):
        if stage_best[stage] >= 0:
            return HOLD, stage_best[stage], rule, stage_value[stage] - cost, entry_threshold - cost
    if young_at >= 0:
        return HOLD, young_at, 5, young_value, exit_threshold
    if best_any < 0 and kept_at >= 0:
        return HOLD, kept_at, 10, kept_value, exit_threshold
    if best_any < 0:
        return HOLD, -1, 0, math.nan, entry_threshold - cost
    return HOLD, best_any, 1, best_any_value - cost, entry_threshold - cost


@dataclass(frozen=True, slots=True)
class MarketInput:
    """What the policy knows of one market at a bar close."""

    expected_return: float | None  # over the label horizon, before costs; None: unknown
    held: bool = False
    held_minutes: int | None = None  # since the position's first buy fill
    minutes_since_exit: int | None = None  # since the last sell fill; None: never
    entries_today: int = 0  # buys of this market on the current KST day
    blocked: str | None = None  # why entries are refused now (cooldown, trading state, ...)


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """One cycle's proposal, the rule that decided it and the numbers it compared."""

    action: str  # buy | sell | hold
    market: str | None
    rule: str
    value: float | None  # bps for return rules, minutes for time rules
    threshold: float | None
    unit: str  # "bps" or "minutes"
    reason: str
    expected_returns_bps: dict[str, float | None]

    def to_json(self) -> dict[str, Any]:
        """The decision as stored in the graph state and the journal."""
        return {
            "action": self.action,
            "market": self.market,
            "rule": self.rule,
            "value": self.value,
            "threshold": self.threshold,
            "unit": self.unit,
            "reason": self.reason,
            "expected_returns_bps": self.expected_returns_bps,
        }


def _bps(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value) * 10_000, 3)


class Policy:
    """The rules with their parameters; `decide` is pure (same inputs, same decision)."""

    def __init__(self, params: PolicyParams) -> None:
        """Keep the parameters and their packed form for the compiled rules."""
        self.params = params
        self._array = params.kernel_array()

    def decide(self, markets: Mapping[str, MarketInput]) -> PolicyDecision:
        """Propose at most one action over `markets` (in their given order)."""
        names = list(markets)
        n = len(names)
        expected = np.full(n, np.nan)
        held = np.zeros(n, dtype=np.bool_)
        held_minutes = np.zeros(n, dtype=np.int64)
        since_exit = np.full(n, NEVER, dtype=np.int64)
        entries = np.zeros(n, dtype=np.int64)
        blocked = np.zeros(n, dtype=np.bool_)
        for i, name in enumerate(names):
            item = markets[name]
            value = item.expected_return
            if value is not None and math.isfinite(value):
                expected[i] = value
            held[i] = item.held
            held_minutes[i] = item.held_minutes or 0
            if item.minutes_since_exit is not None:
                since_exit[i] = item.minutes_since_exit
            entries[i] = item.entries_today
            blocked[i] = item.blocked is not None
        action, index, rule_code, value, threshold = decide_kernel(
            expected, held, held_minutes, since_exit, entries, blocked, self._array
        )
        rule = Rule(rule_code)
        market = names[index] if index >= 0 else None
        time_rule = rule is Rule.EXIT_TIME
        shown_value = round(float(value), 3) if time_rule else _bps(value)
        shown_threshold = round(float(threshold), 3) if time_rule else _bps(threshold)
        reason = self._reason(rule, market, shown_value, shown_threshold, markets)
        return PolicyDecision(
            action=ACTIONS[action],
            market=market,
            rule=rule.name.lower(),
            value=shown_value,
            threshold=shown_threshold,
            unit="minutes" if time_rule else "bps",
            reason=reason,
            expected_returns_bps={name: _bps(expected[i]) for i, name in enumerate(names)},
        )

    def _reason(
        self,
        rule: Rule,
        market: str | None,
        value: float | None,
        threshold: float | None,
        markets: Mapping[str, MarketInput],
    ) -> str:
        p = self.params
        cost = round(p.round_trip_cost * 10_000, 2)
        item = markets[market] if market is not None else None
        net = f"expected net return {value} bps"
        if rule is Rule.NO_SIGNAL:
            return "no market has an expected return yet (warming up or no calibration)"
        if rule is Rule.NO_EDGE:
            return (
                f"no edge: best {net} ({market}, after {cost} bps of costs) does not clear the "
                f"entry margin of {threshold} bps"
            )
        if rule is Rule.ENTER:
            return f"{net} on {market} (after {cost} bps of costs) clears the margin {threshold}"
        if rule is Rule.EXIT_SIGNAL:
            return (
                f"exit {market}: expected return {value} bps is under the exit threshold "
                f"{threshold} bps after {item.held_minutes if item else '?'} minutes held"
            )
        if rule is Rule.KEEP:
            return (
                f"keep {market}: expected return {value} bps does not favour selling (exit "
                f"threshold {threshold} bps) and no other market has a forecast"
            )
        if rule is Rule.EXIT_TIME:
            return f"exit {market}: held {value} minutes, the limit is {threshold}"
        if rule is Rule.MIN_HOLD:
            return (
                f"keep {market}: expected return {value} bps favours selling, but it has been "
                f"held {item.held_minutes if item else '?'} of the {p.min_hold_minutes} "
                "minutes an ML exit waits"
            )
        if rule is Rule.BLOCKED:
            why = item.blocked if item else "blocked"
            return f"{net} on {market} clears the margin, but entries are barred: {why}"
        if rule is Rule.REENTRY_PAUSE:
            return (
                f"{net} on {market} clears the margin, but it was exited "
                f"{item.minutes_since_exit if item else '?'} minutes ago (pause: "
                f"{p.reentry_pause_minutes})"
            )
        if rule is Rule.TURNOVER_BUDGET:
            return (
                f"{net} on {market} clears the margin, but its {p.max_entries_per_day} entries "
                "for today (KST) are spent"
            )
        return (
            f"{net} on {market} clears the margin, but {p.max_open_positions} position(s) "
            "are open already"
        )
