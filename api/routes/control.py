"""The kill switch: read the trading state; halt (optionally flattening) and resume."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Path, status

from api.deps import (
    CHANGE_RESPONSES,
    BusDep,
    DailyLimitSource,
    JournalDep,
    Seller,
    Services,
    ServicesDep,
    error,
    require_read_access,
    require_token,
)
from api.schemas import (
    MARKET_PATTERN,
    HaltRequest,
    ResumeRequest,
    SellOut,
    SellRequest,
    TradingStateOut,
)
from store.bus import EventBus
from store.trading_view import trading_view

router = APIRouter(prefix="/api", tags=["control"])

_CHANGE_RESPONSES = CHANGE_RESPONSES


def _daily(services: Services) -> dict[str, Any] | None:
    """The running engine's daily-limit figures, or None where no engine runs here."""
    source = services.account
    return source.daily_limit() if isinstance(source, DailyLimitSource) else None


def _state(services: Services) -> TradingStateOut:
    return TradingStateOut.model_validate(trading_view(services.journal, daily=_daily(services)))


def _publish(bus: EventBus, state: TradingStateOut) -> None:
    bus.publish({"type": "trading_state", **state.model_dump(mode="json")})


@router.get(
    "/trading-state", response_model=TradingStateOut, dependencies=[Depends(require_read_access)]
)
def read_trading_state(services: ServicesDep) -> TradingStateOut:
    """Return the operator's trading state, the effective one and the loss limits' figures.

    `monthly` is null before an engine ever ran on this journal; `daily` is null where no
    engine runs in this process (its figures are not journaled).
    """
    return _state(services)


@router.post(
    "/halt",
    response_model=TradingStateOut,
    dependencies=[Depends(require_token)],
    responses=_CHANGE_RESPONSES,
)
def halt(
    body: HaltRequest, services: ServicesDep, journal: JournalDep, bus: BusDep
) -> TradingStateOut:
    """Halt trading (the engine stops every order but cancels); needs the API token."""
    journal.write_trading_control("halted", body.reason, flatten=body.flatten, by="api")
    state = _state(services)
    _publish(bus, state)
    return state


@router.post(
    "/resume",
    response_model=TradingStateOut,
    dependencies=[Depends(require_token)],
    responses=_CHANGE_RESPONSES,
)
def resume(
    body: ResumeRequest, services: ServicesDep, journal: JournalDep, bus: BusDep
) -> TradingStateOut:
    """Resume trading; a pending flatten request is dropped; needs the API token.

    A breached monthly loss cap is cleared too (the engine does it at its next bar and counts
    the month again from the equity then); a breached daily limit still allows exits only.
    """
    journal.write_trading_control("active", body.reason, by="api")
    state = _state(services)
    _publish(bus, state)
    return state


MarketPath = Annotated[
    str,
    Path(max_length=32, pattern=MARKET_PATTERN, examples=["KRW-BTC"], description="the market"),
]


@router.post(
    "/positions/{market}/sell",
    response_model=SellOut,
    dependencies=[Depends(require_token)],
    responses={
        **_CHANGE_RESPONSES,
        status.HTTP_404_NOT_FOUND: error("the market is not traded here"),
        status.HTTP_409_CONFLICT: error("nothing is held in the market, or the sell was refused"),
        status.HTTP_422_UNPROCESSABLE_CONTENT: error("a malformed market", unprocessable=True),
        status.HTTP_503_SERVICE_UNAVAILABLE: error("this server has no engine"),
    },
)
async def sell_now(
    market: MarketPath,
    services: ServicesDep,
    body: Annotated[SellRequest | None, Body()] = None,
) -> SellOut:
    """Sell the whole position in one market now, at market (the operator's exit).

    Its resting orders are cancelled first; the sell goes through the risk guard as a flatten
    (allowed while halted), is journaled with its fills (the trade's exit: the operator's),
    published as `operator_sell` and alerted; the market then cools down like after a
    watchdog trigger (no entry before `cooldown_until`). Needs the token.
    """
    seller = services.account
    if not isinstance(seller, Seller):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no engine here: this server cannot sell"
        )
    if services.markets and market not in services.markets:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            f"market {market} is not traded here (markets: {', '.join(services.markets)})",
        )
    request = body or SellRequest()
    try:
        result = await seller.sell_now(market, request.reason)
    except ValueError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except LookupError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, _message(exc)) from exc
    except RuntimeError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    return SellOut.model_validate(result)


def _message(exc: LookupError) -> str:
    """KeyError wraps its message in quotes; other errors do not."""
    return str(exc.args[0]) if exc.args else str(exc)
