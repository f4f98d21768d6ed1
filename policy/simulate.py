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
from policy.rules import BUY, NEVER, SELL, decide_kernel

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


@numba.njit(cache=True)
def _observe(
    equity: float,
    seconds: float,
    guard: npt.NDArray[np.float64],
    settings: npt.NDArray[np.float64],
) -> None:
    """RiskGuard.on_equity.

    guard = [trading day, its start equity, daily breached, KST month, its start, breached].
    """
    day = math.floor((seconds - settings[S_DAY_START_S]) / 86400.0)
    if math.isnan(guard[0]) or day > guard[0]:
        guard[0] = day
        guard[1] = equity
        guard[2] = 0.0
    daily_loss = (guard[1] - equity) / guard[1] * 100.0 if guard[1] > 0.0 else 0.0
    if guard[1] > 0.0 and guard[2] == 0.0 and daily_loss >= settings[S_DAILY_LIMIT] - 1e-12:
        guard[2] = 1.0
    month = _kst_month(seconds)
    if math.isnan(guard[3]) or month > guard[3]:
        guard[3] = month
        guard[4] = equity
        guard[5] = 0.0
    monthly_loss = (guard[4] - equity) / guard[4] * 100.0 if guard[4] > 0.0 else 0.0
    if guard[4] > 0.0 and guard[5] == 0.0 and monthly_loss >= settings[S_MONTHLY_CAP] - 1e-12:
        guard[5] = 1.0


