"""Live feed throughput: raw WebSocket frames -> parse -> 1-minute bars -> watchdog hand-off.

Data: messages DERIVED FROM REAL CANDLES (the shared Upbit 1-minute candles when present, else
the bundled slice): each candle becomes four trade frames in Upbit's DEFAULT field names (open
at +0 s, low/high at +15/+30 s, close at +59 s, a quarter of the volume each, as
``exchange.feed.bar_to_ticks`` derives them) and one orderbook frame whose levels are INVENTED
around the close (no real orderbook data exists), plus a ``{"status":"UP"}`` frame every 50
messages. Frames are bytes, as Upbit sends them.

Each pipeline runs the same frames through ``exchange.upbit_ws.parse_message`` (with the given
JSON decoder), ``exchange.bars.BarBuilder`` (trades and orderbooks) and, for every trade,
``exchange.watchdog.Watchdog.on_tick``, in one Python loop:

* ``orjson``: ``orjson.loads`` (the client's default);
* ``json``: the standard library's ``json.loads`` (C scanner);
* ``pure_python``: the standard library's decoder with its pure-Python scanner and string parser.

All three must build identical bars and see identical watchdog triggers (checked). Reported:
messages/s and MB/s of each (best of ``--repeats``), the ratios orjson/json and
orjson/pure-Python measured in this run, and the parse-only rate of each.

Run from the project root: ``.venv/bin/python bench/feed.py [--messages N] [--json]``.
"""

from __future__ import annotations

import argparse
import json
import json.decoder
import json.scanner
import os
import platform
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exchange.bars import BarBuilder, LiveBarClose  # noqa: E402
from exchange.feed import bar_to_ticks  # noqa: E402
from exchange.rules import tick_size  # noqa: E402
from exchange.types import Bar  # noqa: E402
from exchange.upbit_ws import OrderbookSnapshot, Trade, parse_message  # noqa: E402
from exchange.watchdog import Watchdog, WatchdogConfig  # noqa: E402

SHARED_1M = ROOT.parent / "shared" / "data" / "candles_upbit_1m.parquet"
BUNDLED_1M = ROOT / "app" / "demo" / "candles_upbit_1m_demo.parquet"
STATUS = b'{"status":"UP"}'


def pure_python_loads() -> Callable[[bytes | str], Any]:
    """The standard library's JSON decoder with the C accelerators switched off."""
    decoder = json.JSONDecoder()
    decoder.parse_string = json.decoder.py_scanstring  # type: ignore[attr-defined]
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]

    def loads(raw: bytes | str) -> Any:
        return decoder.decode(raw.decode() if isinstance(raw, bytes) else raw)

    return loads


PARSERS: dict[str, Callable[[bytes | str], Any]] = {
    "orjson": orjson.loads,
    "json": json.loads,
    "pure_python": pure_python_loads(),
}


def load_candles(limit_messages: int) -> tuple[pd.DataFrame, str]:
    path = SHARED_1M if SHARED_1M.exists() else BUNDLED_1M
    frame = pd.read_parquet(path).sort_values(["ts", "market"], kind="stable")
    candles_needed = limit_messages // 5 + 1
    return frame.head(candles_needed).reset_index(drop=True), path.name


