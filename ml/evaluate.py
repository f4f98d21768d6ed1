"""Evaluation metrics: ROC AUC, drawdown, Sharpe, round trips and simple baseline strategies.

Pure functions over numbers (numpy, pandas, scikit-learn); the backtest in `app.backtest`
feeds them. A metric that is undefined for its input (one label class only, a flat equity
curve) is returned as None, never as a made-up number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

MINUTES_PER_YEAR = 525_600
"""Bars per year for 1-minute bars (365 days); Sharpe is annualised with its square root."""


def roc_auc(labels: Iterable[float], scores: Iterable[float]) -> float | None:
    """Return the ROC AUC of ``scores`` against 0/1 ``labels``; None if it is undefined.

    Rows where either value is missing (None, NaN, <NA>) are dropped first. The AUC is
    undefined when no rows remain or only one label class does.
    """
    label_array = pd.to_numeric(pd.Series(list(labels), dtype="object"), errors="coerce")
    score_array = pd.to_numeric(pd.Series(list(scores), dtype="object"), errors="coerce")
    if len(label_array) != len(score_array):
        raise ValueError(f"labels ({len(label_array)}) and scores ({len(score_array)}) differ")
    keep = label_array.notna().to_numpy() & score_array.notna().to_numpy()
    y = label_array.to_numpy(dtype="float64")[keep]
    s = score_array.to_numpy(dtype="float64")[keep]
    if len(y) == 0 or len(np.unique(y)) < 2:
        return None
    return float(roc_auc_score(y.astype("int64"), s))


def max_drawdown(equity: Sequence[float] | np.ndarray) -> float:
    """Return the largest fall from a running peak, as a positive fraction of that peak."""
    curve = np.asarray(equity, dtype="float64")
    if len(curve) == 0:
        return 0.0
    if np.any(~np.isfinite(curve)) or np.any(curve <= 0):
        raise ValueError("equity must be finite and positive")
    peaks = np.maximum.accumulate(curve)
    return float(np.max(1.0 - curve / peaks))


def bar_returns(equity: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return simple returns between consecutive equity values."""
    curve = np.asarray(equity, dtype="float64")
    if len(curve) < 2:
        return np.empty(0)
    return curve[1:] / curve[:-1] - 1.0


def sharpe_ratio(
    equity: Sequence[float] | np.ndarray, periods_per_year: float = MINUTES_PER_YEAR
) -> float | None:
    """Return the annualised Sharpe ratio of per-bar returns (risk-free rate 0).

    mean / sample standard deviation of the bar returns, times sqrt(periods_per_year).
    None when there are fewer than two returns or they do not vary.
    """
    returns = bar_returns(equity)
    if len(returns) < 2:
        return None
    deviation = float(np.std(returns, ddof=1))
    if not deviation > 1e-15:
        return None
    return float(np.mean(returns) / deviation * math.sqrt(periods_per_year))


@dataclass(frozen=True)
class RoundTrip:
    """One position from its first buy fill until it is flat again."""

    market: str
    opened_at: pd.Timestamp
    closed_at: pd.Timestamp
    cost_krw: float  # buy notional plus buy fees
    proceeds_krw: float  # sell notional minus sell fees
    fees_krw: float

    @property
    def pnl_krw(self) -> float:
        """Profit of the round trip after every fee."""
        return self.proceeds_krw - self.cost_krw

    @property
    def won(self) -> bool:
        """Whether the round trip made money after fees."""
        return self.pnl_krw > 0


@dataclass
class MarketBook:
    """Fills of one market folded into closed round trips, an open remainder and cash flow."""

    market: str
    round_trips: list[RoundTrip] = field(default_factory=list)
    open_volume: float = 0.0
    cash_flow_krw: float = 0.0  # sells minus buys, after fees
    fees_krw: float = 0.0

    def pnl_krw(self, last_close: float | None) -> float:
        """Realised plus unrealised P&L at ``last_close``, after fees."""
        held = self.open_volume * last_close if last_close is not None else 0.0
        return self.cash_flow_krw + held


