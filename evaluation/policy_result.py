"""Judge a policy by money: the simulator's result against cash, buy-and-hold, a volatility-only
baseline and random entries at the same rate, after fees, on bars the models never saw.

Used by `lxa train` (each model set carries the result of its policy on its own hold-out
window), by `lxa walkforward` (per window and in total) and by the parameter sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from evaluation.arrays import Prepared
from ml.evaluate import (
    MINUTES_PER_YEAR,
    buy_and_hold_curve,
    hold_lowest_score_curve,
    max_drawdown,
    sharpe_ratio,
)
from policy.params import PolicyParams
from policy.rules import BUY, RULE_NAMES, SELL
from policy.simulate import FILL_REASONS, SimulationResult, SimulationSettings, simulate

RANDOM_SEEDS = 20
VOL_REBALANCE_BARS = 60
ML_EXITS = ("exit_signal", "exit_time")

# The sweep inside a walk-forward window: chosen on the window's training part only.
SWEEP_GRID: dict[str, tuple[Any, ...]] = {
    "entry_margin_bps": (0.0, 10.0, 25.0, 50.0),
    "max_hold_minutes": (0, 60, 240),
}


def json_ready(value: Any) -> Any:
    """Numbers a report can write as strict JSON: NaN and infinities become null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def close_matrix(prepared: Prepared) -> pd.DataFrame:
    """Closes per market on the traded grid, carried forward from the warm-up's last close."""
    arrays = prepared.arrays
    closes = arrays.close.copy()
    for m in range(closes.shape[1]):
        last = prepared.warmup_close[m]
        column = closes[:, m]
        for i in range(len(column)):
            if arrays.has_bar[i, m]:
                last = column[i]
            else:
                column[i] = last
    index = pd.to_datetime(arrays.bar_minute, unit="m", utc=True)
    return pd.DataFrame(closes, index=index, columns=arrays.markets)


