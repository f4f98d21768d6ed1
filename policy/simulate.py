"""The fast simulator: the engine's bar loop compiled, over precomputed model outputs.

It replays what `lxa backtest` does through the real engine, with the same trading rules
(`policy.rules.decide_kernel`, called from the compiled loop) and a compiled copy of what
surrounds them, in the engine's order, for each bar close:

1. each market with a bar, in name order: its four derived ticks (open, low/high, close), each
   marking the paper account, then the stop-loss / take-profit check, then the watchdog's
   trigger (cooldown, emergency sell); then the bar's close becomes the mark;
2. the daily loss limit and the monthly loss cap on the equity at the closes;
3. stop-loss / take-profit at the closes;
4. one decision: the rules, then (for a buy) the rule-based sizer and its clamps, Upbit's
   minimum order, the paper exchange's slippage, fee and tick rounding.

Every order also lets the risk guard observe the equity at the paper marks first, as
`GuardedExchange` does. The watchdog's triggers are inputs (`exchange.watchdog.detect_batch`
over the same derived ticks, by the caller); so are the expected returns. A parity test runs
both paths on real candles and compares their trades. The simulator is for parameter sweeps
and walk-forward evaluation; the engine remains the reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from policy.params import PolicyParams
from policy.rules import BUY, HOLD, NEVER, SELL, Rule, decide_kernel

# Why a fill happened (the `reason` column of `SimulationResult.fills`).
FILL_REASONS: tuple[str, ...] = (
    "enter",
    "exit_signal",
    "exit_time",
    "stop_loss",
    "take_profit",
    "watchdog:drop",
    "watchdog:volume_spike",
    "watchdog:autoencoder",
)
R_ENTER, R_EXIT_SIGNAL, R_EXIT_TIME, R_STOP, R_TAKE, R_DROP, R_SPIKE, R_ANOMALY = range(8)
TICK_OFFSETS_S = (0, 15, 30, 59)
MAX_RESULTS = 20  # recent closed-trade results the sizer sees (app.engine.ledger.RECENT_RESULTS)

# Positions in the float64 array of settings beyond the policy's own.
S_FEE = 0
S_SLIP_BASE = 1  # bps
S_SLIP_IMPACT = 2
S_SLIP_MAX = 3  # bps
S_INITIAL = 4
S_MIN_ORDER = 5
S_COOLDOWN = 6  # seconds
S_DAILY_LIMIT = 7  # percent
S_MONTHLY_CAP = 8  # percent
S_RISK_MULT = 9
S_SL_FLOOR = 10
S_SL_CAP = 11
S_TP_FLOOR = 12
S_TP_CAP = 13
S_MIN_RATIO = 14
S_MAX_RATIO = 15
S_MEDIUM_BPS = 16
S_STRONG_BPS = 17
S_HIGH_VOL = 18
S_DAY_START_S = 19  # the trading day starts this many seconds after 00:00 UTC
SETTINGS_SIZE = 20
RISK_MULTIPLIERS = {"low": 0.5, "medium": 1.0, "high": 1.5}


@dataclass(frozen=True)
class SimulationSettings:
    """What the engine is configured with besides the policy (settings, sizer, paper exchange)."""

    initial_krw: float = 1_000_000.0
    slippage_base_bps: float = 2.0
    slippage_impact: float = 0.1
    slippage_max_bps: float = 100.0
    min_order_krw: float = 5000.0
    cooldown_s: int = 1800
    risk_level: str = "medium"
    stop_loss_floor_pct: float = 0.2
    stop_loss_cap_pct: float = 3.0
    take_profit_floor_pct: float = 0.2
    take_profit_cap_pct: float = 20.0
    min_investment_ratio: float = 0.05
    max_investment_ratio: float = 1.0
    medium_signal_bps: float = 10.0
    strong_signal_bps: float = 25.0
    high_volatility_60m: float = 0.0025
    day_start_hour_utc: int = 15

    def array(self, params: PolicyParams) -> npt.NDArray[np.float64]:
        """Pack these and the policy's loss limits for the compiled loop."""
        out = np.zeros(SETTINGS_SIZE, dtype=np.float64)
        out[S_FEE] = params.fee_rate
        out[S_SLIP_BASE] = self.slippage_base_bps
        out[S_SLIP_IMPACT] = self.slippage_impact
        out[S_SLIP_MAX] = self.slippage_max_bps
        out[S_INITIAL] = self.initial_krw
        out[S_MIN_ORDER] = self.min_order_krw
        out[S_COOLDOWN] = self.cooldown_s
        out[S_DAILY_LIMIT] = params.daily_loss_limit_pct
        out[S_MONTHLY_CAP] = params.monthly_loss_cap_pct
        out[S_RISK_MULT] = RISK_MULTIPLIERS[self.risk_level]
        out[S_SL_FLOOR] = self.stop_loss_floor_pct
        out[S_SL_CAP] = self.stop_loss_cap_pct
        out[S_TP_FLOOR] = self.take_profit_floor_pct
        out[S_TP_CAP] = self.take_profit_cap_pct
        out[S_MIN_RATIO] = self.min_investment_ratio
        out[S_MAX_RATIO] = self.max_investment_ratio
        out[S_MEDIUM_BPS] = self.medium_signal_bps
        out[S_STRONG_BPS] = self.strong_signal_bps
        out[S_HIGH_VOL] = self.high_volatility_60m
        out[S_DAY_START_S] = self.day_start_hour_utc * 3600
        return out


@dataclass
class MarketArrays:
    """Bars of M markets on one time grid of T bar closes (what the engine's replay sees).

    `bar_minute[t]`: bar open time in minutes since the epoch (UTC); `has_bar[t, m]`: the
    market had a candle at that close. `expected` and `volatility` are the model's expected
    return and the 60-minute volatility at each close, carried forward over bars a market
    lacks (the engine scores its latest feature row); NaN where unknown. `tick_trigger[t, m, k]`
    is the watchdog detector that turned on at tick k (0: none, 1: drop, 2: volume spike),
    `bar_trigger[t, m]` the autoencoder's at the close. `tick_rounding[m]`: Upbit's KRW tick
    table applies (KRW-* markets); elsewhere prices are not rounded.
    """

    markets: list[str]
    bar_minute: npt.NDArray[np.int64]
    has_bar: npt.NDArray[np.bool_]
    open: npt.NDArray[np.float64]
    high: npt.NDArray[np.float64]
    low: npt.NDArray[np.float64]
    close: npt.NDArray[np.float64]
    volume: npt.NDArray[np.float64]
    expected: npt.NDArray[np.float64]
    volatility: npt.NDArray[np.float64]
    tick_trigger: npt.NDArray[np.uint8]
    bar_trigger: npt.NDArray[np.uint8]
    tick_rounding: npt.NDArray[np.bool_]
    seen_before: npt.NDArray[np.bool_] | None = None  # markets the warm-up had bars of
    known: npt.NDArray[np.bool_] = field(init=False)

    def __post_init__(self) -> None:
        t, m = self.has_bar.shape
        for name in ("open", "high", "low", "close", "volume", "expected", "volatility"):
            if getattr(self, name).shape != (t, m):
                raise ValueError(
                    f"{name} must have shape {(t, m)}, got {getattr(self, name).shape}"
                )
        if self.tick_trigger.shape != (t, m, 4):
            raise ValueError(f"tick_trigger must have shape {(t, m, 4)}")
        if self.bar_minute.shape != (t,):
            raise ValueError(f"bar_minute must have shape {(t,)}")
        # A market the engine has seen a bar of is in every later snapshot.
        seen = np.zeros(m, dtype=np.bool_) if self.seen_before is None else self.seen_before
        self.known = np.maximum.accumulate(self.has_bar | seen[None, :], axis=0)

    def __len__(self) -> int:
        return int(self.has_bar.shape[0])

    def head(self, bars: int) -> MarketArrays:
        """The first `bars` closes only."""
        return MarketArrays(
            markets=self.markets,
            bar_minute=self.bar_minute[:bars],
            has_bar=self.has_bar[:bars],
            open=self.open[:bars],
            high=self.high[:bars],
            low=self.low[:bars],
            close=self.close[:bars],
            volume=self.volume[:bars],
            expected=self.expected[:bars],
            volatility=self.volatility[:bars],
            tick_trigger=self.tick_trigger[:bars],
            bar_trigger=self.bar_trigger[:bars],
            tick_rounding=self.tick_rounding,
            seen_before=self.seen_before,
        )


@dataclass
class SimulationResult:
    """What one simulated run did."""

    equity: npt.NDArray[np.float64]  # after every bar close
    initial_krw: float
    fills: dict[str, npt.NDArray[Any]]  # bar, market, side (1 buy, 2 sell), price, volume, fee, ...
    rule_counts: npt.NDArray[np.int64]  # how often each policy rule decided a cycle
    hold_minutes: npt.NDArray[np.int64]  # of each closed round trip
    ratios: npt.NDArray[np.float64]  # investment ratio of each entry

    @property
    def total_return(self) -> float:
        """Final equity over the initial capital, minus one (after fees, marked at closes)."""
        return float(self.equity[-1] / self.initial_krw - 1.0) if len(self.equity) else 0.0

    @property
    def fees(self) -> float:
        """Fees paid, in the quote currency."""
        return float(self.fills["fee"].sum())

    @property
    def entries(self) -> int:
        """Buys made."""
        return int((self.fills["side"] == BUY).sum())


@numba.njit(cache=True)
def _tick_size(price: float) -> float:
    """Upbit's KRW tick table (exchange.rules.tick_size) in floats."""
    if price >= 1_000_000.0:
        return 1000.0
    if price >= 500_000.0:
        return 500.0
    if price >= 100_000.0:
        return 100.0
    if price >= 50_000.0:
        return 50.0
    if price >= 10_000.0:
        return 10.0
    if price >= 5_000.0:
        return 5.0
    if price >= 100.0:
        return 1.0
    if price >= 10.0:
        return 0.1
    if price >= 1.0:
        return 0.01
    if price >= 0.1:
        return 0.001
    if price >= 0.01:
        return 0.0001
    if price >= 0.001:
        return 0.00001
    if price >= 0.0001:
        return 0.000001
    if price >= 0.00001:
        return 0.0000001
    return 0.00000001


@numba.njit(cache=True)
def _round_price(price: float, up: bool, rounding: bool) -> float:
    if not rounding:
        return price
    tick = _tick_size(price)
    steps = price / tick
    if up:
        return math.ceil(steps - 1e-9) * tick
    return math.floor(steps + 1e-9) * tick


@numba.njit(cache=True)
def _slip(order_value: float, bar_value: float, settings: npt.NDArray[np.float64]) -> float:
    cap = settings[S_SLIP_MAX] / 10_000.0
    if not bar_value > 0.0:
        return cap
    fraction = (
        settings[S_SLIP_BASE] / 10_000.0
        + settings[S_SLIP_IMPACT] * max(order_value, 0.0) / bar_value
    )
    return min(fraction, cap)


@numba.njit(cache=True)
def _kst_month(seconds: float) -> int:
    """Months since 1970-01 of the KST calendar date of a UTC epoch second."""
    days = math.floor((seconds + 9 * 3600) / 86400.0)
    z = days + 719468  # Howard Hinnant's civil_from_days
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    if month <= 2:
        year += 1
    return (year - 1970) * 12 + month - 1


