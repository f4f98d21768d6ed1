"""What the routes are handed: the services `app` wires in, and their dependency aliases."""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.schemas import ErrorOut, UnprocessableOut
from prompts.loader import PromptLibrary
from store.bus import EventBus
from store.journal import Journal

__all__ = [
    "LLM_SETTINGS",
    "AccountSource",
    "BusDep",
    "CandleSource",
    "DailyLimitSource",
    "JournalDep",
    "ModelSource",
    "NewsSourceStats",
    "Replayer",
    "ReviewerSource",
    "Runner",
    "RunnerDep",
    "Seller",
    "Services",
    "ServicesDep",
    "require_read_access",
    "require_token",
]

# What makes each LLM node an LLM instead of its rule-based stand-in (app/settings.py).
LLM_SETTINGS: dict[str, str] = {
    "groq_check": "LXA_GROQ_API_KEY",
    "ollama_check": "LXA_OLLAMA_HOST",
    "sizing": "LXA_SIZING_PROVIDER=groq or ollama (with that provider configured)",
}

TOKEN_NOT_SET = (
    "no API token is configured (set LXA_API_TOKEN or start `lxa serve`): changes refused"
)
TOKEN_MISSING = "missing bearer token: send 'Authorization: Bearer <token>' to change anything"
TOKEN_WRONG = "wrong bearer token"


@runtime_checkable
class Runner(Protocol):
    """Starts a decision run on request (the engine, wired in by `app`)."""

    async def evaluate_now(self, market: str | None = None) -> str:
        """Start a run now (one market or all) and return its id at once.

        Raises RuntimeError with a readable message when nothing can be evaluated yet, and
        ValueError when `market` is not one the engine trades.
        """
        ...


@runtime_checkable
class Replayer(Protocol):
    """Forks a past run from its checkpoint; the fork never places an order."""

    async def replay(
        self, run_id: str, prompts: Mapping[str, str], models: Mapping[str, str]
    ) -> dict[str, Any]:
        """Return the ReplayOut fields.

        Raises LookupError when the run or its checkpoint is unknown, ValueError for an
        invalid prompt or model override, RuntimeError when the fork cannot run.
        """
        ...


@runtime_checkable
class AccountSource(Protocol):
    """The engine's live view of the account and the watchdog."""

    async def account(self) -> dict[str, Any]:
        """Return AccountOut fields (krw, equity, balances, as_of) and `positions`."""
        ...

    def watchdog_state(self) -> dict[str, Any]:
        """Return enabled, config, exchange_healthy, consecutive_failures, cooldowns."""
        ...


@runtime_checkable
class DailyLimitSource(Protocol):
    """The running engine's daily loss limit (optional beside `AccountSource`; not journaled)."""

    def daily_limit(self) -> dict[str, Any]:
        """Return the DailyLimitOut fields (trading_day, start_equity, ..., breached)."""
        ...


@runtime_checkable
class Seller(Protocol):
    """The operator's exit from one market now (optional beside `AccountSource`)."""

    async def sell_now(self, market: str, reason: str) -> dict[str, Any]:
        """Market-sell the whole position in `market`; return the SellOut fields.

        Raises ValueError when `market` is not traded here, LookupError when nothing is held
        there, RuntimeError when the exchange or the risk guard refuses the sell.
        """
        ...


@runtime_checkable
class ReviewerSource(Protocol):
    """Who answers each LLM node in the running engine (optional beside `AccountSource`)."""

    def reviewers(self) -> dict[str, dict[str, Any]]:
        """Return per node (groq_check, ollama_check, sizing) the ReviewerInfo fields."""
        ...


# One bar: time (UTC, the bar's open), open, high, low, close, volume.
Candle = tuple[datetime, float, float, float, float, float]


