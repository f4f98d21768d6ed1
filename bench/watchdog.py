"""Watchdog detectors: numba batch against the pandas reference, and the streaming cost per tick.

Data (default): SYNTHETIC random-walk ticks generated here for 4 markets (10 million ticks in
all, exponential gaps of 50 ms on average, log-normal volumes, with a few injected 2% crashes
and x10 volume bursts so both detectors fire). ``--real`` instead derives ticks from the shared
real Upbit 1-minute candles (4 ticks per candle, see ``candles_to_ticks``) and repeats them,
each copy shifted past the previous one, up to ``--ticks``.

Reports:

* ``flags_identical``: ``detect_batch`` (numba, markets in parallel) against
  ``reference_flags`` (pandas rolling windows) on the same ticks, all of them.
* ``batch_ratio_vs_pandas``: pandas seconds / numba seconds on the same ticks in the same run
  (numba compiled before timing; best of ``--repeats`` for each).
* ``stream_p50_us`` / ``stream_p99_us``: one tick at a time from Python, each a trade message in
  Upbit's JSON field names, parsed (orjson when installed, else json) and fed to
  ``Watchdog.on_tick``; ``stream_flags_identical`` checks the streamed levels against the batch.
* ``tick_to_order_p50_ms`` / ``tick_to_order_p99_ms``: the live stack (``open_services`` with
  ``LXA_LIVE``: the engine, the risk guard, the order manager that journals the order intent to
  SQLite first, ``UpbitExchange`` with its order lane) against the local fake Upbit REST server
  (``tests/exchange/fake_upbit.py``, JWT checked) running in its own process, as an exchange
  does (in-process its server thread would take our GIL mid-send). Clock starts when the raw
  trade message is in hand, before parsing; it stops when the POST /v1/orders bytes are handed
  to the socket (the order lane's ``on_sent``; httpx's ``trace`` hook should a sell go through
  httpx instead, counted in ``tick_to_order_via_httpx``), i.e. when the sell has left the
  process. In between: parse, the watchdog, the engine's trigger handling (the balance from
  the account read at the last bar close, as in a running engine, when no order moved money
  since), the guard, the journaled intent, signing. The start-up heap is frozen first, as
  ``lxa run`` does (``app.live.settle_heap``). ``--order-samples`` sells (spaced out so
  Upbit's order rate limit never makes one wait; the wait would not be the watchdog's cost).

Run from the project root: ``.venv/bin/python bench/watchdog.py [--real] [--ticks N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exchange.watchdog import (  # noqa: E402
    DROP,
    VOLUME_SPIKE,
    Watchdog,
    WatchdogConfig,
    candles_to_ticks,
    detect_batch,
    reference_flags,
)

try:
    import orjson

    PARSER = "orjson"
    loads: Callable[[str | bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    PARSER = "json"
    loads = json.loads

MARKETS = ("KRW-BTC", "KRW-ETH", "KRW-XRP", "KRW-SOL")
START_PRICE = {
    "KRW-BTC": 150_000_000.0,
    "KRW-ETH": 6_000_000.0,
    "KRW-XRP": 4_000.0,
    "KRW-SOL": 300_000.0,
}
T0 = 1_756_684_800_000
CANDLES_1M = ROOT.parent / "shared" / "data" / "candles_upbit_1m.parquet"


def synthetic_ticks(n_ticks: int, seed: int) -> pd.DataFrame:
    """SYNTHETIC: random-walk ticks per market, grouped by market, with crashes and bursts."""
    rng = np.random.default_rng(seed)
    per_market = n_ticks // len(MARKETS)
    frames = []
    for market in MARKETS:
        gaps = rng.exponential(50.0, per_market)
        ts = T0 + np.cumsum(gaps).astype(np.int64)
        steps = rng.normal(0.0, 5e-5, per_market)
        volume = rng.lognormal(-2.0, 1.0, per_market)
        for start in rng.integers(0, per_market - 5000, 6):  # crashes: -2.5% over ~1 minute
            steps[start : start + 1200] -= 0.025 / 1200
        for start in rng.integers(0, per_market - 8000, 6):  # bursts: x10 volume for ~5 minutes
            volume[start : start + 6000] *= 10.0
        price = START_PRICE[market] * np.exp(np.cumsum(steps))
        frames.append(
            pd.DataFrame({"market": market, "ts_ms": ts, "price": price, "volume": volume})
        )
    return pd.concat(frames, ignore_index=True)


def real_ticks(n_ticks: int) -> pd.DataFrame:
    """Ticks derived from the shared real 1m candles, repeated (shifted in time) to n_ticks."""
    if not CANDLES_1M.exists():
        raise SystemExit(f"--real needs {CANDLES_1M}")
    base = candles_to_ticks(pd.read_parquet(CANDLES_1M))
    span = int(base["ts_ms"].max() - base["ts_ms"].min()) + 86_400_000
    copies = -(-n_ticks // len(base))
    frames = []
    for market, rows in base.groupby("market", sort=False).indices.items():
        one = base.iloc[rows]
        per = [one.assign(ts_ms=one["ts_ms"] + k * span) for k in range(copies)]
        frames.append(pd.concat(per, ignore_index=True).assign(market=market))
    ticks = pd.concat(frames, ignore_index=True)
    keep = np.zeros(len(ticks), dtype=bool)  # trim each market evenly to n_ticks in all
    for rows in ticks.groupby("market", sort=False).indices.values():
        keep[rows[: n_ticks // len(MARKETS)]] = True
    return ticks[keep].reset_index(drop=True)


def best_of(repeats: int, fn: Callable[[], np.ndarray]) -> tuple[float, np.ndarray]:
    best = float("inf")
    result = np.empty(0)
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def stream_messages(ticks: pd.DataFrame, n: int) -> tuple[list[bytes], pd.DataFrame]:
    """The first n ticks in time order across markets, as Upbit-style trade JSON messages."""
    per_market = n // len(MARKETS)
    head = pd.concat(
        [
            ticks.iloc[rows[:per_market]]
            for rows in ticks.groupby("market", sort=False).indices.values()
        ]
    )
    head = head.sort_values("ts_ms", kind="stable").reset_index(drop=True)
    messages = [
        json.dumps(
            {
                "type": "trade",
                "code": market,
                "trade_price": float(price),
                "trade_volume": float(volume),
                "ask_bid": "BID" if i % 2 else "ASK",
                "trade_timestamp": int(ts),
                "timestamp": int(ts) + 3,
                "sequential_id": int(ts) * 1000 + i % 1000,
                "stream_type": "REALTIME",
            }
        ).encode()
        for i, (market, ts, price, volume) in enumerate(
            zip(head["market"], head["ts_ms"], head["price"], head["volume"], strict=True)
        )
    ]
    return messages, head


def run_stream(messages: list[bytes], config: WatchdogConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Feed each message (parse + on_tick) and time it; return per-tick ns, levels, triggers."""
    watchdog = Watchdog(MARKETS, config)
    levels = watchdog._tick_flags
    elapsed = np.empty(len(messages), dtype=np.int64)
    flags = np.empty(len(messages), dtype=np.uint8)
    triggers = 0
    clock = time.perf_counter_ns
    on_tick = watchdog.on_tick
    for i, raw in enumerate(messages):
        start = clock()
        msg = loads(raw)
        trigger = on_tick(
            msg["code"], msg["trade_timestamp"], msg["trade_price"], msg["trade_volume"]
        )
        elapsed[i] = clock() - start
        if trigger is not None:
            triggers += 1
        flags[i] = levels[msg["code"]]
    return elapsed, flags, triggers