@numba.njit(cache=True)
def _streak(results: npt.NDArray[np.float64], count: int, losing: bool) -> int:
    n = 0
    for k in range(count - 1, -1, -1):
        value = results[k]
        if value != 0.0 and (value < 0.0) == losing:
            n += 1
        else:
            break
    return n


@numba.njit(cache=True)
def _size_entry(
    excess_bps: float,
    volatility: float,
    results: npt.NDArray[np.float64],
    n_results: int,
    settings: npt.NDArray[np.float64],
) -> tuple[float, float, float]:
    """The rule-based sizer and the sizing node's clamps (llm.rule_based, nodes.sizing)."""
    known = not math.isnan(volatility)
    if math.isnan(excess_bps):
        strength = 0
    elif excess_bps >= settings[S_STRONG_BPS]:
        strength = 2
    elif excess_bps >= settings[S_MEDIUM_BPS]:
        strength = 1
    else:
        strength = 0
    vol = volatility if known else 0.002
    calm = known and vol < 0.0015
    if strength == 2 and calm:
        ratio = 0.5
    elif strength >= 1:
        ratio = 0.3
    else:
        ratio = 0.1
    losing = _streak(results, n_results, True)
    winning = _streak(results, n_results, False)
    if losing >= 2:
        ratio = min(ratio, 0.08)
    elif winning >= 2:
        ratio = min(ratio * 1.2, 1.0)
    ratio = round(ratio * settings[S_RISK_MULT], 4)
    stop = round(max(0.5, 100.0 * 2.5 * vol * math.sqrt(10.0)), 3)
    take = round(2.0 * stop, 3)
    # Clamps: caps by signal tier and streak, then the floors and caps of each number.
    volatile = (not known) or volatility >= settings[S_HIGH_VOL]
    cap = settings[S_MAX_RATIO]
    if strength == 0 or volatile:
        cap = min(cap, 0.20)
    elif strength == 1:
        cap = min(cap, 0.50)
    if losing >= 2:
        cap = min(cap, 0.10)
    return (
        _clamp(ratio, settings[S_MIN_RATIO], cap),
        _clamp(stop, settings[S_SL_FLOOR], settings[S_SL_CAP]),
        _clamp(take, settings[S_TP_FLOOR], settings[S_TP_CAP]),
    )


@numba.njit(cache=True)
def _clamp(value: float, low: float, high: float) -> float:
    """nodes.sizing.clamp_proposal: under the floor -> the floor, else over the cap -> the cap."""
    if value < low:
        return low
    if value > high:
        return high
    return value


@numba.njit(cache=True)
def _equity(
    krw: float, volume: npt.NDArray[np.float64], price: npt.NDArray[np.float64],
    avg: npt.NDArray[np.float64],
) -> float:  # fmt: skip
    total = krw
    for m in range(volume.shape[0]):
        if volume[m] > 0.0:
            unit = price[m] if not math.isnan(price[m]) else avg[m]
            total += volume[m] * unit
    return total


# -- The compiled loop: `_run` and one kernel per concern ------------------------------------------
#
# `_run` walks the bar closes in the engine's order (see the module docstring). The state is
# tuples of arrays changed in place, made by `SimulationRun` (so a run can stop at a proposal and
# go on); the cash and the paper exchange's clock are floats in `_run` (in `scalars` between
# calls):
#
# - bars (has_bar, open, high, low, close, volume), signals (known, expected, volatility),
#   triggers (tick_trigger, bar_trigger), forced (market, hold, ratio per bar: empty unless a
#   random-entry baseline): the inputs;
# - book: the paper account and its positions, what a fill changes: (volume, avg, mark,
#   bar_value, tick_rounding, fills, results, trip_minutes, exited, entered, stop_price,
#   take_price);
# - memory: the engine's own: (last_close, cooldown_until, entries_day, entries_count,
#   hold_target);
# - view: what the rules see at a close: (expected_now, held, held_minutes, since_exit,
#   entries_now, blocked);
# - guard: RiskGuard's day and month (`_observe`); counts: fills written, results kept, round
#   trips closed, entries made;
# - out: what `simulate` reads back: (fills, equity after each close, rule counts, round trips'
#   minutes, entry ratios, each bar's rule and the market it named).
#
# Speed: numba counts a reference for every array a compiled function is handed (or takes out of
# a tuple) and drops it after the array's last use: two atomic operations a call, unless its
# pruning pass pairs them away, which it does only when the last use is not inside a branch and
# nothing between the two can release a reference (a call that is not inlined, a path that may
# raise). So the kernels on the hot path (each tick, market and close) are inlined
# (inline="always"), call only inlined kernels and use their arrays in a loop or unconditionally,
# and the kernels that fill an order (`_protect`, `_enter`, `_exit`) are called from `_run`
# itself, where the arrays are bound once, and only when an order is due. Breaking this changes
# no result but slows the loop severalfold (2x to 10x, as measured): `bench/backtest.py` shows it.

EVENTS = len(TICK_OFFSETS_S)  # a bar's events: its ticks, then its close (event EVENTS)
EXIT_TIME_RULE = int(Rule.EXIT_TIME)


# The run's position between calls (`control`, int64; `scalars`, float64): `_run` goes on from
# bar `control[C_NEXT]`; with `control[C_REVIEW]` set it stops at each bar whose decision is a
# buy or a sell, before its order, and keeps the decision; the caller answers it
# (`control[C_VERDICT]`: 1 go ahead, 0 hold) and sets `control[C_RESUME]`, and the next call
# starts at that decision. The cash and the paper exchange's clock live in `scalars` between
# calls, floats in `_run` while it walks.
C_NEXT, C_REVIEW, C_RESUME, C_ACTION, C_MARKET, C_RULE, C_VERDICT = range(7)
CONTROL_SIZE = 7
F_KRW, F_PAPER_TIME, F_VALUE, F_THRESHOLD = range(4)
SCALARS_SIZE = 4


@numba.njit(cache=True)
def _run(
    bars: Any,
    signals: Any,
    triggers: Any,
    bar_minute: npt.NDArray[np.int64],
    params: npt.NDArray[np.float64],
    settings: npt.NDArray[np.float64],
    forced: Any,
    state: Any,
    control: npt.NDArray[np.int64],
    scalars: npt.NDArray[np.float64],
    out: Any,
) -> int:
    """The bar loop: the engine's order at each close, from bar `control[C_NEXT]` on. Returns
    the bar it stopped at for a review (see `control` above), or the number of bars when done."""
    _, equity_out, rule_counts, _, ratios, bar_rules = out
    book, memory, view, guard, counts = state
    has_bar = bars[0]
    n_bars, n_markets = has_bar.shape
    volume, avg, _, _, _, _, _, _, _, _, stop_price, take_price = book
    last_close = memory[0]
    expected_now, held, held_minutes, since_exit, entries_now, blocked = view
    krw, paper_time = scalars[F_KRW], scalars[F_PAPER_TIME]
    review, resume = control[C_REVIEW] == 1, control[C_RESUME] == 1
    control[C_RESUME] = 0
    forced_mode = forced[0].shape[0] > 0
    for t in range(control[C_NEXT], n_bars):
        bar_s = float(bar_minute[t]) * 60.0
        close_s = bar_s + 60.0
        if resume:  # the decision this bar stopped at, answered
            resume = False
            action, chosen, rule = control[C_ACTION], control[C_MARKET], control[C_RULE]
            value, threshold = scalars[F_VALUE], scalars[F_THRESHOLD]
            if control[C_VERDICT] != 1:
                action = HOLD
        else:
            for m in range(n_markets):  # 1. each market's ticks, then its close
                event = 0 if has_bar[t, m] else EVENTS + 1
                while event <= EVENTS:
                    event, reason, paper_time = _market_bar(
                        t, m, event, bar_s, paper_time, bars, triggers, book, memory, settings
                    )
                    if reason >= 0:
                        krw = _protect(m, t, reason, paper_time, krw, book, guard, counts, settings)
            # 2. the loss limits on the equity at the closes
            _observe(_equity(krw, volume, last_close, avg), close_s, guard, settings)
            for m in range(n_markets):  # 3. stop-loss / take-profit at the closes
                reason = _stop_or_take(last_close[m], volume[m], stop_price[m], take_price[m])
                if reason >= 0:
                    krw = _protect(m, t, reason, paper_time, krw, book, guard, counts, settings)
            # 4. one decision (the rules', or a random-entry baseline's), then its order
            _policy_view(t, close_s, _trading(guard), signals, book, memory, view)
            if forced_mode:
                action, chosen, rule, value, threshold = _baseline(t, forced, signals, memory, view)
            else:
                action, chosen, rule, value, threshold = decide_kernel(
                    expected_now, held, held_minutes, since_exit, entries_now, blocked, params
                )
                rule_counts[rule] += 1
            bar_rules[t, 0], bar_rules[t, 1] = rule, chosen
            if review and action != HOLD:  # stop here until the reviewers answer
                control[C_NEXT], control[C_ACTION], control[C_MARKET] = t, action, chosen
                control[C_RULE] = rule
                scalars[F_KRW], scalars[F_PAPER_TIME] = krw, paper_time
                scalars[F_VALUE], scalars[F_THRESHOLD] = value, threshold
                return t
        if action == BUY:
            krw = _enter(
                t, chosen, value, threshold, krw, paper_time, signals[2], forced, book, memory,
                guard, counts, ratios, settings,
            )  # fmt: skip
        elif action == SELL:
            reason = R_EXIT_TIME if (forced_mode or rule == EXIT_TIME_RULE) else R_EXIT_SIGNAL
            krw = _exit(chosen, t, reason, paper_time, krw, book, guard, counts, settings)
        equity_out[t] = _equity(krw, volume, last_close, avg)
    scalars[F_KRW], scalars[F_PAPER_TIME] = krw, paper_time
    control[C_NEXT] = n_bars
    return n_bars


@numba.njit(cache=True)
def _new_book(
    n: int,
    tick_rounding: npt.NDArray[np.bool_],
    fills: npt.NDArray[np.float64],
    trip_minutes: npt.NDArray[np.int64],
) -> Any:
    """The paper account before any fill, the cash apart: see `book` above."""
    volume = np.zeros(n)
    avg = np.zeros(n)  # fee-inclusive cost per coin
    mark = np.full(n, np.nan)  # the paper exchange's marks
    bar_value = np.zeros(n)  # last bar's traded value (slippage impact)
    results = np.zeros(MAX_RESULTS)
    exited = np.full(n, np.nan)  # seconds
    entered = np.full(n, np.nan)
    stop_price = np.full(n, np.nan)
    take_price = np.full(n, np.nan)
    return (
        volume, avg, mark, bar_value, tick_rounding, fills, results, trip_minutes, exited, entered,
        stop_price, take_price,
    )  # fmt: skip


@numba.njit(cache=True)
def _new_memory(n: int) -> Any:
    """The engine's memory before the first bar: see `memory` above."""
    last_close = np.full(n, np.nan)  # the engine's closes
    cooldown_until = np.full(n, -np.inf)
    entries_day = np.full(n, -1, dtype=np.int64)
    entries_count = np.zeros(n, dtype=np.int64)
    hold_target = np.zeros(n, dtype=np.int64)
    return last_close, cooldown_until, entries_day, entries_count, hold_target


