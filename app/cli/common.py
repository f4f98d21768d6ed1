"""What every command shares: the two consoles, settings, failing with a message, progress.

A fatal condition ends a command as one line on stderr (what happened, what to do) and a
non-zero exit, never a traceback: `exits_on` for the errors a command expects, `report_fatal`
(from `app.cli.main`) for whatever escapes. With the global `--debug` the traceback is printed
above that line.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
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

_state = {"debug": False}

_REFUSED_HINT = "nothing was sent to Upbit; resolve the above first"
_BLOCKED_HINT = (
    "trading stopped; wait for Upbit to lift the block, make sure nothing else uses these "
    "API keys, then start again"
)
# Errors that end a command as a known fatal condition: (module, class) -> exit code, and what
# to do where the message does not already say. Looked up among the modules already imported
# (an instance of a class means its module is loaded), so reporting imports nothing.
_FATAL: dict[tuple[str, str], tuple[int, str | None]] = {
    ("app.settings", "SettingsError"): (2, None),
    ("ml.data", "CandleFileError"): (2, None),
    ("store.journal.database", "JournalUnavailable"): (1, None),
    ("app.wiring", "LiveTradingRefused"): (1, _REFUSED_HINT),
    ("exchange.ratelimit", "ExchangeBlocked"): (1, _BLOCKED_HINT),
}
_MESSAGE_LIMIT = 400


def set_debug(enabled: bool) -> None:
    """The global `--debug`: tracebacks above fatal lines, and DEBUG logging."""
    _state["debug"] = enabled
    if enabled:
        logging.getLogger().setLevel(logging.DEBUG)
        logging.getLogger(__name__).debug("--debug: tracebacks on, logging at DEBUG")


def debug_enabled() -> bool:
    """Whether `--debug` was given."""
    return _state["debug"]


def _print_traceback(exc: BaseException) -> None:
    if debug_enabled():
        traceback.print_exception(exc, file=sys.stderr)


def _fatal_kind(exc: BaseException) -> tuple[int, str | None] | None:
    for (module_name, class_name), kind in _FATAL.items():
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(exc, cls):
            return kind
    return None


def _first_line(text: str) -> str:
    line = next((part.strip() for part in text.splitlines() if part.strip()), "")
    return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 3] + "..."


def report_fatal(exc: BaseException) -> int:
    """Print what ended the command in one line (a known condition, or the last resort).

    Returns the exit code: a known fatal condition's own (2 for bad input or settings, else
    1), 1 for anything unexpected, which is printed as `lxa: <type>: <message> (run with
    --debug for the traceback)`. With `--debug` the traceback comes first.
    """
    _print_traceback(exc)
    kind = _fatal_kind(exc)
    if kind is not None:
        code, hint = kind
        err.print(str(exc), style="red", markup=False, highlight=False, soft_wrap=True)
        if hint is not None:
            err.print(hint, markup=False, highlight=False, soft_wrap=True)
        return code
    message = _first_line(str(exc))
    line = f"lxa: {type(exc).__name__}: {message}" if message else f"lxa: {type(exc).__name__}"
    if not debug_enabled():
        line += " (run with --debug for the traceback)"
    err.print(line, style="red", markup=False, highlight=False, soft_wrap=True)
    return 1


def fail(message: str, code: int, *, hint: str | None = None) -> NoReturn:
    """Print `message` in red on stderr, as it is (no markup), then `hint`, and exit `code`."""
    err.print(message, style="red", markup=False, highlight=False, soft_wrap=True)
    if hint is not None:
        err.print(hint, soft_wrap=True)
    raise typer.Exit(code) from None


@contextmanager
def exits_on(
    *errors: type[Exception], code: int, hint: str | None = None, interrupted: str | None = None
) -> Iterator[None]:
    """Turn the named errors into `fail(str(error), code)` (the traceback first with --debug).

    With `interrupted`, Ctrl-C prints that line and exits 130 instead of a traceback.
    """
    try:
        yield
    except errors as exc:
        _print_traceback(exc)
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


class _Progress(Progress):
    """A progress bar that leaves nothing behind when its work fails before any step."""

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        if exc_type is not None and not any(task.completed for task in self.tasks):
            # Only the error is left: no empty bar, nor the blank line after it off a terminal.
            self.live.transient = True
            if not self.disable:
                self.live.stop()
            return
        super().__exit__(exc_type, exc_val, exc_tb)


def progress(total_label: str, quiet: bool) -> Progress:
    """A progress bar on stderr with the last result beside it (hidden when `quiet`).

    A failure before the first step clears it, so the error is the only line left.
    """
    return _Progress(
        TextColumn(f"[bold]{total_label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeRemainingColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )
