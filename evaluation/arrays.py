"""Feed the fast simulator (policy.simulate) what the engine's replay of the same candles sees.

`prepare` turns candles and a model set into `MarketArrays`: the bar-close grid of the replay
(one close per minute any market traded), the batch features and the model's scores and
expected returns of every real bar (carried over minutes a market has no candle, as the engine
scores its latest row), and the watchdog's triggers over the same derived ticks. The first
`WARMUP_BARS` closes warm up, as `lxa backtest` does, and are not traded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from exchange.watchdog import (
    DROP,
    VOLUME_SPIKE,
    Watchdog,
    WatchdogConfig,
    candles_to_ticks,
    detect_ticks,
)
from ml.anomaly import AnomalyModel, BarAnomalyScorer
from ml.data import regularize
from ml.features import WARMED_FEATURES, WARMUP_BARS, compute_features
from ml.labels import make_labels
from ml.predict import Predictor
from policy.simulate import MarketArrays

_TICKS_PER_BAR = 4


@dataclass
class Prepared:
    """The simulator's input and what the reports need beside it."""

    arrays: MarketArrays
    forward_return: np.ndarray  # (T, M) realised return over the label horizon; NaN unknown
    p_buy: np.ndarray  # (T, M), NaN where the market had no scored bar
    p_sell: np.ndarray
    first_ts: datetime  # the first traded bar (after warm-up)
    last_ts: datetime
    warmup_close: np.ndarray  # (M,) each market's last close during the warm-up (NaN: none)
    horizon: int  # the model's label horizon, bars

    def head(self, bars: int) -> Prepared:
        """The first `bars` traded closes only (a backtest cut short with --minutes)."""
        last = pd.Timestamp(int(self.arrays.bar_minute[bars - 1]), unit="m", tz=UTC)
        return replace(
            self,
            last_ts=last.to_pydatetime(),
            arrays=self.arrays.head(bars),
            forward_return=self.forward_return[:bars],
            p_buy=self.p_buy[:bars],
            p_sell=self.p_sell[:bars],
        )


def _edges(flags: np.ndarray, market_codes: np.ndarray) -> np.ndarray:
    """The detector that turned on at each tick (lowest bit first), as the streaming watchdog."""
    previous = np.concatenate([[0], flags[:-1]]).astype(np.uint8)
    new_market = np.concatenate([[True], market_codes[1:] != market_codes[:-1]])
    previous[new_market] = 0
    turned_on = flags & ~previous
    out = np.zeros(len(flags), dtype=np.uint8)
    out[(turned_on & DROP) > 0] = 1
    out[((turned_on & DROP) == 0) & ((turned_on & VOLUME_SPIKE) > 0)] = 2
    return out


