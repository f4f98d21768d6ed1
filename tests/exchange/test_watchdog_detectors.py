"""Watchdog detectors: numba kernel vs the pandas reference, streaming, edges, events, config.

Data marked "synthetic" is generated here to hit a detector's boundary on purpose; the real
check runs on ticks derived from the shared real Upbit 1-minute candles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from exchange.watchdog import (
    DROP,
    FLAG_NAMES,
    NETWORK,
    NEWS,
    VOLUME_SPIKE,
    TickWatch,
    Watchdog,
    WatchdogConfig,
    candles_to_ticks,
    detect_batch,
    detect_ticks,
    firing_rates,
    reference_flags,
)

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CANDLES_1M = DATA / "candles_upbit_1m.parquet"
T0 = 1_756_684_800_000  # 2025-09-01 00:00:00 UTC, ms


def ticks_frame(market: str, ts_ms: np.ndarray, price: np.ndarray, volume: np.ndarray):
    return pd.DataFrame(
        {
            "market": market,
            "ts_ms": np.asarray(ts_ms, dtype=np.int64),
            "price": np.asarray(price, dtype=np.float64),
            "volume": np.asarray(volume, dtype=np.float64),
        }
    )


def stream(ticks: pd.DataFrame, config: WatchdogConfig = WatchdogConfig()) -> np.ndarray:
    out = np.zeros(len(ticks), dtype=np.uint8)
    watches: dict[str, TickWatch] = {}
    for i, (market, ts, price, volume) in enumerate(
        zip(ticks["market"], ticks["ts_ms"], ticks["price"], ticks["volume"], strict=True)
    ):
        watch = watches.setdefault(market, TickWatch(config))
        out[i] = watch.update(int(ts), float(price), float(volume))
    return out


def calm_then(seconds_calm: int, burst: np.ndarray, calm_volume: float = 1.0) -> pd.DataFrame:
    """Synthetic: one tick a second at volume `calm_volume`, then one a second with `burst`."""
    n = seconds_calm + len(burst)
    ts = T0 + np.arange(n, dtype=np.int64) * 1000
    volume = np.concatenate([np.full(seconds_calm, calm_volume), burst])
    return ticks_frame("KRW-BTC", ts, np.full(n, 100.0), volume)


# ---------------------------------------------------------------- kernel vs reference


def test_real_candle_ticks_give_the_reference_flags():
    if not CANDLES_1M.exists():
        pytest.skip(f"real candles not found at {CANDLES_1M}")
    candles = pd.read_parquet(
        CANDLES_1M, columns=["market", "ts_ms", "open", "high", "low", "close", "volume"]
    )
    start = candles["ts_ms"].min()
    candles = candles[candles["ts_ms"] < start + 4 * 86_400_000]
    ticks = candles_to_ticks(candles)
    assert ticks["market"].nunique() == 4

    flags = detect_ticks(ticks)

    np.testing.assert_array_equal(flags, reference_flags(ticks))
    assert np.count_nonzero(flags & DROP) > 0
    assert np.count_nonzero(flags & VOLUME_SPIKE) > 0


def test_synthetic_two_percent_drop_in_two_minutes_fires_drop_at_the_crossing_tick():
    flat = np.full(600, 100.0)
    fall = 100.0 - 2.0 * np.arange(1, 121) / 120  # 2% down over 120 one-second ticks
    price = np.concatenate([flat, fall])
    ticks = ticks_frame("KRW-BTC", T0 + np.arange(len(price)) * 1000, price, np.ones(len(price)))

    flags = detect_ticks(ticks)

    first = int(np.flatnonzero(flags & DROP)[0])
    assert first == 600 + int(np.flatnonzero(fall < 99.0)[0])
    assert price[first] < 99.0 <= price[first - 1]
    np.testing.assert_array_equal(flags, reference_flags(ticks))


def test_synthetic_drop_of_point_nine_percent_does_not_fire():
    price = np.concatenate([np.full(600, 100.0), 100.0 - 0.9 * np.arange(1, 121) / 120])
    ticks = ticks_frame("KRW-BTC", T0 + np.arange(len(price)) * 1000, price, np.ones(len(price)))

    flags = detect_ticks(ticks)

    assert not np.any(flags & DROP)
    np.testing.assert_array_equal(flags, reference_flags(ticks))


def test_synthetic_volume_six_times_after_a_calm_hour_fires_volume_spike():
    ticks = calm_then(3600, np.full(300, 6.0))

    flags = detect_ticks(ticks)

    fired = np.flatnonzero(flags & VOLUME_SPIKE)
    assert fired.size > 0 and fired[0] >= 3600
    np.testing.assert_array_equal(flags, reference_flags(ticks))


def test_synthetic_volume_four_times_does_not_fire_at_plus_400_percent():
    ticks = calm_then(3600, np.full(300, 4.0))

    flags = detect_ticks(ticks)

    assert not np.any(flags & VOLUME_SPIKE)
    np.testing.assert_array_equal(flags, reference_flags(ticks))


def test_synthetic_volume_spike_waits_for_a_full_baseline_period():
    # 10 minutes calm then x20 volume: a spike against the baseline, but no full hour seen yet
    ticks = calm_then(600, np.full(300, 20.0))

    flags = detect_ticks(ticks)

    assert not np.any(flags & VOLUME_SPIKE)
    np.testing.assert_array_equal(flags, reference_flags(ticks))


def test_synthetic_volume_after_a_silent_baseline_does_not_fire():
    ticks = calm_then(3600, np.full(300, 5.0), calm_volume=0.0)

    flags = detect_ticks(ticks)

    assert not np.any(flags & VOLUME_SPIKE)
    np.testing.assert_array_equal(flags, reference_flags(ticks))


def test_synthetic_200k_tick_burst_hour_matches_the_reference_in_fixed_state():
    rng = np.random.default_rng(7)
    calm_ts = T0 + np.arange(0, 7200, 10, dtype=np.int64) * 1000
    burst_ts = T0 + 7_200_000 + np.sort(rng.integers(0, 3_600_000, 200_000))
    ts = np.concatenate([calm_ts, burst_ts])
    price = 100.0 * np.exp(np.cumsum(rng.normal(0, 2e-4, len(ts))))
    volume = np.concatenate([np.full(len(calm_ts), 1.0), rng.exponential(0.5, len(burst_ts))])
    ticks = ticks_frame("KRW-ETH", ts, price, volume)
    watch = TickWatch()
    state_sizes = (watch._istate.shape, watch._fstate.shape)

    flags = detect_ticks(ticks)
    streamed = np.array(
        [
            watch.update(int(t), float(p), float(v))
            for t, p, v in zip(ts, price, volume, strict=True)
        ],
        dtype=np.uint8,
    )

    np.testing.assert_array_equal(flags, reference_flags(ticks))
    np.testing.assert_array_equal(streamed, flags)
    assert (watch._istate.shape, watch._fstate.shape) == state_sizes
    assert np.any(flags & VOLUME_SPIKE) and np.any(flags & DROP)


def test_synthetic_random_markets_stream_equals_batch_equals_reference():
    rng = np.random.default_rng(3)
    frames = []
    for k, market in enumerate(["KRW-BTC", "KRW-ETH", "KRW-XRP"]):
        n = 6000
        ts = T0 + np.cumsum(rng.integers(0, 3000, n))
        ts[n // 2 :] += 3 * 3_600_000 * (k % 2)  # a time jump in some markets
        price = 100.0 * np.exp(np.cumsum(rng.normal(0, 2e-3, n)))
        volume = rng.exponential(1.0, n) * (rng.random(n) < 0.9)
        volume[4000:4100] *= 30
        frames.append(ticks_frame(market, ts, price, volume))
    ticks = pd.concat(frames, ignore_index=True)

    flags = detect_ticks(ticks)

    np.testing.assert_array_equal(stream(ticks), flags)
    np.testing.assert_array_equal(reference_flags(ticks), flags)
    assert np.any(flags & DROP) and np.any(flags & VOLUME_SPIKE)


# ---------------------------------------------------------------- streaming semantics


def test_tick_watch_exposes_the_numbers_behind_the_flags():
    watch = TickWatch()
    watch.update(T0, 100.0, 2.0)

    flags = watch.update(T0 + 60_000, 98.0, 3.0)

    assert flags == DROP
    assert watch.window_high == 100.0
    assert watch.drop_fraction == pytest.approx(0.02)
    assert watch.window_volume == pytest.approx(5.0)
    assert watch.baseline_volume == 0.0


def test_an_older_tick_raises():
    watch = TickWatch()
    watch.update(T0 + 1500, 100.0, 1.0)

    with pytest.raises(ValueError, match="back in time"):
        watch.update(T0 + 1200, 100.0, 1.0)


def test_batch_rejects_older_ticks_and_interleaved_markets():
    ts = np.array([T0, T0 + 5000, T0 + 1000], dtype=np.int64)
    price = np.full(3, 100.0)
    volume = np.ones(3)

    with pytest.raises(ValueError, match="back in time"):
        detect_batch(np.zeros(3, dtype=np.int32), ts, price, volume)
    with pytest.raises(ValueError, match="grouped"):
        detect_batch(np.array([0, 1, 0], dtype=np.int32), np.sort(ts), price, volume)


def test_bad_price_or_volume_raises_naming_the_field():
    watch = TickWatch()

    with pytest.raises(ValueError, match="price"):
        watch.update(T0, float("nan"), 1.0)
    with pytest.raises(ValueError, match="volume"):
        watch.update(T0, 100.0, -1.0)


def test_a_time_jump_empties_the_windows_and_restarts_the_warm_up():
    watch = TickWatch()
    for s in range(3600):
        watch.update(T0 + s * 1000, 100.0, 1.0)
    later = T0 + 3599_000 + 3_600_000  # a gap of exactly volume_baseline_s

    flags = watch.update(later, 90.0, 50.0)

    assert flags == 0  # a 10% lower price, but the drop window was emptied
    assert watch.window_high == 90.0
    assert watch.window_volume == 50.0 and watch.baseline_volume == 0.0
    # 50 minutes of calm, then a spike: still warming up, so no VOLUME_SPIKE
    for s in range(1, 3000):
        assert watch.update(later + s * 1000, 90.0, 1.0) == 0
    assert watch.update(later + 3000_000, 90.0, 1000.0) == 0


# ---------------------------------------------------------------- Watchdog edges and events


def test_watchdog_gives_one_trigger_per_turn_on_of_a_detector():
    watchdog = Watchdog(["KRW-BTC", "KRW-ETH"])
    prices = [100.0, 98.0, 97.0, 96.0, 99.5, 99.9, 97.0]  # on, stays, off, off, on again

    triggers = [watchdog.on_tick("KRW-BTC", T0 + i * 1000, p, 1.0) for i, p in enumerate(prices)]

    fired = [i for i, t in enumerate(triggers) if t is not None]
    assert fired == [1, 6]
    first = triggers[1]
    assert first is not None
    assert (first.market, first.detector, first.ts_ms, first.price) == (
        "KRW-BTC",
        "drop",
        T0 + 1000,
        98.0,
    )
    assert first.details["high"] == 100.0
    assert first.details["drop_fraction"] == pytest.approx(0.02)
    assert watchdog.on_tick("KRW-ETH", T0, 50.0, 1.0) is None  # markets are independent


def test_watchdog_reports_drop_first_when_drop_and_spike_turn_on_together():
    watchdog = Watchdog(["KRW-BTC"])
    for s in range(3600):
        assert watchdog.on_tick("KRW-BTC", T0 + s * 1000, 100.0, 1.0) is None

    trigger = watchdog.on_tick("KRW-BTC", T0 + 3600_000, 95.0, 5000.0)

    assert trigger is not None and trigger.detector == FLAG_NAMES[DROP]
    assert trigger.details["window_volume"] > 5 * trigger.details["baseline_volume"] > 0
    # the spike is already on as well: it gives no later trigger while it stays on
    assert watchdog.on_tick("KRW-BTC", T0 + 3601_000, 95.0, 1.0) is None


def test_unknown_market_is_refused():
    with pytest.raises(ValueError, match="KRW-DOGE"):
        Watchdog(["KRW-BTC"]).on_tick("KRW-DOGE", T0, 1.0, 1.0)


def test_news_fires_at_the_threshold_and_not_above_it():
    watchdog = Watchdog(["KRW-BTC"])

    above = watchdog.on_sentiment("KRW-BTC", -0.59, T0)
    at = watchdog.on_sentiment("KRW-BTC", -0.6, T0 + 1)
    still = watchdog.on_sentiment("KRW-BTC", -0.9, T0 + 2)

    assert above is None and still is None
    assert at is not None
    assert (at.market, at.detector, at.price, at.details["score"]) == (
        "KRW-BTC",
        FLAG_NAMES[NEWS],
        None,
        -0.6,
    )


def test_network_fires_after_three_consecutive_failures_and_a_success_resets():
    watchdog = Watchdog(["KRW-BTC"])

    interrupted = [watchdog.record_exchange_failure(T0 + i) for i in range(2)]
    watchdog.record_exchange_success()
    run = [watchdog.record_exchange_failure(T0 + 10 + i) for i in range(4)]

    assert interrupted == [None, None]
    assert run[0] is None and run[1] is None and run[3] is None
    trigger = run[2]
    assert trigger is not None
    assert (trigger.market, trigger.detector, trigger.details["failures"]) == (
        None,
        FLAG_NAMES[NETWORK],
        3.0,
    )


# ---------------------------------------------------------------- config, helpers


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"drop_window_s": 0}, "drop_window_s"),
        ({"volume_window_s": -5}, "volume_window_s"),
        ({"volume_baseline_s": 300}, "volume_baseline_s"),
        ({"drop_pct": 0.0}, "drop_pct"),
        ({"drop_pct": 0.5}, "drop_pct"),
        ({"volume_spike_pct": 0.0}, "volume_spike_pct"),
        ({"volume_spike_pct": 101.0}, "volume_spike_pct"),
        ({"network_failures": 0}, "network_failures"),
        ({"sentiment_threshold": -2.0}, "sentiment_threshold"),
    ],
)
def test_invalid_config_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        WatchdogConfig(**kwargs)


def test_candles_to_ticks_orders_extremes_by_candle_direction():
    candles = pd.DataFrame(
        {
            "market": ["KRW-BTC", "KRW-BTC"],
            "ts_ms": [T0, T0 + 60_000],
            "open": [10.0, 12.0],
            "high": [13.0, 12.5],
            "low": [9.0, 8.0],
            "close": [12.0, 9.0],
            "volume": [4.0, 8.0],
        }
    )

    ticks = candles_to_ticks(candles)

    assert ticks["price"].tolist() == [10.0, 9.0, 13.0, 12.0, 12.0, 12.5, 8.0, 9.0]
    assert (ticks["ts_ms"] - T0).tolist() == [
        0,
        15_000,
        30_000,
        59_000,
        60_000,
        75_000,
        90_000,
        119_000,
    ]
    assert ticks["volume"].tolist() == [1.0] * 4 + [2.0] * 4


def test_firing_rates_counts_turn_ons_per_day():
    price = np.array([100.0, 98.0, 97.0, 100.0, 98.0])
    ts = np.array([0, 1000, 2000, 3000, 86_400_000 // 2]) + T0
    ticks = ticks_frame("KRW-BTC", ts, price, np.ones(5))

    rates = firing_rates(ticks)

    assert rates.loc["KRW-BTC", "drop_triggers"] == 1
    assert rates.loc["KRW-BTC", "drop_per_day"] == pytest.approx(2.0)
    assert rates.loc["KRW-BTC", "volume_spike_triggers"] == 0
