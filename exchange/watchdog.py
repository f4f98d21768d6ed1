"""Emergency watchdog detectors: price drop and volume spike per tick, news and network events.

Only the detection lives here; the engine turns a `Trigger` into the emergency sell, the
recorded event, the alert and the cooldown.

Time semantics (shared by the numba kernel and the pandas reference)
--------------------------------------------------------------------
* A tick's time is epoch milliseconds; its bucket is ``ts_ms // 1000`` (1-second buckets).
* A tick's window of ``w`` seconds is every tick of the same market seen so far, the tick
  itself included, whose bucket is ``>= bucket - w + 1``. Later ticks in the same second are not
  part of an earlier tick's window.
* DROP: ``price < (1 - drop_pct) * high`` where ``high`` is the highest price in the tick's
  ``drop_window_s`` window (the tick's own price included).
* VOLUME_SPIKE: ``window_volume`` is the summed volume of the ``volume_window_s`` window;
  ``baseline_volume`` is the volume of the ``volume_baseline_s`` window minus the
  ``window_volume``, scaled to one window, i.e. ``(sum_3600 - sum_300) / 11`` for the defaults.
  It fires when ``window_volume > (1 + volume_spike_pct) * baseline_volume``, only when the
  baseline is positive (at least one tick with volume > 0 in the baseline part; counted in
  integers, so both implementations agree exactly on "empty"), and only once a full baseline
  period has been seen: ``bucket - first_bucket + 1 >= volume_baseline_s``.
* Ticks must be non-decreasing in ``ts_ms`` per market (an older tick is a ValueError in
  both the streaming and the batch API). A gap of ``volume_baseline_s`` seconds or
  more (``bucket - previous_bucket >= volume_baseline_s``) leaves every window empty and
  restarts the baseline warm-up at the new tick.

The state of one market is a fixed set of numpy arrays: a monotonic queue of per-second
maxima (at most ``drop_window_s`` entries) and a queue of per-second volume sums (at most
``volume_baseline_s`` entries). Each tick adds at most one entry per queue and expires entries
at the front, so the work is O(1) amortised and no burst of ticks can overflow the state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import numba
import numpy as np
import numpy.typing as npt
import pandas as pd

from ml.anomaly import BarAnomalyScorer  # numpy only: the autoencoder's exported weights

DROP: Final = 1
VOLUME_SPIKE: Final = 2
AUTOENCODER: Final = 4  # per closed bar, from the model set's exported autoencoder
NEWS: Final = 8
NETWORK: Final = 16
FLAG_NAMES: Final[dict[int, str]] = {
    DROP: "drop",
    VOLUME_SPIKE: "volume_spike",
    AUTOENCODER: "autoencoder",
    NEWS: "news",
    NETWORK: "network",
}
TICK_FLAGS: Final = (DROP, VOLUME_SPIKE)


@dataclass(frozen=True)
class WatchdogConfig:
    """Thresholds and windows of the watchdog's detectors (seconds, fractions)."""

    drop_window_s: int = 300
    drop_pct: float = 0.01
    volume_window_s: int = 300
    volume_baseline_s: int = 3600
    volume_spike_pct: float = 4.0
    sentiment_threshold: float = -0.6
    network_failures: int = 3
    anomaly_threshold: float = 0.95  # the autoencoder's calibrated score (ml.anomaly)

    def __post_init__(self) -> None:
        for name in ("drop_window_s", "volume_window_s", "volume_baseline_s", "network_failures"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.volume_baseline_s <= self.volume_window_s:
            raise ValueError(
                f"volume_baseline_s ({self.volume_baseline_s}) must be greater than "
                f"volume_window_s ({self.volume_window_s})"
            )
        if not (math.isfinite(self.drop_pct) and 0.0 < self.drop_pct < 0.5):
            raise ValueError(f"drop_pct must be in (0, 0.5), got {self.drop_pct!r}")
        if not (math.isfinite(self.volume_spike_pct) and 0.0 < self.volume_spike_pct <= 100.0):
            raise ValueError(f"volume_spike_pct must be in (0, 100], got {self.volume_spike_pct!r}")
        if not (math.isfinite(self.anomaly_threshold) and 0.0 < self.anomaly_threshold <= 1.0):
            raise ValueError(f"anomaly_threshold must be in (0, 1], got {self.anomaly_threshold!r}")
        if not (math.isfinite(self.sentiment_threshold) and -1.0 <= self.sentiment_threshold <= 1):
            raise ValueError(
                f"sentiment_threshold must be in [-1, 1], got {self.sentiment_threshold!r}"
            )

    @property
    def baseline_windows(self) -> float:
        """How many volume windows the baseline part spans (11.0 for the defaults)."""
        return (self.volume_baseline_s - self.volume_window_s) / self.volume_window_s


@dataclass(frozen=True)
class Trigger:
    """One detector turning on: what fired, where, when, and the numbers behind it."""

    market: str | None
    detector: str
    ts_ms: int
    price: float | None
    details: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# State layout of one market (two arrays, so a streaming call unboxes little).
# int64 state
_I_DROP_W = 0  # drop window, seconds
_I_VOL_S = 1  # volume window, seconds
_I_VOL_L = 2  # baseline window, seconds
_I_DQ_HEAD = 3  # drop queue: first slot
_I_DQ_LEN = 4  # drop queue: entries
_I_VQ_HEAD = 5  # volume queue: first slot (long window)
_I_VQ_LEN = 6  # volume queue: entries (long window)
_I_VQ_SHORT = 7  # volume queue: entries that are inside the short window (a suffix)
_I_LAST_B = 8  # last bucket seen (-1: none yet)
_I_START_B = 9  # first bucket of the current warm-up
_I_POS_LONG = 10  # ticks with volume > 0 in the long window
_I_POS_SHORT = 11  # ticks with volume > 0 in the short window
_I_LAST_TS = 12  # last ts_ms seen
_I_HDR = 13
# float64 state
_F_DROP_PCT = 0
_F_SPIKE = 1  # 1 + volume_spike_pct
_F_NWIN = 2  # baseline windows
_F_SUM_L = 3
_F_COMP_L = 4
_F_SUM_S = 5
_F_COMP_S = 6
_F_HIGH = 7  # outputs of the last update
_F_LAST_PRICE = 8  # the drop fraction is derived on read: no division per tick
_F_WIN_VOL = 9
_F_BASE_VOL = 10
_F_HDR = 11

# Kernel return codes below zero are errors.
_ERR_ORDER = -1
_ERR_PRICE = -2
_ERR_VOLUME = -3


def _new_state(config: WatchdogConfig) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Allocate and initialise the state arrays of one market."""
    istate, fstate = _alloc_state(
        config.drop_window_s,
        config.volume_window_s,
        config.volume_baseline_s,
        config.drop_pct,
        1.0 + config.volume_spike_pct,
        config.baseline_windows,
    )
    return istate, fstate


@numba.njit(cache=True)
def _alloc_state(
    drop_w: int, vol_s: int, vol_l: int, drop_pct: float, spike: float, nwin: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    # int64: header, drop-queue buckets (drop_w), volume-queue buckets (vol_l),
    # volume-queue positive-tick counts (vol_l)
    istate = np.zeros(_I_HDR + drop_w + 2 * vol_l, dtype=np.int64)
    # float64: header, drop-queue maxima (drop_w), volume-queue sums (vol_l)
    fstate = np.zeros(_F_HDR + drop_w + vol_l, dtype=np.float64)
    istate[_I_DROP_W] = drop_w
    istate[_I_VOL_S] = vol_s
    istate[_I_VOL_L] = vol_l
    istate[_I_LAST_B] = -1
    fstate[_F_DROP_PCT] = drop_pct
    fstate[_F_SPIKE] = spike
    fstate[_F_NWIN] = nwin
    return istate, fstate


@numba.njit(inline="always")
def _neumaier(fstate: npt.NDArray[np.float64], s_idx: int, c_idx: int, x: float) -> None:
    s = fstate[s_idx]
    t = s + x
    if abs(s) >= abs(x):
        fstate[c_idx] += (s - t) + x
    else:
        fstate[c_idx] += (x - t) + s
    fstate[s_idx] = t


@numba.njit(cache=True)
def _update(
    istate: npt.NDArray[np.int64],
    fstate: npt.NDArray[np.float64],
    ts_ms: int,
    price: float,
    volume: float,
) -> int:
    """Advance one market by one tick; return its flags (level), or a negative error code."""
    if not (price > 0.0 and price < np.inf):
        return _ERR_PRICE
    if not (volume >= 0.0 and volume < np.inf):
        return _ERR_VOLUME
    b = ts_ms // 1000
    drop_w = istate[_I_DROP_W]
    vol_s = istate[_I_VOL_S]
    vol_l = istate[_I_VOL_L]
    last_b = istate[_I_LAST_B]
    if last_b >= 0 and ts_ms < istate[_I_LAST_TS]:
        return _ERR_ORDER
    if last_b < 0 or b - last_b >= vol_l:
        # first tick, or a gap that empties every window: restart the warm-up
        istate[_I_DQ_LEN] = 0
        istate[_I_VQ_LEN] = 0
        istate[_I_VQ_SHORT] = 0
        istate[_I_POS_LONG] = 0
        istate[_I_POS_SHORT] = 0
        istate[_I_START_B] = b
        fstate[_F_SUM_L] = 0.0
        fstate[_F_COMP_L] = 0.0
        fstate[_F_SUM_S] = 0.0
        fstate[_F_COMP_S] = 0.0
    istate[_I_LAST_B] = b
    istate[_I_LAST_TS] = ts_ms

    # ---- drop: monotonic queue of per-second maxima, buckets increasing, maxima decreasing
    dq_b = _I_HDR  # offset of bucket slots in istate
    dq_p = _F_HDR  # offset of price slots in fstate
    head = istate[_I_DQ_HEAD]
    n = istate[_I_DQ_LEN]
    lo = b - drop_w + 1
    while n > 0 and istate[dq_b + head] < lo:
        head += 1
        if head == drop_w:
            head = 0
        n -= 1
    while n > 0:
        back = head + n - 1
        if back >= drop_w:
            back -= drop_w
        if fstate[dq_p + back] <= price:
            n -= 1
        else:
            break
    if n == 0:
        head = 0
    push = True
    if n > 0:
        back = head + n - 1
        if back >= drop_w:
            back -= drop_w
        if istate[dq_b + back] == b:
            push = False  # same second already holds a higher price
    if push:
        slot = head + n
        if slot >= drop_w:
            slot -= drop_w
        istate[dq_b + slot] = b
        fstate[dq_p + slot] = price
        n += 1
    istate[_I_DQ_HEAD] = head
    istate[_I_DQ_LEN] = n
    high = fstate[dq_p + head]
    flags = 0
    if price < (1.0 - fstate[_F_DROP_PCT]) * high:
        flags |= 1
    fstate[_F_HIGH] = high
    fstate[_F_LAST_PRICE] = price

    # ---- volume: FIFO of per-second sums; the short window is a suffix of the long one
    vq_b = _I_HDR + drop_w
    vq_c = _I_HDR + drop_w + vol_l
    vq_v = _F_HDR + drop_w
    vhead = istate[_I_VQ_HEAD]
    vn = istate[_I_VQ_LEN]
    vshort = istate[_I_VQ_SHORT]
    # expire the short window first: whatever leaves the long window has left it already
    lo_short = b - vol_s + 1
    while vshort > 0:
        first = vhead + vn - vshort
        if first >= vol_l:
            first -= vol_l
        if istate[vq_b + first] >= lo_short:
            break
        _neumaier(fstate, _F_SUM_S, _F_COMP_S, -fstate[vq_v + first])
        istate[_I_POS_SHORT] -= istate[vq_c + first]
        vshort -= 1
    lo_long = b - vol_l + 1
    while vn > 0 and istate[vq_b + vhead] < lo_long:
        _neumaier(fstate, _F_SUM_L, _F_COMP_L, -fstate[vq_v + vhead])
        istate[_I_POS_LONG] -= istate[vq_c + vhead]
        vhead += 1
        if vhead == vol_l:
            vhead = 0
        vn -= 1
    if vn == 0:
        vhead = 0
    back = vhead + vn - 1
    if back >= vol_l:
        back -= vol_l
    if vn == 0 or istate[vq_b + back] != b:
        back = vhead + vn
        if back >= vol_l:
            back -= vol_l
        istate[vq_b + back] = b
        istate[vq_c + back] = 0
        fstate[vq_v + back] = 0.0
        vn += 1
        vshort += 1
    fstate[vq_v + back] += volume
    _neumaier(fstate, _F_SUM_L, _F_COMP_L, volume)
    _neumaier(fstate, _F_SUM_S, _F_COMP_S, volume)
    if volume > 0.0:
        istate[vq_c + back] += 1
        istate[_I_POS_LONG] += 1
        istate[_I_POS_SHORT] += 1
    istate[_I_VQ_HEAD] = vhead
    istate[_I_VQ_LEN] = vn
    istate[_I_VQ_SHORT] = vshort
    if istate[_I_POS_SHORT] == 0:
        fstate[_F_SUM_S] = 0.0
        fstate[_F_COMP_S] = 0.0
    if istate[_I_POS_LONG] == 0:
        fstate[_F_SUM_L] = 0.0
        fstate[_F_COMP_L] = 0.0
    window_volume = fstate[_F_SUM_S] + fstate[_F_COMP_S]
    prior = (fstate[_F_SUM_L] + fstate[_F_COMP_L]) - window_volume
    if prior < 0.0:
        prior = 0.0
    baseline = prior / fstate[_F_NWIN]
    fstate[_F_WIN_VOL] = window_volume
    fstate[_F_BASE_VOL] = baseline
    warm = b - istate[_I_START_B] + 1 >= vol_l
    if (
        warm
        and istate[_I_POS_LONG] - istate[_I_POS_SHORT] > 0
        and window_volume > fstate[_F_SPIKE] * baseline
    ):
        flags |= 2
    return flags


# The batch kernel inlines the same Python source as `_update` (one definition of the detectors);
# numpy's error model drops the zero-division checks (no divisor here can be zero: prices are
# checked positive and the baseline window count is at least 1).
_update_inline = numba.njit(inline="always", error_model="numpy")(_update.py_func)


@numba.njit(cache=True, parallel=True, error_model="numpy")
def _detect_batch_kernel(
    starts: npt.NDArray[np.int64],
    ts_ms: npt.NDArray[np.int64],
    price: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64],
    drop_w: int,
    vol_s: int,
    vol_l: int,
    drop_pct: float,
    spike: float,
    nwin: float,
    flags: npt.NDArray[np.uint8],
    errors: npt.NDArray[np.int64],
) -> None:
    n_markets = starts.shape[0] - 1
    for m in numba.prange(n_markets):
        istate, fstate = _alloc_state(drop_w, vol_s, vol_l, drop_pct, spike, nwin)
        for i in range(starts[m], starts[m + 1]):
            f = _update_inline(istate, fstate, ts_ms[i], price[i], volume[i])
            if f < 0:
                errors[2 * m] = i
                errors[2 * m + 1] = f
                break
            flags[i] = f


def _raise_for(code: int, where: str) -> None:
    if code == _ERR_ORDER:
        raise ValueError(f"ts_ms goes back in time {where}: ticks must be non-decreasing")
    if code == _ERR_PRICE:
        raise ValueError(f"price must be positive and finite {where}")
    if code == _ERR_VOLUME:
        raise ValueError(f"volume must be non-negative and finite {where}")
    raise ValueError(f"watchdog kernel error {code} {where}")


def _drop_fraction(fstate: npt.NDArray[np.float64]) -> float:
    """``1 - price / window_high`` of the last tick (0.0 before any tick)."""
    high = float(fstate[_F_HIGH])
    return 1.0 - float(fstate[_F_LAST_PRICE]) / high if high > 0.0 else 0.0


class TickWatch:
    """Streaming DROP / VOLUME_SPIKE detector of one market (one numba call per tick)."""

    __slots__ = ("_fstate", "_istate", "config")

    def __init__(self, config: WatchdogConfig = WatchdogConfig()) -> None:
        self.config = config
        self._istate, self._fstate = _new_state(config)

    def update(self, ts_ms: int, price: float, volume: float) -> int:
        """Feed one trade; return the level flags (DROP | VOLUME_SPIKE) after it."""
        flags: int = _update(self._istate, self._fstate, int(ts_ms), float(price), float(volume))
        if flags < 0:
            _raise_for(flags, f"(ts_ms={ts_ms}, price={price}, volume={volume})")
        return flags

    @property
    def window_high(self) -> float:
        """Highest price in the drop window after the last tick."""
        return float(self._fstate[_F_HIGH])

    @property
    def drop_fraction(self) -> float:
        """``1 - price / window_high`` of the last tick."""
        return _drop_fraction(self._fstate)

    @property
    def window_volume(self) -> float:
        """Summed volume of the volume window after the last tick."""
        return float(self._fstate[_F_WIN_VOL])

    @property
    def baseline_volume(self) -> float:
        """Baseline volume scaled to one volume window after the last tick."""
        return float(self._fstate[_F_BASE_VOL])


class Watchdog:
    """Edge-triggered detectors over every market: one `Trigger` when a detector turns on.

    `anomaly` is the model set's autoencoder as a per-market bar scorer (``ml.anomaly``: a
    numpy forward pass over exported weights, no torch); without one that detector is off.
    """

    def __init__(
        self,
        markets: Iterable[str],
        config: WatchdogConfig = WatchdogConfig(),
        anomaly: BarAnomalyScorer | None = None,
    ) -> None:
        self.config = config
        self.anomaly = anomaly
        self._watches: dict[str, TickWatch] = {m: TickWatch(config) for m in markets}
        if not self._watches:
            raise ValueError("markets must name at least one market")
        self._tick_flags: dict[str, int] = dict.fromkeys(self._watches, 0)
        self._news_on: dict[str, bool] = dict.fromkeys(self._watches, False)
        self._anomaly_on: dict[str, bool] = dict.fromkeys(self._watches, False)
        self._failures = 0

    def on_bar(
        self,
        market: str,
        ts: datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> Trigger | None:
        """Feed one closed bar to the autoencoder; a Trigger when its score turns >= threshold.

        Edge-triggered like the tick detectors: one spike stays in the scored window for many
        bars, and it sells once, not once per bar.
        """
        self._watch(market)
        if self.anomaly is None:
            return None
        score = self.anomaly.update(market, ts, open, high, low, close, volume)
        on = score is not None and score >= self.config.anomaly_threshold
        was_on = self._anomaly_on[market]
        self._anomaly_on[market] = on
        if on and not was_on:
            assert score is not None
            return Trigger(
                market=market,
                detector=FLAG_NAMES[AUTOENCODER],
                ts_ms=int(ts.timestamp() * 1000) + 60_000,  # known when the bar closes
                price=float(close),
                details={"score": float(score), "threshold": self.config.anomaly_threshold},
            )
        return None

    @property
    def consecutive_failures(self) -> int:
        """Exchange calls that failed in a row since the last success."""
        return self._failures

    def _watch(self, market: str) -> TickWatch:
        try:
            return self._watches[market]
        except KeyError:
            raise ValueError(f"market {market!r} is not watched") from None

    def on_tick(self, market: str, ts_ms: int, price: float, volume: float) -> Trigger | None:
        """Feed one trade; return a Trigger when DROP or VOLUME_SPIKE turns on for `market`."""
        watch = self._watches.get(market)
        if watch is None:
            watch = self._watch(market)
        flags = watch.update(ts_ms, price, volume)
        previous = self._tick_flags[market]
        if flags == previous:
            return None
        self._tick_flags[market] = flags
        turned_on = flags & ~previous
        if not turned_on:
            return None
        bit = turned_on & -turned_on  # lowest bit: DROP before VOLUME_SPIKE
        fstate = watch._fstate
        return Trigger(
            market=market,
            detector=FLAG_NAMES[bit],
            ts_ms=int(ts_ms),
            price=float(price),
            details={
                "high": float(fstate[_F_HIGH]),
                "drop_fraction": _drop_fraction(fstate),
                "window_volume": float(fstate[_F_WIN_VOL]),
                "baseline_volume": float(fstate[_F_BASE_VOL]),
            },
        )

    def on_sentiment(self, market: str, score: float, ts_ms: int) -> Trigger | None:
        """Feed one news sentiment score; a Trigger when it turns to ``<= sentiment_threshold``.

        The level is the latest score: a run of negative scores gives one Trigger, a new one
        after a score above the threshold came in between.
        """
        self._watch(market)
        if not math.isfinite(score):
            raise ValueError(f"score must be finite, got {score!r}")
        on = score <= self.config.sentiment_threshold
        was_on = self._news_on[market]
        self._news_on[market] = on
        if on and not was_on:
            return Trigger(
                market=market,
                detector=FLAG_NAMES[NEWS],
                ts_ms=int(ts_ms),
                price=None,
                details={"score": float(score), "threshold": self.config.sentiment_threshold},
            )
        return None

    def record_exchange_failure(self, ts_ms: int) -> Trigger | None:
        """Count a failed exchange call; a Trigger (all markets) at `network_failures` in a row."""
        self._failures += 1
        if self._failures == self.config.network_failures:
            return Trigger(
                market=None,
                detector=FLAG_NAMES[NETWORK],
                ts_ms=int(ts_ms),
                price=None,
                details={"failures": float(self._failures)},
            )
        return None

    def record_exchange_success(self) -> None:
        """Reset the consecutive failure count."""
        self._failures = 0


# --------------------------------------------------------------------------------------------
# Batch


def _market_starts(market_codes: npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """Start offsets of each market's contiguous run, plus the end; reject interleaving."""
    n = market_codes.shape[0]
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    change = np.flatnonzero(market_codes[1:] != market_codes[:-1]) + 1
    starts = np.concatenate(([0], change, [n])).astype(np.int64)
    run_codes = market_codes[starts[:-1]]
    if np.unique(run_codes).shape[0] != run_codes.shape[0]:
        raise ValueError("market_codes must be grouped: each market's ticks contiguous")
    return starts


