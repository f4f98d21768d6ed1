"""Fatal conditions end `lxa` as one line and a non-zero exit, never a traceback.

Bad candle files and a damaged journal are named before anything is written; `--debug` shows
the traceback; `main` is the last resort for whatever a command lets escape.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.cli.common import report_fatal, set_debug
from app.wiring import BUNDLED_CANDLES, LiveTradingRefused
from exchange.ratelimit import ExchangeBlocked
from store.journal import Journal

LXA = [sys.executable, "-m", "app.cli"]
DAMAGED = "the file is not a database or is damaged; move it aside or restore a backup"


@pytest.fixture(autouse=True)
def _no_debug_left_behind() -> Iterator[None]:
    """An in-process `--debug` turns tracebacks and DEBUG logging on: undo it after each test."""
    root = logging.getLogger()
    level = root.level
    set_debug(False)
    yield
    set_debug(False)
    root.setLevel(level)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env["LXA_DATA_DIR"] = str(tmp_path / "data")
    env["COLUMNS"] = "80"  # a narrow terminal must not wrap the line
    return env | extra


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- bad candle files ----------------------------------------------------------------------


def _garbage(path: Path) -> None:
    path.write_bytes(np.random.default_rng(7).bytes(5000))


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _csv_renamed(path: Path) -> None:
    pd.read_parquet(BUNDLED_CANDLES).head(50).to_csv(path, index=False)


def _nan_prices(path: Path) -> None:
    frame = pd.read_parquet(BUNDLED_CANDLES)
    btc = frame.index[frame["market"] == "KRW-BTC"]
    frame.loc[btc[[3, 4, 10]], "close"] = np.nan
    frame.to_parquet(path)


BAD_FILES: dict[str, tuple[Callable[[Path], None], str]] = {
    "garbage": (_garbage, ": not a Parquet file (Parquet magic bytes not found in footer)"),
    "empty": (_empty, ": the file is empty (0 bytes)"),
    "csv": (_csv_renamed, ": not a Parquet file (Parquet magic bytes not found in footer)"),
    "nan": (_nan_prices, ", market KRW-BTC, column close: 3 NaN values (first at 2025-09-19 "),
}

COMMANDS: dict[str, list[str]] = {
    "backtest": ["backtest", "--report", "{tmp}/report"],
    "train": ["train", "--quick", "--out", "{tmp}/models"],
    "run": ["run", "--feed", "replay", "--minutes", "5"],
    "lookahead": ["lookahead"],
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_bad_candles_file_is_one_line_naming_it_and_nothing_is_written(
    tmp_path: Path, kind: str, command: str
) -> None:
    make, expected = BAD_FILES[kind]
    candles = tmp_path / f"{kind}.parquet"
    make(candles)
    args = [arg.format(tmp=tmp_path) for arg in COMMANDS[command]]

    result = CliRunner().invoke(app, [*args, "--candles", str(candles)], env=_env(tmp_path))

    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert _lines(result.output) == [_lines(result.output)[0]]
    assert _lines(result.output)[0].startswith(f"candles file {candles}{expected}")
    assert "Traceback" not in result.output
    # Refused before anything was built: no journal, no account, no report, no model.
    assert sorted(p.name for p in tmp_path.iterdir()) == [candles.name]


def test_nan_prices_through_the_installed_command_leave_no_journal(tmp_path: Path) -> None:
    candles = tmp_path / "nan.parquet"
    _nan_prices(candles)

    result = subprocess.run(
        [*LXA, "run", "--candles", str(candles), "--minutes", "5"],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert result.stdout == ""
    assert _lines(result.stderr) == [
        f"candles file {candles}, market KRW-BTC, column close: 3 NaN values "
        "(first at 2025-09-19 00:03 UTC)"
    ]
    assert not (tmp_path / "data").exists()
    assert list(tmp_path.rglob("*.db")) == []


# --- a journal that cannot be opened ------------------------------------------------------


def _damaged_journal(tmp_path: Path) -> Path:
    """A real journal cut to its first 4 KiB, as a crash on a full disk may leave it."""
    path = tmp_path / "journal.db"
    with Journal.open(f"sqlite:///{path}"):
        pass
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    path.write_bytes(path.read_bytes()[:4096])
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["halt", "--reason", "test"],
        ["run", "--candles", str(BUNDLED_CANDLES), "--minutes", "2"],
    ],
    ids=["status", "halt", "run"],
)
def test_a_damaged_journal_is_one_line_naming_it(tmp_path: Path, args: list[str]) -> None:
    journal = _damaged_journal(tmp_path)
    before = journal.read_bytes()

    result = subprocess.run(
        [*LXA, *args],
        env=_env(tmp_path, LXA_DATABASE_URL=f"sqlite:///{journal}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert _lines(result.stderr) == [f"journal sqlite:///{journal} cannot be opened: {DAMAGED}"]
    assert journal.read_bytes() == before


def test_debug_prints_the_traceback_above_the_line(tmp_path: Path) -> None:
    journal = _damaged_journal(tmp_path)

    result = subprocess.run(
        [*LXA, "--debug", "status"],
        env=_env(tmp_path, LXA_DATABASE_URL=f"sqlite:///{journal}"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "sqlite3.DatabaseError" in result.stderr  # the cause, chained
    assert "DEBUG app.cli.common: --debug" in result.stderr  # logging at DEBUG level
    last = _lines(result.stderr)[-1]
    assert last == f"journal sqlite:///{journal} cannot be opened: {DAMAGED}"


def test_a_handled_error_shows_its_traceback_only_with_debug(tmp_path: Path) -> None:
    candles = tmp_path / "empty.parquet"
    candles.touch()
    args = ["lookahead", "--candles", str(candles)]

    plain = CliRunner().invoke(app, args, env=_env(tmp_path))
    debug = CliRunner().invoke(app, ["--debug", *args], env=_env(tmp_path))

    assert plain.exit_code == debug.exit_code == 2
    assert "Traceback" not in plain.output
    assert "Traceback (most recent call last)" in debug.output
    assert "ml.data.CandleFileError" in debug.output


# --- the last resort in main --------------------------------------------------------------

_BOOM = """
import sys
import app.cli as cli

