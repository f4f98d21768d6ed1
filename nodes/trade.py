"""Place the agreed order on the exchange (paper or live) and report what happened."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from langgraph.runtime import Runtime

from exchange.types import (
    ExchangeError,
    Order,
    OrderRejected,
    OrderRequest,
    OrderState,
    OrderType,
    Side,
)
from exchange.views import order_view, request_view
from graph.context import Context
from graph.state import Decision, OrderView, TradeState
from nodes._common import emit, event


def order_identifier(run_id: str, side: Side) -> str:
    """Client order id for a run's order: the same run can never place a second one."""
    return f"lxa-{run_id}-{side.value}"


async def _send(context: Context, request: OrderRequest) -> tuple[Order | None, str | None]:
    """Send once; on a failed call look the order up by identifier instead of resending."""
    try:
        return await context.exchange.place_order(request), None
    except OrderRejected as exc:
        # A resumed run re-enters trade with the same identifier: the exchange refuses it
        # because the first attempt already went through. Adopt that order, never report
        # a rejection for a coin that was bought (its fills and protections would be lost).
        try:
            found = await context.exchange.get_order(request.identifier)
        except Exception:
            found = None
        if found is not None and found.state is not OrderState.REJECTED:
            return found, None
        return None, f"rejected: {exc.reason}"
    except (ExchangeError, OSError, TimeoutError) as exc:
        try:
            found = await context.exchange.get_order(request.identifier)
        except Exception as lookup_exc:
            return None, f"failed: {exc}; lookup failed: {lookup_exc}"
        if found is not None:
            return found, None
        return None, f"failed: {exc}"


async def trade(state: TradeState, runtime: Runtime[Context]) -> dict[str, Any]:
    """Send one market order for the agreed action; any failure becomes a recorded hold."""
    context = runtime.context
    proposal = state["proposal"]
    sizing = state["sizing"]
    market = proposal["market"]
    assert market is not None
    run_id = state["run_id"]
    if proposal["action"] == "buy":
        side = Side.BID
        request = OrderRequest(
            market=market,
            side=side,
            ord_type=OrderType.PRICE,
            identifier=order_identifier(run_id, side),
            price=Decimal(sizing["order_krw"] or "0"),
            run_id=run_id,
        )
    else:
        side = Side.ASK
        request = OrderRequest(
            market=market,
            side=side,
            ord_type=OrderType.MARKET,
            identifier=order_identifier(run_id, side),
            volume=Decimal(sizing["volume"] or "0"),
            run_id=run_id,
        )
    if not context.place_orders:
        view = cast(
            OrderView,
            request_view(request, "not_sent", "orders disabled for this run (fork or replay)"),
        )
        decision: Decision = {"action": "hold", "market": market, "reason": "orders_disabled"}
        return {
            "order": view,
            "decision": decision,
            "events": [event("trade", "decision", **decision)],
        }
    emit({"type": "order_sending", "node": "trade", "identifier": request.identifier})
    order, error = await _send(context, request)
    if order is None:
        reason = "order_rejected" if error and error.startswith("rejected") else "order_failed"
        unsent = "rejected" if reason == "order_rejected" else "unknown"
        view = cast(OrderView, request_view(request, unsent, error or ""))
    else:
        view = cast(OrderView, order_view(order, request))
        filled = order.executed_volume > 0
        reason = "agreed" if filled else "order_not_filled"
        if filled and side is Side.BID and order.avg_price is not None:
            avg = order.avg_price
            stop = Decimal(str(sizing.get("stop_loss_pct", 0))) / 100
            take = Decimal(str(sizing.get("take_profit_pct", 0))) / 100
            view["stop_loss_price"] = str((avg * (1 - stop)).quantize(Decimal("0.0001")))
            view["take_profit_price"] = str((avg * (1 + take)).quantize(Decimal("0.0001")))
    executed = reason == "agreed"
    decision = {
        "action": proposal["action"] if executed else "hold",
        "market": market,
        "reason": "agreed" if executed else reason,
    }
    events = [event("trade", "order", **view), event("trade", "decision", **decision)]
    return {"order": view, "decision": decision, "events": events}
