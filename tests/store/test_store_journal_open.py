"""A journal that cannot be opened: `JournalUnavailable`, one line naming it and what to do."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from store.journal import Journal, JournalUnavailable
from store.journal.database import display_url

T0 = datetime(2025, 9, 1, tzinfo=UTC)
DAMAGED = "the file is not a database or is damaged; move it aside or restore a backup"


def _journal_file(tmp_path: Path) -> Path:
    """A real journal with a few hundred events, closed."""
    path = tmp_path / "journal.db"
    with Journal.open(f"sqlite:///{path}") as journal:
        for index in range(300):
            journal.record_event(None, "filler", {"index": index, "pad": "x" * 200}, T0)
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    return path


def test_a_file_of_noise_is_refused_naming_the_journal_and_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "noise.db"
    noise = bytes(range(256)) * 64
    path.write_bytes(noise)

    with pytest.raises(JournalUnavailable) as raised:
        Journal.open(f"sqlite:///{path}")

    assert str(raised.value) == f"journal sqlite:///{path} cannot be opened: {DAMAGED}"
    assert path.read_bytes() == noise  # nothing written over it


@pytest.mark.parametrize("keep", [4096, 0.5])
def test_a_truncated_journal_is_refused_as_damaged(tmp_path: Path, keep: float) -> None:
    path = _journal_file(tmp_path)
    whole = path.read_bytes()
    cut = whole[: int(keep * len(whole)) if isinstance(keep, float) else keep]
    path.write_bytes(cut)

    with pytest.raises(JournalUnavailable, match="damaged; move it aside"):
        Journal.open(f"sqlite:///{path}")

    assert path.read_bytes() == cut


def test_a_folder_given_as_the_journal_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(JournalUnavailable) as raised:
        Journal.open(f"sqlite:///{tmp_path}")

    assert str(raised.value).startswith(f"journal sqlite:///{tmp_path} cannot be opened: ")
    assert "\n" not in str(raised.value)


def test_a_folder_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")

    with pytest.raises(JournalUnavailable, match=r"its folder .*a_file cannot be created"):
        Journal.open(f"sqlite:///{blocker}/journal.db")


def test_a_postgres_server_that_does_not_answer_is_named_without_the_password() -> None:
    url = "postgresql://trader:hunter2@127.0.0.1:1/lxa?connect_timeout=2"

    with pytest.raises(JournalUnavailable) as raised:
        Journal.open(url)

    message = str(raised.value)
    assert message.startswith("journal postgresql://trader:***@127.0.0.1:1/lxa")
    assert "hunter2" not in message and "\n" not in message


def test_display_url_writes_sqlite_as_given_and_hides_passwords() -> None:
    assert display_url("sqlite+pysqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
    assert display_url("sqlite://") == "sqlite://"
    assert display_url("postgresql+psycopg://u:p@h/db") == "postgresql://u:***@h/db"
