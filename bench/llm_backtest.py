"""The graph-in-the-loop backtest with the LLM checks answered from the response cache.

Real bundled Upbit candles (all of them by default); local servers speaking Groq's and
Ollama's protocols answer every check (agreeing, with fixed token counts: synthetic answers,
real clients). Both backtest paths run in the same process on the same bars:

* fast (the default of ``lxa backtest --reviewers llm|cache-only``): the compiled simulator
  walks the bars and the compiled graph runs at each proposed order (``app.graph_loop``);
* engine (``--engine-path``, the reference): the engine replays every bar, one graph run each.

Each path runs ``llm`` first (its own cache: the two paths' prompts differ in the last digits
of the account), then ``cache-only`` (no call goes out); the fast path also runs with the
checks off (the agree stand-ins). Printed: graph cycles per second (one cycle = one bar of four
markets, from the trading call's start to its end: set-up, the bars, the journal), the whole
``run_backtest`` call's seconds (the report's AUCs, baselines and plot included), the graph
runs, the LLM calls and cache hits, and the fast path's cache-only rate against the engine's.
The issue's target is 1,000 cycles/s with cached answers.

``--churn`` sells at the minimum hold too (``LXA_POLICY_EXIT_MARGIN_BPS=-1000``), so a buy or
a sell is proposed every few bars. ``--veto`` has the Groq server hold on every proposal, so
nothing is ever bought and a buy is proposed at every bar: the fast path's worst case (a graph
run at every bar, as on the engine path).

Run from the project root: ``.venv/bin/python bench/llm_backtest.py [--minutes N] [--churn]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for extra in (ROOT, ROOT / "tests", ROOT / "tests" / "integration"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

RUNS = (
    ("fast", "llm"),
    ("fast", "cache-only"),
    ("fast", "off"),
    ("engine", "llm"),
    ("engine", "cache-only"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=None, help="bars (default: all)")
    parser.add_argument("--churn", action="store_true", help="sell at the minimum hold too")
    parser.add_argument("--veto", action="store_true", help="Groq holds on every proposal")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from llm_servers import GroqServer, OllamaServer, Text

    from app.backtest import run_backtest
    from app.settings import Settings
    from app.wiring import BUNDLED_CANDLES

    def answer(request_json: dict[str, Any]) -> Text:
        user = " ".join(str(m.get("content", "")) for m in request_json.get("messages", []))
        action = "sell" if "Proposed action: sell" in user else "buy"
        body = {"verdict": action, "confidence": 0.9, "reasoning": "bench", "risks": []}
        return Text(json.dumps(body), prompt_tokens=1000, completion_tokens=50)

    def hold(request_json: dict[str, Any]) -> Text:
        body = {"verdict": "hold", "confidence": 0.9, "reasoning": "bench", "risks": []}
        return Text(json.dumps(body), prompt_tokens=1000, completion_tokens=50)

    results: dict[str, Any] = {
        "minutes": args.minutes,
        "churn": args.churn,
        "veto": args.veto,
        "runs": {},
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        GroqServer(default=hold if args.veto else answer) as groq,
        OllamaServer(default=answer) as ollama,
    ):
        policy: dict[str, Any] = {
            "policy_entry_margin_bps": -1000.0,  # enter on any forecast: the checks are asked
            "policy_max_entries_per_day": 1440,
            "policy_reentry_pause_minutes": 0,
        }
        if args.churn:
            policy["policy_exit_margin_bps"] = -1000.0
        for path, mode in RUNS:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=Path(tmp) / f"data-{path}",  # each path its own response cache
                groq_api_key="bench",  # type: ignore[arg-type]
                groq_base_url=groq.base_url,
                ollama_host=ollama.base_url,
                **policy,
            )
            calls_before = len(groq.chat_requests) + len(ollama.chat_requests)
            started = time.perf_counter()
            metrics = asyncio.run(
                run_backtest(
                    settings,
                    candles_paths=[BUNDLED_CANDLES],
                    report_dir=Path(tmp) / f"{path}-{mode}",
                    minutes=args.minutes,
                    reviewers_mode=mode,
                    engine_path=path == "engine",
                )
            )
            elapsed = time.perf_counter() - started
            results["bars"] = metrics["bars"]
            results["runs"][f"{path} {mode}"] = {
                "path": metrics["path"]["name"],
                "cycles_per_s": round(metrics["bars"] / metrics["elapsed_s"], 1),
                "trading_s": round(metrics["elapsed_s"], 2),
                "seconds_with_report": round(elapsed, 2),
                "graph_runs": metrics["path"]["graph_runs"],
                "proposals_reviewed": metrics["veto_ledger"]["proposals"],
                "llm_calls": metrics["llm"].get("calls", 0),
                "requests_seen_by_servers": len(groq.chat_requests)
                + len(ollama.chat_requests)
                - calls_before,
                "cache_hits": metrics["llm"].get("cache_hits", 0),
                "buys": metrics["buys"],
                "total_return": metrics["total_return"],
            }
    runs = results["runs"]
    results["fast_vs_engine_cache_only"] = round(
        runs["fast cache-only"]["cycles_per_s"] / runs["engine cache-only"]["cycles_per_s"], 2
    )
    results["same_trades"] = (
        runs["fast cache-only"]["buys"] == runs["engine cache-only"]["buys"]
        and abs(runs["fast cache-only"]["total_return"] - runs["engine cache-only"]["total_return"])
        < 1e-9
    )
    if args.json:
        print(json.dumps(results))
        return
    print(
        f"graph-in-the-loop backtest, {results['bars']} bars of the bundled candles, 4 markets"
        f"{', --churn' if args.churn else ''}{', --veto' if args.veto else ''}"
    )
    print(
        f"  {'path':<7}{'mode':<11}{'cycles/s':>9}{'trading s':>10}{'with report s':>14}"
        f"{'graph runs':>11}{'LLM calls':>10}{'cache hits':>11}{'buys':>6}"
    )
    for name, row in runs.items():
        path, mode = name.split(" ")
        print(
            f"  {path:<7}{mode:<11}{row['cycles_per_s']:>9.1f}{row['trading_s']:>10.2f}"
            f"{row['seconds_with_report']:>14.2f}{row['graph_runs']:>11}{row['llm_calls']:>10}"
            f"{row['cache_hits']:>11}{row['buys']:>6}"
        )
    print(
        f"  fast / engine, cache-only: {results['fast_vs_engine_cache_only']:.2f}x "
        f"(target: 1,000 cycles/s cached); same trades and return: {results['same_trades']}"
    )


if __name__ == "__main__":
    main()
