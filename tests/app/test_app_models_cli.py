"""`lxa models`, `lxa models promote|rollback` and `lxa retrain` from the command line (in
process; the sets are renamed copies of the bundled real set)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from champion_kit import copy_set
from typer.testing import CliRunner

from app.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    data = tmp_path / "data"
    copy_set(data / "models", "set-a", created_at="2026-01-01T00:00:00Z")
    copy_set(data / "models", "set-b", created_at="2026-01-02T00:00:00Z")
    return {"LXA_DATA_DIR": str(data)}


def test_models_lists_the_versions_and_promote_and_rollback_switch_the_champion(
    env: dict[str, str],
) -> None:
    runner = CliRunner()

    listed = runner.invoke(app, ["models", "--json"], env=env)
    promoted = runner.invoke(app, ["models", "promote", "set-a", "--reason", "by hand"], env=env)
    after = runner.invoke(app, ["models"], env=env)
    rolled = runner.invoke(app, ["models", "rollback", "--json"], env=env)

    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output)["champion"] == "set-b"  # the newest, before any pointer
    assert promoted.exit_code == 0, promoted.output
    assert "champion: set-a (was set-b)" in promoted.output
    assert "* set-a  champion" in after.output and "reason: by hand" in after.output
    assert json.loads(rolled.output)["model_id"] == "set-b"


def test_unknown_versions_and_a_retrain_with_nothing_to_learn_from_exit_2(
    env: dict[str, str],
) -> None:
    runner = CliRunner()

    unknown = runner.invoke(app, ["models", "promote", "nope"], env=env)
    nothing = runner.invoke(app, ["retrain"], env=env)

    assert unknown.exit_code == 2 and "no model version 'nope'" in unknown.output
    assert nothing.exit_code == 2 and "LXA_RETRAIN_CANDLES" in nothing.output