@numba.njit(cache=True)
def _new_view(n: int) -> Any:
    """The rules' inputs, filled again at every close: see `view` above."""
    expected_now = np.full(n, np.nan)
    held = np.zeros(n, dtype=np.bool_)
    held_minutes = np.zeros(n, dtype=np.int64)
    since_exit = np.zeros(n, dtype=np.int64)
    entries_now = np.zeros(n, dtype=np.int64)
    blocked = np.zeros(n, dtype=np.bool_)
    return expected_now, held, held_minutes, since_exit, entries_now, blocked


# -- 1. a market's ticks and close; the protective sell (of 1. and 3.) -----------------------------


@numba.njit(cache=True, inline="always")
def _market_bar(
    t: int,
    m: int,
    event: int,
    bar_s: float,
    paper_time: float,
    bars: Any,
    triggers: Any,
    book: Any,
    memory: Any,
    settings: npt.NDArray[np.float64],
) -> tuple[int, int, float]:
    """Market m's bar from `event` on: its ticks (open, low/high, close), each marking the paper
    account, then the stop-loss / take-profit check, then the watchdog's trigger; then its close,
    which becomes the mark, and the autoencoder's trigger. A trigger cools the market down.

    Stops after the first event that calls for a sell. Returns (the next event, that sell's
    reason or -1 when the bar is done, the paper exchange's clock).
    """
    _, open_, high, low, close, bar_volume = bars
    tick_trigger, bar_trigger = triggers
    volume, mark, bar_value, stop_price, take_price = book[0], book[2], book[3], book[10], book[11]
    last_close, cooldown_until = memory[0], memory[1]
    cooldown = settings[S_COOLDOWN]
    reason = -1
    while event <= EVENTS and reason < 0:
        if event < EVENTS:
            when, price = _tick(event, bar_s, open_[t, m], high[t, m], low[t, m], close[t, m])
            trigger = tick_trigger[t, m, event]
            mark[m] = price
            reason = _stop_or_take(price, volume[m], stop_price[m], take_price[m])
            reason = _watchdog(trigger, reason, volume[m])
        else:
            when = bar_s + 60.0
            trigger = bar_trigger[t, m]
            last_close[m] = close[t, m]
            mark[m] = close[t, m]
            bar_value[m] = bar_volume[t, m] * close[t, m]
            reason = R_ANOMALY if trigger > 0 and volume[m] > 0.0 else -1
        if when > paper_time:
            paper_time = when
        if trigger > 0:
            cooldown_until[m] = when + cooldown
        event += 1
    return event, reason, paper_time


@numba.njit(cache=True, inline="always")
def _tick(
    k: int, bar_s: float, open_: float, high: float, low: float, close: float
) -> tuple[float, float]:
    """Tick k of a bar opened at `bar_s`: (its time, its price). The open, the low then the high
    on an up bar (else reversed), the close. (Constant indices only: a variable index into a
    tuple may raise, and a path that raises costs `_run` its reference-count pruning.)"""
    up = close >= open_
    if k == 0:
        return bar_s + TICK_OFFSETS_S[0], open_
    if k == 1:
        return bar_s + TICK_OFFSETS_S[1], low if up else high
    if k == 2:
        return bar_s + TICK_OFFSETS_S[2], high if up else low
    return bar_s + TICK_OFFSETS_S[3], close


@numba.njit(cache=True, inline="always")
def _stop_or_take(price: float, held: float, stop: float, take: float) -> int:
    """The stop-loss or take-profit reason of a position of `held` coins at `price`, else -1."""
    if held > 0.0 and not math.isnan(stop):
        if price <= stop:
            return R_STOP
        if price >= take:
            return R_TAKE
    return -1


@numba.njit(cache=True, inline="always")
def _watchdog(trigger: int, reason: int, held: float) -> int:
    """The watchdog's sell reason for a tick's trigger (1 drop, 2 volume spike) on a position of
    `held` coins, unless a stop sells first (`reason`); else `reason`."""
    if trigger > 0 and reason < 0 and held > 0.0:
        return R_DROP if trigger == 1 else R_SPIKE
    return reason


@numba.njit(cache=True)
def _protect(
    m: int,
    t: int,
    reason: int,
    when: float,
    krw: float,
    book: Any,
    guard: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    settings: npt.NDArray[np.float64],
) -> float:
    """A stop's or the watchdog's sell: the guard sees the equity at the paper marks, then the
    whole position is sold if it is worth Upbit's minimum order. Returns the cash."""
    volume, avg, mark = book[0], book[1], book[2]
    _observe(_equity(krw, volume, mark, avg), when, guard, settings)
    if volume[m] * mark[m] >= settings[S_MIN_ORDER]:
        krw = _close(m, t, reason, when, krw, book, counts, settings)
    return krw


# -- 2. the loss limits ----------------------------------------------------------------------------


@numba.njit(cache=True)
def _observe(
    equity: float,
    seconds: float,
    guard: npt.NDArray[np.float64],
    settings: npt.NDArray[np.float64],
) -> None:
    """RiskGuard.on_equity: the daily loss limit, then the monthly loss cap.

    guard = [trading day, its start equity, daily breached, KST month, its start, breached].
    """
    day = math.floor((seconds - settings[S_DAY_START_S]) / 86400.0)
    guard[0], guard[1], guard[2] = _loss_limit(
        guard[0], guard[1], guard[2], day, equity, settings[S_DAILY_LIMIT]
    )
    guard[3], guard[4], guard[5] = _loss_limit(
        guard[3], guard[4], guard[5], _kst_month(seconds), equity, settings[S_MONTHLY_CAP]
    )


