"""`lxa run --feed live` and `lxa record` as a user runs them, against the local fake Upbit.

The fake replays real Upbit candles (the bundled 2025-09-19.. slice, which the bundled model
never saw) as trade and orderbook messages, and serves the warm-up candles and the trade
history over REST.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from fake_upbit_ws import FakeUpbitWS

ROOT = Path(__file__).resolve().parents[2]
BUNDLED_CANDLES = ROOT / "app" / "demo" / "candles_upbit_1m_demo.parquet"
LXA = [sys.executable, "-m", "app.cli"]
WARMUP_MINUTES = 120


# The bundled model has no edge after fees, so the default policy never trades it; this test is
# about the live feed reaching orders, so the policy enters on any forecast.
LOOSE_POLICY = {
    "LXA_POLICY_ENTRY_MARGIN_BPS": "-1000",
    "LXA_POLICY_EXIT_MARGIN_BPS": "-1000",
    "LXA_POLICY_REENTRY_PAUSE_MINUTES": "0",
}


def _env(tmp_path: Path, fake: FakeUpbitWS) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env.update(
        LXA_DATA_DIR=str(tmp_path / "data"),
        LXA_UPBIT_WS_URL=fake.ws_url,
        LXA_UPBIT_REST_URL=fake.rest_url,
        PYTHONPATH=str(ROOT),
    )
    return env


def _candles(minutes: int) -> pd.DataFrame:
    frame = pd.read_parquet(BUNDLED_CANDLES)
    return frame[frame["ts"] < frame["ts"].min() + pd.Timedelta(minutes=minutes)]


def test_lxa_run_live_feed_trades_on_paper_and_journals_a_decision_per_closed_bar(
    tmp_path: Path,
) -> None:
    runs = 300
    candles = _candles(WARMUP_MINUTES + runs + 5)
    with FakeUpbitWS.in_thread(
        candles, history_minutes=WARMUP_MINUTES, status_interval_s=10.0, pace_s=0.0005
    ) as fake:
        # The fake replays far faster than the engine decides; once it has sent everything only
        # status messages come, which must not count as a stale feed while the backlog drains.
        env = {**_env(tmp_path, fake), "LXA_FEED_STALE_AFTER_S": "600", **LOOSE_POLICY}
        result = subprocess.run(
            [*LXA, "run", "--feed", "live", "--minutes", str(runs), "--no-serve", "--json"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=500,
        )

    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    assert summary["runs"] == runs and summary["runs_this_call"] == runs
    first_live = candles["ts"].sort_values().unique()[WARMUP_MINUTES]
    assert summary["replayed"].startswith(pd.Timestamp(first_live).isoformat())
    assert summary["trades"] > 0, summary["holds"]
    assert any("live feed ws://127.0.0.1" in note for note in summary["notes"])
    feed_note = next(note for note in summary["notes"] if note.startswith("feed: "))
    assert "0 stale alarm(s)" in feed_note and "0 late trade(s)" in feed_note, feed_note
    journal = Path(summary["journal"].removeprefix("sqlite:///"))
    with sqlite3.connect(journal) as db:
        decisions = db.execute("select action, ml from decisions order by bar_ts").fetchall()
        events = [row[0] for row in db.execute("select type from events")]
        fills = db.execute("select count(*) from fills").fetchone()[0]
    assert len(decisions) == runs
    assert {action for action, _ in decisions} - {"hold"}, "the live run never traded"
    assert fills > 0
    assert "feed_backfill" in events  # the first connect backfills from the warm-up's end
    # The live-only features reach the model: the bars were built from trades and orderbooks.
    features = json.loads(decisions[-1][1])["features"]
    btc = features["KRW-BTC"]
    assert btc["trade_intensity"] is not None and -1 <= btc["trade_intensity"] <= 1
    assert btc["spread_bps"] is not None and btc["spread_bps"] > 0


def test_lxa_record_writes_every_buffered_row_on_ctrl_c(tmp_path: Path) -> None:
    candles = _candles(30)
    out = tmp_path / "ticks"
    with FakeUpbitWS.in_thread(candles, status_interval_s=10.0, idle_status_s=0.05) as fake:
        process = subprocess.Popen(
            [*LXA, "record", "--out", str(out), "--flush-interval", "3600"],
            env=_env(tmp_path, fake),
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        wanted = f"recorded {len(fake.trades)} trades"
        try:
            for line in process.stderr:  # progress lines come with every status message
                if wanted in line and "written 0)" in line:
                    break
            else:
                raise AssertionError("lxa record ended before it recorded every trade")
            process.send_signal(signal.SIGINT)
            _, rest = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()

    assert process.returncode == 130, rest
    trades = pd.read_parquet(out / "trades")
    assert sorted(trades["sequential_id"]) == sorted(t["sequential_id"] for t in fake.trades)
    orderbooks = pd.read_parquet(out / "orderbooks")
    assert len(orderbooks) == len(fake.events) - len(fake.trades)
    assert set(trades["market"].astype(str)) == set(fake.markets)
    assert (out / "bars").is_dir()


async def test_live_runner_sends_each_trade_once_to_the_watchdog_and_journals_a_stale_feed(
    tmp_path: Path,
) -> None:
    import httpx

    from app.live import LiveRunner, warmup_closes
    from app.settings import Settings
    from app.wiring import open_services
    from ml.registry import latest_model_dir

    candles = _candles(WARMUP_MINUTES + 40)
    start = int(pd.Timestamp(candles["ts"].min()).timestamp() * 1000)
    stall_from = start + (WARMUP_MINUTES + 20) * 60_000 + 10_000
    holder: dict[str, LiveRunner] = {}
    fake = FakeUpbitWS(
        candles,
        history_minutes=WARMUP_MINUTES,
        status_interval_s=5.0,
        stall_ms=(stall_from, stall_from + 45_000),
        consumed=lambda: holder["runner"].client.stats.messages if "runner" in holder else 0,
    )
    async with fake:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            checkpoint_url="memory",
            model_dir=latest_model_dir(ROOT / "app" / "demo" / "model"),
            upbit_ws_url=fake.ws_url,
            upbit_rest_url=fake.rest_url,
            feed_stale_after_s=30.0,
        )
        async with open_services(
            settings, session_id="live-test", account_path=tmp_path / "account.json"
        ) as services:
            async with httpx.AsyncClient() as http:
                warm = await warmup_closes(http, fake.rest_url, services.engine.markets, 200)
            services.engine.warm_up(warm)
            ticks: list[tuple[str, int]] = []
            original_on_tick = services.engine.on_tick

            async def counting_on_tick(market: str, ts: Any, price: float, volume: float) -> None:
                ticks.append((market, int(ts.timestamp() * 1000)))
                await original_on_tick(market, ts, price, volume)

            services.engine.on_tick = counting_on_tick  # type: ignore[method-assign]
            runner = holder["runner"] = LiveRunner(services, clock=fake.clock.now)
            runner.client.check_interval_s = 0.05
            runner.client.backoff_initial_s = 0.02
            done = await asyncio.wait_for(runner.run(minutes=35), timeout=120)
            events = [row["type"] for row in services.journal.events_after(0, limit=100_000)]
            decisions = services.journal.count_decisions("live-test")

    assert len(done) == 35 and decisions == 35
    assert [c.ts for c, _ in done] == sorted(c.ts for c, _ in done)
    assert done[0][0].ts > warm[-1].ts  # live bars continue where the warm-up ended
    # Every live trade reached the watchdog exactly once; no bar was replayed as ticks.
    stamps = {t["trade_timestamp"] for t in fake.trades}
    assert len(ticks) == runner.client.stats.trades
    assert {ts for _, ts in ticks} <= stamps
    assert len(set(ticks)) == len(ticks)
    assert runner.client.stats.stale_alarms == 1
    assert "feed_stale" in events and "feed_backfill" in events
    assert runner.builder.late_trades == 0


def test_feed_settings_refuse_a_non_websocket_url_and_a_tiny_stale_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.settings import SettingsError, load_settings

    for name in ("LXA_UPBIT_WS_URL", "LXA_FEED_STALE_AFTER_S"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(SettingsError, match="LXA_UPBIT_WS_URL"):
        load_settings(_env_file=None, upbit_ws_url="https://api.upbit.com/websocket/v1")
    with pytest.raises(SettingsError, match="LXA_FEED_STALE_AFTER_S"):
        load_settings(_env_file=None, feed_stale_after_s=1)
    defaults = load_settings(_env_file=None)
    assert defaults.upbit_ws_url == "wss://api.upbit.com/websocket/v1"
    assert defaults.feed_stale_after_s == 30.0


async def test_warmup_fetches_more_than_one_page_of_candles_backwards() -> None:
    """Upbit gives 200 candles a request; the four-hour features need LONG_BARS, so the
    warm-up pages backwards with `to` and joins the pages without a gap or a repeat."""
    import httpx

    from app.live import warmup_closes
    from ml.features import LONG_BARS

    history = 330
    candles = _candles(history + 5)
    async with FakeUpbitWS(candles, history_minutes=history) as fake, httpx.AsyncClient() as http:
        warm = await warmup_closes(http, fake.rest_url, ["KRW-BTC", "KRW-XRP"], LONG_BARS + 16)
        everything = await warmup_closes(http, fake.rest_url, ["KRW-BTC"], 1000)

    stamps = [close.ts for close in warm]
    assert len(stamps) == LONG_BARS + 16 > 200
    assert all(
        later - earlier == pd.Timedelta(minutes=1) for earlier, later in itertools.pairwise(stamps)
    )
    assert stamps[-1] == candles["ts"].min() + pd.Timedelta(minutes=history - 1)
    for close in warm:
        assert set(close.bars) == {"KRW-BTC", "KRW-XRP"}
    # Asking for more than the history holds stops at its first candle, in order.
    first = [close.ts for close in everything]
    assert first[0] == candles["ts"].min() and len(first) == history


async def test_warmup_refuses_a_page_that_does_not_go_back_in_time() -> None:
    """A server that ignores `to` and repeats the newest page: a clear error, not a loop."""
    import httpx

    from app.live import LiveFeedError, warmup_closes

    class IgnoresTo(FakeUpbitWS):
        def candles(
            self, market: str, count: int, to: pd.Timestamp | None = None
        ) -> list[dict[str, Any]]:
            return super().candles(market, count)

    candles = _candles(335)
    async with IgnoresTo(candles, history_minutes=330) as fake, httpx.AsyncClient() as http:
        with pytest.raises(LiveFeedError, match="asked for candles before"):
            await warmup_closes(http, fake.rest_url, ["KRW-BTC"], 300)