def fold_fills(fills: Iterable[Mapping[str, object]], dust: float = 1e-12) -> dict[str, MarketBook]:
    """Fold fills (market, side bid/ask, price, volume, fee, ts; oldest first) into books.

    A round trip closes when a market's volume returns to zero (within ``dust`` coins).
    """
    books: dict[str, MarketBook] = {}
    opened: dict[str, tuple[pd.Timestamp, float, float, float]] = {}  # ts, cost, proceeds, fees
    for fill in fills:
        market = str(fill["market"])
        side = str(fill["side"])
        price = float(str(fill["price"]))
        volume = float(str(fill["volume"]))
        fee = float(str(fill["fee"]))
        ts = pd.Timestamp(str(fill["ts"]))
        book = books.setdefault(market, MarketBook(market))
        book.fees_krw += fee
        start, cost, proceeds, fees = opened.get(market, (ts, 0.0, 0.0, 0.0))
        if side == "bid":
            book.open_volume += volume
            book.cash_flow_krw -= price * volume + fee
            cost += price * volume + fee
        elif side == "ask":
            book.open_volume -= volume
            book.cash_flow_krw += price * volume - fee
            proceeds += price * volume - fee
        else:
            raise ValueError(f"fill side must be 'bid' or 'ask', got {side!r}")
        fees += fee
        if abs(book.open_volume) <= dust and side == "ask":
            book.open_volume = 0.0
            book.round_trips.append(RoundTrip(market, start, ts, cost, proceeds, fees))
            opened.pop(market, None)
        else:
            opened[market] = (start, cost, proceeds, fees)
    return books


def win_rate(round_trips: Sequence[RoundTrip]) -> float | None:
    """Share of round trips that made money after fees; None when there are none."""
    if not round_trips:
        return None
    return sum(1 for trip in round_trips if trip.won) / len(round_trips)


def buy_and_hold_curve(closes: pd.DataFrame, fee_rate: float) -> pd.Series:
    """Equity (starting at 1.0) of splitting evenly over the columns at the first row.

    ``closes`` holds one column of closes per market, one row per bar (forward-filled). The
    entry fee is paid once; no exit fee (the position is marked, not sold).
    """
    if closes.empty:
        return pd.Series(dtype="float64")
    first = closes.iloc[0]
    if first.isna().any():
        missing = ", ".join(str(m) for m in first[first.isna()].index)
        raise ValueError(f"no first close for {missing}")
    relative = closes.divide(first, axis="columns")
    return relative.mean(axis="columns") * (1.0 - fee_rate)


def hold_lowest_score_curve(
    closes: pd.DataFrame, scores: pd.DataFrame, every: int, fee_rate: float
) -> tuple[pd.Series, list[tuple[pd.Timestamp, str]]]:
    """Equity (from 1.0) of holding the one market with the lowest score, rebalanced.

    At row 0 and every ``every`` rows after, all capital moves to the column of ``scores``
    with the lowest value (missing scores skipped; if none, keep the current holding, or stay
    in cash). A switch pays ``fee_rate`` on the sale and on the purchase. Marked at closes.
    Returns the curve and the (time, market) of every switch.
    """
    if every < 1:
        raise ValueError(f"every must be at least 1 bar, got {every}")
    if list(closes.columns) != list(scores.columns) or not closes.index.equals(scores.index):
        raise ValueError("closes and scores need the same index and columns")
    close_values = closes.to_numpy(dtype="float64")
    score_values = scores.to_numpy(dtype="float64")
    markets = list(closes.columns)
    equity = np.empty(len(closes))
    cash = 1.0
    held: int | None = None
    units = 0.0
    switches: list[tuple[pd.Timestamp, str]] = []
    for row in range(len(closes)):
        if row % every == 0:
            row_scores = np.where(np.isnan(close_values[row]), np.nan, score_values[row])
            if not np.all(np.isnan(row_scores)):
                target = int(np.nanargmin(row_scores))
                if target != held:
                    if held is not None:
                        cash = units * close_values[row, held] * (1.0 - fee_rate)
                    units = cash * (1.0 - fee_rate) / close_values[row, target]
                    cash = 0.0
                    held = target
                    switches.append((pd.Timestamp(closes.index[row]), markets[target]))
        equity[row] = cash if held is None else units * close_values[row, held]
    return pd.Series(equity, index=closes.index), switches
