"""Driving a trading session from the terminal: progress, Ctrl-C, the summary at the end.

`lxa demo`, `lxa run` and `lxa serve` all end here: a replay of candle files
(`run_replay`) or Upbit's live stream (`run_live`), both opened by `app.session` /
`app.live`, which build every service.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import typer

from app.cli.common import err, exits_on, progress
from app.cli.tables import emit_summary
from app.settings import Settings, SettingsError, load_settings

LIVE_CONFIRMATION = "LIVE"


def confirm_live() -> Settings:
    """Ask the operator to type LIVE before real orders; return the settings with live on."""
    with exits_on(SettingsError, code=2):
        settings = load_settings(live=True)
    err.print(
        f"LIVE TRADING: real orders with real money on {settings.upbit_rest_url} "
        f"for {', '.join(settings.markets)}.",
        style="bold red",
        markup=False,
        highlight=False,
    )
    answer = typer.prompt(
        f"Type {LIVE_CONFIRMATION} to send real orders", default="", show_default=False
    )
    if answer.strip() != LIVE_CONFIRMATION:
        err.print("not confirmed: nothing was started", markup=False)
        raise typer.Exit(1)
    return settings


async def wait_for_interrupt() -> None:
    """Keep the viewer up until Ctrl-C (interactive terminals only)."""
    if not sys.stdin.isatty():
        return
    err.print("[green]replay finished; the viewer stays up. Press Ctrl-C to stop.[/green]")
    try:
        while True:
            await asyncio.sleep(3600)
    except asyncio.CancelledError:
        return


async def serve_until_stopped() -> None:
    """Keep the API and viewer up until Ctrl-C or SIGTERM, terminal or not."""
    err.print("[green]the feed ended; the API and viewer stay up. Ctrl-C to stop.[/green]")
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()


def show_viewer(url: str) -> None:
    """Say where the viewer is."""
    err.print(f"[green]viewer: {url}[/green]")


def run_replay(
    settings: Settings,
    *,
    candles: list[Path],
    session_id: str,
    account_path: Path,
    minutes: int | None,
    pace: float,
    serve: bool,
    as_json: bool,
    label: str,
    keep_serving: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Replay candle files through the engine with a progress bar, then print the summary."""
    from app.session import ReplayError, run_replay_session
    from app.wiring import ModelNotFoundError
    from ml.data import CandleFileError
    from prompts.loader import PromptError

    with progress(label, quiet=as_json) as bar:
        task = bar.add_task(label, total=None, last="")

        def on_progress(done: int, total: int, result: object) -> None:
            action = getattr(result, "action", "")
            reason = getattr(result, "reason", "")
            bar.update(task, completed=done, total=total, last=f"{action} ({reason})")

        refused = (ReplayError, PromptError, ModelNotFoundError, FileNotFoundError)
        with (
            exits_on(CandleFileError, code=2),
            exits_on(*refused, code=1, interrupted="stopped"),
        ):
            summary = asyncio.run(
                run_replay_session(
                    settings,
                    candles_paths=candles,
                    session_id=session_id,
                    account_path=account_path,
                    minutes=minutes,
                    pace_seconds=pace,
                    serve=serve,
                    keep_serving=keep_serving or wait_for_interrupt,
                    on_progress=on_progress,
                    on_ready=show_viewer,
                )
            )
    emit_summary(summary.to_json(), as_json)


def run_live(
    settings: Settings, *, account_path: Path, minutes: int | None, serve: bool, as_json: bool
) -> None:
    """Trade Upbit's live stream with a progress bar and the feed's alarms, then summarise."""
    from app.live import LiveFeedError, run_live_session
    from app.wiring import LiveTradingRefused, ModelNotFoundError
    from exchange.upbit_ws import FeedEvent
    from prompts.loader import PromptError

    def on_event(event: FeedEvent) -> None:
        if event.kind in ("stale", "disconnected", "backfill_failed"):
            err.print(f"feed {event.kind}: {event.detail}", style="yellow", markup=False)
        elif event.kind in ("connected", "recovered", "backfill"):
            err.print(f"feed {event.kind}: {event.detail}", markup=False, highlight=False)

    with progress("live", quiet=as_json) as bar:
        task = bar.add_task("live", total=minutes, last="")

        def on_progress(done: int, total: int, result: object) -> None:
            action = getattr(result, "action", "")
            reason = getattr(result, "reason", "")
            bar.update(task, completed=done, last=f"{action} ({reason})")

        refused = (LiveFeedError, LiveTradingRefused, PromptError, ModelNotFoundError)
        with exits_on(*refused, code=1, interrupted="stopped"):
            summary = asyncio.run(
                run_live_session(
                    settings,
                    session_id="live" if settings.live else "paper",
                    account_path=account_path,
                    minutes=minutes,
                    serve=serve,
                    keep_serving=wait_for_interrupt,
                    on_progress=on_progress,
                    on_ready=show_viewer,
                    on_event=None if as_json else on_event,
                )
            )
    emit_summary(summary.to_json(), as_json)
