"""Commands that judge a model set: `backtest` (through the engine) and `lookahead`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli.common import exits_on, fail, load, out, print_json_line, progress, utc
from app.cli.tables import print_backtest


def backtest(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) the model never trained on.")
    ],
    report: Annotated[
        Path, typer.Option(help="Report directory: metrics.json, equity.png, report.html.")
    ],
    model: Annotated[
        Path | None, typer.Option(help="Model set directory (default: the bundled model).")
    ] = None,
    minutes: Annotated[
        int | None, typer.Option(min=1, help="Trade at most this many bars after warm-up.")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Use candles from this UTC time on (warm-up included).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Use candles before this UTC time only.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics.json on stdout, nothing else.")
    ] = False,
    reviewers: Annotated[
        str,
        typer.Option(
            help="off: both checks agree with every proposal; llm: the configured Groq and "
            "Ollama, every answer cached; cache-only: cached answers only, a miss stops."
        ),
    ] = "off",
    llm_cache: Annotated[
        Path | None,
        typer.Option(help="The LLM answers' cache (SQLite; default: DATA_DIR/llm_cache.db)."),
    ] = None,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Replay once per variant (ML alone, Groq only, Ollama only, both, a random "
            "veto at both's rate over --seeds seeds) and write ablation.json side by side.",
        ),
    ] = False,
    seeds: Annotated[int, typer.Option(min=1, max=200, help="Random-veto seeds.")] = 20,
    blind: Annotated[
        bool,
        typer.Option(
            "--blind",
            help="Hide from the LLM prompts what identifies the period (coins as COIN-A.., "
            "prices as an index, no dates, no news); with --ablation, blind against named.",
        ),
    ] = False,
    engine_path: Annotated[
        bool,
        typer.Option(
            "--engine-path",
            help="With --reviewers llm or cache-only: replay every bar through the engine (one "
            "graph run per bar, the reference) instead of the fast path (the simulator, the "
            "graph at each proposed order). Its prompts differ in the last digits: its own cache.",
        ),
    ] = False,
    news_journal: Annotated[
        str | None,
        typer.Option(
            help="A journal URL whose stored news the engine reads as known at each bar "
            "(headlines in the prompts, notices and the index at the watchdog, the news "
            "features); runs the engine path. Without it the backtest sees no news.",
        ),
    ] = None,
) -> None:
    """Score the model on unseen candles and trade them, the LLM checks off unless asked.

    The real engine runs (paper account, fees and minimums, rule-based sizing, stop-loss and
    take-profit, watchdog, risk limits); with --reviewers off both checks agree with every ML
    proposal. With llm or cache-only the fast path runs: the compiled simulator (the engine's
    trades, fill for fill) walks the bars and the same compiled graph asks the configured models
    at each proposed order; --engine-path replays every bar through the engine instead.
    """
    from app.backtest import BacktestError, run_backtest
    from app.wiring import ModelNotFoundError
    from llm.provider import CacheMiss
    from ml.data import CandleFileError
    from prompts.loader import PromptError

    settings = load()
    if ablation:
        _ablation(
            settings,
            candles,
            report,
            model,
            minutes,
            (utc(since), utc(until)),
            reviewers,
            llm_cache,
            seeds,
            blind,
            as_json,
            engine_path,
        )
        return
    with progress("backtest", quiet=as_json) as bar:
        task = bar.add_task("backtest", total=None, last="")

        def on_progress(done: int, total: int, llm: Mapping[str, Any]) -> None:
            last = ""
            if reviewers != "off":
                last = (
                    f"LLM calls {llm['calls']}, cache hits {llm['cache_hits']}, "
                    f"${llm['cost_usd']:.4f}"
                )
            bar.update(task, completed=done, total=total, last=last)

        refused = (BacktestError, PromptError, ModelNotFoundError, FileNotFoundError, CacheMiss)
        with exits_on(CandleFileError, code=2), exits_on(*refused, code=1):
            metrics = asyncio.run(
                run_backtest(
                    settings,
                    candles_paths=candles,
                    report_dir=report,
                    model_dir=model,
                    minutes=minutes,
                    since=utc(since),
                    until=utc(until),
                    on_progress=on_progress,
                    reviewers_mode=reviewers,
                    llm_cache=llm_cache,
                    blind=blind,
                    engine_path=True if engine_path else None,
                    news_journal=news_journal,
                )
            )
    if as_json:
        print_json_line(metrics)
        return
    print_backtest(metrics, report)
    path = metrics["path"]
    out.print(
        f"path: {path['description']} ({path['graph_runs']} graph runs)",
        markup=False,
        highlight=False,
    )


def lookahead(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) in the shared schema.")
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Model set directory, or a models directory (its newest set); also checks "
            "P(buy) and P(sell)."
        ),
    ] = None,
    cut_points: Annotated[int, typer.Option(min=1, help="Cut times per market.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed for picking the cut times.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as one JSON object, nothing else.")
    ] = False,
) -> None:
    """Check features, model probabilities and labels for look-ahead on truncated data.

    Exits 1 when a leak is found, 2 when the inputs cannot be read, 0 otherwise.
    """
    from app.wiring import load_predictor
    from ml.data import load_candles
    from ml.lookahead import check_lookahead, format_report

    with exits_on(FileNotFoundError, ValueError, code=2):
        frame = load_candles([str(p) for p in candles])
        predictor = load_predictor(model) if model is not None else None
        result = check_lookahead(frame, predictor=predictor, cut_points=cut_points, seed=seed)
    if as_json:
        print_json_line(result.to_json())
    else:
        for line in format_report(result):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


def _ablation(
    settings: Any,
    candles: list[Path],
    report: Path,
    model: Path | None,
    minutes: int | None,
    window: tuple[datetime | None, datetime | None],
    reviewers: str,
    llm_cache: Path | None,
    seeds: int,
    blind: bool,
    as_json: bool,
    engine_path: bool = False,
) -> None:
    """`lxa backtest --ablation`: the variants side by side (app.ablation)."""
    from app.ablation import run_ablation
    from app.backtest import BacktestError
    from app.wiring import ModelNotFoundError
    from llm.provider import CacheMiss
    from ml.data import CandleFileError

    if reviewers == "off":
        fail(
            "--ablation needs --reviewers llm or cache-only: with the checks off nothing differs", 2
        )
    with progress("ablation", quiet=as_json) as bar:
        task = bar.add_task("ablation", total=None, last="")

        def on_progress(variant: str, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, last=variant)

        refused = (BacktestError, ModelNotFoundError, FileNotFoundError, CacheMiss)
        with exits_on(CandleFileError, code=2), exits_on(*refused, code=1):
            result = asyncio.run(
                run_ablation(
                    settings,
                    candles_paths=candles,
                    report_dir=report,
                    model_dir=model,
                    minutes=minutes,
                    since=window[0],
                    until=window[1],
                    reviewers_mode=reviewers,
                    llm_cache=llm_cache,
                    seeds=seeds,
                    blind=blind,
                    on_progress=on_progress,
                    engine_path=engine_path,
                )
            )
    if as_json:
        print_json_line(result)
        return
    out.print(
        f"{'variant':<14}{'return':>10}{'max DD':>9}{'trips':>7}{'fees KRW':>11}{'vetoed':>8}"
    )
    for name, row in result["variants"].items():
        vetoed = row["veto_rate"]
        out.print(
            f"{name:<14}{row['total_return'] * 100:>9.3f}%{row['max_drawdown'] * 100:>8.3f}%"
            f"{row['round_trips']:>7}{row['fees_krw']:>11.0f}"
            + (f"{vetoed * 100:>7.1f}%" if vetoed is not None else f"{'':>8}")
        )
    coin = result["random_veto"]
    ret = coin["total_return"]
    out.print(
        f"random veto at {coin['rate'] * 100:.1f}% over {coin['seeds']} seeds: return "
        f"{ret['mean'] * 100:.3f}% (sd {ret['sd'] * 100:.3f}%, {ret['min'] * 100:.3f}% to "
        f"{ret['max'] * 100:.3f}%)"
    )
    llm = result["llm"]
    out.print(
        f"LLM: {llm['calls']} call(s) out, {llm['cache_hits']} from the cache, "
        f"${llm['cost_usd']:.4f}; {result['path']} path; written to {report / 'ablation.json'}"
    )
