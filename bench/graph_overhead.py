"""What LangGraph and its checkpointers cost per decision cycle, against a bare function call.

One cycle is the engine's graph run for one closed bar: the bundled LightGBM model scores the
four demo markets from features computed out of the bundled real candles, the rule-based
reviewers (instant, no I/O) check the proposal, and a paper exchange in memory fills the
order. The graph is run with a fresh thread id per cycle (as the engine does) through the
in-memory, SQLite and Postgres checkpointers; the reference is a plain coroutine that calls
the same node functions, with the same routing, and merges their updates into a dict.

Two paths are timed, each over the same set of real feature snapshots:

* hold: the model's own decision thresholds; only snapshots where ML proposes nothing, so
  the run is ml_signal -> hold.
* full: entry threshold 0.0, and only snapshots where every step agrees, so the run is
  ml_signal -> groq_check -> ollama_check -> sizing -> trade and places a paper buy.

Run from the project root: ``.venv/bin/python bench/graph_overhead.py [--cycles N] [--json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from exchange.paper import PaperExchange  # noqa: E402
from exchange.types import Bar  # noqa: E402
from graph.builder import build_graph  # noqa: E402
from graph.checkpoint import open_checkpointer, postgres_conninfo  # noqa: E402
from graph.context import Context, TradingPolicy  # noqa: E402
from graph.routing import (  # noqa: E402
    after_groq_check,
    after_ml_signal,
    after_ollama_check,
    after_sizing,
)
from llm.rule_based import (  # noqa: E402
    RuleBasedMoodReviewer,
    RuleBasedSizer,
    RuleBasedTechnicalReviewer,
)
from ml.data import load_candles  # noqa: E402
from ml.features import LiveFeatures  # noqa: E402
from ml.predict import Predictor  # noqa: E402
from ml.registry import latest_model_dir  # noqa: E402
from nodes.groq_check import groq_check  # noqa: E402
from nodes.hold import hold  # noqa: E402
from nodes.ml_signal import ml_signal  # noqa: E402
from nodes.ollama_check import ollama_check  # noqa: E402
from nodes.sizing import sizing  # noqa: E402
from nodes.trade import trade  # noqa: E402
from policy.params import PolicyParams  # noqa: E402

CANDLES = ROOT / "app" / "demo" / "candles_upbit_1m_demo.parquet"
MODELS = ROOT / "app" / "demo" / "model"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
FULL_PATH = ("ml_signal", "groq_check", "ollama_check", "sizing", "trade")
HOLD_PATH = ("ml_signal", "hold")
# The account the state shows (what sizing sizes from). The paper exchange behind it holds far
# more, so hundreds of buys never run it dry and every full-path cycle really places an order.
ACCOUNT_KRW = Decimal(10_000_000)
EXCHANGE_KRW = Decimal(10) ** 15

Node = Callable[..., Any]
NODES: dict[str, Node] = {
    "ml_signal": ml_signal,
    "groq_check": groq_check,
    "ollama_check": ollama_check,
    "sizing": sizing,
    "trade": trade,
    "hold": hold,
}
Cycle = Callable[[dict[str, Any]], Awaitable[tuple[tuple[str, ...], str]]]
ROUTERS: dict[str, Callable[[Any], str]] = {
    "ml_signal": after_ml_signal,
    "groq_check": after_groq_check,
    "ollama_check": after_ollama_check,
    "sizing": after_sizing,
}


@dataclass(frozen=True)
class Snapshot:
    """One bar close across the markets: the bars (for the exchange marks) and the features."""

    bar_ts: datetime
    bars: tuple[Bar, ...]
    markets: dict[str, dict[str, Any]]


@dataclass
class Scenario:
    name: str
    path: tuple[str, ...]
    context: Context
    snapshots: list[Snapshot]


# -- inputs -------------------------------------------------------------------------------------


def feature_snapshots() -> list[Snapshot]:
    """Feed the demo candles bar by bar into LiveFeatures and keep every warmed-up snapshot."""
    candles = load_candles([CANDLES])
    markets = sorted(candles["market"].unique())
    live = {m: LiveFeatures() for m in markets}
    closes: dict[str, float] = {}
    snapshots: list[Snapshot] = []
    for ts, group in candles.groupby("ts", sort=True):
        bars = []
        for row in group.itertuples(index=False):
            bar_ts = ts.to_pydatetime()
            live[row.market].update(bar_ts, row.open, row.high, row.low, row.close, row.volume)
            closes[row.market] = float(row.close)
            bars.append(Bar(row.market, bar_ts, row.open, row.high, row.low, row.close, row.volume))
        rows = {m: live[m].latest() for m in markets}
        if any(r is None for r in rows.values()) or len(closes) < len(markets):
            continue
        snapshots.append(
            Snapshot(
                bar_ts=ts.to_pydatetime(),
                bars=tuple(bars),
                markets={
                    m: {"close": closes[m], "features": rows[m], "blocked": None} for m in markets
                },
            )
        )
    return snapshots


def initial_state(snapshot: Snapshot, run_id: str) -> dict[str, Any]:
    """The engine's cycle input: no open position, ACCOUNT_KRW free."""
    return {
        "run_id": run_id,
        "trigger": "bar",
        "bar_ts": snapshot.bar_ts.astimezone(UTC).isoformat(),
        "markets": snapshot.markets,
        "account": {"krw": str(ACCOUNT_KRW), "equity": str(ACCOUNT_KRW), "positions": {}},
        "recent_results": [],
        "events": [],
    }


