"""`/docs`: Swagger UI from the files of the `swagger-ui-bundle-v2` package, never a CDN.

FastAPI's own `/docs` page loads Swagger UI from jsDelivr, so it is blank without internet.
The same page is served here with the script and stylesheet from the installed package.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, HTTPException, status
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS = "/docs-assets"
_SERVED = ("swagger-ui-bundle.js", "swagger-ui.css")


def swagger_ui_dir() -> Path | None:
    """The folder of the bundled Swagger UI files, or None when the package is missing."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:  # pragma: no cover - a dependency of the project
        return None
    folder = Path(str(swagger_ui_path))
    return folder if (folder / _SERVED[0]).is_file() else None


def install(app: FastAPI) -> None:
    """Serve `/docs` (and its OAuth2 redirect) from local files on `app`."""
    openapi_url = app.openapi_url or "/openapi.json"
    router = APIRouter(include_in_schema=False)

    @router.get("/docs")
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - API",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url="/favicon.svg",
        )

    @router.get("/docs/oauth2-redirect")
    def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get(ASSETS + "/{name}")
    def asset(name: str) -> FileResponse:
        folder = swagger_ui_dir()
        if folder is None or name not in _SERVED:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{ASSETS}/{name} not found")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        return FileResponse(folder / name, media_type=media)

    app.include_router(router)
