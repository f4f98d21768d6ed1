"""The browser viewer: the built app (`web/dist`) or the fallback page, at `/`."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Match

from api.deps import ServicesDep

router = APIRouter(tags=["web"], include_in_schema=False)


def _index(services: ServicesDep) -> Response:
    page = services.web_dir / "index.html"
    if not page.is_file():
        return PlainTextResponse(
            f"The LXA viewer is not installed (no {page}); the API is under /api.",
            status_code=404,
        )
    return FileResponse(page, media_type="text/html; charset=utf-8")


@router.get("/", response_model=None)
def index(services: ServicesDep) -> Response:
    """Serve the viewer page, or say that it is not installed."""
    return _index(services)


_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def allowed_methods(request: Request, path: str) -> list[str]:
    """The methods some API route answers at `path` (the viewer's catch-all left out)."""
    allowed = set()
    for method in _METHODS:
        scope = {**request.scope, "path": path, "method": method}
        for route in request.app.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                viewer = getattr(route, "original_router", None) is router or child.get(
                    "endpoint"
                ) in (viewer_file, index)
                if not viewer:
                    allowed.add(method)
                break
    return sorted(allowed)


def _api_miss(request: Request, path: str) -> HTTPException:
    """405 naming the allowed methods when the path is an API route, else 404."""
    allowed = allowed_methods(request, f"/{path}")
    if allowed:
        return HTTPException(
            status.HTTP_405_METHOD_NOT_ALLOWED,
            f"/{path} does not answer {request.method} (allowed: {', '.join(allowed)})",
            headers={"Allow": ", ".join(allowed)},
        )
    return HTTPException(status.HTTP_404_NOT_FOUND, f"no API route /{path}")


@router.get("/{path:path}", response_model=None)
def viewer_file(path: str, request: Request, services: ServicesDep) -> Response:
    """Serve a file of the viewer, or its page for the viewer's own routes (/runs/..)."""
    if path == "api" or path.startswith("api/"):
        raise _api_miss(request, path)
    root = services.web_dir.resolve()
    candidate = (root / path).resolve()
    if candidate.is_relative_to(root) and candidate.is_file():
        return FileResponse(candidate)
    if "." in path.rsplit("/", 1)[-1]:  # a missing file, not a viewer route
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"/{path} not found")
    return _index(services)