def mark(exchange: PaperExchange, snapshot: Snapshot) -> None:
    """Mark the exchange at the snapshot's closes, as the engine does before a cycle."""
    for bar in snapshot.bars:
        exchange.on_bar(bar)


# -- the two ways to run a cycle ----------------------------------------------------------------


async def bare_cycle(state: dict[str, Any], context: Context) -> tuple[dict[str, Any], list[str]]:
    """Call the node functions directly in graph order, merging their partial updates."""
    runtime = SimpleNamespace(context=context)
    values = dict(state)
    values["events"] = list(state.get("events", []))
    visited: list[str] = []
    node = "ml_signal"
    while True:
        visited.append(node)
        function = NODES[node]
        update = function(values) if node == "hold" else await function(values, runtime)
        for key, value in update.items():
            if key == "events":
                values["events"] = values["events"] + value
            else:
                values[key] = value
        if node in ("trade", "hold"):
            return values, visited
        node = ROUTERS[node](values)


def select(
    snapshots: list[Snapshot], context: Context, path: tuple[str, ...], want: int, tag: str
) -> list[Snapshot]:
    """Keep the first `want` snapshots whose cycle takes `path` under `context`."""

    async def scan() -> list[Snapshot]:
        chosen: list[Snapshot] = []
        exchange = context.exchange
        assert isinstance(exchange, PaperExchange)
        for i, snapshot in enumerate(snapshots):
            mark(exchange, snapshot)
            final, visited = await bare_cycle(initial_state(snapshot, f"{tag}-{i}"), context)
            if tuple(visited) == path and (
                path != FULL_PATH or final["decision"]["reason"] == "agreed"
            ):
                chosen.append(snapshot)
                if len(chosen) == want:
                    break
        return chosen

    return asyncio.run(scan())


# -- timing -------------------------------------------------------------------------------------


@dataclass
class Row:
    checkpointer: str
    path: str
    samples_ns: list[int]
    bare_mean_ms: float | None = None

    @property
    def mean_ms(self) -> float:
        return sum(self.samples_ns) / len(self.samples_ns) / 1e6

    def pct_ms(self, q: float) -> float:
        ordered = sorted(self.samples_ns)
        rank = max(1, math.ceil(q * len(ordered)))  # nearest rank
        return ordered[rank - 1] / 1e6

    @property
    def ratio(self) -> float:
        return self.mean_ms / self.bare_mean_ms if self.bare_mean_ms else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "checkpointer": self.checkpointer,
            "path": self.path,
            "cycles": len(self.samples_ns),
            "mean_ms": round(self.mean_ms, 4),
            "p50_ms": round(self.pct_ms(0.50), 4),
            "p99_ms": round(self.pct_ms(0.99), 4),
            "ratio": round(self.ratio, 3),
        }


