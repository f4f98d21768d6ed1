"""Commands that judge a model set: `backtest` (through the engine) and `lookahead`."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import exits_on, load, out, print_json_line, progress, utc
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
) -> None:
    """Score the model on unseen candles and trade them with the LLM checks off.

    The real engine runs (paper account, fees and minimums, rule-based sizing, stop-loss and
    take-profit, watchdog, risk limits); both reviewers agree with every ML proposal.
    """
    from app.backtest import BacktestError, run_backtest
    from app.wiring import ModelNotFoundError
    from ml.data import CandleFileError
    from prompts.loader import PromptError

    settings = load()
    with progress("backtest", quiet=as_json) as bar:
        task = bar.add_task("backtest", total=None, last="")

        def on_progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        refused = (BacktestError, PromptError, ModelNotFoundError, FileNotFoundError)
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
                )
            )
    if as_json:
        print_json_line(metrics)
        return
    print_backtest(metrics, report)


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
