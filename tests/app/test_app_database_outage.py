"""PostgreSQL away mid-run (cut at a TCP proxy, as a restart looks to a client) and back.

While it is away: each bar is a recorded hold, no exception escapes, the stop-loss still
sells, and its order, fills and position change wait in memory. Once it is back: the next bar
runs the graph again (journal and checkpointer reconnected), and everything that waited is in
the journal, nothing lost.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from app.engine import Protection
from app.settings import Settings
from app.wiring import open_services
from exchange.feed import BarClose
from exchange.risk import TradingState
from exchange.types import OrderRequest, OrderType, Side
from ml.features import WARMUP_BARS


async def test_a_postgres_outage_holds_entries_keeps_selling_and_loses_nothing(
    settings: Settings, tmp_path: Path, bundled_closes: list[BarClose], postgres_url: str
) -> None:
    url = make_url(postgres_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        settings = settings.model_copy(
            update={"database_url": proxied, "checkpoint_url": None, "outage_reducing_after_s": 0}
        )
        async with open_services(settings, session_id="db", account_path=tmp_path / "a.json") as s:
            engine = s.engine
            engine.warm_up(bundled_closes[:WARMUP_BARS])
            order = await s.exchange.place_order(
                OrderRequest("KRW-XRP", Side.BID, OrderType.PRICE, "held", price=Decimal(100_000))
            )
            await engine.ledger.record_fills(
                None, order, Protection(Decimal(10**9), None), reason="t"
            )
            before = await engine.on_bar_close(bundled_closes[WARMUP_BARS])  # sells at once
            assert "KRW-XRP" not in (await s.exchange.get_account()).positions
            order = await s.exchange.place_order(
                OrderRequest("KRW-XRP", Side.BID, OrderType.PRICE, "held-2", price=Decimal(100_000))
            )
            await engine.ledger.record_fills(
                None, order, Protection(Decimal(10**9), None), reason="t"
            )

            proxy.cut()
            during = [await engine.on_bar_close(bundled_closes[WARMUP_BARS + k]) for k in (1, 2)]
            sold_while_away = "KRW-XRP" not in (await s.exchange.get_account()).positions
            waiting = len(engine.outbox.deferred.pending)
            reducing = engine.guard.state
            proxy.restore()
            after = await engine.on_bar_close(bundled_closes[WARMUP_BARS + 3])

            sells = [o for o in s.journal.list_orders(market="KRW-XRP") if o["side"] == "ask"]
            fills = s.journal.list_fills(market="KRW-XRP")
            outages = s.journal.events_of_type(["outage"])
            state_after = engine.guard.state
            decisions = s.journal.count_decisions()

    assert before.reason and not before.reason.startswith("database_unavailable")
    assert [d.reason.split(":")[0] for d in during] == ["database_unavailable"] * 2
    assert sold_while_away and waiting > 0 and reducing is TradingState.REDUCING
    assert not after.reason.startswith("database_unavailable"), after.reason
    assert state_after is TradingState.ACTIVE
    assert len(sells) == 2 and all(o["state"] == "done" for o in sells)
    assert [f["side"] for f in fills] == ["bid", "ask", "bid", "ask"]  # nothing lost
    assert outages and outages[0]["payload"]["source"] == "database"
    assert decisions == 2  # the two bars while it was away started no run
