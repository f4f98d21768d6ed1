"""The kill switch: read the trading state; halt (optionally flattening) and resume."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, status

from api.deps import BusDep, JournalDep, require_token
from api.schemas import HaltRequest, ResumeRequest, TradingStateOut
from store.bus import EventBus

router = APIRouter(prefix="/api", tags=["control"])

_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: {"description": "missing or wrong bearer token"},
    status.HTTP_403_FORBIDDEN: {"description": "no API token configured: changes refused"},
}


def _publish(bus: EventBus, state: TradingStateOut) -> None:
    bus.publish({"type": "trading_state", **state.model_dump(mode="json")})


@router.get("/trading-state", response_model=TradingStateOut)
def read_trading_state(journal: JournalDep) -> TradingStateOut:
    """Return the trading state the operator set (active until anyone set one)."""
    return TradingStateOut.model_validate(journal.read_trading_control())


@router.post(
    "/halt",
    response_model=TradingStateOut,
    dependencies=[Depends(require_token)],
    responses=_CHANGE_RESPONSES,
)
def halt(body: HaltRequest, journal: JournalDep, bus: BusDep) -> TradingStateOut:
    """Halt trading (the engine stops every order but cancels); needs the API token."""
    row = journal.write_trading_control("halted", body.reason, flatten=body.flatten, by="api")
    state = TradingStateOut.model_validate(row)
    _publish(bus, state)
    return state


@router.post(
    "/resume",
    response_model=TradingStateOut,
    dependencies=[Depends(require_token)],
    responses=_CHANGE_RESPONSES,
)
def resume(body: ResumeRequest, journal: JournalDep, bus: BusDep) -> TradingStateOut:
    """Resume trading; a pending flatten request is dropped; needs the API token."""
    row = journal.write_trading_control("active", body.reason, by="api")
    state = TradingStateOut.model_validate(row)
    _publish(bus, state)
    return state
