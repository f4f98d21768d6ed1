"""`download`: Upbit 1-minute candles into parquet, resuming from what is on disk."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from app.cli.common import err, exits_on, load, out, utc


def download(
    out_dir: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the parquet parts (default <data_dir>/candles)."),
    ] = None,
    days: Annotated[float, typer.Option(min=0.001, help="How far back to fetch.")] = 7.0,
    since: Annotated[
        datetime | None, typer.Option(help="Fetch from this UTC time (overrides --days).")
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Fetch up to this UTC time (default now).")
    ] = None,
    markets: Annotated[
        list[str] | None, typer.Option("--market", help="Market(s) (default LXA_MARKETS).")
    ] = None,
) -> None:
    """Fetch Upbit 1-minute candles into parquet (one folder per market), resuming from disk."""
    from datetime import UTC, timedelta

    from ml.download import DownloadError, download_candles

    settings = load()
    end = utc(until) or datetime.now(UTC)
    start = utc(since) or end - timedelta(days=days)
    target = out_dir or settings.data_dir / "candles"
    chosen = markets or list(settings.markets)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeRemainingColumn(),
        console=err,
    ) as bar:
        tasks = {m: bar.add_task(m, total=None) for m in chosen}

        def on_progress(market: str, done: int, total: int) -> None:
            bar.update(tasks[market], completed=done, total=total)

        with exits_on(
            DownloadError,
            code=1,
            hint="what was fetched is kept; run the same command again to resume",
            interrupted="interrupted; run the same command again to resume",
        ):
            added = download_candles(
                chosen,
                target,
                since=start,
                until=end,
                base_url=settings.upbit_rest_url,
                on_progress=on_progress,
            )
    for market, rows in added.items():
        out.print(f"{market}: {rows} new candles", highlight=False)
    out.print(f"candles in {target}", markup=False, highlight=False)
