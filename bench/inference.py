"""One decision cycle's inference for four coins, on consecutive real bars.

A cycle is what the engine does for one closed bar before any check or order: for each of the
four markets ``LiveFeatures.update`` with the new bar and ``latest()`` for its feature row, then
one ``Predictor.predict`` call on the four rows, with the bundled model
(``app/demo/model``, found with ``ml.registry.latest_model_dir``). The bars are the bundled real
Upbit 1m candles (``app/demo/candles_upbit_1m_demo.parquet``); the first ``LONG_BARS + 5``
bars warm the buffers up untimed (after them every feature, the four-hour ones included, is
defined), then ``--cycles`` consecutive bars are timed one cycle each
(``time.perf_counter_ns``). The goal is a cycle under 20 ms.

``--model DIR`` picks the model set (default: the newest bundled one). With a full set
(``lxa train`` without ``--quick``) ``Predictor.load`` gives the ``FullPredictor``: LightGBM
pair, the LSTM+CNN hybrid over each market's last 60 feature rows, the stacker and the
per-coin calibration all run inside the one ``predict`` call, so all of them are timed; the
figures also split the warm-up cycles (no full sequence yet, hybrid skipped) from the rest.

Run from the project root:
``.venv/bin/python bench/inference.py [--model DIR] [--cycles N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ml.data import load_candles  # noqa: E402
from ml.features import LONG_BARS, LiveFeatures  # noqa: E402
from ml.predict import FullPredictor, Predictor  # noqa: E402
from ml.registry import latest_model_dir  # noqa: E402

CANDLES = ROOT / "app" / "demo" / "candles_upbit_1m_demo.parquet"
MODELS = ROOT / "app" / "demo" / "model"
GOAL_MS = 20.0

BarTuple = tuple[str, datetime, float, float, float, float, float]


def bars_by_close(limit: int) -> tuple[list[str], list[list[BarTuple]]]:
    """Group the bundled candles by bar time: one list of (market, ts, o, h, l, c, v) per bar."""
    candles = load_candles([CANDLES])
    markets = sorted(str(m) for m in candles["market"].unique())
    steps: list[list[BarTuple]] = []
    for ts, group in candles.groupby("ts", sort=True):
        stamp = ts.to_pydatetime()
        steps.append(
            [
                (str(r.market), stamp, r.open, r.high, r.low, r.close, r.volume)
                for r in group.itertuples(index=False)
            ]
        )
        if len(steps) == limit:
            break
    return markets, steps


def pct(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))  # nearest rank
    return ordered[rank - 1] / 1e6


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=2000, help="timed consecutive bars")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--model", type=Path, default=None, help="model set directory")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (full sets)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cycles < 1:
        raise SystemExit("--cycles must be positive")
    model_dir = args.model or latest_model_dir(MODELS)
    if model_dir is None:
        raise SystemExit(f"no model set under {MODELS}")
    predictor = Predictor.load(model_dir)
    full = isinstance(predictor, FullPredictor)
    if full:
        import torch

        torch.set_num_threads(args.threads)
    # A full set needs 60 more bars before the hybrid runs: they are timed, but apart.
    sequence_bars = predictor.seq_len if isinstance(predictor, FullPredictor) else 0
    warmup = LONG_BARS + 5
    markets, steps = bars_by_close(warmup + sequence_bars + args.cycles)
    if len(steps) < warmup + sequence_bars + args.cycles:
        raise SystemExit(f"the bundled candles hold only {len(steps)} bars")
    live = {market: LiveFeatures() for market in markets}

    total: list[int] = []
    features_part: list[int] = []
    predict_part: list[int] = []
    without_sequence: list[int] = []
    skipped = 0
    for i, step in enumerate(steps):
        started = time.perf_counter_ns()
        for market, ts, o, h, lo, c, v in step:
            live[market].update(ts, o, h, lo, c, v)
        rows = {market: live[market].latest() for market in markets}
        featured = time.perf_counter_ns()
        ready = {m: row for m, row in rows.items() if row is not None}
        if len(ready) == len(markets):
            predictions = predictor.predict(ready)
            assert len(predictions) == len(markets)
        elif i >= warmup:
            skipped += 1
        finished = time.perf_counter_ns()
        if warmup <= i < warmup + sequence_bars:
            without_sequence.append(finished - started)
        elif i >= warmup:
            total.append(finished - started)
            features_part.append(featured - started)
            predict_part.append(finished - featured)

    mean_ms = sum(total) / len(total) / 1e6
    report: dict[str, Any] = {
        "benchmark": "inference",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "model_id": predictor.model_id,
        "model_kind": predictor.meta.get("kind"),
        "markets": markets,
        "cycles": len(total),
        "warmup_bars": warmup,
        "cycles_without_all_rows": skipped,
        "mean_ms": round(mean_ms, 4),
        "p50_ms": round(pct(total, 0.50), 4),
        "p99_ms": round(pct(total, 0.99), 4),
        "max_ms": round(max(total) / 1e6, 4),
        "features_mean_ms": round(sum(features_part) / len(features_part) / 1e6, 4),
        "predict_mean_ms": round(sum(predict_part) / len(predict_part) / 1e6, 4),
        "goal_ms": GOAL_MS,
        "goal_met": pct(total, 0.99) < GOAL_MS,
        "torch_threads": args.threads if full else None,
        "note": (
            "full set: LightGBM pair + LSTM+CNN hybrid (4 sequences of 60 bars) + stacker + "
            "per-coin calibration in every timed cycle"
            if full
            else "quick set: the LightGBM buy/sell pair only"
        ),
    }
    if without_sequence:
        report["warmup_cycles_without_hybrid"] = len(without_sequence)
        report["warmup_without_hybrid_mean_ms"] = round(
            sum(without_sequence) / len(without_sequence) / 1e6, 4
        )
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"inference  {report['date']}  Python {report['python']}  {report['cpus']} CPUs  "
        f"{report['platform']}"
    )
    print(
        f"model {predictor.model_id} ({report['model_kind']}); {len(markets)} markets "
        f"({', '.join(markets)}); {len(total)} consecutive real 1m bars timed after {warmup} "
        f"warm-up bars" + (f" and {sequence_bars} bars filling the sequences" if full else "")
    )
    print(
        "cycle = LiveFeatures.update + latest() for each market, then one Predictor.predict "
        "on the 4 rows"
    )
    print()
    print(f"{'part':<22} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9}")
    for name, samples in (
        ("features (4 markets)", features_part),
        ("predict (4 rows)", predict_part),
        ("whole cycle", total),
    ):
        mean = sum(samples) / len(samples) / 1e6
        print(f"{name:<22} {mean:>9.3f} {pct(samples, 0.5):>9.3f} {pct(samples, 0.99):>9.3f}")
    print()
    verdict = "met" if report["goal_met"] else "NOT met"
    print(
        f"goal: a cycle under {GOAL_MS:g} ms -> p99 {report['p99_ms']:.3f} ms ({verdict}); "
        f"note: {report['note']}"
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