@cli.app.command("boom")
def boom() -> None:
    raise {error}

sys.argv = ["lxa", *sys.argv[1:]]
cli.main()
"""


def _boom(tmp_path: Path, error: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BOOM.format(error=error), *args],
        env=_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_unexpected_error_is_one_line_with_its_type_and_exit_1(tmp_path: Path) -> None:
    result = _boom(tmp_path, "RuntimeError('the flux capacitor melted\\nsecond line')", "boom")

    assert result.returncode == 1
    assert result.stdout == ""
    assert _lines(result.stderr) == [
        "lxa: RuntimeError: the flux capacitor melted (run with --debug for the traceback)"
    ]


def test_an_unexpected_error_with_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = _boom(tmp_path, "RuntimeError('the flux capacitor melted')", "--debug", "boom")

    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert ", in boom\n" in result.stderr  # the frame that raised
    assert _lines(result.stderr)[-1] == "lxa: RuntimeError: the flux capacitor melted"


def test_ctrl_c_exits_130_quietly(tmp_path: Path) -> None:
    result = _boom(tmp_path, "KeyboardInterrupt()", "boom")

    assert result.returncode == 130
    assert result.stderr.strip() == ""


def test_typer_usage_errors_are_left_as_they_are(tmp_path: Path) -> None:
    result = _boom(tmp_path, "RuntimeError('unused')", "boom", "--no-such-option")

    assert result.returncode == 2
    assert "No such option: --no-such-option" in result.stderr
    assert "lxa: " not in result.stderr


# --- known fatal conditions, by kind --------------------------------------------------------


def test_an_upbit_block_is_a_clean_stop_saying_what_to_do(
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocked = ExchangeBlocked(
        "Upbit answered 418 for the 'order' group: this client is blocked for ignoring 429 "
        "replies; trading must stop until the block is lifted",
        group="order",
    )

    code = report_fatal(blocked)

    lines = _lines(capsys.readouterr().err)
    assert code == 1
    assert lines[0].startswith("Upbit answered 418 for the 'order' group")
    assert lines[1].startswith("trading stopped; wait for Upbit to lift the block")
    assert len(lines) == 2


def test_live_trading_refused_is_a_clean_stop(capsys: pytest.CaptureFixture[str]) -> None:
    code = report_fatal(LiveTradingRefused("refusing to trade live: Upbit and the journal differ"))

    lines = _lines(capsys.readouterr().err)
    assert code == 1
    assert lines == [
        "refusing to trade live: Upbit and the journal differ",
        "nothing was sent to Upbit; resolve the above first",
    ]


def test_bad_settings_stay_a_clean_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["status"], env=_env(tmp_path, LXA_MARKETS="bitcoin"))

    assert result.exit_code == 2
    assert _lines(result.output)[0] == "invalid settings:"
    assert "LXA_MARKETS" in result.output and "Traceback" not in result.output
