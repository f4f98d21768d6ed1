"""Checkpointer factory, and resuming a run cut off mid-way on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from graph_kit import (
    BlockingReviewer,
    FixedModel,
    ScriptedReviewer,
    initial_state,
    make_context,
    make_exchange,
)
from langgraph.checkpoint.memory import InMemorySaver

from graph.builder import build_graph
from graph.checkpoint import (
    CheckpointerURLError,
    checkpointer_kind,
    open_checkpointer,
    postgres_conninfo,
    sqlite_path,
)

BUY_ETH = {"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.8, 0.1), "KRW-XRP": (0.1, 0.1)}


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory", "memory"),
        ("memory://", "memory"),
        ("sqlite:///data/checkpoints.sqlite", "sqlite"),
        ("SQLITE:////tmp/x.sqlite", "sqlite"),
        ("postgresql://u@h/db", "postgres"),
        ("postgres://u@h/db", "postgres"),
        ("postgresql+psycopg://u@h/db", "postgres"),
    ],
)
def test_checkpointer_kind_names_the_backend_of_each_known_scheme(url: str, kind: str) -> None:
    assert checkpointer_kind(url) == kind


@pytest.mark.parametrize(
    "url", ["mongodb://x", "redis://localhost:6379/0", "postgresql+asyncpg://x"]
)
def test_checkpointer_kind_of_unknown_scheme_raises_naming_scheme_and_setting(url: str) -> None:
    scheme = url.split("://", 1)[0]

    with pytest.raises(CheckpointerURLError) as caught:
        checkpointer_kind(url)

    assert repr(scheme) in str(caught.value)
    assert "LXA_CHECKPOINT_URL" in str(caught.value)


def test_checkpointer_url_error_is_a_value_error() -> None:
    assert issubclass(CheckpointerURLError, ValueError)


def test_sqlite_path_of_three_slash_url_is_relative() -> None:
    path = sqlite_path("sqlite:///data/checkpoints.sqlite")

    assert path == Path("data/checkpoints.sqlite")
    assert not path.is_absolute()


def test_sqlite_path_of_four_slash_url_is_absolute() -> None:
    path = sqlite_path("sqlite:////var/lib/lxa/checkpoints.sqlite")

    assert path == Path("/var/lib/lxa/checkpoints.sqlite")
    assert path.is_absolute()


def test_postgres_conninfo_drops_the_sqlalchemy_driver() -> None:
    assert postgres_conninfo("postgresql+psycopg://u:p@h:5432/db") == "postgresql://u:p@h:5432/db"


async def test_open_checkpointer_none_yields_no_saver_and_the_setting_refuses_it() -> None:
    from app.settings import SettingsError, load_settings

    async with open_checkpointer("none") as saver:
        assert saver is None
    with pytest.raises(SettingsError, match="LXA_CHECKPOINT_URL"):
        load_settings(_env_file=None, checkpoint_url="none")


async def test_open_checkpointer_memory_yields_an_in_memory_saver() -> None:
    async with open_checkpointer("memory") as saver:
        assert isinstance(saver, InMemorySaver)


async def test_open_checkpointer_sqlite_creates_missing_parent_folders(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "deeper" / "checkpoints.sqlite"

    async with open_checkpointer(f"sqlite:///{target}") as saver:
        listed = [c async for c in saver.alist(None)]

    assert target.exists()
    assert listed == []


async def _interrupt_then_resume(url: str, run_id: str) -> None:
    """Cut a run off inside groq_check, then finish it from a fresh graph and checkpointer."""
    exchange = await make_exchange()
    state = await initial_state(exchange, run_id=run_id)
    blocking = BlockingReviewer()
    crashed_context = replace(make_context(exchange, probabilities=BUY_ETH), groq=blocking)
    model = crashed_context.signal_model
    assert isinstance(model, FixedModel)
    config = {"configurable": {"thread_id": run_id}}

    async with open_checkpointer(url) as saver:
        graph = build_graph(saver)
        task = asyncio.create_task(graph.ainvoke(state, config, context=crashed_context))
        await asyncio.wait_for(blocking.started.wait(), timeout=10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    resumed_context = replace(
        make_context(exchange), signal_model=model, groq=ScriptedReviewer("agree")
    )
    async with open_checkpointer(url) as saver:
        graph = build_graph(saver)
        snapshot = await graph.aget_state(config)
        assert snapshot.next == ("groq_check",)
        assert snapshot.values["proposal"]["action"] == "buy"
        assert snapshot.values["proposal"]["market"] == "KRW-ETH"
        assert "groq" not in snapshot.values

        final = await graph.ainvoke(None, config, context=resumed_context)

        listed = [c async for c in saver.alist({"configurable": {"thread_id": run_id}})]
        after = await graph.aget_state(config)

    assert model.calls == 1  # ml_signal was not run again
    assert blocking.calls == 1
    assert final["decision"] == {"action": "buy", "market": "KRW-ETH", "reason": "agreed"}
    assert [e["type"] for e in final["events"]].count("proposal") == 1
    assert listed
    assert after.next == ()
    assert "KRW-ETH" in (await exchange.get_account()).positions


async def test_run_cut_off_in_groq_check_resumes_on_sqlite_without_rerunning_ml(
    tmp_path: Path,
) -> None:
    await _interrupt_then_resume(f"sqlite:///{tmp_path / 'checkpoints.sqlite'}", "sqlite-run")


@pytest.mark.services
async def test_run_cut_off_in_groq_check_resumes_on_postgres_without_rerunning_ml(
    postgres_url: str,
) -> None:
    await _interrupt_then_resume(postgres_url, "postgres-run")