def prepare(
    candles: pd.DataFrame,
    predictor: Predictor,
    watchdog: WatchdogConfig | None,
    *,
    markets: Sequence[str] | None = None,
    start: datetime | None = None,
) -> Prepared:
    """Build the simulator's arrays for `candles` (shared schema; all markets unless named).

    The first `WARMUP_BARS` bar closes are warm-up, as in the engine's backtest; with `start`,
    every close before it is (at least `WARMUP_BARS` of them), which gives the first traded
    bars the four-hour features too.
    """
    candles = candles.sort_values(["market", "ts"], kind="stable").reset_index(drop=True)
    names = (
        sorted(str(m) for m in pd.unique(candles["market"])) if markets is None else list(markets)
    )
    candles = candles[candles["market"].isin(names)]
    grid = np.unique(candles["ts"].to_numpy(dtype="datetime64[ns]"))
    warmup_bars = WARMUP_BARS
    if start is not None:
        begin = pd.Timestamp(start).tz_convert("UTC").tz_localize(None).to_datetime64()
        warmup_bars = int(np.searchsorted(grid, begin))
        if warmup_bars < WARMUP_BARS:
            raise ValueError(
                f"only {warmup_bars} bar closes before {pd.Timestamp(start).isoformat()}: the "
                f"features need {WARMUP_BARS} to warm up"
            )
    if len(grid) <= warmup_bars:
        raise ValueError(
            f"the candles hold {len(grid)} bar closes: the simulator needs more than the "
            f"{warmup_bars} warm-up bars"
        )
    n_all, n_markets = len(grid), len(names)
    shape = (n_all, n_markets)
    ohlcv = {k: np.full(shape, np.nan) for k in ("open", "high", "low", "close", "volume")}
    has_bar = np.zeros(shape, dtype=np.bool_)
    p_buy = np.full(shape, np.nan)
    p_sell = np.full(shape, np.nan)
    expected = np.full(shape, np.nan)
    volatility = np.full(shape, np.nan)
    forward = np.full(shape, np.nan)
    horizon = int((predictor.meta.get("label") or {}).get("horizon", 10))
    frames = {}
    prepared_rows = {}
    for m, market in enumerate(names):
        rows = candles[candles["market"] == market].reset_index(drop=True)
        if rows.empty:
            continue
        frame = regularize(rows)
        features = compute_features(frame)
        labels = make_labels(frame, horizon=horizon)
        real = ~frame["filled"].to_numpy()
        warmed = features[list(WARMED_FEATURES)].notna().all(axis=1).to_numpy()
        at = np.searchsorted(grid, frame["ts"].to_numpy(dtype="datetime64[ns]"))
        prepared_rows[market] = (m, frame, features, labels, real, warmed, at)
        frames[market] = features[warmed].assign(
            ts=frame["ts"].to_numpy()[warmed], segment=frame["segment"].to_numpy()[warmed]
        )
    scores = predictor.score_frames(frames)
    for market, (m, frame, features, labels, real, warmed, at) in prepared_rows.items():
        score = np.full((len(frame), 2), np.nan)
        score[warmed] = scores[market]
        vol = features["volatility_60"].to_numpy(dtype="float64")
        exp = predictor.expected_returns(score, vol)
        rows_real = real
        idx = at[rows_real]
        for key in ohlcv:
            ohlcv[key][idx, m] = frame[key].to_numpy(dtype="float64")[rows_real]
        has_bar[idx, m] = True
        # Scored values exist at real bars only; the engine carries the latest over gaps.
        scored = rows_real & warmed
        p_buy[at[scored], m] = score[scored, 0]
        p_sell[at[scored], m] = score[scored, 1]
        expected[at[scored], m] = exp[scored]
        volatility[at[rows_real], m] = vol[rows_real]
        forward[at[rows_real], m] = labels["forward_return"].to_numpy()[rows_real]
        # A real bar not warmed has no features yet: not scored (NaN), nothing carried over.
        unscored = rows_real & ~warmed
        expected[at[unscored], m] = np.nan
    for array in (expected, volatility):
        _carry_forward(array, has_bar)
    epoch = pd.Timestamp(0, tz="UTC")
    ts_ms = (candles["ts"] - epoch) // pd.Timedelta(milliseconds=1)
    ticks = candles_to_ticks(candles.assign(ts_ms=ts_ms.astype(np.int64)))
    tick_trigger = np.zeros((n_all, n_markets, _TICKS_PER_BAR), dtype=np.uint8)
    bar_trigger = np.zeros(shape, dtype=np.uint8)
    if watchdog is not None and len(ticks):
        codes = pd.factorize(ticks["market"], sort=False)[0]
        edges = _edges(detect_ticks(ticks, watchdog), codes)
        bar_ts = (ticks["ts_ms"].to_numpy() // 60_000) * 60_000
        t_index = np.searchsorted(grid.astype("datetime64[ms]").astype(np.int64), bar_ts)
        m_index = np.array([names.index(str(x)) for x in ticks["market"].to_numpy()])
        k_index = np.tile(np.arange(_TICKS_PER_BAR), len(ticks) // _TICKS_PER_BAR)
        tick_trigger[t_index, m_index, k_index] = edges
        anomaly_path = getattr(predictor, "anomaly_path", None)
        if anomaly_path is not None and anomaly_path.exists():
            bar_trigger = _anomaly_triggers(candles, names, grid, watchdog, anomaly_path)
    seen_before = np.asarray(has_bar[:warmup_bars].any(axis=0), dtype=np.bool_)
    warm_close = ohlcv["close"][:warmup_bars].copy()
    _carry_forward(warm_close, has_bar[:warmup_bars])
    sl = slice(warmup_bars, None)
    minutes = grid.astype("datetime64[m]").astype(np.int64)
    arrays = MarketArrays(
        markets=list(names),
        bar_minute=minutes[sl],
        has_bar=has_bar[sl],
        open=ohlcv["open"][sl],
        high=ohlcv["high"][sl],
        low=ohlcv["low"][sl],
        close=ohlcv["close"][sl],
        volume=ohlcv["volume"][sl],
        expected=expected[sl],
        volatility=volatility[sl],
        tick_trigger=tick_trigger[sl],
        bar_trigger=bar_trigger[sl],
        tick_rounding=np.array([n.startswith("KRW-") for n in names], dtype=np.bool_),
        seen_before=seen_before,
    )
    first = pd.Timestamp(grid[warmup_bars]).tz_localize(UTC).to_pydatetime()
    last = pd.Timestamp(grid[-1]).tz_localize(UTC).to_pydatetime()
    return Prepared(
        arrays, forward[sl], p_buy[sl], p_sell[sl], first, last, warm_close[-1], horizon
    )


def _carry_forward(values: np.ndarray, has_bar: np.ndarray) -> None:
    """Carry each market's value at its last bar over the minutes it has none (in place)."""
    n, m = values.shape
    for j in range(m):
        column = values[:, j]
        last = np.nan
        for i in range(n):
            if has_bar[i, j]:
                last = column[i]
            else:
                column[i] = last


def _anomaly_triggers(
    candles: pd.DataFrame,
    names: Sequence[str],
    grid: np.ndarray,
    config: WatchdogConfig,
    anomaly_path: object,
) -> np.ndarray:
    """The autoencoder's edge triggers per bar close, by the watchdog's own streaming scorer."""
    streaming = Watchdog(
        names,
        config,
        BarAnomalyScorer(AnomalyModel.load(anomaly_path)),  # type: ignore[arg-type]
    )
    out = np.zeros((len(grid), len(names)), dtype=np.uint8)
    ordered = candles.sort_values(["ts", "market"], kind="stable")
    at = np.searchsorted(grid, ordered["ts"].to_numpy(dtype="datetime64[ns]"))
    for i, row in enumerate(ordered.itertuples(index=False)):
        trigger = streaming.on_bar(
            str(row.market),
            row.ts.to_pydatetime(),
            row.open,
            row.high,
            row.low,
            row.close,
            row.volume,
        )
        if trigger is not None:
            out[at[i], names.index(str(row.market))] = 4
    return out