@runtime_checkable
class CandleSource(Protocol):
    """The bars the engine was given, with their OHLCV (optional beside `AccountSource`)."""

    def candles(
        self, market: str, since: datetime | None, until: datetime | None
    ) -> list[Candle] | None:
        """Bars of `market` in [since, until) the engine has traded so far, oldest first.

        None when this engine keeps no bars (the journal's closes are used instead).
        """
        ...


@runtime_checkable
class NewsSourceStats(Protocol):
    """The engine's running news service, as its sources' counters (optional beside
    `AccountSource`)."""

    def news_sources(self) -> list[dict[str, Any]] | None:
        """Per source: name, kind, url, language, min_interval_s and `NewsService.stats()`'s
        counters (polls, fetched, errors, last_error, last_ok_at, ...).

        None when the engine runs no news service (LXA_NEWS_ENABLED off, or a replay).
        """
        ...


@runtime_checkable
class ModelSource(Protocol):
    """The model registry, read only (`app.models.list_models` and `ml.champion`)."""

    def models(self) -> dict[str, Any]:
        """Return the ModelsOut fields: models_dir, champion, champion_pointer, pinned,
        versions (each with its training window, weights, evaluation, judged figures),
        history (the champions before, newest first) and retrain (the retrain's memory).
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
    prompts: PromptLibrary
    prompt_variables: Mapping[str, frozenset[str]] = field(default_factory=dict)
    replayer: Replayer | None = None
    account: AccountSource | None = None
    session_id: str | None = None
    markets: tuple[str, ...] = ()
    mode: str = "none"
    feed: str = "none: this API has no engine"
    reads_need_token: bool = False
    bus_kind: str = "in-process"
    models: ModelSource | None = None
    accepted_runs: set[str] = field(default_factory=set)


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
            status.HTTP_503_SERVICE_UNAVAILABLE, "no engine here: this server cannot start runs"
        )
    return services.runner


def get_replayer(services: ServicesDep) -> Replayer:
    """Return the replayer, or answer 503 when this process has none."""
    if services.replayer is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "no engine here: this server cannot replay runs"
        )
    return services.replayer


JournalDep = Annotated[Journal, Depends(get_journal)]
BusDep = Annotated[EventBus, Depends(get_bus)]
RunnerDep = Annotated[Runner, Depends(get_runner)]
ReplayerDep = Annotated[Replayer, Depends(get_replayer)]

_bearer = HTTPBearer(auto_error=False, description="the API token, needed for any change")


def _check_token(services: Services, credentials: HTTPAuthorizationCredentials | None) -> None:
    if services.api_token is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, TOKEN_NOT_SET)
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, TOKEN_MISSING, headers={"WWW-Authenticate": "Bearer"}
        )
    if not secrets.compare_digest(credentials.credentials.encode(), services.api_token.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, TOKEN_WRONG, headers={"WWW-Authenticate": "Bearer"}
        )


def require_token(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Allow a change only with `Authorization: Bearer <api_token>`; no token set refuses all."""
    _check_token(services, credentials)


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine."""
    if host is None:
        return False
    if host in ("localhost", "testclient"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_read_access(request: Request, services: ServicesDep) -> None:
    """Reads are open to this machine; from elsewhere (a non-local bind) they need the token.

    The header is read here rather than through the security scheme, so that the schema does
    not mark reads as needing a token (on localhost they do not).
    """
    if not services.reads_need_token:
        return
    client = request.client.host if request.client else None
    if is_loopback(client):
        return
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    credentials = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=value.strip())
        if scheme.lower() == "bearer" and value.strip()
        else None
    )
    _check_token(services, credentials)


def error(description: str, *, unprocessable: bool = False) -> dict[str, Any]:
    """Document one error response (its body is `{"detail": "..."}`)."""
    return {"description": description, "model": UnprocessableOut if unprocessable else ErrorOut}


CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    status.HTTP_401_UNAUTHORIZED: error("missing or wrong bearer token"),
    status.HTTP_403_FORBIDDEN: error("no API token configured: changes refused"),
}
