"""The one JSON view of an order (what the graph's state, the journal and the viewer show) and
the one journal row of a fill."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from exchange.types import Fill, Order, OrderRequest, OrderType
from store.rows import FillRow


def _text(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def request_view(request: OrderRequest, state: str, error: str | None = None) -> dict[str, Any]:
    """An order not answered (yet): `sending`, or `rejected` / `unknown` with the error."""
    return {
        "identifier": request.identifier,
        "market": request.market,
        "side": request.side.value,
        "ord_type": request.ord_type.value,
        "state": state,
        "requested_krw": _text(request.price) if request.ord_type is OrderType.PRICE else None,
        "requested_volume": _text(request.volume),
        "executed_volume": "0",
        "avg_price": None,
        "paid_fee": "0",
        "stop_loss_price": None,
        "take_profit_price": None,
        "error": error,
    }


def order_view(order: Order, request: OrderRequest | None = None) -> dict[str, Any]:
    """An answered order, with what was asked when the request is known."""
    if request is not None:
        view = request_view(request, order.state.value)
    else:
        view = {
            "identifier": order.identifier,
            "market": order.market,
            "side": order.side.value,
            "ord_type": order.ord_type.value,
            "state": order.state.value,
            "requested_krw": None,
            "requested_volume": _text(order.volume),
            "stop_loss_price": None,
            "take_profit_price": None,
        }
    view.update(
        avg_price=_text(order.avg_price),
        executed_volume=str(order.executed_volume),
        paid_fee=str(order.paid_fee),
        error=order.reason,
    )
    return view


def fill_row(fill: Fill) -> FillRow:
    """The journal's row of one fill (live fills carry the exchange's trade uuid: once each)."""
    return {
        "order_identifier": fill.order_identifier,
        "market": fill.market,
        "side": fill.side.value,
        "price": fill.price,
        "volume": fill.volume,
        "fee": fill.fee,
        "ts": fill.ts,
        "trade_uuid": fill.trade_uuid,
    }
