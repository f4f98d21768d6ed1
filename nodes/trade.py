"""Place the agreed order on the exchange (paper or live) and report what happened."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

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
from graph.context import Context
from graph.state import Decision, OrderView, TradeState
from nodes._common import emit, event


def order_identifier(run_id: str, side: Side) -> str:
    """Client order id for a run's order: the same run can never place a second one."""
    return f"lxa-{run_id}-{side.value}"


def _order_view(order: Order, request: OrderRequest) -> OrderView:
    avg = order.avg_price
    return {
        "identifier": order.identifier,
        "market": order.market,
        "side": order.side.value,
        "ord_type": order.ord_type.value,
        "state": order.state.value,
        "requested_krw": str(request.price) if request.ord_type is OrderType.PRICE else None,
        "requested_volume": str(request.volume) if request.volume is not None else None,
        "executed_volume": str(order.executed_volume),
        "avg_price": str(avg) if avg is not None else None,
        "paid_fee": str(order.paid_fee),
        "stop_loss_price": None,
        "take_profit_price": None,
        "error": order.reason,
    }


def _unsent_view(request: OrderRequest, state: str, error: str) -> OrderView:
    return {
        "identifier": request.identifier,
        "market": request.market,
        "side": request.side.value,
        "ord_type": request.ord_type.value,
        "state": state,
        "requested_krw": str(request.price) if request.ord_type is OrderType.PRICE else None,
        "requested_volume": str(request.volume) if request.volume is not None else None,
        "executed_volume": "0",
        "avg_price": None,
        "paid_fee": "0",
        "stop_loss_price": None,
        "take_profit_price": None,
        "error": error,
    }


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
        )
    else:
        side = Side.ASK
        request = OrderRequest(
            market=market,
            side=side,
            ord_type=OrderType.MARKET,
            identifier=order_identifier(run_id, side),
            volume=Decimal(sizing["volume"] or "0"),
        )
    if not context.place_orders:
        view = _unsent_view(request, "not_sent", "orders disabled for this run (fork or replay)")
        decision: Decision = {"action": "hold", "market": market, "reason": "orders_disabled"}
        return {
            "order": view,
            "decision": decision,
            "events": [event("trade", "decision", **decision)],
        }
    if context.order_log is not None:
        context.order_log(run_id, _unsent_view(request, "sending", ""))
    emit({"type": "order_sending", "node": "trade", "identifier": request.identifier})
    order, error = await _send(context, request)
    if order is None:
        reason = "order_rejected" if error and error.startswith("rejected") else "order_failed"
        view = _unsent_view(
            request, "rejected" if reason == "order_rejected" else "unknown", error or ""
        )
    else:
        view = _order_view(order, request)
        filled = order.executed_volume > 0
        reason = "agreed" if filled else "order_not_filled"
        if filled and side is Side.BID and order.avg_price is not None:
            avg = order.avg_price
            stop = Decimal(str(sizing.get("stop_loss_pct", 0))) / 100
            take = Decimal(str(sizing.get("take_profit_pct", 0))) / 100
            view["stop_loss_price"] = str((avg * (1 - stop)).quantize(Decimal("0.0001")))
            view["take_profit_price"] = str((avg * (1 + take)).quantize(Decimal("0.0001")))
    if context.order_log is not None:
        context.order_log(run_id, view)
    executed = reason == "agreed"
    decision = {
        "action": proposal["action"] if executed else "hold",
        "market": market,
        "reason": "agreed" if executed else reason,
    }
    events = [event("trade", "order", **view), event("trade", "decision", **decision)]
    return {"order": view, "decision": decision, "events": events}