def detect_batch(
    market_codes: npt.NDArray[np.int32],
    ts_ms: npt.NDArray[np.int64],
    price: npt.NDArray[np.float64],
    volume: npt.NDArray[np.float64],
    config: WatchdogConfig = WatchdogConfig(),
) -> npt.NDArray[np.uint8]:
    """Level flags per tick, the same kernel as `TickWatch`, markets in parallel.

    Each market's ticks must be contiguous and non-decreasing in time (ValueError otherwise).
    """
    n = market_codes.shape[0]
    for name, arr in (("ts_ms", ts_ms), ("price", price), ("volume", volume)):
        if arr.shape != (n,):
            raise ValueError(f"{name} must have the shape of market_codes ({n},), got {arr.shape}")
    starts = _market_starts(np.asarray(market_codes))
    flags = np.zeros(n, dtype=np.uint8)
    n_markets = starts.shape[0] - 1
    errors = np.zeros(2 * max(n_markets, 1), dtype=np.int64)
    _detect_batch_kernel(
        starts,
        np.ascontiguousarray(ts_ms, dtype=np.int64),
        np.ascontiguousarray(price, dtype=np.float64),
        np.ascontiguousarray(volume, dtype=np.float64),
        config.drop_window_s,
        config.volume_window_s,
        config.volume_baseline_s,
        config.drop_pct,
        1.0 + config.volume_spike_pct,
        config.baseline_windows,
        flags,
        errors,
    )
    bad = np.flatnonzero(errors[1::2])
    if bad.size:
        m = int(bad[0])
        _raise_for(int(errors[2 * m + 1]), f"at row {int(errors[2 * m])}")
    return flags