@numba.njit(cache=True)
def _run(
    bar_minute: npt.NDArray[np.int64],
    has_bar: npt.NDArray[np.bool_],
    known: npt.NDArray[np.bool_],
    open_: npt.NDArray[np.float64],
    high: npt.NDArray[np.float64],
    low: npt.NDArray[np.float64],
    close: npt.NDArray[np.float64],
    bar_volume: npt.NDArray[np.float64],
    expected: npt.NDArray[np.float64],
    volatility: npt.NDArray[np.float64],
    tick_trigger: npt.NDArray[np.uint8],
    bar_trigger: npt.NDArray[np.uint8],
    tick_rounding: npt.NDArray[np.bool_],
    params: npt.NDArray[np.float64],
    settings: npt.NDArray[np.float64],
    forced_market: npt.NDArray[np.int64],
    forced_hold: npt.NDArray[np.int64],
    forced_ratio: npt.NDArray[np.float64],
    fills: npt.NDArray[np.float64],
    equity_out: npt.NDArray[np.float64],
    rule_counts: npt.NDArray[np.int64],
    trip_minutes: npt.NDArray[np.int64],
    ratios: npt.NDArray[np.float64],
) -> tuple[int, int, int]:
    """The bar loop. Returns (fills written, round trips closed, entries).

    With `forced_market[t] >= 0` (random-entry baselines) the rules are replaced: that market
    is bought at bar t if allowed, sized `forced_ratio[t]`, and sold once held
    `forced_hold[t]` minutes; everything else (protections, watchdog, limits) is unchanged.
    """
    n_bars, n_markets = has_bar.shape
    fee_rate = settings[S_FEE]
    forced_mode = forced_market.shape[0] > 0
    krw = settings[S_INITIAL]
    volume = np.zeros(n_markets)
    avg = np.zeros(n_markets)  # fee-inclusive cost per coin
    mark = np.full(n_markets, np.nan)  # the paper exchange's marks
    last_close = np.full(n_markets, np.nan)  # the engine's closes
    bar_value = np.zeros(n_markets)  # last bar's traded value (slippage impact)
    stop_price = np.full(n_markets, np.nan)
    take_price = np.full(n_markets, np.nan)
    entered = np.full(n_markets, np.nan)  # seconds
    exited = np.full(n_markets, np.nan)
    cooldown_until = np.full(n_markets, -np.inf)
    entries_day = np.full(n_markets, -1, dtype=np.int64)
    entries_count = np.zeros(n_markets, dtype=np.int64)
    hold_target = np.zeros(n_markets, dtype=np.int64)
    results = np.zeros(MAX_RESULTS)
    guard = np.array([np.nan, 0.0, 0.0, np.nan, 0.0, 0.0])
    paper_time = -np.inf
    n_entries = 0
    counts = np.zeros(3, dtype=np.int64)  # fills written, results kept, round trips closed
    expected_now = np.full(n_markets, np.nan)
    held = np.zeros(n_markets, dtype=np.bool_)
    held_minutes = np.zeros(n_markets, dtype=np.int64)
    since_exit = np.zeros(n_markets, dtype=np.int64)
    entries_now = np.zeros(n_markets, dtype=np.int64)
    blocked = np.zeros(n_markets, dtype=np.bool_)
    offsets = np.array(TICK_OFFSETS_S, dtype=np.float64)
    book = (
        volume, avg, mark, bar_value, tick_rounding, fills, results, trip_minutes, exited, entered,
        stop_price, take_price,
    )  # fmt: skip

    for t in range(n_bars):
        bar_s = float(bar_minute[t]) * 60.0
        close_s = bar_s + 60.0
        # 1. ticks and bars, market by market --------------------------------------------
        for m in range(n_markets):
            if not has_bar[t, m]:
                continue
            up = close[t, m] >= open_[t, m]
            prices = (
                open_[t, m],
                low[t, m] if up else high[t, m],
                high[t, m] if up else low[t, m],
                close[t, m],
            )
            for k in range(4):
                price = prices[k]
                tick_s = bar_s + offsets[k]
                if tick_s > paper_time:
                    paper_time = tick_s
                mark[m] = price
                sell_reason = -1
                if volume[m] > 0.0 and not math.isnan(stop_price[m]):
                    if price <= stop_price[m]:
                        sell_reason = R_STOP
                    elif price >= take_price[m]:
                        sell_reason = R_TAKE
                if sell_reason < 0 and tick_trigger[t, m, k] > 0:
                    cooldown_until[m] = tick_s + settings[S_COOLDOWN]
                    if volume[m] > 0.0:
                        sell_reason = R_DROP if tick_trigger[t, m, k] == 1 else R_SPIKE
                elif tick_trigger[t, m, k] > 0:  # the stop sold first; the trigger still cools
                    cooldown_until[m] = tick_s + settings[S_COOLDOWN]
                if sell_reason >= 0:
                    _observe(_equity(krw, volume, mark, avg), paper_time, guard, settings)
                    if volume[m] * mark[m] >= settings[S_MIN_ORDER]:
                        krw = _close(m, t, sell_reason, paper_time, krw, book, counts, settings)
            last_close[m] = close[t, m]
            mark[m] = close[t, m]
            bar_value[m] = bar_volume[t, m] * close[t, m]
            if close_s > paper_time:
                paper_time = close_s
            if bar_trigger[t, m] > 0:
                cooldown_until[m] = close_s + settings[S_COOLDOWN]
                if volume[m] > 0.0:
                    _observe(_equity(krw, volume, mark, avg), paper_time, guard, settings)
                if volume[m] > 0.0 and volume[m] * mark[m] >= settings[S_MIN_ORDER]:
                    krw = _close(m, t, R_ANOMALY, paper_time, krw, book, counts, settings)
        # 2. the loss limits on the equity at the closes ----------------------------------
        _observe(_equity(krw, volume, last_close, avg), close_s, guard, settings)
        # 3. protections at the closes ------------------------------------------------------
        for m in range(n_markets):
            if volume[m] <= 0.0 or math.isnan(stop_price[m]) or math.isnan(last_close[m]):
                continue
            price = last_close[m]
            if price <= stop_price[m] or price >= take_price[m]:
                reason = R_STOP if price <= stop_price[m] else R_TAKE
                value = volume[m] * mark[m]
                _observe(_equity(krw, volume, mark, avg), paper_time, guard, settings)
                if value < settings[S_MIN_ORDER]:
                    continue
                krw = _close(m, t, reason, paper_time, krw, book, counts, settings)
        # 4. one decision ---------------------------------------------------------------------
        active = guard[2] == 0.0 and guard[5] == 0.0
        kst_day = math.floor((close_s + 9 * 3600) / 86400.0)
        for m in range(n_markets):
            held[m] = volume[m] > 0.0
            expected_now[m] = expected[t, m] if known[t, m] else np.nan
            held_minutes[m] = int((close_s - entered[m]) // 60.0) if held[m] else 0
            if math.isnan(exited[m]):
                since_exit[m] = NEVER
            else:
                since_exit[m] = max(0, int((close_s - exited[m]) // 60.0))
            entries_now[m] = entries_count[m] if entries_day[m] == kst_day else 0
            blocked[m] = (not active) or close_s < cooldown_until[m]
        if forced_mode:
            action, chosen, rule, value, threshold = 0, -1, 0, np.nan, np.nan
            for m in range(n_markets):
                if held[m] and held_minutes[m] >= hold_target[m]:
                    action, chosen = SELL, m
                    break
            pick = forced_market[t]
            allowed = pick >= 0 and not held[pick] and not blocked[pick] and known[t, pick]
            if action == 0 and allowed and not math.isnan(last_close[pick]):
                action, chosen = BUY, pick
        else:
            action, chosen, rule, value, threshold = decide_kernel(
                expected_now, held, held_minutes, since_exit, entries_now, blocked, params
            )
            rule_counts[rule] += 1
        if action == BUY:
            equity = _equity(krw, volume, last_close, avg)
            equity = math.floor(equity * 100.0 + 0.5) / 100.0  # the account view's 0.01 KRW
            if forced_mode:
                ratio = forced_ratio[t]
                _, stop, take = _size_entry(
                    np.nan, volatility[t, chosen], results, counts[1], settings
                )
            else:
                excess = (value - threshold) * 10_000.0
                ratio, stop, take = _size_entry(
                    excess, volatility[t, chosen], results, counts[1], settings
                )
            budget = equity * ratio
            spendable = krw / (1.0 + fee_rate)
            order = math.floor(min(budget, spendable) + 1e-9)
            if order >= settings[S_MIN_ORDER] and not math.isnan(mark[chosen]):
                _observe(_equity(krw, volume, mark, avg), paper_time, guard, settings)
                if guard[2] == 0.0 and guard[5] == 0.0:
                    slip = _slip(order, bar_value[chosen], settings)
                    price = _round_price(mark[chosen] * (1.0 + slip), True, tick_rounding[chosen])
                    bought = math.floor(order / price * 1e8 + 1e-6) / 1e8
                    if bought > 0.0:
                        funds = price * bought
                        fee = funds * fee_rate
                        krw -= funds + fee
                        total = volume[chosen] + bought
                        avg[chosen] = (avg[chosen] * volume[chosen] + funds + fee) / total
                        volume[chosen] = total
                        fills[counts[0], 0] = t
                        fills[counts[0], 1] = chosen
                        fills[counts[0], 2] = BUY
                        fills[counts[0], 3] = price
                        fills[counts[0], 4] = bought
                        fills[counts[0], 5] = fee
                        fills[counts[0], 6] = R_ENTER
                        fills[counts[0], 7] = paper_time
                        counts[0] += 1
                        entered[chosen] = paper_time
                        stop_price[chosen] = (
                            math.floor(price * (1.0 - stop / 100.0) * 1e4 + 0.5) / 1e4
                        )
                        take_price[chosen] = (
                            math.floor(price * (1.0 + take / 100.0) * 1e4 + 0.5) / 1e4
                        )
                        day = math.floor((paper_time + 9 * 3600) / 86400.0)
                        if entries_day[chosen] != day:
                            entries_day[chosen] = day
                            entries_count[chosen] = 0
                        entries_count[chosen] += 1
                        ratios[n_entries] = ratio
                        n_entries += 1
                        if forced_mode:
                            hold_target[chosen] = forced_hold[t]
        elif action == SELL and volume[chosen] * mark[chosen] >= settings[S_MIN_ORDER]:
            _observe(_equity(krw, volume, mark, avg), paper_time, guard, settings)
            reason = R_EXIT_TIME if (forced_mode or rule == 4) else R_EXIT_SIGNAL
            krw = _close(chosen, t, reason, paper_time, krw, book, counts, settings)
        equity_out[t] = _equity(krw, volume, last_close, avg)
    return counts[0], counts[2], n_entries


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
    fills[at, 0] = t
    fills[at, 1] = m
    fills[at, 2] = SELL
    fills[at, 3] = price
    fills[at, 4] = sold
    fills[at, 5] = fee
    fills[at, 6] = reason
    fills[at, 7] = when
    volume[m] = 0.0
    avg[m] = 0.0
    return krw + funds - fee


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
    settings = settings or SimulationSettings()
    n_bars = len(data)
    capacity = 2 * n_bars + 8  # at most one buy and a few sells a bar
    fills = np.zeros((capacity, 8))
    equity = np.zeros(n_bars)
    rule_counts = np.zeros(16, dtype=np.int64)
    trips = np.zeros(capacity, dtype=np.int64)
    ratios = np.zeros(capacity)
    empty_i = np.zeros(0, dtype=np.int64)
    n_fills, n_trips, n_entries = _run(
        data.bar_minute,
        data.has_bar,
        data.known,
        data.open,
        data.high,
        data.low,
        data.close,
        data.volume,
        data.expected,
        data.volatility,
        data.tick_trigger,
        data.bar_trigger,
        data.tick_rounding,
        params.kernel_array(),
        settings.array(params),
        empty_i if forced_market is None else forced_market,
        empty_i if forced_hold is None else forced_hold,
        np.zeros(0) if forced_ratio is None else forced_ratio,
        fills,
        equity,
        rule_counts,
        trips,
        ratios,
    )
    used = fills[:n_fills]
    return SimulationResult(
        equity=equity,
        initial_krw=settings.initial_krw,
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