def serve_fake() -> None:
    """Child process (``--serve-fake``): run the fake Upbit, apply the parent's calls to it.

    Calls arrive pickled on stdin, as ``(name, args, kwargs)``; results go back pickled on stdout.
    """
    import pickle

    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "exchange")]
    from fake_upbit import FakeUpbit

    kwargs = pickle.load(sys.stdin.buffer)
    out = sys.stdout.buffer
    with FakeUpbit(**kwargs) as fake:
        pickle.dump(fake.base_url, out)
        out.flush()
        while (call := pickle.load(sys.stdin.buffer)) is not None:
            name, args, kwargs = call
            pickle.dump(getattr(fake, name)(*args, **kwargs), out)
            out.flush()


class FakeUpbitProcess:
    """The fake Upbit in its own process, as the exchange is: it must not share our GIL.

    In-process, the server's thread takes the GIL the moment the request's bytes arrive and
    holds it while it handles the order, and that shows up as time spent inside our own send.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._child: Any = None
        self.base_url = ""

    def __enter__(self) -> FakeUpbitProcess:
        import subprocess

        self._child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-fake"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.base_url = self._send(self._kwargs)
        return self

    def __exit__(self, *exc_info: object) -> None:
        import pickle

        assert self._child is not None
        pickle.dump(None, self._child.stdin)
        self._child.stdin.close()
        self._child.wait(10)

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call `FakeUpbit.<name>(*args, **kwargs)` in the child and return its result."""
        return self._send((name, args, kwargs))

    def _send(self, message: Any) -> Any:
        import pickle

        assert self._child is not None
        pickle.dump(message, self._child.stdin)
        self._child.stdin.flush()
        return pickle.load(self._child.stdout)