def _codes(ticks: pd.DataFrame) -> npt.NDArray[np.int32]:
    codes, _ = pd.factorize(ticks["market"], sort=False)
    return codes.astype(np.int32)


def detect_ticks(
    ticks: pd.DataFrame,
    config: WatchdogConfig = WatchdogConfig(),
) -> npt.NDArray[np.uint8]:
    """`detect_batch` on a frame with columns market, ts_ms, price, volume."""
    return detect_batch(
        _codes(ticks),
        ticks["ts_ms"].to_numpy(np.int64),
        ticks["price"].to_numpy(np.float64),
        ticks["volume"].to_numpy(np.float64),
        config,
    )


def reference_flags(
    ticks: pd.DataFrame,
    config: WatchdogConfig = WatchdogConfig(),
) -> npt.NDArray[np.uint8]:
    """The slow reference in plain pandas: same semantics as the kernel, for tests and bench.

    Per market (rows in their given order, non-decreasing ts_ms), the index is the tick time
    floored to the second, and ``rolling(f"{w}s", closed="right")`` max / sum give each tick's
    window (ticks later in the same second are excluded, as in the kernel).
    """
    flags = np.zeros(len(ticks), dtype=np.uint8)
    if len(ticks) == 0:
        return flags
    for market, rows in ticks.groupby("market", sort=False).indices.items():
        ts_ms = ticks["ts_ms"].to_numpy(np.int64)[rows]
        bucket = ts_ms // 1000
        if np.any(np.diff(ts_ms) < 0):
            raise ValueError(f"ts_ms goes back in time for market {market!r}")
        index = pd.DatetimeIndex(pd.to_datetime(bucket, unit="s"))
        price = pd.Series(ticks["price"].to_numpy(np.float64)[rows], index=index)
        volume = pd.Series(ticks["volume"].to_numpy(np.float64)[rows], index=index)
        positive = (volume > 0).astype(np.float64)

        high = price.rolling(f"{config.drop_window_s}s", closed="right").max().to_numpy()
        drop = price.to_numpy() < (1.0 - config.drop_pct) * high

        short = f"{config.volume_window_s}s"
        long = f"{config.volume_baseline_s}s"
        window_volume = volume.rolling(short, closed="right").sum().to_numpy()
        long_volume = volume.rolling(long, closed="right").sum().to_numpy()
        prior_ticks = (
            positive.rolling(long, closed="right").sum().to_numpy()
            - positive.rolling(short, closed="right").sum().to_numpy()
        )
        baseline = np.maximum(long_volume - window_volume, 0.0) / config.baseline_windows
        segment = np.concatenate(([0], np.cumsum(np.diff(bucket) >= config.volume_baseline_s)))
        segment_start = pd.Series(bucket).groupby(segment).transform("first").to_numpy()
        warm = bucket - segment_start + 1 >= config.volume_baseline_s
        spike = (
            warm
            & (prior_ticks > 0.5)
            & (window_volume > (1.0 + config.volume_spike_pct) * baseline)
        )
        flags[rows] = np.where(drop, DROP, 0) | np.where(spike, VOLUME_SPIKE, 0)
    return flags