def round_trips(result: SimulationResult) -> list[dict[str, Any]]:
    """Pair each buy with the sell that emptied the position: the trade list."""
    fills = result.fills
    open_buys: dict[int, tuple[int, float, float, float]] = {}
    trips: list[dict[str, Any]] = []
    for i in range(len(fills["side"])):
        market = int(fills["market"][i])
        price, volume, fee = fills["price"][i], fills["volume"][i], fills["fee"][i]
        if fills["side"][i] == BUY:
            open_buys[market] = (i, price, volume, fee)
            continue
        if fills["side"][i] != SELL or market not in open_buys:
            continue
        j, buy_price, buy_volume, buy_fee = open_buys.pop(market)
        cost = buy_price * buy_volume + buy_fee
        proceeds = price * volume - fee
        trips.append(
            {
                "market": market,
                "entry_bar": int(fills["bar"][j]),
                "exit_bar": int(fills["bar"][i]),
                "entry_time_s": float(fills["time_s"][j]),
                "exit_time_s": float(fills["time_s"][i]),
                "minutes": int((fills["time_s"][i] - fills["time_s"][j]) // 60),
                "entry_price": float(buy_price),
                "exit_price": float(price),
                "exit_reason": FILL_REASONS[int(fills["reason"][i])],
                "pnl": float(proceeds - cost),
                "return": float(proceeds / cost - 1.0) if cost > 0 else 0.0,
            }
        )
    return trips


def strategy_metrics(
    result: SimulationResult, prepared: Prepared, params: PolicyParams
) -> dict[str, Any]:
    """Return, drawdown, trades, fees, win rate and the rules that decided, of one run."""
    curve = np.concatenate([[result.initial_krw], result.equity])
    trips = round_trips(result)
    ml_trips = [t for t in trips if t["exit_reason"] in ML_EXITS]
    wins = [t for t in trips if t["pnl"] > 0]
    held = np.zeros(len(result.equity), dtype=np.bool_)
    for trip in trips:
        held[trip["entry_bar"] : trip["exit_bar"] + 1] = True
    exits: dict[str, int] = {}
    for trip in trips:
        exits[trip["exit_reason"]] = exits.get(trip["exit_reason"], 0) + 1
    markets = prepared.arrays.markets
    trade_list = [
        {
            "market": markets[t["market"]],
            "opened_at": pd.Timestamp(t["entry_time_s"], unit="s", tz="UTC").isoformat(),
            "closed_at": pd.Timestamp(t["exit_time_s"], unit="s", tz="UTC").isoformat(),
            "minutes": t["minutes"],
            "entry_price": t["entry_price"],
            "exit_price": t["exit_price"],
            "return": t["return"],
            "pnl": t["pnl"],
            "exit_reason": t["exit_reason"],
        }
        for t in trips
    ]
    rules = {
        name: int(count)
        for name, count in zip(RULE_NAMES, result.rule_counts[: len(RULE_NAMES)], strict=True)
        if count
    }
    return {
        "total_return": result.total_return,
        "final_equity": float(curve[-1]),
        "max_drawdown": max_drawdown(curve),
        "sharpe": sharpe_ratio(curve),
        "entries": result.entries,
        "round_trips": len(trips),
        "win_rate": len(wins) / len(trips) if trips else None,
        "fees": result.fees,
        "fees_pct_of_capital": 100.0 * result.fees / result.initial_krw,
        "exposure": float(held.mean()) if len(held) else 0.0,
        "shortest_ml_round_trip_minutes": min((t["minutes"] for t in ml_trips), default=None),
        "shortest_round_trip_minutes": min((t["minutes"] for t in trips), default=None),
        "exits": exits,
        "rules": rules,
        "trades": trade_list,
    }


def random_entries(
    prepared: Prepared,
    result: SimulationResult,
    params: PolicyParams,
    settings: SimulationSettings,
    seeds: int = RANDOM_SEEDS,
) -> dict[str, Any]:
    """Enter at random bars and markets as often as the strategy did, held as long, same sizes.

    Each seed draws the strategy's number of entries uniformly over the bars, a random market
    each, a holding time drawn from the strategy's own round trips, and its entry ratios in
    turn; exits, protections, the watchdog, fees and limits are the simulator's.
    """
    entries = result.entries
    arrays = prepared.arrays
    if entries == 0:
        return {
            "seeds": seeds,
            "entries": 0,
            "note": "the strategy made no entry: cash",
            "mean": 0.0,
        }
    holds = result.hold_minutes if len(result.hold_minutes) else np.array([params.horizon_minutes])
    ratios = result.ratios if len(result.ratios) else np.array([0.1])
    returns = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        forced = np.full(len(arrays), -1, dtype=np.int64)
        hold = np.zeros(len(arrays), dtype=np.int64)
        ratio = np.zeros(len(arrays))
        bars = np.sort(rng.choice(len(arrays), size=min(entries, len(arrays)), replace=False))
        forced[bars] = rng.integers(0, len(arrays.markets), size=len(bars))
        hold[bars] = np.maximum(rng.choice(holds, size=len(bars)), 1)
        ratio[bars] = np.resize(ratios, len(bars))
        run = simulate(
            arrays, params, settings, forced_market=forced, forced_hold=hold, forced_ratio=ratio
        )
        returns.append(run.total_return)
    values = np.asarray(returns)
    return {
        "seeds": seeds,
        "entries": entries,
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "min": float(values.min()),
        "max": float(values.max()),
        "strategy_percentile": float((values < result.total_return).mean() * 100.0),
    }


def hold_curve(prepared: Prepared, fee_rate: float) -> np.ndarray:
    """Buy-and-hold from 1.0: equal split over the markets with a close at the first bar."""
    closes = close_matrix(prepared)
    usable = closes.columns[closes.iloc[0].notna()]
    if not len(usable):
        return np.ones(len(closes))
    return np.asarray(buy_and_hold_curve(closes[usable], fee_rate), dtype=np.float64)


def baselines(prepared: Prepared, fee_rate: float) -> dict[str, Any]:
    """Buy-and-hold (equal split, entry fee) and the lowest-volatility rotation, same bars."""
    closes = close_matrix(prepared)
    usable = closes.columns[closes.iloc[0].notna()]
    hold = hold_curve(prepared, fee_rate)
    vol = pd.DataFrame(
        prepared.arrays.volatility, index=closes.index, columns=prepared.arrays.markets
    )
    rotation, switches = hold_lowest_score_curve(
        closes[usable], vol[usable], VOL_REBALANCE_BARS, fee_rate
    )
    return {
        "buy_and_hold_return": float(hold[-1] - 1.0),
        "buy_and_hold_max_drawdown": max_drawdown(np.concatenate([[1.0], hold])),
        "vol_baseline_return": float(np.asarray(rotation)[-1] - 1.0),
        "vol_baseline_switches": len(switches),
        "cash_return": 0.0,
        "markets_in_buy_and_hold": [str(m) for m in usable],
    }


def evaluate(
    prepared: Prepared,
    params: PolicyParams,
    settings: SimulationSettings,
    *,
    seeds: int = RANDOM_SEEDS,
) -> dict[str, Any]:
    """The policy's result on `prepared` with every comparison the reports show."""
    result = simulate(prepared.arrays, params, settings)
    strategy = strategy_metrics(result, prepared, params)
    compare = baselines(prepared, params.fee_rate)
    return {
        "window": {
            "first_ts": prepared.first_ts.isoformat(),
            "last_ts": prepared.last_ts.isoformat(),
            "bars": len(prepared.arrays),
            "markets": list(prepared.arrays.markets),
        },
        "params": params.to_json(),
        "strategy": strategy,
        **compare,
        "random_entries": random_entries(prepared, result, params, settings, seeds),
        "sharpe_annualisation": f"sqrt({MINUTES_PER_YEAR}) (per-bar 1-minute returns)",
    }


def sweep(
    prepared: Prepared,
    base: PolicyParams,
    settings: SimulationSettings,
    grid: dict[str, Sequence[Any]] | None = None,
) -> tuple[PolicyParams, list[dict[str, Any]]]:
    """Try every parameter combination on `prepared`; keep the best total return.

    Ties (most often: no combination trades, all return 0) go to the most conservative one,
    the largest entry margin (then the first tried). The caller must pass a training window:
    the choice is never made on what is reported.
    """
    choices: dict[str, Sequence[Any]] = dict(grid or SWEEP_GRID)
    names = list(choices)
    combos: list[dict[str, Any]] = [{}]
    for name in names:
        combos = [{**c, name: v} for c in combos for v in choices[name]]
    tried = []
    best: tuple[float, float, PolicyParams] | None = None
    for combo in combos:
        candidate = _with(base, combo)
        result = simulate(prepared.arrays, candidate, settings)
        value = result.total_return
        tried.append({**combo, "total_return": value, "entries": result.entries})
        rank = (round(value, 10), candidate.entry_margin_bps)
        if best is None or rank > best[:2]:
            best = (rank[0], rank[1], candidate)
    assert best is not None
    return best[2], tried


def _with(base: PolicyParams, combo: dict[str, Any]) -> PolicyParams:
    values = dict(combo)
    max_hold = values.get("max_hold_minutes")
    if max_hold:
        values["max_hold_minutes"] = max(int(max_hold), base.min_hold_minutes)
    return replace(base, **values)


__all__ = ["evaluate", "json_ready", "random_entries", "strategy_metrics", "sweep"]
