"""Build the FastAPI application from services handed in by the composition root."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import AccountSource, ModelSource, Replayer, Runner, Services
from api.routes import (
    account,
    charts,
    control,
    docs,
    graph,
    health,
    model,
    models,
    money,
    news,
    prompts,
    reviewers,
    runs,
    stream,
    web,
)
from api.version import API_VERSION
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary
from store.bus import EventBus
from store.journal import Journal

__all__ = ["API_VERSION", "DEFAULT_WEB_DIR", "FALLBACK_WEB_DIR", "create_app", "viewer_dir"]

DEFAULT_WEB_DIR = Path(__file__).resolve().parents[1] / "web"
# The one-page viewer served while the React viewer is not built (web/ holds its sources).
FALLBACK_WEB_DIR = Path(__file__).resolve().parent / "fallback"


def viewer_dir(web_dir: Path | None) -> Path:
    """Return the built viewer `<web_dir>/dist` when it exists, else the folder to serve.

    Without `web_dir`: the repository's `web/dist`, else the bundled one-page viewer. With
    one: its `dist`, else the folder itself.
    """
    base = (web_dir or DEFAULT_WEB_DIR).resolve()
    dist = base / "dist"
    if (dist / "index.html").is_file():
        return dist
    return FALLBACK_WEB_DIR if web_dir is None else base


def create_app(
    *,
    journal: Journal,
    bus: EventBus,
    runner: Runner | None = None,
    api_token: str | None = None,
    web_dir: Path | None = None,
    prompts_dir: Path | None = None,
    prompt_variables: Mapping[str, Iterable[str]] | None = None,
    replayer: Replayer | None = None,
    account_source: AccountSource | None = None,
    session_id: str | None = None,
    markets: Iterable[str] = (),
    mode: str = "none",
    feed: str = "none: this API has no engine",
    reads_need_token: bool = False,
    bus_kind: str = "in-process",
    model_source: ModelSource | None = None,
) -> FastAPI:
    """Return the API and viewer app over `journal` and `bus`.

    Without `runner`, `POST /api/runs` answers 503; without `api_token`, every change is
    refused with 403 (reads stay open). `reads_need_token` (a bind beyond localhost) makes
    reads from other machines need the token too.
    """
    if api_token is not None and not api_token:
        raise ValueError("api_token must be None or a non-empty string")
    if reads_need_token and api_token is None:
        raise ValueError("reads_need_token needs an api_token")
    resolved_web_dir = viewer_dir(web_dir)
    app = FastAPI(
        title="AutoTrader-LXA",
        version=API_VERSION,
        description="Graph runs, their live event stream, prompts and the trading controls. "
        "Changes need `Authorization: Bearer <token>`.",
        docs_url=None,  # served from local files by api.routes.docs, not from a CDN
    )
    app.state.services = Services(
        journal=journal,
        bus=bus,
        runner=runner,
        api_token=api_token,
        web_dir=resolved_web_dir,
        prompts=PromptLibrary(prompts_dir or DEFAULT_PROMPTS_DIR),
        prompt_variables={k: frozenset(v) for k, v in (prompt_variables or {}).items()},
        replayer=replayer,
        account=account_source,
        session_id=session_id,
        markets=tuple(markets),
        mode=mode,
        feed=feed,
        reads_need_token=reads_need_token,
        bus_kind=bus_kind,
        models=model_source,
    )
    for router in (
        health.router,
        runs.router,
        stream.router,
        prompts.router,
        account.router,
        charts.router,
        money.router,
        control.router,
        model.router,
        graph.router,
        models.router,
        reviewers.router,
        news.router,
    ):
        app.include_router(router)
    docs.install(app)
    assets = resolved_web_dir / "assets"
    if assets.is_dir():
        app.mount("/assets", StaticFiles(directory=assets), name="assets")
    app.include_router(web.router)  # last: its catch-all serves the viewer's own routes
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    return app


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Answer HTTP errors as `{"detail": ...}`; 405 lists every method the path answers.

    A body that cannot be parsed at all (FastAPI's 400) is a 422 like any other bad body.
    """
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        allowed = web.allowed_methods(request, request.url.path)
        return JSONResponse(
            {"detail": f"{request.url.path} does not answer {request.method}"},
            status_code=exc.status_code,
            headers={"Allow": ", ".join(allowed)},
        )
    if exc.status_code == status.HTTP_400_BAD_REQUEST:
        error = {
            "loc": ["body"],
            "msg": f"the body could not be read: {exc.detail}",
            "type": "body",
        }
        return JSONResponse({"detail": [error]}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)
    return await http_exception_handler(request, exc)