# --------------------------------------------------------------------------------------------
# Ticks from candles, firing statistics

_TICK_OFFSETS_MS = np.array([0, 15_000, 30_000, 59_000], dtype=np.int64)


def candles_to_ticks(candles: pd.DataFrame) -> pd.DataFrame:
    """Derive four ticks per real 1-minute candle (columns market, ts_ms, price, volume).

    A derivation, since no real ticks exist yet: the open at +0 s, then the low and the high
    (low first when close >= open, else high first) at +15 s and +30 s, and the close at
    +59 s, each with a quarter of the candle's volume. It keeps the candle's extremes and
    volume but invents their timing inside the minute (the extremes may really have come at
    any second), so it under-states how quickly a real crash or burst unfolds within a minute.
    Rows come out grouped by market (first-seen order) and sorted by time within a market.
    """
    missing = {"market", "ts_ms", "open", "high", "low", "close", "volume"} - set(candles.columns)
    if missing:
        raise ValueError(f"candles lack columns {sorted(missing)}")
    order = np.lexsort((candles["ts_ms"].to_numpy(), _codes(candles)))
    c = candles.iloc[order]
    open_, high, low, close = (c[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    up = close >= open_
    second = np.where(up, low, high)
    third = np.where(up, high, low)
    price = np.stack([open_, second, third, close], axis=1).reshape(-1)
    ts = (c["ts_ms"].to_numpy(np.int64)[:, None] + _TICK_OFFSETS_MS[None, :]).reshape(-1)
    volume = np.repeat(c["volume"].to_numpy(np.float64) / 4.0, 4)
    market = np.repeat(c["market"].to_numpy(), 4)
    return pd.DataFrame({"market": market, "ts_ms": ts, "price": price, "volume": volume})


def firing_rates(
    ticks: pd.DataFrame,
    config: WatchdogConfig = WatchdogConfig(),
) -> pd.DataFrame:
    """Triggers (edges: a detector turning on) per day, per market and tick detector.

    Days are each market's span, ``(last ts_ms - first ts_ms) / 86_400_000``. Also returns the
    raw trigger counts and the span.
    """
    flags = detect_ticks(ticks, config)
    rows = []
    for market, idx in ticks.groupby("market", sort=False).indices.items():
        f = flags[idx]
        ts = ticks["ts_ms"].to_numpy(np.int64)[idx]
        days = max((int(ts.max()) - int(ts.min())) / 86_400_000, 1e-9)
        row: dict[str, Any] = {"market": market, "days": round(days, 3)}
        for bit in TICK_FLAGS:
            level = (f & bit) != 0
            edges = int(level[0]) + int(np.count_nonzero(level[1:] & ~level[:-1]))
            row[f"{FLAG_NAMES[bit]}_triggers"] = edges
            row[f"{FLAG_NAMES[bit]}_per_day"] = edges / days
        rows.append(row)
    return pd.DataFrame(rows).set_index("market")
