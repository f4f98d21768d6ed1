"""`lxa reconcile` as a user runs it, against the fake Upbit: refuse, adopt, then agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from fake_upbit import ACCESS_KEY, SECRET_KEY, FakeUpbit

from store.journal import Journal

LXA = [sys.executable, "-m", "app.cli"]


@pytest.fixture
def fake() -> Iterator[FakeUpbit]:
    with FakeUpbit(krw=Decimal(1_000_000)) as server:
        server.set_price("KRW-BTC", Decimal(50_000_000))
        yield server


def lxa(tmp_path: Path, fake: FakeUpbit, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env.update(
        LXA_DATA_DIR=str(tmp_path / "data"),
        LXA_UPBIT_REST_URL=fake.base_url,
        LXA_UPBIT_ACCESS_KEY=ACCESS_KEY,
        LXA_UPBIT_SECRET_KEY=SECRET_KEY,
        LXA_MARKETS="KRW-BTC",
    )
    return subprocess.run(
        [*LXA, "reconcile", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_balance_the_journal_never_saw_is_refused_until_adopted(
    tmp_path: Path, fake: FakeUpbit
) -> None:
    fake.set_balance("BTC", Decimal("0.3"), Decimal(48_000_000))

    refused = lxa(tmp_path, fake)
    adopted = lxa(tmp_path, fake, "--adopt", "--json")
    agreed = lxa(tmp_path, fake)

    assert refused.returncode == 1, refused.stderr
    assert "KRW-BTC: Upbit holds 0.3, the journal 0" in refused.stdout
    assert "lxa reconcile --adopt" in refused.stdout
    assert adopted.returncode == 0, adopted.stderr
    assert json.loads(adopted.stdout)["adopted_balances"] == ["KRW-BTC 0.3"]
    assert agreed.returncode == 0, agreed.stderr
    assert "the journal agrees with the exchange" in agreed.stdout
    assert fake.order_posts() == []  # reconciling never sends an order
    with Journal.open(f"sqlite:///{tmp_path / 'data' / 'journal.db'}") as journal:
        position = journal.positions()["KRW-BTC"]
        events = journal.events_of_type(["reconciliation"])
    assert (position["volume"], position["avg_buy_price"]) == (Decimal("0.3"), Decimal(48_000_000))
    assert [e["payload"]["ok"] for e in events] == [True, True, False]


def test_without_keys_it_says_what_is_missing(tmp_path: Path, fake: FakeUpbit) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env["LXA_DATA_DIR"] = str(tmp_path / "data")
    done = subprocess.run([*LXA, "reconcile"], env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1
    assert "LXA_UPBIT_ACCESS_KEY" in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
