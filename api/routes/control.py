"""The kill switch: read the trading state; halt (optionally flattening) and resume."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from api.deps import (
    CHANGE_RESPONSES,
    BusDep,
    DailyLimitSource,
    JournalDep,
    Services,
    ServicesDep,
    require_read_access,
    require_token,
)
from api.schemas import HaltRequest, ResumeRequest, TradingStateOut
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
