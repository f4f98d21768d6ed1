"""Per-bar features from candles, in batch (training) and incrementally (live, replay).

Every feature of a bar uses only that bar and the ``WARMUP_BARS - 1`` bars before it, inside
one segment (see ``ml.data.regularize``). Batch and live share one numpy kernel, so they
agree to floating-point noise. MACD uses EMAs truncated to a finite trailing window
(``3 * span`` bars, weights renormalised), which keeps the lookback finite and the two paths
identical.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from ml.data import BAR, SEGMENT_GAP

FEATURE_NAMES: tuple[str, ...] = (
    "ret_1",
    "ret_5",
    "ret_10",
    "ret_30",
    "ret_60",
    "volatility_10",
    "volatility_30",
    "volatility_60",
    "volume_z_60",
    "volume_ratio_5_60",
    "range_pct",
    "range_pct_mean_10",
    "rsi_14",
    "macd_line",
    "macd_signal",
    "macd_hist",
    "tod_sin",
    "tod_cos",
    "trade_intensity",
    "spread_bps",
)
# Features candles cannot provide (they need ticks or the orderbook): always NaN here.
MISSING_FROM_CANDLES: tuple[str, ...] = ("trade_intensity", "spread_bps")

_RETURN_LAGS = (1, 5, 10, 30, 60)
_VOLATILITY_WINDOWS = (10, 30, 60)
_VOLUME_WINDOW = 60
_VOLUME_SHORT = 5
_RANGE_MEAN_WINDOW = 10
_RSI_WINDOW = 14
_MACD_FAST, _MACD_SLOW, _MACD_SIGNAL = 12, 26, 9
_EMA_SPAN_MULTIPLE = 3
_MINUTES_PER_DAY = 1440


def _ema_weights(span: int) -> np.ndarray:
    """Return normalised EMA weights over ``3 * span`` bars, oldest first."""
    alpha = 2.0 / (span + 1.0)
    length = _EMA_SPAN_MULTIPLE * span
    weights = (1.0 - alpha) ** np.arange(length, dtype="float64")
    weights /= weights.sum()
    return np.ascontiguousarray(weights[::-1])


_W_FAST = _ema_weights(_MACD_FAST)
_W_SLOW = _ema_weights(_MACD_SLOW)
_W_SIGNAL = _ema_weights(_MACD_SIGNAL)
_MACD_LINE_FIRST = len(_W_SLOW) - 1  # first row (segment index) with a MACD line

WARMUP_BARS: int = _MACD_LINE_FIRST + len(_W_SIGNAL)
"""Bars a segment needs before its last bar has every feature (104)."""

_FIRST_ROW = WARMUP_BARS - 1
assert max(*_RETURN_LAGS, *_VOLATILITY_WINDOWS, _VOLUME_WINDOW, _RSI_WINDOW) <= _FIRST_ROW


def _ending_at(values: np.ndarray, window: int, first: int) -> np.ndarray:
    """Return the windows of ``window`` values that end at rows ``first`` .. last."""
    return sliding_window_view(values[first - window + 1 :], window)


def _kernel(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    minute_of_day: np.ndarray,
) -> np.ndarray:
    """Compute features for rows ``WARMUP_BARS - 1`` .. end of one gap-free segment.

    Returns an array of shape (len - WARMUP_BARS + 1, len(FEATURE_NAMES)).
    """
    del open_  # not used by the current feature set; kept so the kernel sees a whole bar
    first = _FIRST_ROW
    rows = len(close) - first
    out = np.full((max(rows, 0), len(FEATURE_NAMES)), np.nan)
    if rows <= 0:
        return out
    column = 0
    log_close = np.log(close)
    now_log_close = log_close[first:]
    for lag in _RETURN_LAGS:
        out[:, column] = now_log_close - log_close[first - lag : len(close) - lag]
        column += 1
    one_bar = np.empty_like(log_close)
    one_bar[0] = np.nan
    one_bar[1:] = log_close[1:] - log_close[:-1]
    for window in _VOLATILITY_WINDOWS:
        out[:, column] = _ending_at(one_bar, window, first).std(axis=1, ddof=1)
        column += 1

    volume_windows = _ending_at(volume, _VOLUME_WINDOW, first)
    volume_mean = volume_windows.mean(axis=1)
    volume_std = volume_windows.std(axis=1, ddof=1)
    volume_now = volume[first:]
    spread = volume_std > 1e-9 * np.maximum(volume_mean, 1e-300)
    out[:, column] = np.divide(
        volume_now - volume_mean, volume_std, out=np.zeros(rows), where=spread
    )
    column += 1
    short_mean = _ending_at(volume, _VOLUME_SHORT, first).mean(axis=1)
    out[:, column] = np.divide(
        short_mean, volume_mean, out=np.full(rows, np.nan), where=volume_mean > 0
    )
    column += 1

    range_pct = (high - low) / close
    out[:, column] = range_pct[first:]
    column += 1
    out[:, column] = _ending_at(range_pct, _RANGE_MEAN_WINDOW, first).mean(axis=1)
    column += 1

    change = np.empty_like(close)
    change[0] = 0.0
    change[1:] = close[1:] - close[:-1]
    gains = _ending_at(np.maximum(change, 0.0), _RSI_WINDOW, first).mean(axis=1)
    losses = _ending_at(np.maximum(-change, 0.0), _RSI_WINDOW, first).mean(axis=1)
    moved = gains + losses
    out[:, column] = np.divide(100.0 * gains, moved, out=np.full(rows, 50.0), where=moved > 0)
    column += 1

    line_first = _MACD_LINE_FIRST
    ema_fast = _ending_at(close, len(_W_FAST), line_first) @ _W_FAST
    ema_slow = _ending_at(close, len(_W_SLOW), line_first) @ _W_SLOW
    macd_line = ema_fast - ema_slow  # rows line_first .. end
    macd_signal = sliding_window_view(macd_line, len(_W_SIGNAL)) @ _W_SIGNAL  # rows first ..
    macd_line_now = macd_line[first - line_first :]
    close_now = close[first:]
    out[:, column] = macd_line_now / close_now
    out[:, column + 1] = macd_signal / close_now
    out[:, column + 2] = (macd_line_now - macd_signal) / close_now
    column += 3

    angle = (2.0 * math.pi / _MINUTES_PER_DAY) * minute_of_day[first:].astype("float64")
    out[:, column] = np.sin(angle)
    out[:, column + 1] = np.cos(angle)
    column += 2
    # trade_intensity, spread_bps: left NaN (missing, never zero).
    assert column + len(MISSING_FROM_CANDLES) == len(FEATURE_NAMES)
    return out


def compute_features(frame_one_market: pd.DataFrame) -> pd.DataFrame:
    """Compute FEATURE_NAMES for every bar of one regularized market, per segment.

    Rows with fewer than ``WARMUP_BARS`` bars of their segment behind them (themselves
    included) are all NaN. The result is indexed like the input.
    """
    frame = frame_one_market
    for column in ("ts", "open", "high", "low", "close", "volume", "segment"):
        if column not in frame.columns:
            hint = " (run ml.data.regularize first)" if column == "segment" else ""
            raise ValueError(f"compute_features needs column {column!r}{hint}")
    out = np.full((len(frame), len(FEATURE_NAMES)), np.nan)
    ts = pd.DatetimeIndex(frame["ts"])
    if ts.tz is None:
        raise ValueError("compute_features needs timezone-aware 'ts' (UTC)")
    ts = ts.tz_convert("UTC")
    minute_of_day = (ts.hour * 60 + ts.minute).to_numpy(dtype="int64")
    ts_ns = ts.as_unit("ns").asi8
    segment = frame["segment"].to_numpy()
    if len(segment) > 1 and np.any(segment[1:] < segment[:-1]):
        raise ValueError("compute_features needs rows sorted by segment and ts")
    arrays = {
        column: frame[column].to_numpy(dtype="float64")
        for column in ("open", "high", "low", "close", "volume")
    }
    boundaries = np.flatnonzero(np.diff(segment)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(frame)]])
    for start, end in zip(starts, ends, strict=True):
        if end - start < 1:
            continue
        steps = np.diff(ts_ns[start:end])
        if len(steps) and (np.any(steps <= 0) or np.any(steps != steps[0])):
            raise ValueError(
                f"segment {segment[start]} is not regular (bars must be evenly spaced; "
                "run ml.data.regularize first)"
            )
        if end - start < WARMUP_BARS:
            continue
        out[start + _FIRST_ROW : end] = _kernel(
            arrays["open"][start:end],
            arrays["high"][start:end],
            arrays["low"][start:end],
            arrays["close"][start:end],
            arrays["volume"][start:end],
            minute_of_day[start:end],
        )
    return pd.DataFrame(out, index=frame.index, columns=list(FEATURE_NAMES))


class LiveFeatures:
    """Keep one market's recent bars and give the feature row of the newest bar.

    Applies the rules of ``ml.data.regularize`` as bars arrive: a missing bar up to
    ``max_gap`` away is filled flat (previous close, volume 0); a longer jump starts a new
    segment and forgets the history. A bar with the same ts as the newest replaces it.
    """

    def __init__(
        self,
        history_bars: int = 300,
        *,
        bar: timedelta = BAR,
        max_gap: timedelta = SEGMENT_GAP,
    ) -> None:
        """Allocate buffers for ``history_bars`` bars (at least WARMUP_BARS)."""
        if history_bars < WARMUP_BARS:
            raise ValueError(f"history_bars must be at least WARMUP_BARS={WARMUP_BARS}")
        self._history = int(history_bars)
        self._bar_s = int(pd.Timedelta(bar).total_seconds())
        self._max_gap_s = int(pd.Timedelta(max_gap).total_seconds())
        if self._bar_s <= 0 or self._max_gap_s < self._bar_s:
            raise ValueError("bar must be positive and max_gap at least one bar")
        capacity = 2 * self._history
        self._data = np.empty((6, capacity), dtype="float64")  # o, h, l, c, v, minute
        self._size = 0
        self._segment_bars = 0
        self._last_ts_s: int | None = None
        self._cached: dict[str, float] | None = None
        self._cache_valid = False

    @property
    def bars_in_segment(self) -> int:
        """Return how many bars (filled ones included) the current segment has."""
        return self._segment_bars

    @property
    def last_ts(self) -> datetime | None:
        """Return the open time of the newest bar, or None before the first one."""
        if self._last_ts_s is None:
            return None
        return datetime.fromtimestamp(self._last_ts_s, tz=UTC)

    def reset(self) -> None:
        """Forget all bars."""
        self._size = 0
        self._segment_bars = 0
        self._last_ts_s = None
        self._cache_valid = False

    def _push(self, ts_s: int, o: float, h: float, lo: float, c: float, v: float) -> None:
        """Append one bar to the buffer, compacting it when full."""
        data = self._data
        if self._size == data.shape[1]:
            keep = self._history
            data[:, :keep] = data[:, self._size - keep : self._size]
            self._size = keep
        i = self._size
        data[0, i] = o
        data[1, i] = h
        data[2, i] = lo
        data[3, i] = c
        data[4, i] = v
        data[5, i] = (ts_s // 60) % _MINUTES_PER_DAY
        self._size = i + 1
        self._segment_bars += 1
        self._last_ts_s = ts_s

    def update(
        self,
        ts: datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> None:
        """Add the bar that opened at ``ts`` (timezone-aware)."""
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware (UTC)")
        ts_s = int(ts.timestamp())
        last = self._last_ts_s
        self._cache_valid = False
        if last is not None:
            step = ts_s - last
            if step == 0:
                i = self._size - 1
                data = self._data
                data[0, i] = open
                data[1, i] = high
                data[2, i] = low
                data[3, i] = close
                data[4, i] = volume
                return
            if step < 0:
                raise ValueError(
                    f"bar at {ts.isoformat()} is older than the newest bar "
                    f"({datetime.fromtimestamp(last, tz=UTC).isoformat()})"
                )
            if step > self._max_gap_s:
                self._size = 0
                self._segment_bars = 0
            else:
                if step % self._bar_s:
                    raise ValueError(f"bar at {ts.isoformat()} is off the bar grid")
                previous_close = float(self._data[3, self._size - 1])
                for k in range(1, step // self._bar_s):
                    self._push(
                        last + k * self._bar_s,
                        previous_close,
                        previous_close,
                        previous_close,
                        previous_close,
                        0.0,
                    )
        self._push(ts_s, float(open), float(high), float(low), float(close), float(volume))

    def latest(self) -> dict[str, float] | None:
        """Return the feature row of the newest bar, or None until warmed up."""
        if self._cache_valid:
            return None if self._cached is None else dict(self._cached)
        if self._segment_bars < WARMUP_BARS:
            self._cached = None
        else:
            end = self._size
            window = self._data[:, end - WARMUP_BARS : end]
            row = _kernel(window[0], window[1], window[2], window[3], window[4], window[5])[0]
            self._cached = dict(zip(FEATURE_NAMES, row.tolist(), strict=True))
        self._cache_valid = True
        return None if self._cached is None else dict(self._cached)
