"""A held coin the engine finds at start with no stop-loss gets one back (the plan's 3% cap)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from app.engine import Protection
from app.settings import Settings
from app.wiring import open_services
from exchange.feed import BarClose
from exchange.types import OrderRequest, OrderType, Side
from ml.features import WARMUP_BARS


async def test_a_position_without_a_stop_gets_one_at_start_and_it_sells(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose]
) -> None:
    account = tmp_path / "acct.json"
    async with open_services(settings, session_id="p1", account_path=account) as services:
        services.engine.warm_up(bundled_closes[:WARMUP_BARS])
        order = await services.exchange.place_order(
            OrderRequest("KRW-XRP", Side.BID, OrderType.PRICE, "held", price=Decimal(100_000))
        )
        # Filled while nothing protected it (settled by reconciliation, or adopted).
        ledger = services.engine.ledger
        await ledger.record_fills(None, order, Protection(None, None), reason="t")
        held = services.journal.positions()["KRW-XRP"]
        assert held["stop_loss_price"] is None

    async with open_services(settings, session_id="p2", account_path=account) as services:
        engine = services.engine
        expected = held["avg_buy_price"] * Decimal("0.97")
        assert engine.protections["KRW-XRP"].stop_loss_price == expected
        assert services.journal.positions()["KRW-XRP"]["stop_loss_price"] == expected
        (event,) = services.journal.events_of_type(["protection_restored"])
        assert event["payload"]["market"] == "KRW-XRP"

        engine.warm_up(bundled_closes[:WARMUP_BARS])
        bar = bundled_closes[WARMUP_BARS].bars["KRW-XRP"]
        await engine.on_tick("KRW-XRP", bar.ts, float(expected) * 0.999, 10.0)

        assert "KRW-XRP" not in (await services.exchange.get_account()).positions
        sells = [o for o in services.journal.list_orders(market="KRW-XRP") if o["side"] == "ask"]
        assert len(sells) == 1 and sells[0]["identifier"].endswith("KRW-XRP-stop_loss")