async def _tick_to_order(samples: int, work_dir: Path) -> tuple[np.ndarray, int]:
    """Milliseconds from raw trade message to the emergency sell leaving the process."""
    import asyncio
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "tests" / "exchange"))
    from fake_upbit import ACCESS_KEY, SECRET_KEY

    from app.live import settle_heap
    from app.settings import Settings
    from app.wiring import BUNDLED_MODELS, open_services
    from exchange.upbit import UpbitExchange
    from ml.registry import latest_model_dir

    market, price = "KRW-BTC", 150_000_000.0
    stamps: list[float] = []
    elapsed: list[float] = []
    via_httpx: list[int] = []  # sells that went through httpx (the lane busy or not open)
    with FakeUpbitProcess(krw=Decimal(1_000_000)) as fake:
        fake.call("set_price", market, Decimal(int(price * 0.97)), size=Decimal(100))
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=work_dir,
            checkpoint_url="memory",
            model_dir=latest_model_dir(BUNDLED_MODELS),
            markets=[market],
            live=True,
            upbit_access_key=ACCESS_KEY,
            upbit_secret_key=SECRET_KEY,
            upbit_rest_url=fake.base_url,
        )
        async with open_services(
            settings, session_id="bench", account_path=work_dir / "unused.json"
        ) as services:
            venue = services.exchange
            assert isinstance(venue, UpbitExchange)
            http = venue.client._http
            send = http.send

            async def traced_send(request: Any, **kwargs: Any) -> Any:
                if request.method == "POST" and request.url.path == "/v1/orders":

                    async def trace(name: str, _info: Any) -> None:
                        if name.endswith("send_request_body.complete"):
                            stamps.append(time.perf_counter())
                            via_httpx.append(len(stamps))

                    request.extensions["trace"] = trace
                return await send(request, **kwargs)

            http.send = traced_send  # type: ignore[method-assign]
            lane = venue.client.lane
            if lane is not None:  # urgent orders go out on the order lane while it is open
                lane.on_sent = lambda: stamps.append(time.perf_counter())
            engine = services.engine
            settle_heap()  # as `lxa run` does once its services are up (app/live.py)
            start = datetime(2026, 1, 1, tzinfo=UTC)
            for i in range(samples + 5):  # the first 5 warm up connections and caches
                fake.call("set_balance", "BTC", Decimal("0.001"), Decimal(int(price)))
                await venue.get_account()  # as the engine does at every bar close
                engine.watchdog = Watchdog([market], WatchdogConfig())
                ts = start + timedelta(minutes=10 * i)
                await engine.on_tick(market, ts, price, 0.01)
                crash = {
                    "type": "trade",
                    "code": market,
                    "trade_price": price * 0.985,
                    "trade_volume": 0.02,
                    "ask_bid": "ASK",
                    "trade_timestamp": int((ts + timedelta(seconds=20)).timestamp() * 1000),
                    "sequential_id": i,
                }
                raw = json.dumps(crash).encode()
                before = len(stamps)
                t0 = time.perf_counter()
                msg = loads(raw)
                tick_ts = datetime.fromtimestamp(msg["trade_timestamp"] / 1000, UTC)
                await engine.on_tick(msg["code"], tick_ts, msg["trade_price"], msg["trade_volume"])
                if len(stamps) != before + 1:
                    raise RuntimeError(f"sample {i}: the crash sent {len(stamps) - before} sells")
                if i >= 5:
                    elapsed.append((stamps[-1] - t0) * 1000.0)
                await asyncio.sleep(0.2)  # well under Upbit's 8 orders per second (window 1.05 s)
    return np.asarray(elapsed), sum(1 for n in via_httpx if n > 5)


def tick_to_order(samples: int) -> tuple[np.ndarray, int]:
    """Run `_tick_to_order` in a fresh temporary directory: (milliseconds, sells via httpx)."""
    import asyncio
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return asyncio.run(_tick_to_order(samples, Path(tmp)))


def _ms_stat(values: np.ndarray, percentile: float) -> float | None:
    return round(float(np.percentile(values, percentile)), 3) if values.size else None


