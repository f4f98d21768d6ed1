"""`/docs` is Swagger UI from the installed package's files: it renders without internet."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.app import create_app
from store.bus import InProcessBus
from store.journal import Journal


def test_docs_load_swagger_ui_from_this_server_not_a_cdn(journal: Journal) -> None:
    client = TestClient(create_app(journal=journal, bus=InProcessBus()))

    page = client.get("/docs")
    script = client.get("/docs-assets/swagger-ui-bundle.js")
    style = client.get("/docs-assets/swagger-ui.css")

    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assert "/docs-assets/swagger-ui-bundle.js" in page.text
    assert "/openapi.json" in page.text
    assert script.status_code == 200 and "SwaggerUIBundle" in script.text
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    assert client.get("/docs-assets/index.html").status_code == 404
    assert client.get("/docs/oauth2-redirect").status_code == 200
