"""Per-bar features from candles, in batch (training) and incrementally (live, replay).

Every feature of a bar uses only that bar and the ``WARMUP_BARS - 1`` bars before it, inside
one segment (see ``ml.data.regularize``); the four-hour ``LONG_FEATURES`` use the
``LONG_BARS - 1`` bars before it and are NaN until a segment has that many. Batch and live
share one numpy kernel, so they agree to floating-point noise. MACD uses EMAs truncated to a
finite trailing window (``3 * span`` bars, weights renormalised), which keeps the lookback
finite and the two paths identical.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numba
import numpy as np
import pandas as pd

from ml.data import BAR, LIVE_COLUMNS, NEWS_COLUMNS, SEGMENT_GAP

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
    "park_10",
    "park_60",
    "vol_ratio_10_60",
    "park_ratio_10_60",
    "volatility_240",
    "park_240",
    "vol_ratio_60_240",
    "volume_ratio_10_240",
    "news_sentiment",
    "news_count",
)
# Features candles cannot provide: NaN from candles. Those that need ticks or the orderbook
# take the bar's own value where the bars were recorded live (``ml.data.LIVE_COLUMNS``, the
# same names); the news ones (``ml.data.NEWS_COLUMNS``) the coin's sentiment index at the
# bar's close and the items counted in it (``news.index.SentimentReading.index`` and
# ``.items``: first seen by the close, with a usable time, within the index's horizon), where
# news was collected: the engine reads them at each bar close, training takes them from a
# journal (``app.news_features``). Both NaN, never 0, where no news was collected (a count of
# 0 means news was collected and none counts; the index is then NaN, as no news is not
# neutral news). A set trained before them (meta ``feature_names`` without them) is unchanged.
MISSING_FROM_CANDLES: tuple[str, ...] = ("trade_intensity", "spread_bps", *NEWS_COLUMNS)
assert MISSING_FROM_CANDLES == LIVE_COLUMNS + NEWS_COLUMNS
# Four-hour features: NaN until a segment has LONG_BARS bars (after WARMUP_BARS), so a model
# must accept them as missing. Measured on validation windows inside the training data (Upbit
# 2025-09-14..17, LightGBM trained on earlier Upbit and Binance bars): the margin of the
# LightGBM volatility forecast over the 60-minute volatility baseline went from +0.009 to
# +0.015 with them.
LONG_FEATURES: tuple[str, ...] = (
    "volatility_240",
    "park_240",
    "vol_ratio_60_240",
    "volume_ratio_10_240",
)
_LONG_WINDOW = 240
LONG_BARS: int = _LONG_WINDOW + 1
"""Bars a segment needs before its last bar has the four-hour features too (241)."""
WARMED_FEATURES: tuple[str, ...] = tuple(
    n for n in FEATURE_NAMES if n not in MISSING_FROM_CANDLES and n not in LONG_FEATURES
)
"""Features candles give every bar from WARMUP_BARS on: a bar is warmed when all are defined."""

_RETURN_LAGS = (1, 5, 10, 30, 60)
_VOLATILITY_WINDOWS = (10, 30, 60)
_VOLUME_WINDOW = 60
_VOLUME_SHORT = 5
_RANGE_MEAN_WINDOW = 10
_RSI_WINDOW = 14
_MACD_FAST, _MACD_SLOW, _MACD_SIGNAL = 12, 26, 9
_EMA_SPAN_MULTIPLE = 3
_MINUTES_PER_DAY = 1440
_PARKINSON_WINDOWS = (10, 60)
_PARKINSON_SCALE = 1.0 / (4.0 * math.log(2.0))
_TINY_VOLATILITY = 1e-12  # a window's volatility below this is a flat window (0)


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
assert (
    max(*_RETURN_LAGS, *_VOLATILITY_WINDOWS, *_PARKINSON_WINDOWS, _VOLUME_WINDOW, _RSI_WINDOW)
    <= _FIRST_ROW
)


_FASTMATH = {"reassoc", "contract"}  # lets LLVM vectorise the window sums; NaN kept
_N_FEATURES = len(FEATURE_NAMES)
# _fill_rows writes the columns by index, in this order.
assert _RETURN_LAGS == (1, 5, 10, 30, 60) and _VOLATILITY_WINDOWS == (10, 30, 60)
assert FEATURE_NAMES.index("tod_cos") == 17 and FEATURE_NAMES[18:20] == LIVE_COLUMNS
assert FEATURE_NAMES[20:24] == ("park_10", "park_60", "vol_ratio_10_60", "park_ratio_10_60")
assert FEATURE_NAMES[24:28] == LONG_FEATURES and LONG_BARS > WARMUP_BARS
assert FEATURE_NAMES[28:] == NEWS_COLUMNS
_LONG_FIRST_ROW = LONG_BARS - 1
_LONG_VOLUME_SHORT = 10
assert _PARKINSON_WINDOWS == (10, 60)
_ANGLE_STEP = 2.0 * math.pi / _MINUTES_PER_DAY
_TOD_SIN = np.sin(_ANGLE_STEP * np.arange(_MINUTES_PER_DAY, dtype="float64"))
_TOD_COS = np.cos(_ANGLE_STEP * np.arange(_MINUTES_PER_DAY, dtype="float64"))


_RESEED = 256  # running sums are recomputed from scratch at least every this many rows
_FAST_DECAY = 1.0 - 2.0 / (_MACD_FAST + 1.0)
_SLOW_DECAY = 1.0 - 2.0 / (_MACD_SLOW + 1.0)
_SIGNAL_DECAY = 1.0 - 2.0 / (_MACD_SIGNAL + 1.0)
_SMALL = 1e-3  # see _roll_exact_small


@numba.njit(cache=True, fastmath=_FASTMATH)
def _window_sum(values: np.ndarray, i: int, window: int) -> float:
    """Return the sum of ``values[i - window + 1 : i + 1]``."""
    # Indexing a slice from 0 spares numba's negative-index check, so the loop vectorises.
    window_values = values[i - window + 1 : i + 1]
    total = 0.0
    for k in range(window):
        total += window_values[k]
    return total


@numba.njit(cache=True, fastmath=_FASTMATH)
def _roll(total: float, values: np.ndarray, i: int, window: int, fresh: bool) -> float:
    """Return the window sum ending at ``i``, updating ``total`` (the one ending at i - 1).

    Recomputed from scratch when ``fresh`` or when the running value is not finite (a NaN or
    inf in the window), so it never carries anything from outside the window for long.
    """
    if not fresh:
        total += values[i] - values[i - window]
        if math.isfinite(total):
            return total
    return _window_sum(values, i, window)


@numba.njit(cache=True, fastmath=_FASTMATH)
def _roll_exact_small(
    total: float, scale: float, values: np.ndarray, i: int, window: int, fresh: bool
) -> tuple[float, float]:
    """Like ``_roll`` for non-negative values, also exact when the window sum is small.

    ``scale`` adds up the magnitudes that went through the running sum since it was seeded;
    its rounding error is a tiny fraction of that. When the sum drops below ``_SMALL`` of it
    (an all-zero window of quiet bars, say) it is recomputed, so zero windows give exactly 0
    and small ones keep their relative precision. Returns the sum and the new scale.
    """
    if not fresh:
        entering = values[i]
        leaving = values[i - window]
        total += entering - leaving
        scale += abs(entering) + abs(leaving)
        if math.isfinite(total) and math.isfinite(scale) and total > _SMALL * scale:
            return total, scale
    total = _window_sum(values, i, window)
    return total, abs(total)


@numba.njit(cache=True, fastmath=_FASTMATH)
def _dot(values: np.ndarray, i: int, weights: np.ndarray) -> float:
    """Return the weighted sum of the ``len(weights)`` values ending at ``i`` (oldest first)."""
    window_values = values[i - len(weights) + 1 : i + 1]  # see _window_sum
    total = 0.0
    for k in range(len(weights)):
        total += window_values[k] * weights[k]
    return total


@numba.njit(cache=True, fastmath=_FASTMATH)
def _ema(
    previous: float, values: np.ndarray, i: int, weights: np.ndarray, decay: float, fresh: bool
) -> float:
    """Return the truncated EMA ending at ``i`` from the one ending at ``i - 1`` (O(1)).

    The update decays the previous value, adds the newest bar and drops the one that left the
    window; it is recomputed exactly when ``fresh`` or when the result is not finite.
    """
    if not fresh:
        total = decay * previous + weights[-1] * values[i]
        total -= decay * weights[0] * values[i - len(weights)]
        if math.isfinite(total):
            return total
    return _dot(values, i, weights)


@numba.njit(cache=True, fastmath=_FASTMATH)
def _window_std(values: np.ndarray, i: int, window: int, mean: float) -> float:
    """Return the sample standard deviation (ddof 1) of the window, given its mean."""
    window_values = values[i - window + 1 : i + 1]  # see _window_sum
    squares = 0.0
    for k in range(window):
        deviation = window_values[k] - mean
        squares += deviation * deviation
    return math.sqrt(squares / (window - 1))


@numba.njit(cache=True)
def _ratio(numerator: float, denominator: float) -> float:
    """Return a ratio of two volatilities; NaN for a flat denominator, 0 for a flat numerator.

    Volatilities under ``_TINY_VOLATILITY`` count as exactly 0, so the rounding left in a
    running sum over a flat window cannot turn into a ratio (batch and live agree).
    """
    if not denominator > _TINY_VOLATILITY:  # NaN included
        return np.nan
    if numerator < _TINY_VOLATILITY:
        return 0.0
    return numerator / denominator


@numba.njit(cache=True, fastmath=_FASTMATH)
def _inputs(
    log_close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    position: np.ndarray,
    one_bar: np.ndarray,
    gain: np.ndarray,
    loss: np.ndarray,
    range_pct: np.ndarray,
    log_range_sq: np.ndarray,
    line: np.ndarray,
    one_bar_sq: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    """Fill the per-bar series the windows read (rows ``lo`` .. ``hi - 1``)."""
    w_fast = _W_FAST
    w_slow = _W_SLOW
    fast = 0.0
    slow = 0.0
    fresh = True
    seeded = lo
    for i in range(lo, hi):
        range_pct[i] = (high[i] - low[i]) / close[i]
        log_range = math.log(high[i]) - math.log(low[i])  # the bar's own high and low only
        log_range_sq[i] = log_range * log_range
        if position[i] == 0:
            one_bar[i] = np.nan
            one_bar_sq[i] = np.nan
            gain[i] = 0.0
            loss[i] = 0.0
        else:
            one_bar[i] = log_close[i] - log_close[i - 1]
            one_bar_sq[i] = one_bar[i] * one_bar[i]
            change = close[i] - close[i - 1]
            nan = change != change  # NaN propagates, as np.maximum does
            gain[i] = change if change > 0.0 or nan else 0.0
            loss[i] = -change if change < 0.0 or nan else 0.0
        if position[i] >= _MACD_LINE_FIRST:
            if i - seeded >= _RESEED:
                fresh = True
            if fresh:
                seeded = i
            fast = _ema(fast, close, i, w_fast, _FAST_DECAY, fresh)
            slow = _ema(slow, close, i, w_slow, _SLOW_DECAY, fresh)
            fresh = False
            line[i] = fast - slow
        else:
            fresh = True


@numba.njit(cache=True, fastmath=_FASTMATH)
def _rows(
    log_close: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    minute_of_day: np.ndarray,
    position: np.ndarray,
    one_bar: np.ndarray,
    gain: np.ndarray,
    loss: np.ndarray,
    range_pct: np.ndarray,
    log_range_sq: np.ndarray,
    line: np.ndarray,
    one_bar_sq: np.ndarray,
    out: np.ndarray,
    lo: int,
    hi: int,
) -> None:
    """Write the feature rows ``lo`` .. ``hi - 1`` whose segment position is >= _FIRST_ROW.

    The window sums (means) and the EMAs are running values, recomputed from scratch at the
    chunk's or segment's first row, every ``_RESEED`` rows and whenever they turn non-finite;
    the sums of non-negative series (volume, range, RSI gains and losses) are also recomputed
    when (near) zero, so quiet and flat windows stay exact (``_roll_exact_small``). All
    standard deviations are exact second passes over their windows.
    """
    w_signal = _W_SIGNAL
    tod_sin = _TOD_SIN
    tod_cos = _TOD_COS
    fresh = True
    seeded = lo
    sum_10 = sum_30 = sum_60 = 0.0
    range_sum = range_scale = gain_sum = gain_scale = loss_sum = loss_scale = signal = 0.0
    volume_sum = volume_scale = short_sum = short_scale = 0.0
    park_10_sum = park_10_scale = park_60_sum = park_60_scale = 0.0
    long_fresh = True
    square_sum = square_scale = park_long_sum = park_long_scale = 0.0
    volume_long_sum = volume_long_scale = 0.0
    for i in range(lo, hi):
        if position[i] < _FIRST_ROW:
            for column in range(_N_FEATURES):
                out[i, column] = np.nan
            fresh = True
            continue
        if i - seeded >= _RESEED:
            fresh = True
        if fresh:
            seeded = i
        now = log_close[i]
        out[i, 0] = now - log_close[i - 1]
        out[i, 1] = now - log_close[i - 5]
        out[i, 2] = now - log_close[i - 10]
        out[i, 3] = now - log_close[i - 30]
        out[i, 4] = now - log_close[i - 60]
        sum_10 = _roll(sum_10, one_bar, i, 10, fresh)
        sum_30 = _roll(sum_30, one_bar, i, 30, fresh)
        sum_60 = _roll(sum_60, one_bar, i, 60, fresh)
        out[i, 5] = _window_std(one_bar, i, 10, sum_10 / 10)
        out[i, 6] = _window_std(one_bar, i, 30, sum_30 / 30)
        out[i, 7] = _window_std(one_bar, i, 60, sum_60 / 60)

        # Zero (quiet) windows must give exactly 0 (volume_z's guard, the ratio's NaN), which
        # a plain running sum's leftover rounding would break.
        volume_sum, volume_scale = _roll_exact_small(
            volume_sum, volume_scale, volume, i, _VOLUME_WINDOW, fresh
        )
        volume_mean = volume_sum / _VOLUME_WINDOW
        volume_std = _window_std(volume, i, _VOLUME_WINDOW, volume_mean)
        if volume_std > 1e-9 * max(volume_mean, 1e-300):
            out[i, 8] = (volume[i] - volume_mean) / volume_std
        else:
            out[i, 8] = 0.0
        short_sum, short_scale = _roll_exact_small(
            short_sum, short_scale, volume, i, _VOLUME_SHORT, fresh
        )
        short_mean = short_sum / _VOLUME_SHORT
        out[i, 9] = short_mean / volume_mean if volume_mean > 0 else np.nan

        out[i, 10] = range_pct[i]
        range_sum, range_scale = _roll_exact_small(
            range_sum, range_scale, range_pct, i, _RANGE_MEAN_WINDOW, fresh
        )
        out[i, 11] = range_sum / _RANGE_MEAN_WINDOW

        # Flat stretches must give exactly 0 gains and losses (RSI 50), hence the exact sums.
        gain_sum, gain_scale = _roll_exact_small(gain_sum, gain_scale, gain, i, _RSI_WINDOW, fresh)
        loss_sum, loss_scale = _roll_exact_small(loss_sum, loss_scale, loss, i, _RSI_WINDOW, fresh)
        gains = gain_sum / _RSI_WINDOW
        losses = loss_sum / _RSI_WINDOW
        moved = gains + losses
        out[i, 12] = 100.0 * gains / moved if moved > 0 else 50.0

        # Parkinson range volatility: sqrt(mean(ln(high / low)^2) / (4 ln 2)); exact sums, so
        # windows of quiet (filled) bars give exactly 0.
        park_10_sum, park_10_scale = _roll_exact_small(
            park_10_sum, park_10_scale, log_range_sq, i, 10, fresh
        )
        park_60_sum, park_60_scale = _roll_exact_small(
            park_60_sum, park_60_scale, log_range_sq, i, 60, fresh
        )
        park_10 = math.sqrt(park_10_sum / 10 * _PARKINSON_SCALE)
        park_60 = math.sqrt(park_60_sum / 60 * _PARKINSON_SCALE)
        out[i, 20] = park_10
        out[i, 21] = park_60
        out[i, 22] = _ratio(out[i, 5], out[i, 7])
        out[i, 23] = _ratio(park_10, park_60)

        # Four-hour features: volatility_240 is the root mean square of the one-bar log returns
        # (their mean is negligible over 240 bars); exact sums, as above.
        if position[i] >= _LONG_FIRST_ROW:
            long_fresh = long_fresh or fresh
            square_sum, square_scale = _roll_exact_small(
                square_sum, square_scale, one_bar_sq, i, _LONG_WINDOW, long_fresh
            )
            park_long_sum, park_long_scale = _roll_exact_small(
                park_long_sum, park_long_scale, log_range_sq, i, _LONG_WINDOW, long_fresh
            )
            volume_long_sum, volume_long_scale = _roll_exact_small(
                volume_long_sum, volume_long_scale, volume, i, _LONG_WINDOW, long_fresh
            )
            long_fresh = False
            volatility_long = math.sqrt(square_sum / _LONG_WINDOW)
            if volatility_long < _TINY_VOLATILITY:
                volatility_long = 0.0
            out[i, 24] = volatility_long
            out[i, 25] = math.sqrt(park_long_sum / _LONG_WINDOW * _PARKINSON_SCALE)
            out[i, 26] = _ratio(out[i, 7], volatility_long)
            recent_volume = _window_sum(volume, i, _LONG_VOLUME_SHORT) / _LONG_VOLUME_SHORT
            long_volume = volume_long_sum / _LONG_WINDOW
            out[i, 27] = recent_volume / long_volume if long_volume > 0 else np.nan
        else:
            long_fresh = True
            for column in range(24, 28):
                out[i, column] = np.nan

        signal = _ema(signal, line, i, w_signal, _SIGNAL_DECAY, fresh)
        fresh = False
        close_now = close[i]
        out[i, 13] = line[i] / close_now
        out[i, 14] = signal / close_now
        out[i, 15] = (line[i] - signal) / close_now

        minute = minute_of_day[i]
        out[i, 16] = tod_sin[minute]
        out[i, 17] = tod_cos[minute]
        out[i, 18] = np.nan  # trade_intensity, spread_bps: missing here (NaN, never zero);
        out[i, 19] = np.nan  # compute_features / LiveFeatures copy in a recorded bar's values
        out[i, 28] = np.nan  # news_sentiment, news_count: likewise, where news was collected
        out[i, 29] = np.nan


_CHUNK = 4096
_WINDOW_POSITIONS = np.arange(LONG_BARS, dtype=np.int64)  # a live window is one segment's start
_LIVE_SLOTS = [FEATURE_NAMES.index(name) for name in MISSING_FROM_CANDLES]
_NO_LIVE_VALUES = (math.nan,) * len(MISSING_FROM_CANDLES)


@numba.njit(cache=True, parallel=True)
def _fill_all(
    log_close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    minute_of_day: np.ndarray,
    position: np.ndarray,
    out: np.ndarray,
    chunk: int,
) -> None:
    """Write the feature row of every bar whose segment position is at least ``_FIRST_ROW``.

    ``position[i]`` is bar ``i``'s index inside its segment; earlier rows are set to NaN.
    Each row reads only its own window; the running sums are reseeded often (see ``_rows``),
    so the chunking or where the segment sits in the arrays changes only the last bits.
    """
    n = len(close)
    one_bar = np.empty(n)
    gain = np.empty(n)
    loss = np.empty(n)
    range_pct = np.empty(n)
    log_range_sq = np.empty(n)
    line = np.empty(n)
    one_bar_sq = np.empty(n)
    chunks = (n + chunk - 1) // chunk
    for c in numba.prange(chunks):
        lo = c * chunk
        hi = min(n, lo + chunk)
        _inputs(
            log_close,
            high,
            low,
            close,
            position,
            one_bar,
            gain,
            loss,
            range_pct,
            log_range_sq,
            line,
            one_bar_sq,
            lo,
            hi,
        )
    for c in numba.prange(chunks):
        lo = c * chunk
        hi = min(n, lo + chunk)
        _rows(
            log_close,
            close,
            volume,
            minute_of_day,
            position,
            one_bar,
            gain,
            loss,
            range_pct,
            log_range_sq,
            line,
            one_bar_sq,
            out,
            lo,
            hi,
        )


@numba.njit(cache=True)
def _fill_serial(
    log_close: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    minute_of_day: np.ndarray,
    position: np.ndarray,
    out: np.ndarray,
) -> None:
    """``_fill_all`` as one chunk, compiled without the parallel runtime (the live path).

    The same ``_inputs`` and ``_rows`` over the whole arrays: one call on a 241-bar window
    costs microseconds, where launching ``_fill_all``'s parallel loops costs about a
    millisecond.
    """
    n = len(close)
    one_bar = np.empty(n)
    gain = np.empty(n)
    loss = np.empty(n)
    range_pct = np.empty(n)
    log_range_sq = np.empty(n)
    line = np.empty(n)
    one_bar_sq = np.empty(n)
    _inputs(
        log_close,
        high,
        low,
        close,
        position,
        one_bar,
        gain,
        loss,
        range_pct,
        log_range_sq,
        line,
        one_bar_sq,
        0,
        n,
    )
    _rows(
        log_close,
        close,
        volume,
        minute_of_day,
        position,
        one_bar,
        gain,
        loss,
        range_pct,
        log_range_sq,
        line,
        one_bar_sq,
        out,
        0,
        n,
    )


def _fill(
    open_: np.ndarray,
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    minute_of_day: np.ndarray,
    position: np.ndarray,
    out: np.ndarray,
) -> None:
    """Run the compiled batch kernel (``_fill_all``, chunks in parallel) on whole arrays."""
    del open_  # not used by the current feature set; kept so the kernel sees a whole bar
    close = np.ascontiguousarray(close, dtype="float64")
    _fill_all(
        np.log(close),
        np.ascontiguousarray(high, dtype="float64"),
        np.ascontiguousarray(low, dtype="float64"),
        close,
        np.ascontiguousarray(volume, dtype="float64"),
        np.ascontiguousarray(minute_of_day, dtype="int64") % _MINUTES_PER_DAY,
        position,
        out,
        _CHUNK,
    )


def compute_features(frame_one_market: pd.DataFrame) -> pd.DataFrame:
    """Compute FEATURE_NAMES for every bar of one regularized market, per segment.

    Rows with fewer than ``WARMUP_BARS`` bars of their segment behind them (themselves
    included) are all NaN; rows with fewer than ``LONG_BARS`` have NaN ``LONG_FEATURES``.
    ``MISSING_FROM_CANDLES`` (``trade_intensity`` and ``spread_bps``, the news columns) are the
    frame's own columns of those names where it has them (recorded bars, news put on the
    candles), else NaN. The result is indexed like the input.
    """
    frame = frame_one_market
    for column in ("ts", "open", "high", "low", "close", "volume", "segment"):
        if column not in frame.columns:
            hint = " (run ml.data.regularize first)" if column == "segment" else ""
            raise ValueError(f"compute_features needs column {column!r}{hint}")
    n = len(frame)
    ts = pd.DatetimeIndex(frame["ts"])
    if ts.tz is None:
        raise ValueError("compute_features needs timezone-aware 'ts' (UTC)")
    ts_ns = ts.tz_convert("UTC").as_unit("ns").asi8
    minute_of_day = (ts_ns // 60_000_000_000) % _MINUTES_PER_DAY  # UTC hour * 60 + minute
    segment = frame["segment"].to_numpy()
    if len(segment) > 1 and np.any(segment[1:] < segment[:-1]):
        raise ValueError("compute_features needs rows sorted by segment and ts")
    arrays = {
        column: frame[column].to_numpy(dtype="float64")
        for column in ("open", "high", "low", "close", "volume")
    }
    boundaries = np.flatnonzero(np.diff(segment)) + 1
    starts = np.concatenate([[0], boundaries]).astype("int64")
    ends = np.concatenate([boundaries, [n]]).astype("int64")
    for start, end in zip(starts, ends, strict=True):
        if end - start < 1:
            continue
        steps = np.diff(ts_ns[start:end])
        if len(steps) and (np.any(steps <= 0) or np.any(steps != steps[0])):
            raise ValueError(
                f"segment {segment[start]} is not regular (bars must be evenly spaced; "
                "run ml.data.regularize first)"
            )
    # Column-major, so each feature is one contiguous column of the DataFrame (no copy).
    out = np.empty((n, len(FEATURE_NAMES)), order="F")  # the kernel writes every cell
    if n:
        position = np.arange(n, dtype="int64") - np.repeat(starts, ends - starts)
        _fill(
            arrays["open"],
            arrays["high"],
            arrays["low"],
            arrays["close"],
            arrays["volume"],
            minute_of_day,
            position,
            out,
        )
        warmed = position >= _FIRST_ROW
        for name in MISSING_FROM_CANDLES:
            if name in frame.columns:
                values = frame[name].to_numpy(dtype="float64")
                out[:, FEATURE_NAMES.index(name)] = np.where(warmed, values, np.nan)
    return pd.DataFrame(out, index=frame.index, columns=list(FEATURE_NAMES), copy=False)


class LiveFeatures:
    """Keep one market's recent bars and give the feature row of the newest bar.

    Applies the rules of ``ml.data.regularize`` as bars arrive: a missing bar up to
    ``max_gap`` away is filled flat (previous close, volume 0, no live values); a longer jump
    starts a new segment and forgets the history. A bar with the same ts as the newest
    replaces it. A live bar's ``trade_intensity`` and ``spread_bps``, and the news read at its
    close (``news_sentiment``, ``news_count``), NaN when not given, become its row's values,
    as ``compute_features`` takes them from the frame's columns.
    """

    def __init__(
        self,
        history_bars: int = 300,
        *,
        bar: timedelta = BAR,
        max_gap: timedelta = SEGMENT_GAP,
    ) -> None:
        """Allocate buffers for ``history_bars`` bars (at least LONG_BARS)."""
        if history_bars < LONG_BARS:
            raise ValueError(f"history_bars must be at least LONG_BARS={LONG_BARS}")
        self._history = int(history_bars)
        self._bar_s = int(pd.Timedelta(bar).total_seconds())
        self._max_gap_s = int(pd.Timedelta(max_gap).total_seconds())
        if self._bar_s <= 0 or self._max_gap_s < self._bar_s:
            raise ValueError("bar must be positive and max_gap at least one bar")
        capacity = 2 * self._history
        # o, h, l, c, v, minute, then MISSING_FROM_CANDLES (trade_intensity, spread_bps, news)
        self._data = np.empty((6 + len(MISSING_FROM_CANDLES), capacity), dtype="float64")
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

    def _push(
        self,
        ts_s: int,
        o: float,
        h: float,
        lo: float,
        c: float,
        v: float,
        live: tuple[float, ...] = _NO_LIVE_VALUES,
    ) -> None:
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
        data[6:, i] = live
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
        *,
        trade_intensity: float = math.nan,
        spread_bps: float = math.nan,
        news_sentiment: float = math.nan,
        news_count: float = math.nan,
    ) -> None:
        """Add the bar that opened at ``ts`` (timezone-aware), with its live values if any.

        ``news_sentiment`` and ``news_count``: the market's news read at the bar's close (NaN
        where no news is collected, or where the index counts no item).
        """
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware (UTC)")
        live = (float(trade_intensity), float(spread_bps), float(news_sentiment), float(news_count))
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
                data[6:, i] = live
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
        self._push(ts_s, float(open), float(high), float(low), float(close), float(volume), live)

    def latest(self) -> dict[str, float] | None:
        """Return the feature row of the newest bar, or None until warmed up."""
        if self._cache_valid:
            return None if self._cached is None else dict(self._cached)
        if self._segment_bars < WARMUP_BARS:
            self._cached = None
        else:
            end = self._size
            # The kernel sees the window as a segment's start: with fewer than LONG_BARS bars
            # in the segment, the four-hour features stay NaN, as in the batch. One serial
            # pass over the window: the same inputs the batch kernel gets, one chunk.
            bars = min(self._segment_bars, LONG_BARS)
            window = self._data[:, end - bars : end]
            close = window[3]
            out = np.empty((bars, _N_FEATURES))  # the kernel writes every cell
            _fill_serial(
                np.log(close),
                window[1],
                window[2],
                close,
                window[4],
                window[5].astype(np.int64),  # minutes of the day, stored as 0 .. 1439
                _WINDOW_POSITIONS[:bars],
                out,
            )
            row = out[-1]
            row[_LIVE_SLOTS] = self._data[6:, end - 1]
            self._cached = dict(zip(FEATURE_NAMES, row.tolist(), strict=True))
        self._cache_valid = True
        return None if self._cached is None else dict(self._cached)
