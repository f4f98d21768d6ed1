"""The engine over the bundled real candles: one journaled decision per run, restarts resume."""

from __future__ import annotations

import math
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from app.engine import Protection
from app.session import ReplayError, collect_closes, replay
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, open_services
from exchange.feed import LIVE_VALUE_COLUMNS, BarClose
from ml.data import LIVE_COLUMNS, load_candles
from ml.features import WARMUP_BARS


async def test_every_bar_close_makes_one_journaled_decision(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(
        settings, session_id="t1", account_path=tmp_path / "acct.json"
    ) as services:
        summary = await replay(services, bundled_closes, minutes=120, pace_seconds=0)

        assert summary.runs == 120
        assert services.journal.count_decisions("t1") == 120
        assert sum(summary.holds.values()) == services.journal.count_decisions("t1", action="hold")
        first = services.journal.list_decisions(session_id="t1", limit=1)[0]
        assert first["reviewer_labels"]["groq_check"] in (None, "rule-based")
        assert set(first["ml"]["signals"]) == set(settings.markets)


async def test_runs_are_named_by_session_and_bar_and_listed_newest_first(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(
        settings, session_id="t2", account_path=tmp_path / "acct.json"
    ) as services:
        await replay(services, bundled_closes, minutes=3, pace_seconds=0)

        rows = services.journal.list_decisions(session_id="t2")
        expected = [
            "t2-" + c.ts.strftime("%Y%m%dT%H%MZ")
            for c in bundled_closes[WARMUP_BARS : WARMUP_BARS + 3]
        ]
        assert [r["run_id"] for r in rows] == list(reversed(expected))


async def test_restart_continues_after_the_last_journaled_bar_with_the_same_account(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    settings = settings.model_copy(update={"checkpoint_url": f"sqlite:///{tmp_path / 'cp.db'}"})
    account = tmp_path / "acct.json"
    async with open_services(settings, session_id="t3", account_path=account) as services:
        await replay(services, bundled_closes, minutes=30, pace_seconds=0)
        equity_before = (await services.exchange.get_account()).krw

    async with open_services(settings, session_id="t3", account_path=account) as services:
        assert (await services.exchange.get_account()).krw == equity_before
        summary = await replay(services, bundled_closes, minutes=10, pace_seconds=0)

        assert summary.runs == 40
        assert summary.runs_this_call == 10


@pytest.mark.services
async def test_engine_runs_on_postgres_journal_and_checkpointer(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose], postgres_url: str
) -> None:
    settings = settings.model_copy(update={"database_url": postgres_url, "checkpoint_url": None})
    async with open_services(
        settings, session_id="pg", account_path=tmp_path / "acct.json"
    ) as services:
        summary = await replay(services, bundled_closes, minutes=20, pace_seconds=0)
        run_id = services.journal.list_decisions(session_id="pg", limit=1)[0]["run_id"]
        snapshot = await services.engine.graph.aget_state({"configurable": {"thread_id": run_id}})

        assert summary.runs == 20
        assert snapshot.values["decision"]["action"] in ("buy", "sell", "hold")
        assert snapshot.next == ()


async def test_replay_refuses_candles_the_model_was_trained_on(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(
        settings, session_id="t4", account_path=tmp_path / "acct.json"
    ) as services:
        services.predictor.meta["training_window"] = {
            "KRW-BTC": {
                "first_ts": "2025-09-01T00:00:00+00:00",
                "last_ts": "2025-09-20T00:00:00+00:00",
            }
        }

        with pytest.raises(ReplayError, match="overlaps the replay"):
            await replay(services, bundled_closes, minutes=5, pace_seconds=0)


async def test_stop_loss_sells_a_held_coin_outside_the_graph(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(
        settings, session_id="t5", account_path=tmp_path / "acct.json"
    ) as services:
        engine = services.engine
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        await _hold_xrp(
            services, Protection(stop_loss_price=Decimal(10**9), take_profit_price=None)
        )
        assert "KRW-XRP" in (await services.exchange.get_account()).positions

        await engine.on_bar_close(bundled_closes[WARMUP_BARS])

        assert "KRW-XRP" not in (await services.exchange.get_account()).positions
        closed = services.journal.recent_results()
        assert len(closed) == 1 and closed[0] < 0
        sells = [o for o in services.journal.list_orders(market="KRW-XRP") if o["side"] == "ask"]
        assert sells and sells[0]["identifier"].endswith("KRW-XRP-stop_loss")
        assert sells[0]["run_id"] is None  # outside the graph


async def _hold_xrp(services, protection: Protection) -> Decimal:  # type: ignore[no-untyped-def]
    from exchange.types import OrderRequest, OrderType, Side

    order = await services.exchange.place_order(
        OrderRequest("KRW-XRP", Side.BID, OrderType.PRICE, "manual-buy", price=Decimal(100_000))
    )
    await services.engine.ledger.record_fills(None, order, protection, reason="test")
    return order.avg_price


async def test_stop_loss_sells_on_the_tick_that_crosses_it_before_the_bar_closes(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(
        settings, session_id="t7", account_path=tmp_path / "acct.json"
    ) as services:
        engine = services.engine
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        entry = await _hold_xrp(services, Protection(Decimal("1000"), Decimal("99999")))
        bar = bundled_closes[WARMUP_BARS].bars["KRW-XRP"]
        runs_before = services.journal.count_decisions()

        await engine.on_tick("KRW-XRP", bar.ts, float(entry), 10.0)  # above the stop: nothing
        assert "KRW-XRP" in (await services.exchange.get_account()).positions
        await engine.on_tick("KRW-XRP", bar.ts, 999.0, 10.0)  # below the 1000 KRW stop

        assert "KRW-XRP" not in (await services.exchange.get_account()).positions
        sells = [o for o in services.journal.list_orders(market="KRW-XRP") if o["side"] == "ask"]
        assert len(sells) == 1 and sells[0]["identifier"].endswith("KRW-XRP-stop_loss")
        sell_fills = [
            f for f in services.journal.list_fills(market="KRW-XRP") if f["side"] == "ask"
        ]
        assert sell_fills and Decimal(str(sell_fills[0]["price"])) < Decimal(1000)
        assert services.journal.count_decisions() == runs_before  # no graph run was involved
        assert "KRW-XRP" not in engine.protections


async def test_take_profit_sells_on_the_tick_that_reaches_it(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(
        settings, session_id="t8", account_path=tmp_path / "acct.json"
    ) as services:
        engine = services.engine
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        entry = await _hold_xrp(services, Protection(Decimal("1"), Decimal("5000")))

        await engine.on_tick("KRW-XRP", bundled_closes[WARMUP_BARS].ts, 5000.0, 1.0)

        assert "KRW-XRP" not in (await services.exchange.get_account()).positions
        closed = services.journal.recent_results()
        assert len(closed) == 1 and closed[0] > 0, (entry, closed)


async def test_a_failed_protection_sell_is_retried_after_the_pause_not_on_every_tick(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    from datetime import timedelta

    from exchange.types import ExchangeError

    async with open_services(
        settings, session_id="t9", account_path=tmp_path / "acct.json"
    ) as services:
        engine = services.engine
        engine.warm_up(bundled_closes[:WARMUP_BARS])
        entry = await _hold_xrp(services, Protection(None, None))
        # a stop just under the entry, so the watchdog's 1% drop detector stays out of it
        engine.protections["KRW-XRP"] = Protection(entry * Decimal("0.999"), None)
        under = float(entry) * 0.998
        sends: list[str] = []
        real_place = engine.exchange.place_order

        async def failing_place(request, **kwargs):  # type: ignore[no-untyped-def]
            sends.append(request.identifier)
            if len(sends) == 1:
                raise ExchangeError("connection reset")
            return await real_place(request, **kwargs)

        engine.exchange.place_order = failing_place  # type: ignore[method-assign]
        t0 = bundled_closes[WARMUP_BARS].ts
        for second in range(5):  # five ticks under the stop within the retry pause
            await engine.on_tick("KRW-XRP", t0 + timedelta(seconds=second), under, 1.0)
        assert len(sends) == 1
        assert "KRW-XRP" in (await services.exchange.get_account()).positions

        await engine.on_tick(
            "KRW-XRP", t0 + timedelta(seconds=engine.protection_retry_s + 1), under, 1.0
        )

        assert len(sends) == 2
        assert "KRW-XRP" not in (await services.exchange.get_account()).positions
        failed = services.journal.events_of_type(["protection_failed"])
        assert len(failed) == 1 and "connection reset" in failed[0]["payload"]["error"]


async def test_manual_evaluation_returns_at_once_and_the_run_is_journaled(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    async with open_services(
        settings, session_id="t6", account_path=tmp_path / "acct.json"
    ) as services:
        await replay(services, bundled_closes, minutes=2, pace_seconds=0)

        run_id = await services.engine.evaluate_now()
        await services.engine.wait_idle()

        decision = services.journal.get_decision(run_id)
        assert decision is not None and decision["trigger"] == "manual"


async def test_a_replayed_recording_hands_its_live_values_to_the_model(
    settings: Settings, tmp_path: Path
) -> None:
    # Real bundled candles with SYNTHETIC live values (no recording exists yet), as a folder
    # of `lxa record` bars would load: the engine must see them as the batch features do.
    candles = load_candles([BUNDLED_CANDLES])
    rows = np.arange(len(candles))
    candles["trade_intensity"] = np.linspace(-0.9, 0.9, len(candles))
    candles["spread_bps"] = np.where(rows % 5 == 0, np.nan, 0.5 + (rows % 7) / 10)
    closes = await collect_closes(candles)
    async with open_services(
        settings, session_id="t9", account_path=tmp_path / "acct.json"
    ) as services:
        await replay(services, closes, minutes=3, pace_seconds=0)
        last = services.journal.list_decisions(session_id="t9", limit=1)[0]

    assert LIVE_VALUE_COLUMNS == LIVE_COLUMNS  # the replay hands on what the loader reads
    bar = closes[WARMUP_BARS + 2]
    assert last["run_id"] == "t9-" + bar.ts.strftime("%Y%m%dT%H%MZ")
    seen = last["ml"]["features"]
    assert set(bar.live_values) == set(seen) == set(settings.markets)
    for market, values in bar.live_values.items():
        for name, value in values.items():
            expected = None if math.isnan(value) else value
            assert seen[market][name] == expected, (market, name)
    assert any(seen[m]["spread_bps"] is not None for m in seen)
