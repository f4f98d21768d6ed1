"""What every command shares: the two consoles, settings, failing with a message, progress."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from app.settings import Settings, SettingsError, load_settings

err = Console(stderr=True)
out = Console()


def fail(message: str, code: int, *, hint: str | None = None) -> NoReturn:
    """Print `message` in red on stderr, as it is (no markup), then `hint`, and exit `code`."""
    err.print(message, style="red", markup=False, highlight=False)
    if hint is not None:
        err.print(hint)
    raise typer.Exit(code) from None


@contextmanager
def exits_on(
    *errors: type[Exception], code: int, hint: str | None = None, interrupted: str | None = None
) -> Iterator[None]:
    """Turn the named errors into `fail(str(error), code)`.

    With `interrupted`, Ctrl-C prints that line and exits 130 instead of a traceback.
    """
    try:
        yield
    except errors as exc:
        message = str(exc)
    except KeyboardInterrupt:
        if interrupted is None:
            raise
        err.print(interrupted)
        raise typer.Exit(130) from None
    else:
        return
    fail(message, code, hint=hint)


def load() -> Settings:
    """Read the settings, or exit 2 naming each bad `LXA_*` variable."""
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), 2)


def paper_account(settings: Settings) -> Path:
    """The persistent paper account `lxa run` and `lxa serve` continue."""
    return settings.data_dir / "paper_account.json"


def utc(value: datetime | None) -> datetime | None:
    """Read a naive command-line time as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def print_json_line(value: Any, *, default: Callable[[Any], Any] | None = None) -> None:
    """Write `value` as one sorted JSON line on stdout, nothing else."""
    sys.stdout.write(json.dumps(value, default=default, sort_keys=True) + "\n")


def progress(total_label: str, quiet: bool) -> Progress:
    """A progress bar on stderr with the last result beside it (hidden when `quiet`)."""
    return Progress(
        TextColumn(f"[bold]{total_label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )
