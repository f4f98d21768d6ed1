"""The graph-in-the-loop backtest with the LLM checks answered from the response cache.

Real bundled Upbit candles; local servers speaking Groq's and Ollama's protocols answer every
check (agreeing, with fixed token counts: synthetic answers, real clients). One run with
`--reviewers llm` fills the cache; the same candles are then replayed with `cache-only` (no
call goes out) and with the checks off. Printed: graph cycles per second (one cycle = one bar,
four markets) for each, and the cache-only rate against the checks-off rate measured in the
same run. The issue's target is 1,000 cycles/s with cached answers.

Run from the project root: ``.venv/bin/python bench/llm_backtest.py [--minutes 600]``.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=int, default=600)
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

    results: dict[str, Any] = {"minutes": args.minutes}
    with (
        tempfile.TemporaryDirectory() as tmp,
        GroqServer(default=answer) as groq,
        OllamaServer(default=answer) as ollama,
    ):
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(tmp) / "data",
            groq_api_key="bench",  # type: ignore[arg-type]
            groq_base_url=groq.base_url,
            ollama_host=ollama.base_url,
            policy_entry_margin_bps=-1000.0,  # proposals on most bars: the checks are asked
            policy_max_entries_per_day=1440,
            policy_reentry_pause_minutes=0,
        )
        for mode in ("llm", "cache-only", "off"):
            started = time.perf_counter()
            metrics = asyncio.run(
                run_backtest(
                    settings,
                    candles_paths=[BUNDLED_CANDLES],
                    report_dir=Path(tmp) / mode,
                    minutes=args.minutes,
                    reviewers_mode=mode,
                )
            )
            elapsed = time.perf_counter() - started
            results[mode] = {
                "cycles_per_s_loop": round(metrics["bars"] / metrics["elapsed_s"], 1),
                "seconds_with_report": round(elapsed, 2),
                "llm_calls": metrics["llm"].get("calls", 0),
                "cache_hits": metrics["llm"].get("cache_hits", 0),
                "proposals_reviewed": metrics["veto_ledger"]["proposals"],
            }
    results["cache_only_vs_off"] = round(
        results["cache-only"]["cycles_per_s_loop"] / results["off"]["cycles_per_s_loop"], 3
    )
    if args.json:
        print(json.dumps(results))
        return
    print(f"graph-in-the-loop backtest, {args.minutes} bars of the bundled candles, 4 markets")
    for mode in ("llm", "cache-only", "off"):
        row = results[mode]
        print(
            f"  {mode:<11} {row['cycles_per_s_loop']:>8.1f} cycles/s (bar loop)  "
            f"calls {row['llm_calls']:>5}  cache hits {row['cache_hits']:>5}  "
            f"reviewed {row['proposals_reviewed']:>5}"
        )
    print(f"  cache-only / off: {results['cache_only_vs_off']:.3f} (target: 1,000 cycles/s cached)")


if __name__ == "__main__":
    main()
