"""Features and labels for all of the shared Binance 1m candles, against plain pandas.

Every market is regularized (``ml.data.regularize``: the Binance windows are weeks to years
apart, so each jump starts a new segment), then ``ml.features.compute_features`` and
``ml.labels.make_labels`` run on it. The reference is the same feature and label definitions
written in plain pandas (``groupby`` by segment, ``rolling``, ``ewm``, ``shift``), run on the
same regularized frames in the same process. The MACD of ``ml.features`` uses EMAs truncated
to ``3 * span`` bars with renormalised weights; the reference reproduces that with pandas'
``ewm(adjust=True).sum()`` (S_t = sum of (1 - alpha)^i * x_(t-i)): the truncated EMA is
(S_t - (1 - alpha)^L * S_(t-L)) / sum_(i<L) (1 - alpha)^i.

Both outputs are compared per feature (NaN positions must match; the max abs difference must
be under 1e-6 of the feature's largest absolute value) and the labels must be identical. The
timing is the best of ``--repeats`` runs of features + labels over all markets; the
regularization, shared by both, is timed on its own.

Run from the project root: ``.venv/bin/python bench/features.py [--repeats N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml.data import load_candles, regularize  # noqa: E402
from ml.features import (  # noqa: E402
    FEATURE_NAMES,
    LONG_BARS,
    LONG_FEATURES,
    WARMUP_BARS,
    compute_features,
)
from ml.labels import make_labels  # noqa: E402

CANDLES = ROOT.parent / "shared" / "data" / "candles_binance_1m.parquet"
HORIZON = 10
THRESHOLD = 0.002
RELATIVE_LIMIT = 1e-6
GOAL_RATIO = 5.0

Pair = tuple[pd.DataFrame, pd.DataFrame]  # features, labels


# -- the two implementations --------------------------------------------------------------------


def ours(regular: pd.DataFrame) -> Pair:
    return compute_features(regular), make_labels(regular, horizon=HORIZON, threshold=THRESHOLD)


def _truncated_ema(values: pd.Series, segment: pd.Series, span: int) -> pd.Series:
    """EMA over the last 3 * span values of the segment, weights renormalised (pandas)."""
    alpha = 2.0 / (span + 1.0)
    length = 3 * span
    decay = 1.0 - alpha
    running = values.groupby(segment).ewm(span=span, adjust=True).sum().droplevel(0)
    older = running.groupby(segment).shift(length).fillna(0.0)
    norm = (1.0 - decay**length) / alpha
    return (running - decay**length * older) / norm


def reference(regular: pd.DataFrame) -> Pair:
    """The same features and labels, written the plain pandas way."""
    segment = regular["segment"]
    close, high, low, volume = (regular[c] for c in ("close", "high", "low", "volume"))
    by_segment = regular.groupby("segment")
    position = by_segment.cumcount()

    def rolling(series: pd.Series, window: int) -> Any:
        return series.groupby(segment).rolling(window)

    out = pd.DataFrame(index=regular.index)
    log_close = np.log(close)
    for lag in (1, 5, 10, 30, 60):
        out[f"ret_{lag}"] = log_close - log_close.groupby(segment).shift(lag)
    one_bar = log_close - log_close.groupby(segment).shift(1)
    for window in (10, 30, 60):
        out[f"volatility_{window}"] = rolling(one_bar, window).std().droplevel(0)

    volume_mean = rolling(volume, 60).mean().droplevel(0)
    volume_std = rolling(volume, 60).std().droplevel(0)
    spread = volume_std > 1e-9 * volume_mean.clip(lower=1e-300)
    out["volume_z_60"] = ((volume - volume_mean) / volume_std).where(spread, 0.0)
    short_mean = rolling(volume, 5).mean().droplevel(0)
    out["volume_ratio_5_60"] = (short_mean / volume_mean).where(volume_mean > 0)

    range_pct = (high - low) / close
    out["range_pct"] = range_pct
    out["range_pct_mean_10"] = rolling(range_pct, 10).mean().droplevel(0)

    change = close.groupby(segment).diff().fillna(0.0)
    gains = rolling(change.clip(lower=0.0), 14).mean().droplevel(0)
    losses = rolling((-change).clip(lower=0.0), 14).mean().droplevel(0)
    moved = gains + losses
    out["rsi_14"] = (100.0 * gains / moved).where(moved > 0, 50.0)

    line = _truncated_ema(close, segment, 12) - _truncated_ema(close, segment, 26)
    line = line.where(position >= 3 * 26 - 1)
    signal = _truncated_ema(line.fillna(0.0), segment, 9)
    out["macd_line"] = line / close
    out["macd_signal"] = signal / close
    out["macd_hist"] = (line - signal) / close

    minute = regular["ts"].dt.hour * 60 + regular["ts"].dt.minute
    angle = 2.0 * math.pi / 1440 * minute.astype("float64")
    out["tod_sin"] = np.sin(angle)
    out["tod_cos"] = np.cos(angle)
    out["trade_intensity"] = np.nan
    out["spread_bps"] = np.nan
    out["news_sentiment"] = np.nan  # no news on candles
    out["news_count"] = np.nan
    log_range_sq = (np.log(high) - np.log(low)) ** 2
    for window in (10, 60):
        mean_sq = rolling(log_range_sq, window).mean().droplevel(0)
        out[f"park_{window}"] = np.sqrt(mean_sq / (4.0 * math.log(2.0)))
    # A flat window: the ratio is NaN over a flat denominator, 0 for a flat numerator. pandas'
    # rolling std leaves up to ~2e-10 of rounding over a window of equal prices where ml.features
    # gives exactly 0, so "flat" here is under 1e-9 (real 1-minute volatilities are >= 1e-7).
    flat = 1e-9
    for name, top, bottom in (
        ("vol_ratio_10_60", "volatility_10", "volatility_60"),
        ("park_ratio_10_60", "park_10", "park_60"),
    ):
        numerator = out[top].where(out[top] >= flat, 0.0)
        ratio = (numerator / out[bottom]).where(out[bottom] >= flat)
        out[name] = ratio.where(out[top].notna())
    # Four hours: root mean square of one-bar returns, Parkinson, and the two ratios; NaN
    # until a segment has LONG_BARS bars (the first bar has no one-bar return).
    long_window = LONG_BARS - 1
    out["volatility_240"] = np.sqrt(rolling(one_bar**2, long_window).mean().droplevel(0))
    long_sq = rolling(log_range_sq, long_window).mean().droplevel(0)
    out["park_240"] = np.sqrt(long_sq / (4.0 * math.log(2.0)))
    long_volume = rolling(volume, long_window).mean().droplevel(0)
    recent_volume = rolling(volume, 10).mean().droplevel(0)
    out["volume_ratio_10_240"] = (recent_volume / long_volume).where(long_volume > 0)
    long_flat = out["volatility_240"] < flat
    out["volatility_240"] = out["volatility_240"].where(~long_flat, 0.0)
    numerator = out["volatility_60"].where(out["volatility_60"] >= flat, 0.0)
    ratio = (numerator / out["volatility_240"]).where(out["volatility_240"] >= flat)
    out["vol_ratio_60_240"] = ratio.where(out["volatility_60"].notna())
    for name in LONG_FEATURES:
        out[name] = out[name].where(position >= LONG_BARS - 1)
    out = out.where(position >= WARMUP_BARS - 1)[list(FEATURE_NAMES)]

    forward = close.groupby(segment).shift(-HORIZON) / close - 1.0
    known = forward.notna()
    labels = pd.DataFrame(
        {
            "label_buy": (forward > THRESHOLD).astype("Int8").where(known, pd.NA),
            "label_sell": (forward < -THRESHOLD).astype("Int8").where(known, pd.NA),
            "forward_return": forward,
        },
        index=regular.index,
    )
    return out, labels


# -- timing and comparison ----------------------------------------------------------------------


def timed(
    fn: Callable[[pd.DataFrame], Pair], frames: list[pd.DataFrame], repeats: int
) -> tuple[float, list[Pair]]:
    best = math.inf
    results: list[Pair] = []
    for _ in range(repeats):
        started = time.perf_counter()
        results = [fn(frame) for frame in frames]
        best = min(best, time.perf_counter() - started)
    return best, results


def compare(ours_out: list[Pair], ref_out: list[Pair]) -> tuple[list[dict[str, Any]], bool]:
    rows: list[dict[str, Any]] = []
    ok = True
    mine = pd.concat([f for f, _ in ours_out], ignore_index=True)
    theirs = pd.concat([f for f, _ in ref_out], ignore_index=True)
    for name in FEATURE_NAMES:
        a = mine[name].to_numpy(dtype="float64")
        b = theirs[name].to_numpy(dtype="float64")
        nan_match = bool(np.array_equal(np.isnan(a), np.isnan(b)))
        both = ~np.isnan(a) & ~np.isnan(b)
        diff = float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0
        scale = float(np.max(np.abs(a[both]))) if both.any() else 0.0
        relative = diff / scale if scale > 0 else diff
        agree = nan_match and relative < RELATIVE_LIMIT
        ok &= agree
        rows.append(
            {
                "name": name,
                "defined_rows": int(both.sum()),
                "nan_match": nan_match,
                "max_abs_diff": diff,
                "scale": scale,
                "relative": relative,
                "agree": agree,
            }
        )
    mine_labels = pd.concat([lab for _, lab in ours_out], ignore_index=True)
    ref_labels = pd.concat([lab for _, lab in ref_out], ignore_index=True)
    for name in ("label_buy", "label_sell", "forward_return"):
        a = mine_labels[name].to_numpy(dtype="float64", na_value=np.nan)
        b = ref_labels[name].to_numpy(dtype="float64", na_value=np.nan)
        nan_match = bool(np.array_equal(np.isnan(a), np.isnan(b)))
        both = ~np.isnan(a) & ~np.isnan(b)
        diff = float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0
        scale = float(np.max(np.abs(a[both]))) if both.any() else 0.0
        relative = diff / scale if scale > 0 else diff
        agree = nan_match and (relative < RELATIVE_LIMIT if name == "forward_return" else not diff)
        ok &= agree
        rows.append(
            {
                "name": name,
                "defined_rows": int(both.sum()),
                "nan_match": nan_match,
                "max_abs_diff": diff,
                "scale": scale,
                "relative": relative,
                "agree": agree,
            }
        )
    return rows, ok


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--candles", type=Path, default=CANDLES)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best counts")
    parser.add_argument(
        "--limit", type=int, default=None, help="use only the first N bars of each market"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    if not args.candles.is_file():
        raise SystemExit(f"candles not found: {args.candles} (expected ../shared/data)")
    started = time.perf_counter()
    candles = load_candles([args.candles])
    by_market = [one for _, one in candles.groupby("market", sort=True)]
    if args.limit is not None:
        by_market = [one.iloc[: args.limit] for one in by_market]
    markets = [str(one["market"].iloc[0]) for one in by_market]

    regularize_s = math.inf
    frames: list[pd.DataFrame] = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        frames = [regularize(one) for one in by_market]
        regularize_s = min(regularize_s, time.perf_counter() - t0)
    rows = sum(len(frame) for frame in frames)
    segments = sum(int(frame["segment"].nunique()) for frame in frames)

    ours_s, ours_out = timed(ours, frames, args.repeats)
    ref_s, ref_out = timed(reference, frames, args.repeats)
    checks, agree = compare(ours_out, ref_out)
    ratio = ref_s / ours_s

    report = {
        "benchmark": "features",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "candles": str(args.candles),
        "markets": markets,
        "rows": rows,
        "segments": segments,
        "limit": args.limit,
        "repeats": args.repeats,
        "regularize_s": round(regularize_s, 4),
        "ours_s": round(ours_s, 4),
        "ours_rows_per_s": round(rows / ours_s),
        "ours_with_regularize_rows_per_s": round(rows / (ours_s + regularize_s)),
        "pandas_s": round(ref_s, 4),
        "pandas_rows_per_s": round(rows / ref_s),
        "ratio_pandas_over_ours": round(ratio, 2),
        "goal_ratio": GOAL_RATIO,
        "goal_met": ratio >= GOAL_RATIO,
        "outputs_agree": agree,
        "max_relative_diff": max(check["relative"] for check in checks),
        "checks": checks,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(report))
        return 0 if agree else 1
    print(
        f"features  {report['date']}  Python {report['python']}  {report['cpus']} CPUs  "
        f"numpy {np.__version__}  pandas {pd.__version__}  {report['platform']}"
    )
    print(
        f"{rows:,} regularized 1m bars, {len(markets)} markets ({', '.join(markets)}), "
        f"{segments} segments; features + labels (horizon {HORIZON}); best of {args.repeats}"
        + (f"; first {args.limit} bars per market only" if args.limit else "")
    )
    print()
    print(f"{'column':<18} {'rows':>9} {'NaN same':>8} {'max abs diff':>13} {'relative':>10}  ok")
    for check in checks:
        print(
            f"{check['name']:<18} {check['defined_rows']:>9,} "
            f"{'yes' if check['nan_match'] else 'NO':>8} {check['max_abs_diff']:>13.3e} "
            f"{check['relative']:>10.3e}  {'yes' if check['agree'] else 'NO'}"
        )
    print()
    print(f"{'implementation':<34} {'seconds':>8} {'rows/s':>12}")
    print(f"{'regularize (shared by both)':<34} {regularize_s:>8.3f} {rows / regularize_s:>12,.0f}")
    print(f"{'ml.features + ml.labels':<34} {ours_s:>8.3f} {rows / ours_s:>12,.0f}")
    print(f"{'plain pandas reference':<34} {ref_s:>8.3f} {rows / ref_s:>12,.0f}")
    print()
    verdict = "met" if ratio >= GOAL_RATIO else "NOT met"
    print(
        f"speed ratio pandas / ours: {ratio:.2f}x (goal >= {GOAL_RATIO:g}x: {verdict}); "
        f"outputs agree: {'yes' if agree else 'NO'} (max relative diff "
        f"{report['max_relative_diff']:.2e}, limit {RELATIVE_LIMIT:g})"
    )
    print(json.dumps(report))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