def frames_from_candles(candles: pd.DataFrame, limit: int) -> list[bytes]:
    """Trade, orderbook and status frames in time order (see the module docstring)."""
    frames: list[bytes] = []
    last_price: dict[str, float] = {}
    sequence = 0
    for row in candles.itertuples(index=False):
        market = str(row.market)
        ts = pd.Timestamp(row.ts).to_pydatetime()
        bar = Bar(market, ts, row.open, row.high, row.low, row.close, row.volume)
        for tick_ts, price, volume in bar_to_ticks(bar):
            ms = int(tick_ts.timestamp() * 1000)
            sequence += 1
            frames.append(
                orjson.dumps(
                    {
                        "type": "trade",
                        "code": market,
                        "timestamp": ms + 5,
                        "trade_date": tick_ts.strftime("%Y-%m-%d"),
                        "trade_time": tick_ts.strftime("%H:%M:%S"),
                        "trade_timestamp": ms,
                        "trade_price": price,
                        "trade_volume": volume,
                        "ask_bid": "BID" if price >= last_price.get(market, price) else "ASK",
                        "prev_closing_price": row.open,
                        "change": "EVEN",
                        "change_price": 0.0,
                        "sequential_id": ms * 1000 + sequence % 1000,
                        "stream_type": "REALTIME",
                    }
                )
            )
            last_price[market] = price
        tick = tick_size(Decimal(str(row.close)))
        bid = float((Decimal(str(row.close)) // tick) * tick)
        step = float(tick)
        units = [
            {
                "ask_price": bid + step * (k + 1),
                "bid_price": bid - step * k,
                "ask_size": row.volume / 10 * (k + 1),
                "bid_size": row.volume / 10 * (k + 1),
            }
            for k in range(15)
        ]
        frames.append(
            orjson.dumps(
                {
                    "type": "orderbook",
                    "code": market,
                    "timestamp": int(ts.timestamp() * 1000) + 30_000,
                    "total_ask_size": sum(u["ask_size"] for u in units),
                    "total_bid_size": sum(u["bid_size"] for u in units),
                    "orderbook_units": units,
                    "stream_type": "REALTIME",
                    "level": 0,
                }
            )
        )
    out: list[bytes] = []
    for frame in frames:
        if len(out) % 50 == 49:
            out.append(STATUS)
        out.append(frame)
    return out[:limit]


def run_pipeline(
    frames: list[bytes], loads: Callable[[bytes | str], Any], markets: list[str]
) -> tuple[float, list[LiveBarClose], int]:
    """Feed every frame through parse -> bars -> watchdog; return seconds, closes, triggers."""
    builder = BarBuilder(markets)
    watchdog = Watchdog(markets, WatchdogConfig())
    closes: list[LiveBarClose] = []
    triggers = 0
    on_tick = watchdog.on_tick
    add_trade = builder.add_trade
    add_orderbook = builder.add_orderbook
    start = time.perf_counter()
    for raw in frames:
        message = parse_message(raw, loads)
        if type(message) is Trade:
            if on_tick(message.market, message.ts_ms, message.price, message.volume) is not None:
                triggers += 1
            closes.extend(add_trade(message, 0.0))
        elif type(message) is OrderbookSnapshot:
            add_orderbook(message)
    elapsed = time.perf_counter() - start
    return elapsed, closes, triggers


def parse_only(frames: list[bytes], loads: Callable[[bytes | str], Any]) -> float:
    start = time.perf_counter()
    for raw in frames:
        parse_message(raw, loads)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    args = parser.parse_args()

    candles, source = load_candles(args.messages)
    frames = frames_from_candles(candles, args.messages)
    markets = sorted(candles["market"].unique().tolist())
    total_bytes = sum(len(f) for f in frames)
    run_pipeline(frames[:2000], orjson.loads, markets)  # numba kernels compiled / loaded

    best: dict[str, float] = {}
    parse_best: dict[str, float] = {}
    outputs: dict[str, tuple[list[tuple[Any, ...]], int]] = {}
    for _ in range(args.repeats):
        for name, loads in PARSERS.items():
            elapsed, closes, triggers = run_pipeline(frames, loads, markets)
            best[name] = min(best.get(name, float("inf")), elapsed)
            digest = [
                (c.ts, m, b.open, b.high, b.low, b.close, b.volume)
                for c in closes
                for m, b in c.bars.items()
            ]
            outputs[name] = (digest, triggers)
            parse_best[name] = min(parse_best.get(name, float("inf")), parse_only(frames, loads))
    identical = outputs["orjson"] == outputs["json"] == outputs["pure_python"]

    def rate(name: str) -> float:
        return len(frames) / best[name]

    result = {
        "data": f"messages derived from real Upbit 1m candles ({source}); "
        "orderbook levels invented",
        "messages": len(frames),
        "trades": sum(1 for f in frames if f.startswith(b'{"type":"trade"')),
        "bytes": total_bytes,
        "bars_closed": len(outputs["orjson"][0]),
        "watchdog_triggers": outputs["orjson"][1],
        "identical_bars_and_triggers": identical,
        "pipeline_msgs_per_s": {name: round(rate(name)) for name in PARSERS},
        "pipeline_mb_per_s": {name: round(total_bytes / best[name] / 1e6, 2) for name in PARSERS},
        "parse_only_msgs_per_s": {name: round(len(frames) / parse_best[name]) for name in PARSERS},
        "ratio_orjson_vs_json": round(best["json"] / best["orjson"], 2),
        "ratio_orjson_vs_pure_python": round(best["pure_python"] / best["orjson"], 2),
        "parse_only_ratio_orjson_vs_json": round(parse_best["json"] / parse_best["orjson"], 2),
        "parse_only_ratio_orjson_vs_pure_python": round(
            parse_best["pure_python"] / parse_best["orjson"], 2
        ),
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    }
    if not args.json:
        rows = [
            ("data", result["data"]),
            (
                "frames (trades), MB",
                f"{len(frames):,} ({result['trades']:,}), {total_bytes / 1e6:.1f}",
            ),
            (
                "bars closed / watchdog triggers",
                f"{result['bars_closed']:,} / {result['watchdog_triggers']}",
            ),
            ("identical bars and triggers (3 parsers)", identical),
        ]
        for name in PARSERS:
            rows.append(
                (
                    f"{name}: parse -> bar -> watchdog, msgs/s (MB/s)",
                    f"{rate(name):,.0f} ({result['pipeline_mb_per_s'][name]})",
                )
            )
        for name in PARSERS:
            rows.append(
                (f"{name}: parse only, msgs/s", f"{result['parse_only_msgs_per_s'][name]:,}")
            )
        rows += [
            ("pipeline ratio orjson vs json", f"{result['ratio_orjson_vs_json']}x"),
            ("pipeline ratio orjson vs pure Python", f"{result['ratio_orjson_vs_pure_python']}x"),
            ("parse-only ratio orjson vs json", f"{result['parse_only_ratio_orjson_vs_json']}x"),
            (
                "parse-only ratio orjson vs pure Python",
                f"{result['parse_only_ratio_orjson_vs_pure_python']}x",
            ),
        ]
        width = max(len(name) for name, _ in rows)
        for name, value in rows:
            print(f"{name:<{width}}  {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