class RunIds:
    """Unique run ids (thread ids and order identifiers) across the whole benchmark."""

    def __init__(self) -> None:
        self.prefix = f"bench-{os.getpid()}-{time.time_ns()}"
        self.count = 0
        self.used: list[str] = []

    def __call__(self) -> str:
        self.count += 1
        run_id = f"{self.prefix}-{self.count}"
        self.used.append(run_id)
        return run_id


async def measure(
    scenario: Scenario,
    cycle: Cycle,
    run_ids: RunIds,
    cycles: int,
    warmup: int,
) -> list[int]:
    """Time `cycles` cycles (after `warmup` untimed ones); check each took the expected path."""
    exchange = scenario.context.exchange
    assert isinstance(exchange, PaperExchange)
    samples: list[int] = []
    for i in range(warmup + cycles):
        snapshot = scenario.snapshots[i % len(scenario.snapshots)]
        mark(exchange, snapshot)
        state = initial_state(snapshot, run_ids())
        started = time.perf_counter_ns()
        visited, reason = await cycle(state)
        elapsed = time.perf_counter_ns() - started
        if visited != scenario.path or (scenario.path == FULL_PATH and reason != "agreed"):
            raise RuntimeError(
                f"{scenario.name}: expected {scenario.path}, ran {visited} ({reason})"
            )
        if i >= warmup:
            samples.append(elapsed)
    return samples


def bare_runner(context: Context) -> Cycle:
    async def run(state: dict[str, Any]) -> tuple[tuple[str, ...], str]:
        final, visited = await bare_cycle(state, context)
        return tuple(visited), final["decision"]["reason"]

    return run


def graph_runner(graph: Any, context: Context) -> Cycle:
    async def run(state: dict[str, Any]) -> tuple[tuple[str, ...], str]:
        config = {"configurable": {"thread_id": state["run_id"]}}  # a fresh thread per cycle
        final = await graph.ainvoke(state, config, context=context)
        return _path_of(final), final["decision"]["reason"]

    return run


def _path_of(final: dict[str, Any]) -> tuple[str, ...]:
    """The nodes a graph run went through, read from the events each node wrote."""
    nodes: list[str] = []
    for item in final["events"]:
        node = item["node"]
        if not nodes or nodes[-1] != node:
            nodes.append(node)
    return tuple(nodes)


async def postgres_reason(url: str) -> str | None:
    """Return why Postgres cannot be used, or None when it answers."""
    try:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(postgres_conninfo(url), connect_timeout=3)
        await conn.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    return None


async def run_checkpointer(
    kind: str,
    url: str,
    scenarios: list[Scenario],
    run_ids: RunIds,
    cycles: int,
    warmup: int,
) -> list[Row]:
    rows: list[Row] = []
    first = len(run_ids.used)
    async with open_checkpointer(url) as saver:
        graph = build_graph(checkpointer=saver)
        for scenario in scenarios:
            samples = await measure(
                scenario, graph_runner(graph, scenario.context), run_ids, cycles, warmup
            )
            rows.append(Row(kind, scenario.name, samples))
        if kind == "postgres":  # leave the shared database as it was
            for thread_id in run_ids.used[first:]:
                await saver.adelete_thread(thread_id)
    return rows


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cycles", type=int, default=300, help="timed cycles per row")
    parser.add_argument("--warmup", type=int, default=30, help="untimed cycles before each row")
    parser.add_argument("--snapshots", type=int, default=200, help="feature snapshots per path")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    return parser.parse_args(argv)


