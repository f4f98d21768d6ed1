"""A local server that answers Upbit's minute-candle endpoint from real candles.

``GET /v1/candles/minutes/1?market=&to=&count=`` returns up to ``count`` (max 200) candles
opened before ``to`` (exclusive; default: after the newest), newest first, in Upbit's field
names, with a ``Remaining-Req`` header. It can answer 429 once at a chosen request, say
``sec=0`` at another, and fail (503) from a chosen request on, to interrupt a download.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


@dataclass
class CandleServerState:
    """Candles per market (oldest first) and the fault plan; records every request."""

    candles: dict[str, pd.DataFrame]
    too_many_at: set[int] = field(default_factory=set)  # request numbers answered 429
    exhausted_at: set[int] = field(default_factory=set)  # ... answered with sec=0
    fail_from: int | None = None  # from this request number on: fail_status
    fail_status: int = 503
    requests: list[dict[str, str]] = field(default_factory=list)


def _candle(market: str, row: Any) -> dict[str, Any]:
    ts = pd.Timestamp(row.ts)
    return {
        "market": market,
        "candle_date_time_utc": ts.strftime("%Y-%m-%dT%H:%M:%S"),
        "candle_date_time_kst": (ts + pd.Timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S"),
        "opening_price": row.open,
        "high_price": row.high,
        "low_price": row.low,
        "trade_price": row.close,
        "timestamp": int(ts.value // 1_000_000) + 59_000,
        "candle_acc_trade_price": row.close * row.volume,
        "candle_acc_trade_volume": row.volume,
        "unit": 1,
    }


def make_app(state: CandleServerState) -> Starlette:
    """Build the ASGI app over ``state``."""

    async def candles(request: Request) -> JSONResponse:
        query = dict(request.query_params)
        state.requests.append(query)
        number = len(state.requests)
        if state.fail_from is not None and number >= state.fail_from:
            return JSONResponse(
                {"error": {"message": "unavailable"}},
                status_code=state.fail_status,
                headers={"Remaining-Req": "group=candles; min=0; sec=0"},
            )
        if number in state.too_many_at:
            return JSONResponse(
                {"error": {"name": "too_many_requests"}},
                status_code=429,
                headers={"Remaining-Req": "group=candles; min=0; sec=0"},
            )
        sec = 0 if number in state.exhausted_at else 9
        headers = {"Remaining-Req": f"group=candles; min=599; sec={sec}"}
        market = query.get("market", "")
        if market not in state.candles:
            return JSONResponse(
                {"error": {"name": "404", "message": "Code not found"}},
                status_code=404,
                headers=headers,
            )
        count = min(int(query.get("count", "1")), 200)
        frame = state.candles[market]
        if "to" in query:
            to = pd.Timestamp(query["to"])
            to = to.tz_localize("UTC") if to.tzinfo is None else to.tz_convert("UTC")
            frame = frame[frame["ts"] < to]
        chosen = frame.iloc[-count:].iloc[::-1]
        body = [_candle(market, row) for row in chosen.itertuples(index=False)]
        return JSONResponse(body, headers=headers)

    return Starlette(routes=[Route("/v1/candles/minutes/1", candles)])