@numba.njit(cache=True, inline="always")
def _loss_limit(
    period: float, start: float, breached: float, now: int, equity: float, limit_pct: float
) -> tuple[float, float, float]:
    """One of the guard's windows (a trading day, a KST month) at period `now`: a new period
    starts from this equity; the limit is breached once the loss from its start reaches it."""
    if math.isnan(period) or now > period:
        period, start, breached = now, equity, 0.0
    loss = (start - equity) / start * 100.0 if start > 0.0 else 0.0
    if start > 0.0 and breached == 0.0 and loss >= limit_pct - 1e-12:
        breached = 1.0
    return period, start, breached


@numba.njit(cache=True, inline="always")
def _trading(guard: npt.NDArray[np.float64]) -> bool:
    """Neither the daily loss limit nor the monthly loss cap is breached: entries are allowed."""
    daily, monthly = guard[2], guard[5]
    return daily == 0.0 and monthly == 0.0


# -- 4. one decision and its order -----------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _policy_view(
    t: int, close_s: float, active: bool, signals: Any, book: Any, memory: Any, view: Any
) -> None:
    """Fill `view`: what the rules see of each market at this close (as the graph's state)."""
    known, expected, _ = signals
    volume, exited, entered = book[0], book[8], book[9]
    _, cooldown_until, entries_day, entries_count, _ = memory
    expected_now, held, held_minutes, since_exit, entries_now, blocked = view
    kst_day = math.floor((close_s + 9 * 3600) / 86400.0)
    for m in range(volume.shape[0]):
        held[m] = volume[m] > 0.0
        expected_now[m] = expected[t, m] if known[t, m] else np.nan
        held_minutes[m] = int((close_s - entered[m]) // 60.0) if held[m] else 0
        if math.isnan(exited[m]):
            since_exit[m] = NEVER
        else:
            since_exit[m] = max(0, int((close_s - exited[m]) // 60.0))
        entries_now[m] = entries_count[m] if entries_day[m] == kst_day else 0
        blocked[m] = (not active) or close_s < cooldown_until[m]


@numba.njit(cache=True, inline="always")
def _baseline(
    t: int, forced: Any, signals: Any, memory: Any, view: Any
) -> tuple[int, int, int, float, float]:
    """A random-entry baseline's decision, shaped as `decide_kernel`'s (rule 0, no numbers): sell
    the first market held its drawn time, else buy the market drawn for this bar
    (`forced[0][t]`, -1: none) if it may be entered."""
    known, last_close, hold_target = signals[0], memory[0], memory[4]
    _, held, held_minutes, _, _, blocked = view
    pick = forced[0][t]
    action, chosen, can_buy = HOLD, -1, False
    for m in range(held.shape[0]):
        if action == HOLD and held[m] and held_minutes[m] >= hold_target[m]:
            action, chosen = SELL, m
        if m == pick:
            can_buy = not held[m] and not blocked[m] and known[t, m]
            can_buy = can_buy and not math.isnan(last_close[m])
    if action == HOLD and can_buy:
        action, chosen = BUY, pick
    return action, chosen, 0, np.nan, np.nan


@numba.njit(cache=True)
def _enter(
    t: int,
    m: int,
    value: float,
    threshold: float,
    krw: float,
    when: float,
    volatility: npt.NDArray[np.float64],
    forced: Any,
    book: Any,
    memory: Any,
    guard: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    ratios: npt.NDArray[np.float64],
    settings: npt.NDArray[np.float64],
) -> float:
    """Buy market m as the sizing node, the risk guard and the paper exchange do. Returns the cash.

    The order is the sized share of the equity (at the closes, in the account view's 0.01 KRW)
    or what the cash buys with its fee, whichever is less, in whole KRW; under Upbit's minimum,
    or refused by the guard (which sees the equity at the paper marks), nothing is bought.
    """
    volume, avg, mark, bar_value, tick_rounding = book[0], book[1], book[2], book[3], book[4]
    equity = _equity(krw, volume, memory[0], avg)
    equity = math.floor(equity * 100.0 + 0.5) / 100.0
    ratio, stop, take = _entry_size(
        t, m, value, threshold, volatility, forced, book, counts, settings
    )
    order = math.floor(min(equity * ratio, krw / (1.0 + settings[S_FEE])) + 1e-9)
    if not order >= settings[S_MIN_ORDER] or math.isnan(mark[m]):
        return krw
    _observe(_equity(krw, volume, mark, avg), when, guard, settings)
    if not _trading(guard):
        return krw
    slip = _slip(order, bar_value[m], settings)
    price = _round_price(mark[m] * (1.0 + slip), True, tick_rounding[m])
    bought = math.floor(order / price * 1e8 + 1e-6) / 1e8
    if not bought > 0.0:
        return krw
    krw = _buy(m, t, price, bought, when, krw, book, counts, settings[S_FEE])
    _open_position(t, m, price, stop, take, ratio, when, forced, book, memory, counts, ratios)
    return krw


@numba.njit(cache=True)
def _entry_size(
    t: int,
    m: int,
    value: float,
    threshold: float,
    volatility: npt.NDArray[np.float64],
    forced: Any,
    book: Any,
    counts: npt.NDArray[np.int64],
    settings: npt.NDArray[np.float64],
) -> tuple[float, float, float]:
    """(ratio, stop-loss %, take-profit %): the rule-based sizer's on the signal's excess over
    the entry threshold; a baseline keeps its drawn ratio and takes the sizer's stops."""
    results, n_results = book[6], counts[1]
    if forced[0].shape[0] > 0:
        _, stop, take = _size_entry(np.nan, volatility[t, m], results, n_results, settings)
        return forced[2][t], stop, take
    excess = (value - threshold) * 10_000.0
    return _size_entry(excess, volatility[t, m], results, n_results, settings)


@numba.njit(cache=True)
def _open_position(
    t: int,
    m: int,
    price: float,
    stop: float,
    take: float,
    ratio: float,
    when: float,
    forced: Any,
    book: Any,
    memory: Any,
    counts: npt.NDArray[np.int64],
    ratios: npt.NDArray[np.float64],
) -> None:
    """After a buy: the stops' prices, the KST day's entry count, the ratio, a baseline's hold."""
    entered, stop_price, take_price = book[9], book[10], book[11]
    _, _, entries_day, entries_count, hold_target = memory
    entered[m] = when
    stop_price[m] = math.floor(price * (1.0 - stop / 100.0) * 1e4 + 0.5) / 1e4
    take_price[m] = math.floor(price * (1.0 + take / 100.0) * 1e4 + 0.5) / 1e4
    day = math.floor((when + 9 * 3600) / 86400.0)
    if entries_day[m] != day:
        entries_day[m] = day
        entries_count[m] = 0
    entries_count[m] += 1
    ratios[counts[3]] = ratio
    counts[3] += 1
    if forced[0].shape[0] > 0:
        hold_target[m] = forced[1][t]


@numba.njit(cache=True)
def _exit(
    m: int,
    t: int,
    reason: int,
    when: float,
    krw: float,
    book: Any,
    guard: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    settings: npt.NDArray[np.float64],
) -> float:
    """The rules' sell (or a baseline's): if the position is worth Upbit's minimum order, the
    guard sees the equity at the paper marks and the whole position is sold. Returns the cash."""
    volume, avg, mark = book[0], book[1], book[2]
    if volume[m] * mark[m] >= settings[S_MIN_ORDER]:
        _observe(_equity(krw, volume, mark, avg), when, guard, settings)
        krw = _close(m, t, reason, when, krw, book, counts, settings)
    return krw


# -- fills: cash, positions, fees ------------------------------------------------------------------


@numba.njit(cache=True)
def _buy(
    m: int,
    t: int,
    price: float,
    bought: float,
    when: float,
    krw: float,
    book: Any,
    counts: npt.NDArray[np.int64],
    fee_rate: float,
) -> float:
    """Book a buy of `bought` coins at `price`: the fee, the fee-inclusive cost per coin, the
    fill. Returns the cash."""
    volume, avg, fills = book[0], book[1], book[5]
    funds = price * bought
    fee = funds * fee_rate
    krw -= funds + fee
    total = volume[m] + bought
    avg[m] = (avg[m] * volume[m] + funds + fee) / total
    volume[m] = total
    _write_fill(fills, counts[0], t, m, BUY, price, bought, fee, R_ENTER, when)
    counts[0] += 1
    return krw


@numba.njit(cache=True)
def _close(
    m: int,
    t: int,
    reason: int,
    when: float,
    krw: float,
    book: Any,
    counts: npt.NDArray[np.int64],
    settings: npt.NDArray[np.float64],
) -> float:
    """Market-sell the whole position of market m at its mark (slippage, tick, fee); book it."""
    (
        volume, avg, mark, bar_value, tick_rounding, fills, results, trip_minutes, exited, entered,
        stop_price, take_price,
    ) = book  # fmt: skip
    slip = _slip(volume[m] * mark[m], bar_value[m], settings)
    price = _round_price(mark[m] * (1.0 - slip), False, tick_rounding[m])
    krw = _sell(
        m, t, price, reason, when, krw, volume, avg, fills, counts[0], settings[S_FEE], results,
        counts[1],
    )  # fmt: skip
    counts[0] += 1
    counts[1] = min(counts[1] + 1, MAX_RESULTS)
    trip_minutes[counts[2]] = int((when - entered[m]) // 60.0)
    counts[2] += 1
    exited[m] = when
    entered[m] = np.nan
    stop_price[m] = np.nan
    take_price[m] = np.nan
    return krw


@numba.njit(cache=True)
def _sell(
    m: int,
    t: int,
    price: float,
    reason: int,
    when: float,
    krw: float,
    volume: npt.NDArray[np.float64],
    avg: npt.NDArray[np.float64],
    fills: npt.NDArray[np.float64],
    at: int,
    fee_rate: float,
    results: npt.NDArray[np.float64],
    n_results: int,
) -> float:
    """Sell the whole position of market m; record the fill and the trade's result."""
    sold = volume[m]
    funds = price * sold
    fee = funds * fee_rate
    result = price * (1.0 - fee_rate) / avg[m] - 1.0
    if n_results == MAX_RESULTS:
        results[:-1] = results[1:]
        results[MAX_RESULTS - 1] = result
    else:
        results[n_results] = result
    _write_fill(fills, at, t, m, SELL, price, sold, fee, reason, when)
    volume[m] = 0.0
    avg[m] = 0.0
    return krw + funds - fee


@numba.njit(cache=True)
def _write_fill(
    fills: npt.NDArray[np.float64],
    at: int,
    t: int,
    m: int,
    side: int,
    price: float,
    volume: float,
    fee: float,
    reason: int,
    when: float,
) -> None:
    """Row `at` of the fills: bar, market, side, price, volume, fee, reason, time (seconds)."""
    fills[at, 0] = t
    fills[at, 1] = m
    fills[at, 2] = side
    fills[at, 3] = price
    fills[at, 4] = volume
    fills[at, 5] = fee
    fills[at, 6] = reason
    fills[at, 7] = when


@dataclass(frozen=True)
class PendingDecision:
    """A buy or sell the rules proposed at bar `bar`, waiting for the reviewers' answer."""

    bar: int
    action: int  # BUY or SELL
    market: int
    rule: int
    value: float  # the numbers the rule compared (bps for return rules; NaN otherwise)
    threshold: float


class SimulationRun:
    """A simulator run that can stop before each proposed order and go on from there.

    With `review`, `advance` walks the bars until the rules propose a buy or a sell and
    returns it (everything before that bar's order is done); `answer` says whether the order
    goes ahead (the sizing is the simulator's own, the rule-based sizer's); the next `advance`
    goes on from that decision. Without `review` (or once `advance` returns None) the run is
    done and `result` reads it. The state between calls is in arrays made here (`_run` never
    starts over): the book, the memory, the guard, the counts, the cash and the clock.
    """

    def __init__(
        self,
        data: MarketArrays,
        params: PolicyParams,
        settings: SimulationSettings | None = None,
        *,
        review: bool = False,
        forced_market: npt.NDArray[np.int64] | None = None,
        forced_hold: npt.NDArray[np.int64] | None = None,
        forced_ratio: npt.NDArray[np.float64] | None = None,
    ) -> None:
        """Allocate the state of a run over `data` at its first bar."""
        self.data = data
        self.settings = settings or SimulationSettings()
        n_bars, n_markets = data.has_bar.shape
        capacity = 2 * n_bars + 8  # at most one buy and a few sells a bar
        fills = np.zeros((capacity, 8))
        trips = np.zeros(capacity, dtype=np.int64)
        self._out = (
            fills,
            np.zeros(n_bars),
            np.zeros(16, dtype=np.int64),
            trips,
            np.zeros(capacity),
            np.full((n_bars, 2), -1, dtype=np.int64),
        )
        self.book = _new_book(n_markets, data.tick_rounding, fills, trips)
        self.memory = _new_memory(n_markets)
        self.guard = np.array([np.nan, 0.0, 0.0, np.nan, 0.0, 0.0])
        self.counts = np.zeros(4, dtype=np.int64)  # fills, results kept, round trips, entries
        self.view = _new_view(n_markets)
        self._state = (self.book, self.memory, self.view, self.guard, self.counts)
        self.control = np.zeros(CONTROL_SIZE, dtype=np.int64)
        self.control[C_REVIEW] = 1 if review else 0
        self.scalars = np.array([self.settings.initial_krw, -np.inf, np.nan, np.nan])
        empty_i = np.zeros(0, dtype=np.int64)
        self._inputs = (
            (data.has_bar, data.open, data.high, data.low, data.close, data.volume),
            (data.known, data.expected, data.volatility),
            (data.tick_trigger, data.bar_trigger),
            data.bar_minute,
            params.kernel_array(),
            self.settings.array(params),
            (
                empty_i if forced_market is None else forced_market,
                empty_i if forced_hold is None else forced_hold,
                np.zeros(0) if forced_ratio is None else forced_ratio,
            ),
        )
        self.pending: PendingDecision | None = None

    @property
    def done(self) -> bool:
        """Every bar is walked."""
        return int(self.control[C_NEXT]) >= len(self.data)

    @property
    def bar_rules(self) -> npt.NDArray[np.int64]:
        """The rule that decided each bar so far (`policy.rules.Rule`; -1: not reached)."""
        return self._out[5][:, 0]

    @property
    def bar_markets(self) -> npt.NDArray[np.int64]:
        """The market each bar's decision named (what it proposed or held off; -1: none)."""
        return self._out[5][:, 1]

    @property
    def krw(self) -> float:
        """The free cash now."""
        return float(self.scalars[F_KRW])

    def advance(self) -> PendingDecision | None:
        """Walk on to the next proposed order (with `review`) or to the end (then None)."""
        if self.pending is not None:
            raise RuntimeError(f"the decision at bar {self.pending.bar} is not answered yet")
        at = _run(*self._inputs, self._state, self.control, self.scalars, self._out)
        if at >= len(self.data):
            return None
        c, f = self.control, self.scalars
        self.pending = PendingDecision(
            bar=at,
            action=int(c[C_ACTION]),
            market=int(c[C_MARKET]),
            rule=int(c[C_RULE]),
            value=float(f[F_VALUE]),
            threshold=float(f[F_THRESHOLD]),
        )
        return self.pending

    def answer(self, go_ahead: bool) -> None:
        """The reviewers' answer to the pending decision: its order goes ahead, or a hold."""
        if self.pending is None:
            raise RuntimeError("no decision is waiting for an answer")
        self.control[C_VERDICT] = 1 if go_ahead else 0
        self.control[C_RESUME] = 1
        self.pending = None

    def result(self) -> SimulationResult:
        """What the run did (all of it once done; the bars so far otherwise)."""
        fills, equity, rule_counts, trips, ratios, _ = self._out
        n_fills, n_trips, n_entries = (int(x) for x in self.counts[[0, 2, 3]])
        used = fills[:n_fills]
        return SimulationResult(
            equity=equity,
            initial_krw=self.settings.initial_krw,
            fills={
                "bar": used[:, 0].astype(np.int64),
                "market": used[:, 1].astype(np.int64),
                "side": used[:, 2].astype(np.int64),
                "price": used[:, 3],
                "volume": used[:, 4],
                "fee": used[:, 5],
                "reason": used[:, 6].astype(np.int64),
                "time_s": used[:, 7],
            },
            rule_counts=rule_counts,
            hold_minutes=trips[:n_trips],
            ratios=ratios[:n_entries],
        )


def simulate(
    data: MarketArrays,
    params: PolicyParams,
    settings: SimulationSettings | None = None,
    *,
    forced_market: npt.NDArray[np.int64] | None = None,
    forced_hold: npt.NDArray[np.int64] | None = None,
    forced_ratio: npt.NDArray[np.float64] | None = None,
) -> SimulationResult:
    """Run the policy over `data`; see the module docstring for what is modelled."""
    run = SimulationRun(
        data,
        params,
        settings,
        forced_market=forced_market,
        forced_hold=forced_hold,
        forced_ratio=forced_ratio,
    )
    run.advance()
    return run.result()