def build_scenarios(want: int, run_ids: RunIds) -> tuple[list[Scenario], str]:
    model_dir = latest_model_dir(MODELS)
    if model_dir is None:
        raise SystemExit(f"no model set under {MODELS}")
    predictor = Predictor.load(model_dir)
    real_policy = TradingPolicy(rules=PolicyParams(max_open_positions=4))
    exchange = PaperExchange(None, initial_krw=EXCHANGE_KRW)
    base = Context(
        signal_model=predictor,
        exchange=exchange,
        groq=RuleBasedMoodReviewer(),
        ollama=RuleBasedTechnicalReviewer(),
        sizer=RuleBasedSizer(),
        policy=real_policy,
    )
    # Any forecast clears a margin of -1000 bps: every all-agree snapshot becomes a buy.
    loose = replace(real_policy.rules, entry_margin_bps=-1000.0)
    full_context = replace(base, policy=replace(real_policy, rules=loose))
    snapshots = feature_snapshots()
    hold = select(snapshots, base, HOLD_PATH, want, f"{run_ids.prefix}-scan-hold")
    full = select(snapshots, full_context, FULL_PATH, want, f"{run_ids.prefix}-scan-full")
    for name, chosen in (("hold", hold), ("full", full)):
        if not chosen:
            raise SystemExit(f"no demo snapshot takes the {name} path")
    scenarios = [
        Scenario("hold", HOLD_PATH, base, hold),
        Scenario("full", FULL_PATH, full_context, full),
    ]
    note = (
        f"model {predictor.model_id}; {len(snapshots)} warmed-up snapshots of "
        f"{len(snapshots[0].markets)} markets; "
        f"hold = {' -> '.join(HOLD_PATH)} with the default policy "
        f"(entry margin {real_policy.rules.entry_margin_bps} bps), {len(hold)} snapshots; "
        f"full = {' -> '.join(FULL_PATH)} with an entry margin of -1000 bps and rule-based "
        "reviewers, "
        f"{len(full)} snapshots where all agree, each cycle a paper market buy sized from a "
        f"{ACCOUNT_KRW:,} KRW account (the paper exchange holds 1e15 KRW so it never runs dry)"
    )
    return scenarios, note


async def bench(args: argparse.Namespace, scenarios: list[Scenario], run_ids: RunIds) -> dict:
    rows: list[Row] = []
    skipped: dict[str, str] = {}
    bare_mean: dict[str, float] = {}
    for scenario in scenarios:
        samples = await measure(
            scenario, bare_runner(scenario.context), run_ids, args.cycles, args.warmup
        )
        row = Row("bare function", scenario.name, samples)
        bare_mean[scenario.name] = row.mean_ms
        rows.append(row)
    with tempfile.TemporaryDirectory(prefix="lxa-bench-") as tmp:
        targets = [
            ("memory", "memory"),
            ("sqlite", f"sqlite:///{Path(tmp) / 'checkpoints.sqlite'}"),
            ("postgres", args.postgres_url),
        ]
        for kind, url in targets:
            if kind == "postgres":
                reason = await postgres_reason(url)
                if reason is not None:
                    skipped[kind] = reason
                    continue
            rows.extend(
                await run_checkpointer(kind, url, scenarios, run_ids, args.cycles, args.warmup)
            )
    for row in rows:
        if row.checkpointer != "bare function":
            row.bare_mean_ms = bare_mean[row.path]
    return {"rows": rows, "skipped": skipped}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cycles < 1 or args.warmup < 0 or args.snapshots < 1:
        raise SystemExit("--cycles and --snapshots must be positive, --warmup not negative")
    started = time.perf_counter()
    run_ids = RunIds()
    scenarios, note = build_scenarios(args.snapshots, run_ids)
    result = asyncio.run(bench(args, scenarios, run_ids))
    rows: list[Row] = result["rows"]
    skipped: dict[str, str] = result["skipped"]
    header = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    report = {
        "benchmark": "graph_overhead",
        **header,
        "cycles": args.cycles,
        "warmup": args.warmup,
        "setup": note,
        "rows": [r.to_json() for r in rows],
        "skipped": skipped,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(
        f"graph_overhead  {header['date']}  Python {header['python']} "
        f"({header['implementation']})  {header['cpus']} CPUs  {header['platform']}"
    )
    print(f"{args.cycles} timed cycles per row after {args.warmup} warm-up cycles; {note}")
    print()
    print(
        f"{'checkpointer':<14} {'path':<5} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9} "
        f"{'ratio':>7} {'+ms':>8}"
    )
    for row in rows:
        extra = row.mean_ms - row.bare_mean_ms if row.bare_mean_ms else 0.0
        print(
            f"{row.checkpointer:<14} {row.path:<5} {row.mean_ms:>9.3f} {row.pct_ms(0.5):>9.3f} "
            f"{row.pct_ms(0.99):>9.3f} {row.ratio:>6.2f}x {extra:>8.3f}"
        )
    for kind, reason in skipped.items():
        print(f"{kind}: skipped ({reason})")
    print()
    print("ratio = mean / bare-function mean on the same path; +ms = mean - bare mean")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
