"""Fixtures for engine tests: settings in a temporary data dir and the bundled real candles."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from app.session import collect_closes
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS
from exchange.feed import BarClose
from ml.data import load_candles
from ml.registry import latest_model_dir


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
    )


@pytest.fixture(scope="session")
def bundled_closes() -> list[BarClose]:
    """The bundled real Upbit candles (2025-09-19..21) as bar closes."""
    return asyncio.run(collect_closes(load_candles([BUNDLED_CANDLES])))
