"""The fast simulator's kernels on hand-made bars: the paths the engine parity test does not reach.

`tests/app/test_app_simulation_parity.py` holds the simulator to the engine's trades on real
candles (entries, exits by signal and time, stop-loss, a volume spike, the monthly cap). These
cases reach the rest: take-profit on a tick, the watchdog's drop and its cooldown, the
autoencoder's sell at the close, the daily loss limit until the next trading day, and the
random-entry baseline. One market at 10,000 KRW (Upbit's tick there: 10 KRW), a forecast of
+1% so the rules enter at the first close (half the equity: a strong, calm signal), a 60-minute
volatility of 0.1% (stop-loss 0.791%, take-profit 1.582%), and a deep book (2 bps slippage).
Every case also checks the books: each fee, and the equity at each close against the fills.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from policy.params import PolicyParams
from policy.rules import BUY, SELL, Rule
from policy.simulate import (
    FILL_REASONS,
    MarketArrays,
    SimulationResult,
    SimulationRun,
    simulate,
)

PRICE = 10_000.0
START = int(np.datetime64("2025-03-03T14:00", "m").astype(np.int64))  # trading day from 15:00
PARAMS = PolicyParams(reentry_pause_minutes=0)  # only the cooldown or a limit stops a re-entry


def _bars(n: int, **rows: Any) -> MarketArrays:
    """`n` flat one-minute bars of one KRW market; `rows` overrides columns (values by bar)."""
    columns: dict[str, npt.NDArray[Any]] = {
        name: np.full((n, 1), PRICE) for name in ("open", "high", "low", "close")
    }
    columns["volume"] = np.full((n, 1), 1e6)
    columns["expected"] = np.full((n, 1), 0.01)
    columns["volatility"] = np.full((n, 1), 0.001)
    tick_trigger = np.zeros((n, 1, 4), dtype=np.uint8)
    bar_trigger = np.zeros((n, 1), dtype=np.uint8)
    for name, values in rows.items():
        if name == "tick_trigger":
            for (t, k), kind in values.items():
                tick_trigger[t, 0, k] = kind
        elif name == "bar_trigger":
            for t in values:
                bar_trigger[t, 0] = 1
        else:
            for t, value in values.items():
                columns[name][t, 0] = value
    return MarketArrays(
        markets=["KRW-TEST"],
        bar_minute=START + np.arange(n, dtype=np.int64),
        has_bar=np.ones((n, 1), dtype=np.bool_),
        tick_trigger=tick_trigger,
        bar_trigger=bar_trigger,
        tick_rounding=np.ones(1, dtype=np.bool_),
        **columns,
    )


def _fills(result: SimulationResult) -> list[tuple[int, str, float]]:
    """(bar, reason, seconds into that bar) of every fill."""
    fills = result.fills
    return [
        (int(t), FILL_REASONS[int(r)], float(s) - (START + int(t)) * 60.0)
        for t, r, s in zip(fills["bar"], fills["reason"], fills["time_s"], strict=True)
    ]


def _check_books(result: SimulationResult, bars: MarketArrays) -> None:
    """Each fee is the fee rate of what changed hands, and the equity after each close is the
    cash the fills left plus the coins held at that close."""
    fills = result.fills
    funds = fills["price"] * fills["volume"]
    assert fills["fee"] == pytest.approx(funds * PARAMS.fee_rate, rel=1e-12)
    buy = fills["side"] == 1
    for t in range(len(bars)):
        done = fills["bar"] <= t
        cash = result.initial_krw - (funds + fills["fee"])[done & buy].sum()
        cash += (funds - fills["fee"])[done & ~buy].sum()
        coins = fills["volume"][done & buy].sum() - fills["volume"][done & ~buy].sum()
        assert result.equity[t] == pytest.approx(cash + coins * bars.close[t, 0], rel=1e-12)


def test_take_profit_sells_at_the_tick_that_reaches_it() -> None:
    # Bought at 10,010 (10,000 and 2 bps, up to the tick): take-profit at 10,168.4. The next
    # bar rises, so its ticks are open, low, high (30 s in: 10,200), close.
    bars = _bars(3, high={1: 10_200.0}, low={1: 9_990.0}, close={1: 10_100.0})

    result = simulate(bars, PARAMS)

    assert _fills(result)[:2] == [(0, "enter", 60.0), (1, "take_profit", 30.0)]
    assert result.fills["price"][:2].tolist() == [10_010.0, 10_190.0]  # less 2 bps, tick down
    assert result.ratios[0] == 0.5
    _check_books(result, bars)


def test_a_watchdog_drop_sells_and_its_cooldown_bars_entries_for_half_an_hour() -> None:
    # A drop on the second tick of bar 1 (15 s in) sells; the market cools down until
    # 15 s + 1800 s past bar 1's open, so the first close after that is bar 31's.
    bars = _bars(40, tick_trigger={(1, 1): 1})

    result = simulate(bars, PARAMS)

    assert _fills(result) == [
        (0, "enter", 60.0),
        (1, "watchdog:drop", 15.0),
        (31, "enter", 60.0),
    ]
    assert result.rule_counts[Rule.BLOCKED] == 30  # the closes of bars 1 to 30
    _check_books(result, bars)


def test_the_autoencoders_trigger_sells_at_the_close_and_cools_down() -> None:
    bars = _bars(5, bar_trigger=[1])

    result = simulate(bars, PARAMS)

    assert _fills(result) == [(0, "enter", 60.0), (1, "watchdog:autoencoder", 60.0)]
    assert result.fills["price"][1] == 9_995.0  # the close less 2 bps, down to a 5 KRW tick
    assert result.rule_counts[Rule.BLOCKED] == 4
    _check_books(result, bars)


def test_the_daily_loss_limit_stops_entries_until_the_next_trading_day() -> None:
    # Bought at 14:00 UTC; at 14:01 a falling bar's low (its third tick) breaks the stop-loss
    # (9,930.8): half the equity sold at 9,795 loses more than the 0.5% daily limit, so no
    # entry until the trading day turns at 15:00 UTC (00:00 KST): the close of the 14:59 bar.
    params = PolicyParams(reentry_pause_minutes=0, daily_loss_limit_pct=0.5)
    bars = _bars(65, open={1: 10_000.0}, high={1: 10_000.0}, low={1: 9_800.0}, close={1: 9_850.0})

    result = simulate(bars, params)

    assert _fills(result) == [(0, "enter", 60.0), (1, "stop_loss", 30.0), (59, "enter", 60.0)]
    assert result.fills["price"][1] == 9_795.0
    assert result.equity[1] / result.initial_krw - 1.0 < -0.005
    assert result.rule_counts[Rule.BLOCKED] == 58  # the closes of bars 1 to 58
    _check_books(result, bars)


def test_a_random_entry_baseline_buys_the_drawn_market_and_holds_it_the_drawn_minutes() -> None:
    bars = _bars(10)
    forced_market = np.full(10, -1, dtype=np.int64)
    forced_market[1] = 0
    forced_hold = np.zeros(10, dtype=np.int64)
    forced_hold[1] = 5
    forced_ratio = np.zeros(10)
    forced_ratio[1] = 0.25

    result = simulate(
        bars,
        PARAMS,
        forced_market=forced_market,
        forced_hold=forced_hold,
        forced_ratio=forced_ratio,
    )

    assert _fills(result) == [(1, "enter", 60.0), (6, "exit_time", 60.0)]
    assert result.ratios.tolist() == [0.25]
    assert result.fills["price"][0] * result.fills["volume"][0] == pytest.approx(250_000, abs=0.01)
    assert result.hold_minutes.tolist() == [5]
    assert result.rule_counts.sum() == 0  # the rules were not asked
    _check_books(result, bars)


def test_a_reviewed_run_stops_at_each_proposal_and_agreeing_everywhere_changes_nothing() -> None:
    # Exits at the minimum hold (the forecast turns down at bar 12), the take-profit at bar 2:
    # the run stops before every buy and sell the rules propose, never before a protection.
    params = PolicyParams(reentry_pause_minutes=0, exit_margin_bps=-1000.0)
    bars = _bars(30, high={2: 10_200.0}, low={2: 9_990.0}, close={2: 10_100.0})
    plain = simulate(bars, params)
    run = SimulationRun(bars, params, review=True)

    stops = []
    while (pending := run.advance()) is not None:
        stops.append((pending.bar, pending.action, pending.rule))
        run.answer(True)
    result = run.result()

    assert stops[0] == (0, BUY, Rule.ENTER)
    assert {action for _, action, _ in stops} == {BUY, SELL}
    assert run.done
    assert _fills(result) == _fills(plain)
    assert result.equity.tolist() == plain.equity.tolist()
    assert result.rule_counts.tolist() == plain.rule_counts.tolist()
    entries = [bar for bar, reason, _ in _fills(result) if reason == "enter"]
    assert entries == [bar for bar, action, _ in stops if action == BUY]


def test_a_veto_holds_that_bar_and_the_rules_propose_again_at_the_next() -> None:
    bars = _bars(5)
    run = SimulationRun(bars, PARAMS, review=True)

    answered = []
    while (pending := run.advance()) is not None:
        answered.append(pending.bar)
        run.answer(pending.bar >= 3)  # veto the first three proposals
    result = run.result()

    assert answered[:4] == [0, 1, 2, 3]
    assert _fills(result)[0] == (3, "enter", 60.0)
    assert result.equity[:3].tolist() == [result.initial_krw] * 3
    with pytest.raises(RuntimeError, match="no decision"):
        run.answer(True)
    _check_books(result, bars)
