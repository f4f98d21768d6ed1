"""The autoencoder's anomaly score in plain numpy (no torch), for the watchdog.

Input: the last ``window + 1`` one-minute bars of one market (open, high, low, close, volume;
oldest first, gap-free: a quiet minute is a flat bar at the previous close with volume 0, as
``ml.data.regularize`` makes it). From them, per bar t of the last ``window``:

- ``log_return``  = log(close_t / close_{t-1})
- ``log_range``   = log(high_t / low_t)
- ``volume_ratio``= log1p(volume_t / mean volume of the window's bars)

each standardised by the training mean and standard deviation, flattened time-major into a
``window * 3`` vector, reconstructed by the exported dense autoencoder (tanh layers), and the
mean squared reconstruction error is mapped to a score in [0, 1).

The map is monotone and documented: piecewise linear in log(error) through anchor points
read off the training windows' errors (quantile -> score):
0 -> 0, 0.5 -> 0.25, 0.9 -> 0.5, 0.99 -> 0.75, 0.999 -> 0.9, 0.9999 -> 0.95; above the
0.9999 quantile the score rises towards 1 as ``1 - 0.05 * exp(-(log e - log e_9999) / s)``
(``s`` the log-distance between the 0.999 and 0.9999 anchors). So a score of 0.95 is the error
of one window in ten thousand on normal (training) data: about once a week per market for
1-minute bars, not once an hour.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

CHANNELS: tuple[str, ...] = ("log_return", "log_range", "volume_ratio")
ANCHOR_QUANTILES: tuple[float, ...] = (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999)
ANCHOR_SCORES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95)
ALERT_SCORE = 0.95
_LAYERS = ("enc1", "enc2", "dec1", "dec2")
_TINY = 1e-300


def window_channels(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
) -> np.ndarray:
    """Return the (window, 3) raw channels of ``window + 1`` bars (the first one gives a close).

    A non-positive price gives NaN (the scorer then returns NaN, never a made-up score).
    """
    close = np.asarray(close, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_return = np.log(close[1:] / close[:-1])
        log_range = np.log(np.asarray(high, dtype="float64")[1:] / np.asarray(low)[1:])
        vol = np.asarray(volume, dtype="float64")[1:]
        mean = vol.mean()
        ratio = np.log1p(vol / mean) if mean > 0 else np.zeros_like(vol)
    return np.column_stack([log_return, log_range, ratio])


def windows_from_bars(
    high: np.ndarray,
    low: np.ndarray,
    close: np.ndarray,
    volume: np.ndarray,
    window: int,
) -> np.ndarray:
    """Return the raw channels of every complete window of one gap-free segment.

    Shape (n - window, window, 3): row k covers bars k + 1 .. k + window (bar k gives the
    first return's previous close). Same numbers as ``window_channels`` on each slice.
    """
    n = len(close)
    if n <= window:
        return np.empty((0, window, len(CHANNELS)))
    close = np.asarray(close, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        log_return = np.log(close[1:] / close[:-1])
        log_range = np.log(np.asarray(high, dtype="float64")[1:] / np.asarray(low)[1:])
    vol = np.asarray(volume, dtype="float64")[1:]
    view = np.lib.stride_tricks.sliding_window_view
    returns = view(log_return, window)  # (n - window, window)
    ranges = view(log_range, window)
    volumes = view(vol, window)
    means = volumes.mean(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(means > 0, np.log1p(volumes / np.where(means > 0, means, 1.0)), 0.0)
    return np.stack([returns, ranges, ratios], axis=2)


@dataclass(frozen=True)
class ScoreMap:
    """The monotone map from reconstruction error to score (see the module docstring)."""

    log_errors: np.ndarray  # anchor log errors, increasing
    scores: np.ndarray  # anchor scores, increasing, last one ALERT_SCORE

    def __call__(self, error: float) -> float:
        """Return the score of one reconstruction error."""
        if not math.isfinite(error):
            return float("nan")
        log_error = math.log(max(error, _TINY))
        top = float(self.log_errors[-1])
        if log_error <= top:
            return float(np.interp(log_error, self.log_errors, self.scores))
        spread = max(top - float(self.log_errors[-2]), 1e-6)
        return 1.0 - (1.0 - float(self.scores[-1])) * math.exp(-(log_error - top) / spread)

    def many(self, errors: np.ndarray) -> np.ndarray:
        """Return the scores of an array of errors (same map, vectorised)."""
        errors = np.asarray(errors, dtype="float64")
        log_errors = np.log(np.maximum(errors, _TINY))
        top = float(self.log_errors[-1])
        spread = max(top - float(self.log_errors[-2]), 1e-6)
        inside = np.interp(log_errors, self.log_errors, self.scores)
        above = 1.0 - (1.0 - float(self.scores[-1])) * np.exp(-(log_errors - top) / spread)
        out = np.where(log_errors <= top, inside, above)
        return np.where(np.isfinite(errors), out, np.nan)


def fit_score_map(errors: np.ndarray) -> ScoreMap:
    """Read the anchor points off the training windows' reconstruction errors."""
    errors = np.asarray(errors, dtype="float64")
    errors = errors[np.isfinite(errors)]
    if len(errors) < 1000:
        raise ValueError(f"need at least 1000 training errors to calibrate, got {len(errors)}")
    quantiles = np.quantile(errors, ANCHOR_QUANTILES)
    log_errors = np.log(np.maximum(quantiles, _TINY))
    # Strictly increasing anchors keep the map monotone even with tied quantiles.
    for i in range(1, len(log_errors)):
        log_errors[i] = max(log_errors[i], log_errors[i - 1] + 1e-9)
    return ScoreMap(log_errors=log_errors, scores=np.asarray(ANCHOR_SCORES, dtype="float64"))


class AnomalyModel:
    """The exported autoencoder and its calibration, evaluated in numpy (float64)."""

    def __init__(
        self,
        *,
        window: int,
        weights: dict[str, np.ndarray],
        channel_mean: np.ndarray,
        channel_std: np.ndarray,
        score_map: ScoreMap,
    ) -> None:
        """Hold the layers (``<layer>.weight`` (out, in), ``<layer>.bias``) and the statistics."""
        self.window = int(window)
        self._layers = [
            (
                np.ascontiguousarray(weights[f"{name}.weight"], dtype="float64"),
                np.ascontiguousarray(weights[f"{name}.bias"], dtype="float64"),
            )
            for name in _LAYERS
        ]
        size = self.window * len(CHANNELS)
        if self._layers[0][0].shape[1] != size or self._layers[-1][0].shape[0] != size:
            raise ValueError(f"autoencoder layers do not fit a window of {size} values")
        self.channel_mean = np.asarray(channel_mean, dtype="float64")
        self.channel_std = np.asarray(channel_std, dtype="float64")
        self.score_map = score_map

    @classmethod
    def load(cls, path: str | Path) -> AnomalyModel:
        """Load the ``.npz`` written by ``save``."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no anomaly model at {path}")
        return cls.from_bytes(path.read_bytes(), str(path))

    @classmethod
    def from_bytes(cls, payload: bytes, name: str = "anomaly model") -> AnomalyModel:
        """Load the ``.npz`` bytes written by ``to_bytes``."""
        path = name
        with np.load(io.BytesIO(payload)) as data:
            names = set(data.files)
            needed = {"window", "channel_mean", "channel_std", "map_log_errors", "map_scores"}
            needed |= {f"{n}.{p}" for n in _LAYERS for p in ("weight", "bias")}
            lacking = sorted(needed - names)
            if lacking:
                raise ValueError(f"{path} lacks {', '.join(lacking)}")
            return cls(
                window=int(data["window"]),
                weights={key: data[key] for key in names if "." in key},
                channel_mean=data["channel_mean"],
                channel_std=data["channel_std"],
                score_map=ScoreMap(data["map_log_errors"], data["map_scores"]),
            )

    def save(self, path: str | Path) -> None:
        """Write the weights, statistics and score map to ``path`` (.npz)."""
        Path(path).write_bytes(self.to_bytes())

    def to_bytes(self) -> bytes:
        """Return the .npz bytes of the weights, statistics and score map."""
        arrays: dict[str, np.ndarray] = {
            "window": np.asarray(self.window),
            "channel_mean": self.channel_mean,
            "channel_std": self.channel_std,
            "map_log_errors": self.score_map.log_errors,
            "map_scores": self.score_map.scores,
        }
        for name, (weight, bias) in zip(_LAYERS, self._layers, strict=True):
            arrays[f"{name}.weight"] = weight
            arrays[f"{name}.bias"] = bias
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()

    def normalise(self, channels: np.ndarray) -> np.ndarray:
        """Standardise raw channels (..., window, 3) and flatten to (..., window * 3)."""
        scaled = (channels - self.channel_mean) / self.channel_std
        return scaled.reshape(*channels.shape[:-2], self.window * len(CHANNELS))

    def errors(self, channels: np.ndarray) -> np.ndarray:
        """Return the mean squared reconstruction error of raw windows (N, window, 3)."""
        x = self.normalise(channels)
        h = x
        last = len(self._layers) - 1
        for i, (weight, bias) in enumerate(self._layers):
            h = h @ weight.T + bias
            if i < last:
                h = np.tanh(h)
        return np.mean((h - x) ** 2, axis=-1)

    def error(self, channels: np.ndarray) -> float:
        """Return the reconstruction error of one raw window (window, 3)."""
        x = self.normalise(channels)
        h = x
        last = len(self._layers) - 1
        for i, (weight, bias) in enumerate(self._layers):
            h = weight @ h + bias
            if i < last:
                h = np.tanh(h)
        diff = h - x
        return float(diff @ diff) / len(diff)

    def score(self, window_features: np.ndarray) -> float:
        """Return the anomaly score in [0, 1) of one raw window (window, 3); NaN if undefined."""
        window_features = np.asarray(window_features, dtype="float64")
        if window_features.shape != (self.window, len(CHANNELS)):
            raise ValueError(
                f"a window is ({self.window}, {len(CHANNELS)}) channels, got "
                f"{window_features.shape}"
            )
        return self.score_map(self.error(window_features))

    def score_bars(
        self, high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray
    ) -> float:
        """Return the score of the last ``window + 1`` bars (oldest first)."""
        if len(close) != self.window + 1:
            raise ValueError(f"need {self.window + 1} bars, got {len(close)}")
        return self.score(window_channels(high, low, close, volume))


class BarAnomalyScorer:
    """Per-market bar buffer for the watchdog: feed each closed bar, get the score.

    Gap rules as ``ml.data.regularize``: a missing minute up to ``max_gap_s`` away is filled
    flat (previous close, volume 0); a longer jump forgets the history. A bar with the same
    time as the newest replaces it. Returns None until ``window + 1`` bars are held.
    """

    def __init__(self, model: AnomalyModel, *, bar_s: int = 60, max_gap_s: int = 1800) -> None:
        """Start with empty buffers for every market."""
        self.model = model
        self._bar_s = int(bar_s)
        self._max_gap_s = int(max_gap_s)
        self._size = model.window + 1
        self._buffers: dict[str, np.ndarray] = {}  # market -> (2 * size, 4): h, l, c, v
        self._count: dict[str, int] = {}
        self._last_ts: dict[str, int] = {}

    def _push(self, market: str, high: float, low: float, close: float, volume: float) -> None:
        buffer = self._buffers.get(market)
        if buffer is None:
            buffer = self._buffers[market] = np.empty((2 * self._size, 4))
            self._count[market] = 0
        count = self._count[market]
        if count == len(buffer):
            buffer[: self._size - 1] = buffer[count - self._size + 1 : count]
            count = self._size - 1
        buffer[count] = (high, low, close, volume)
        self._count[market] = count + 1

    def update(
        self,
        market: str,
        ts: datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> float | None:
        """Add the closed bar that opened at ``ts`` and return the market's score (or None)."""
        del open  # not a channel; taken so a whole bar can be passed
        if ts.tzinfo is None:
            raise ValueError("ts must be timezone-aware (UTC)")
        ts_s = int(ts.timestamp())
        last = self._last_ts.get(market)
        if last is not None:
            step = ts_s - last
            if step < 0:
                raise ValueError(f"{market}: bar at {ts.isoformat()} is older than the newest")
            if step == 0:
                self._count[market] -= 1
            elif step > self._max_gap_s:
                self._count[market] = 0
            else:
                previous = float(self._buffers[market][self._count[market] - 1, 2])
                for _ in range(1, step // self._bar_s):
                    self._push(market, previous, previous, previous, 0.0)
        self._push(market, float(high), float(low), float(close), float(volume))
        self._last_ts[market] = ts_s
        return self.latest(market)

    def latest(self, market: str) -> float | None:
        """Return the score of the market's newest ``window + 1`` bars, or None."""
        count = self._count.get(market, 0)
        if count < self._size:
            return None
        rows = self._buffers[market][count - self._size : count]
        return self.model.score_bars(rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3])
