"""What the routes are handed: the services `app` wires in, and their dependency aliases."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol, runtime_checkable

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from store.bus import EventBus
from store.journal import Journal

__all__ = [
    "BusDep",
    "JournalDep",
    "Runner",
    "RunnerDep",
    "Services",
    "ServicesDep",
    "require_token",
]

TOKEN_NOT_SET = "set LXA_API_TOKEN to allow changes"


@runtime_checkable
class Runner(Protocol):
    """Starts a decision run on request (the engine, wired in by `app`)."""

    async def evaluate_now(self) -> str:
        """Run the graph now and return the new run id.

        Raises RuntimeError with a readable message when nothing can be evaluated yet.
        """
        ...


@dataclass(frozen=True, slots=True)
class Services:
    """Everything the routes use; one instance lives on `app.state.services`."""

    journal: Journal
    bus: EventBus
    runner: Runner | None
    api_token: str | None
    web_dir: Path


def get_services(request: Request) -> Services:
    """Return the services `create_app` stored on the application."""
    services = request.app.state.services
    if not isinstance(services, Services):  # pragma: no cover - create_app always sets it
        raise RuntimeError("app.state.services is not set: build the app with create_app")
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


def get_journal(services: ServicesDep) -> Journal:
    """Return the journal."""
    return services.journal


def get_bus(services: ServicesDep) -> EventBus:
    """Return the event bus."""
    return services.bus


def get_runner(services: ServicesDep) -> Runner:
    """Return the runner, or answer 503 when this process has none."""
    if services.runner is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no runner: this server cannot start runs"
        )
    return services.runner


JournalDep = Annotated[Journal, Depends(get_journal)]
BusDep = Annotated[EventBus, Depends(get_bus)]
RunnerDep = Annotated[Runner, Depends(get_runner)]

_bearer = HTTPBearer(auto_error=False, description="LXA_API_TOKEN, needed for any change")


def require_token(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Allow a change only with `Authorization: Bearer <api_token>`; no token set refuses all."""
    if services.api_token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, TOKEN_NOT_SET)
    if credentials is None or not secrets.compare_digest(
        credentials.credentials.encode(), services.api_token.encode()
    ):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or wrong bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
