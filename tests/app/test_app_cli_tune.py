"""`lxa train --tune --storage URL --workers N`: what the command refuses before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.wiring import BUNDLED_CANDLES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--storage, --workers and --study apply to --tune"),
        (["--storage", "sqlite:///s.db"], "--storage, --workers and --study apply to --tune"),
        (["--tune", "--workers", "2"], "--workers above 1 needs --storage"),
    ],
)
def test_tuning_options_without_what_they_need_are_refused_naming_it(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LXA_DATA_DIR", str(tmp_path))

    result = CliRunner().invoke(app, ["train", "--candles", str(BUNDLED_CANDLES), *args])

    assert result.exit_code == 2
    assert message in result.output