def codes_of(ticks: pd.DataFrame) -> np.ndarray:
    codes, _ = pd.factorize(ticks["market"], sort=False)
    return codes.astype(np.int32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=10_000_000)
    parser.add_argument("--real", action="store_true", help="ticks derived from real 1m candles")
    parser.add_argument("--stream-ticks", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--order-samples", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--serve-fake", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_fake:
        serve_fake()
        return
    config = WatchdogConfig()

    ticks = real_ticks(args.ticks) if args.real else synthetic_ticks(args.ticks, args.seed)
    codes = codes_of(ticks)
    ts = ticks["ts_ms"].to_numpy(np.int64)
    price = ticks["price"].to_numpy(np.float64)
    volume = ticks["volume"].to_numpy(np.float64)

    warm = slice(0, 1000)
    detect_batch(codes[warm], ts[warm], price[warm], volume[warm], config)  # compile / load cache
    batch_s, flags = best_of(args.repeats, lambda: detect_batch(codes, ts, price, volume, config))
    pandas_s, reference = best_of(args.repeats, lambda: reference_flags(ticks, config))
    identical = bool(np.array_equal(flags, reference))

    messages, head = stream_messages(ticks, args.stream_ticks)
    warm_messages, _ = stream_messages(ticks.iloc[-20_000:], 4_000)
    run_stream(warm_messages, config)  # warm the dispatcher and caches
    elapsed, stream_flags, stream_triggers = run_stream(messages, config)
    head_sorted = head.sort_values("market", kind="stable")  # group by market for the batch
    head_flags = np.empty(len(head), dtype=np.uint8)
    head_flags[head_sorted.index.to_numpy()] = detect_batch(
        codes_of(head_sorted),
        head_sorted["ts_ms"].to_numpy(np.int64),
        head_sorted["price"].to_numpy(np.float64),
        head_sorted["volume"].to_numpy(np.float64),
        config,
    )
    micros = elapsed / 1000.0
    order_ms, via_httpx = (
        tick_to_order(args.order_samples) if args.order_samples > 0 else (np.empty(0), 0)
    )

    result = {
        "data": "real candles -> derived ticks, repeated" if args.real else "synthetic random walk",
        "ticks": len(ticks),
        "markets": int(ticks["market"].nunique()),
        "flags_identical": identical,
        "reference_ticks": len(ticks),
        "batch_s": round(batch_s, 4),
        "pandas_s": round(pandas_s, 4),
        "batch_ratio_vs_pandas": round(pandas_s / batch_s, 2),
        "batch_ns_per_tick": round(batch_s * 1e9 / len(ticks), 1),
        "drop_ticks": int(np.count_nonzero(flags & DROP)),
        "volume_spike_ticks": int(np.count_nonzero(flags & VOLUME_SPIKE)),
        "stream_ticks": len(messages),
        "stream_parser": PARSER,
        "stream_p50_us": round(float(np.percentile(micros, 50)), 2),
        "stream_p99_us": round(float(np.percentile(micros, 99)), 2),
        "stream_max_us": round(float(micros.max()), 1),
        "stream_flags_identical": bool(np.array_equal(stream_flags, head_flags)),
        "stream_triggers": stream_triggers,
        "tick_to_order_samples": int(order_ms.size),
        "tick_to_order_p50_ms": _ms_stat(order_ms, 50),
        "tick_to_order_p99_ms": _ms_stat(order_ms, 99),
        "tick_to_order_max_ms": _ms_stat(order_ms, 100),
        "tick_to_order_via_httpx": via_httpx,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    if not args.json:
        rows = [
            ("data", result["data"]),
            ("ticks (markets)", f"{result['ticks']:,} ({result['markets']})"),
            ("flags identical (batch vs pandas, all ticks)", result["flags_identical"]),
            ("numba batch, s (ns/tick)", f"{batch_s:.3f} ({result['batch_ns_per_tick']})"),
            ("pandas reference, s", f"{pandas_s:.3f}"),
            ("batch ratio vs pandas", f"{result['batch_ratio_vs_pandas']}x"),
            (
                "ticks flagged drop / volume spike",
                f"{result['drop_ticks']:,} / {result['volume_spike_ticks']:,}",
            ),
            (
                f"stream: {PARSER} parse + on_tick, p50 / p99 us",
                f"{result['stream_p50_us']} / {result['stream_p99_us']}",
            ),
            ("stream flags identical to batch", result["stream_flags_identical"]),
            (
                "tick to sell request sent (fake Upbit), p50 / p99 ms",
                f"{result['tick_to_order_p50_ms']} / {result['tick_to_order_p99_ms']}",
            ),
            ("sells that went through httpx, not the lane", result["tick_to_order_via_httpx"]),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
