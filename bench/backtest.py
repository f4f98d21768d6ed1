"""Market-bars per second of both backtest paths, against backtesting.py on the same real bars.

Bars (default): the bundled real Upbit 1-minute candles (``app/demo/candles_upbit_1m_demo.parquet``,
4 markets) and the bundled model set (``app/demo/model``), as ``lxa backtest`` uses them.
A market-bar is one market at one bar close: a bar close of the replay scores, and can trade,
every market, so each path's figure is (bar closes x markets) / seconds.

Paths timed in the same run:

* engine: ``app.backtest.simulate``, the path of ``lxa backtest`` (LLM checks off): the real
  engine replays the closes bar by bar (ticks through the watchdog and the paper exchange, live
  features, the compiled LangGraph graph (no checkpointer in a backtest), the SQLite journal,
  the event bus). ``engine`` is the bar loop alone (from the first bar's end to the last's, read
  from ``simulate``'s progress callback); ``engine_call`` the whole call, start-up (journal
  migrations, model load, warm-up of ``WARMUP_BARS`` closes) included.
* fast: ``policy.simulate.simulate`` on ``app.simulation.prepare``'s arrays with the same
  policy parameters (``app.wiring.policy_params_from``); best of ``--repeats`` after one untimed
  call (numba compiled or loaded from its cache first). ``prepare`` (features, model scores,
  watchdog triggers) is timed once and reported apart.
* reference: backtesting.py (``backtesting.Backtest.run``, statistics included, as a user runs
  it), one market at a time on that market's real bars of the traded span, with an equivalent
  strategy: enter when the model's expected return (``prepare``'s precomputed column) clears
  the policy's entry threshold, exit when it falls under the exit threshold; commission
  0.05%. Best of ``--repeats``; each market's bars count once.

Every figure is printed with its ratio to the reference measured on the same bars in this run
(when the fast path runs on other candles, ``--fast-candles``, it gets its own reference), then
one JSON line. Run from the project root: ``.venv/bin/python bench/backtest.py [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TQDM_DISABLE", "1")  # backtesting.py's progress bar: not shown, not timed

from app.backtest import backtest_settings, markets_in, simulate  # noqa: E402
from app.session import collect_closes  # noqa: E402
from app.settings import Settings, load_settings  # noqa: E402
from app.simulation import Prepared, prepare, simulation_settings  # noqa: E402
from app.wiring import BUNDLED_MODELS, policy_params_from  # noqa: E402
from exchange.rules import FEE_RATE  # noqa: E402
from ml.data import load_candles  # noqa: E402
from ml.features import WARMUP_BARS  # noqa: E402
from ml.predict import Predictor  # noqa: E402
from ml.registry import latest_model_dir  # noqa: E402
from policy.params import PolicyParams  # noqa: E402
from policy.simulate import simulate as fast_simulate  # noqa: E402

CANDLES = ROOT / "app" / "demo" / "candles_upbit_1m_demo.parquet"
REFERENCE_CASH = 1e15  # backtesting.py buys whole units: enough for any coin at any price


@dataclass
class Figure:
    """One timed path: how many market-bars in how many seconds."""

    name: str
    bar_closes: int
    markets: int
    seconds: float
    market_bars: int | None = None  # defaults to bar_closes * markets

    @property
    def count(self) -> int:
        return self.market_bars if self.market_bars is not None else self.bar_closes * self.markets

    @property
    def per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """Return the fastest of `repeats` timed calls and the last call's result."""
    best = float("inf")
    result = None
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return best, result


# -- the engine path -----------------------------------------------------------------------------


def engine_settings(candles: pd.DataFrame, report_dir: Path, model_dir: Path) -> Settings:
    """`lxa backtest`'s settings: everything under the report directory, no outside service."""
    return backtest_settings(
        load_settings(), report_dir=report_dir, markets=markets_in(candles), model_dir=model_dir
    )


def time_engine(
    candles: pd.DataFrame, model_dir: Path, minutes: int | None
) -> tuple[Figure, Figure, dict[str, Any]]:
    """Run `app.backtest.simulate` once; time its bar loop and the whole call."""
    marks: list[tuple[float, float]] = []  # (wall, CPU) at the end of each bar

    def progress(index: int, total: int, _llm: Any) -> None:
        marks.append((time.perf_counter(), time.process_time()))

    with tempfile.TemporaryDirectory(prefix="lxa-bench-backtest-") as tmp:
        report_dir = Path(tmp)
        settings = engine_settings(candles, report_dir, model_dir)
        closes = asyncio.run(collect_closes(candles))
        started = time.perf_counter()
        result = asyncio.run(
            simulate(settings, closes, report_dir=report_dir, minutes=minutes, on_progress=progress)
        )
        call_s = time.perf_counter() - started
    markets = len(settings.markets)
    traded = len(result.equity)
    (first_wall, first_cpu), (last_wall, last_cpu) = marks[0], marks[-1]
    loop = Figure("engine", max(traded - 1, 1), markets, last_wall - first_wall)
    call = Figure("engine_call", traded, markets, call_s)
    summary = result.summary
    took = {
        "loop_cpu_s": round(last_cpu - first_cpu, 3),
        "buys": summary["buys"],
        "sells": summary["sells"],
        "holds": summary["holds"],
        "mean_cycle_ms": round(summary["mean_cycle_ms"], 3),
    }
    return loop, call, took


# -- the fast path -------------------------------------------------------------------------------


def time_fast(
    candles: pd.DataFrame,
    predictor: Predictor,
    settings: Settings,
    params: PolicyParams,
    repeats: int,
    bars: int | None,
) -> tuple[Figure, float, Prepared, Prepared, dict[str, Any]]:
    """Time `prepare` once and `policy.simulate.simulate` (best of `repeats`, compiled first).

    Returns the figure, prepare's seconds, all prepared closes and the ones simulated.
    """
    started = time.perf_counter()
    everything = prepare(candles, predictor, settings)
    prepare_s = time.perf_counter() - started
    prepared = everything
    if bars is not None:
        prepared = everything.head(min(bars, len(everything.arrays)))
    sim_settings = simulation_settings(settings)
    fast_simulate(prepared.arrays, params, sim_settings)  # numba: compile or load the cache
    seconds, result = best_of(repeats, lambda: fast_simulate(prepared.arrays, params, sim_settings))
    arrays = prepared.arrays
    figure = Figure("fast", len(arrays), len(arrays.markets), seconds)
    took = {"entries": result.entries, "total_return": round(result.total_return, 6)}
    return figure, prepare_s, everything, prepared, took


# -- the reference: backtesting.py ----------------------------------------------------------------


def reference_frames(prepared: Prepared) -> list[pd.DataFrame]:
    """Each market's real bars of the traded span, with the precomputed expected return."""
    arrays = prepared.arrays
    index = pd.to_datetime(arrays.bar_minute, unit="m")
    frames = []
    for m in range(len(arrays.markets)):
        real = arrays.has_bar[:, m]
        frames.append(
            pd.DataFrame(
                {
                    "Open": arrays.open[real, m],
                    "High": arrays.high[real, m],
                    "Low": arrays.low[real, m],
                    "Close": arrays.close[real, m],
                    "Volume": arrays.volume[real, m],
                    "Signal": arrays.expected[real, m],
                },
                index=index[real],
            )
        )
    return [frame for frame in frames if len(frame)]


def time_reference(
    prepared: Prepared, params: PolicyParams, repeats: int
) -> tuple[Figure, dict[str, Any]]:
    """Run backtesting.py over every market's bars; best of `repeats` for the whole set."""
    from backtesting import Backtest, Strategy

    class SignalThreshold(Strategy):
        """Enter above the entry threshold, exit below the exit threshold (the policy's core)."""

        entry = params.entry_threshold
        exit = params.exit_threshold

        def init(self) -> None:
            pass

        def next(self) -> None:
            signal = self.data.Signal[-1]
            if self.position:
                if signal < self.exit:
                    self.position.close()
            elif signal > self.entry:
                self.buy()

    frames = reference_frames(prepared)
    tests = [
        Backtest(
            frame,
            SignalThreshold,
            cash=REFERENCE_CASH,
            commission=float(FEE_RATE),
            finalize_trades=True,
        )
        for frame in frames
    ]

    def run_all() -> list[Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [test.run() for test in tests]

    seconds, stats = best_of(repeats, run_all)
    rows = sum(len(frame) for frame in frames)
    figure = Figure("reference", len(prepared.arrays), len(frames), seconds, market_bars=rows)
    took = {"trades": int(sum(int(s["# Trades"]) for s in stats))}
    return figure, took


# -- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--candles", type=Path, default=CANDLES, help="bars of both paths")
    parser.add_argument(
        "--fast-candles",
        type=Path,
        default=None,
        help="other bars for the fast path (e.g. ../shared/data/candles_upbit_1m.parquet)",
    )
    parser.add_argument("--model", type=Path, default=None, help="model set (default: bundled)")
    parser.add_argument(
        "--minutes", type=int, default=None, help="engine bar closes after warm-up (default all)"
    )
    parser.add_argument(
        "--fast-bars", type=int, default=None, help="fast-path bar closes (default all)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="best of, fast path and reference")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser.parse_args(argv)


def _ratio(figure: Figure, reference: Figure) -> float:
    return figure.per_second / reference.per_second


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if (args.minutes is not None and args.minutes < 2) or args.repeats < 1:
        raise SystemExit("--minutes must be at least 2 and --repeats at least 1")
    model_dir = args.model or latest_model_dir(BUNDLED_MODELS)
    if model_dir is None:
        raise SystemExit(f"no model set under {BUNDLED_MODELS}")
    predictor = Predictor.load(model_dir)
    candles = load_candles([args.candles])
    settings = engine_settings(candles, Path(tempfile.gettempdir()), model_dir)
    params = policy_params_from(settings, predictor.meta)

    engine, engine_call, engine_took = time_engine(candles, model_dir, args.minutes)
    traded = engine_call.bar_closes
    fast_source = candles
    fast_settings = settings
    if args.fast_candles is not None:
        fast_source = load_candles([args.fast_candles])
        fast_settings = settings.model_copy(update={"markets": markets_in(fast_source)})
    fast, prepare_s, fast_all, fast_prepared, fast_took = time_fast(
        fast_source, predictor, fast_settings, params, args.repeats, args.fast_bars
    )
    # The reference runs on each path's own bars: the engine's traded span, the fast path's.
    engine_all = fast_all if args.fast_candles is None else prepare(candles, predictor, settings)
    engine_prepared = engine_all.head(min(traded, len(engine_all.arrays)))
    reference, reference_took = time_reference(engine_prepared, params, args.repeats)
    same_span = args.fast_candles is None and len(fast_prepared.arrays) == len(
        engine_prepared.arrays
    )
    fast_reference, fast_reference_took = (
        (reference, reference_took)
        if same_span
        else time_reference(fast_prepared, params, args.repeats)
    )

    header = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    report: dict[str, Any] = {
        "benchmark": "backtest",
        **header,
        "model": predictor.model_id,
        "candles": str(args.candles),
        "fast_candles": str(args.fast_candles or args.candles),
        "warmup_bars": WARMUP_BARS,
        "engine_bar_closes": engine.bar_closes,
        "engine_markets": engine.markets,
        "engine_market_bars_per_s": round(engine.per_second, 1),
        "engine_call_market_bars_per_s": round(engine_call.per_second, 1),
        "engine_call_s": round(engine_call.seconds, 3),
        "engine_ratio_vs_reference": round(_ratio(engine, reference), 5),
        "engine_took": engine_took,
        "fast_bar_closes": fast.bar_closes,
        "fast_markets": fast.markets,
        "fast_market_bars_per_s": round(fast.per_second, 1),
        "fast_simulate_s": round(fast.seconds, 6),
        "fast_prepare_s": round(prepare_s, 3),
        "fast_ratio_vs_reference": round(_ratio(fast, fast_reference), 3),
        "fast_took": fast_took,
        "reference_market_bars_per_s": round(reference.per_second, 1),
        "reference_market_bars": reference.count,
        "reference_took": reference_took,
        "fast_reference_market_bars_per_s": round(fast_reference.per_second, 1),
        "fast_reference_took": fast_reference_took,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"backtest  {header['date']}  Python {header['python']}  {header['cpus']} CPUs  "
        f"{header['platform']}"
    )
    print(
        f"model {predictor.model_id}; candles {args.candles.name}"
        + (f", fast path on {args.fast_candles.name}" if args.fast_candles else "")
        + f"; {WARMUP_BARS} warm-up closes not counted"
    )
    print()
    print(
        f"{'path':<34} {'closes':>8} {'mkts':>4} {'seconds':>10} {'market-bars/s':>14} {'ratio':>9}"
    )
    rows = [
        ("backtesting.py (engine's bars)", reference, reference),
        ("engine: bar loop", engine, reference),
        ("engine: simulate() call", engine_call, reference),
    ]
    if fast_reference is not reference:
        rows.append(("backtesting.py (fast path's bars)", fast_reference, fast_reference))
    rows.append(("fast: policy.simulate", fast, fast_reference))
    for label, figure, against in rows:
        print(
            f"{label:<34} {figure.bar_closes:>8} {figure.markets:>4} {figure.seconds:>10.4f} "
            f"{figure.per_second:>14,.0f} {_ratio(figure, against):>8.3f}x"
        )
    print(f"{'fast: prepare (once)':<34} {'':>8} {'':>4} {prepare_s:>10.3f}")
    print()
    print(
        "ratio = market-bars/s / backtesting.py's on the same bars; "
        f"engine: {engine_took['buys']} buys, {engine_took['sells']} sells, holds "
        f"{engine_took['holds']}; fast: {fast_took['entries']} entries; backtesting.py: "
        f"{reference_took['trades']} trades"
    )
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
