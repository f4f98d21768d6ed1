"""Prompt files over the API: read, check, save (validated, versioned, diffed), roll back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from app.serve import PROMPT_VARIABLES
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary
from store.bus import InProcessBus
from store.journal import Journal

TOKEN = "prompt-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MARK = "Keep the reasoning under three sentences."


@pytest.fixture
def prompts_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "prompts"
    folder.mkdir()
    for source in DEFAULT_PROMPTS_DIR.glob("*.md"):
        (folder / source.name).write_bytes(source.read_bytes())
    return folder


@pytest.fixture
async def client(
    journal: Journal, bus: InProcessBus, prompts_dir: Path
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        journal=journal,
        bus=bus,
        api_token=TOKEN,
        prompts_dir=prompts_dir,
        prompt_variables=PROMPT_VARIABLES,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        yield http


def edited(text: str) -> str:
    return text.replace("# user\n", f"{MARK}\n\n# user\n", 1)


async def test_list_names_every_prompt_with_its_ref(
    client: httpx.AsyncClient, prompts_dir: Path
) -> None:
    response = await client.get("/api/prompts")

    body = response.json()
    names = ["groq_check", "news_sentiment", "ollama_check", "sizing"]
    assert [p["name"] for p in body["prompts"]] == names
    library = PromptLibrary(prompts_dir)
    assert [p["ref"] for p in body["prompts"]] == [library.get(name).ref for name in names]
    assert all(p["valid"] for p in body["prompts"])


async def test_get_returns_the_file_text_and_the_variables_the_code_passes(
    client: httpx.AsyncClient, prompts_dir: Path
) -> None:
    response = await client.get("/api/prompts/sizing")

    body = response.json()
    assert body["text"] == (prompts_dir / "sizing.md").read_text(encoding="utf-8")
    assert body["required_variables"] == sorted(PROMPT_VARIABLES["sizing"])
    assert set(body["variables"]) == PROMPT_VARIABLES["sizing"]


async def test_unknown_prompt_is_404_listing_the_available_ones(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/prompts/nope")

    assert response.status_code == 404
    assert response.json() == {
        "detail": "prompt 'nope' not found "
        "(available: groq_check, news_sentiment, ollama_check, sizing)"
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: t.replace("{{ market }}", "{{ markt }}", 1), "undeclared variable 'markt'"),
        (lambda t: t.replace("{{ market }}", "{{ market ", 1), "Jinja syntax error"),
        (lambda t: t.replace("name: groq_check", "name: other", 1), "does not match the file"),
        (lambda t: t.replace("# user\n", "# usr\n", 1), "missing the '# user' heading"),
        (
            lambda t: t.replace("variables:\n", "variables:\n  extra: an extra thing\n", 1),
            "declared but unused",
        ),
    ],
    ids=["unknown-variable", "template-syntax", "wrong-name", "no-user-heading", "unused"],
)
async def test_malformed_save_is_refused_with_the_reason_and_nothing_is_written(
    client: httpx.AsyncClient, prompts_dir: Path, change: object, reason: str
) -> None:
    before = (prompts_dir / "groq_check.md").read_bytes()
    text = change(before.decode())  # type: ignore[operator]

    response = await client.put("/api/prompts/groq_check", json={"text": text}, headers=AUTH)
    check = await client.post("/api/prompts/groq_check/check", json={"text": text})
    versions = await client.get("/api/prompts/groq_check/versions")

    assert response.status_code == 422
    assert reason in response.json()["detail"]
    assert str(prompts_dir) not in response.json()["detail"]  # no server paths in messages
    assert (prompts_dir / "groq_check.md").read_bytes() == before
    assert check.json()["valid"] is False and reason in check.json()["error"]
    assert [v["created_by"] for v in versions.json()["versions"]] == ["file"]


async def test_a_text_declaring_variables_the_code_does_not_pass_is_refused(
    client: httpx.AsyncClient, prompts_dir: Path
) -> None:
    text = (prompts_dir / "sizing.md").read_text(encoding="utf-8")
    text = text.replace("variables:\n", "variables:\n  mood: the market's mood\n", 1)
    text = text.replace("# user\n", "# user\n{{ mood }}\n", 1)

    response = await client.put("/api/prompts/sizing", json={"text": text}, headers=AUTH)

    assert response.status_code == 422
    assert "declares variable 'mood' that the code does not pass" in response.json()["detail"]


async def test_save_writes_the_file_records_a_version_with_its_diff_and_publishes(
    client: httpx.AsyncClient, prompts_dir: Path, bus: InProcessBus
) -> None:
    original = (prompts_dir / "groq_check.md").read_text(encoding="utf-8")
    new_text = edited(original)

    response = await client.put(
        "/api/prompts/groq_check", json={"text": new_text, "message": "shorter"}, headers=AUTH
    )
    versions = (await client.get("/api/prompts/groq_check/versions")).json()["versions"]

    assert response.status_code == 200
    saved = response.json()
    assert (prompts_dir / "groq_check.md").read_text(encoding="utf-8") == new_text
    assert saved["ref"] == PromptLibrary(prompts_dir).get("groq_check").ref
    assert saved["created_by"] == "api" and saved["message"] == "shorter"
    assert f"+{MARK}\n" in saved["diff"]
    assert saved["diff"].startswith("--- a/groq_check.md\n+++ b/groq_check.md\n")
    assert [v["created_by"] for v in versions] == ["api", "file"]
    assert versions[0]["previous_sha256"] == versions[1]["sha256"]
    assert bus.last_seq == 1


async def test_save_over_a_file_changed_since_the_edit_began_is_409(
    client: httpx.AsyncClient, prompts_dir: Path
) -> None:
    current = (await client.get("/api/prompts/groq_check")).json()
    (prompts_dir / "groq_check.md").write_text(edited(current["text"]), encoding="utf-8")

    response = await client.put(
        "/api/prompts/groq_check",
        json={"text": current["text"], "base_sha256": current["sha256"][:12]},
        headers=AUTH,
    )

    assert response.status_code == 409
    assert "changed since the edit began" in response.json()["detail"]


async def test_rollback_restores_an_earlier_version_as_a_new_one(
    client: httpx.AsyncClient, prompts_dir: Path
) -> None:
    original = (prompts_dir / "ollama_check.md").read_text(encoding="utf-8")
    await client.put("/api/prompts/ollama_check", json={"text": edited(original)}, headers=AUTH)
    versions = (await client.get("/api/prompts/ollama_check/versions")).json()["versions"]
    first = versions[-1]

    response = await client.post(
        "/api/prompts/ollama_check/rollback", json={"version_id": first["id"]}, headers=AUTH
    )
    after = (await client.get("/api/prompts/ollama_check/versions")).json()["versions"]
    one = await client.get(f"/api/prompts/ollama_check/versions/{first['id']}")

    assert response.status_code == 200
    assert (prompts_dir / "ollama_check.md").read_text(encoding="utf-8") == original
    assert response.json()["sha256"] == first["sha256"]
    assert f"-{MARK}\n" in response.json()["diff"]
    assert [v["created_by"] for v in after] == ["rollback", "api", "file"]
    assert one.json()["text"] == original


async def test_rollback_to_another_prompts_version_is_404(client: httpx.AsyncClient) -> None:
    await client.get("/api/prompts/sizing/versions")  # records sizing's baseline as version 1
    response = await client.post(
        "/api/prompts/groq_check/rollback", json={"version_id": 1}, headers=AUTH
    )
    missing = await client.get("/api/prompts/groq_check/versions/999")

    assert response.status_code == 404
    assert response.json() == {"detail": "prompt 'groq_check' has no version 1"}
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong"}, 401), (AUTH, 200)],
    ids=["missing", "wrong", "right"],
)
async def test_saving_needs_the_token(
    client: httpx.AsyncClient, prompts_dir: Path, headers: dict[str, str], status: int
) -> None:
    text = (prompts_dir / "groq_check.md").read_text(encoding="utf-8")

    response = await client.put("/api/prompts/groq_check", json={"text": text}, headers=headers)

    assert response.status_code == status
    if status == 401:
        assert "bearer token" in response.json()["detail"]


async def test_the_news_scorer_prompt_is_served_with_the_variables_its_scorer_passes(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/prompts/news_sentiment")

    body = response.json()
    assert response.status_code == 200 and body["valid"]
    assert body["required_variables"] == sorted(PROMPT_VARIABLES["news_sentiment"])
    assert "markets" in body["required_variables"]
