"""The API over a running engine, served by uvicorn on 127.0.0.1 like `lxa serve`.

The engine trades the bundled real candles on paper; both checks are real ChatGroq and
ChatOllama clients talking to local protocol servers whose "model" agrees with every proposal.
A gate on the Groq server holds a run inside its first LLM call, so a client can leave the
stream mid-run, the run finishes with nobody watching, and the client resumes by Last-Event-ID.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import stat
import threading
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from llm_servers import GroqServer, OllamaServer, Text

from app.serve import token_path
from app.session import collect_closes, start_server
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, Services, open_services
from exchange.feed import BarClose
from ml.data import load_candles
from ml.features import WARMUP_BARS
from ml.registry import latest_model_dir

DEADLINE_S = 30
_ACTION = re.compile(r"Proposed action: (buy|sell)")
EDIT_MARK = "Reviewer note for this replay: be brief."
GROQ_KEY = "gsk-test-4c1f9e2a7b"


def agreeing(request_json: Any) -> Text:
    """Repeat the proposed action as the verdict (a model that agrees)."""
    text = "\n".join(str(m.get("content", "")) for m in request_json.get("messages", []))
    found = _ACTION.search(text)
    action = found.group(1) if found else "hold"
    return Text(json.dumps({"verdict": action, "confidence": 0.7, "reasoning": "agree"}))


def gated(gate: threading.Event) -> Callable[[Any], Text]:
    """Agree, but only once `gate` is set (holds the run inside the LLM call until then)."""

    def reply(request_json: Any) -> Text:
        if not gate.wait(timeout=DEADLINE_S):
            raise RuntimeError("the test never opened the gate")
        return agreeing(request_json)

    return reply


@pytest.fixture(scope="module")
def closes() -> list[BarClose]:
    return asyncio.run(collect_closes(load_candles([BUNDLED_CANDLES])))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path, groq_server: GroqServer, ollama_server: OllamaServer) -> Settings:
    groq_server.default = agreeing
    ollama_server.default = agreeing
    prompts_dir = tmp_path / "prompts"
    prompts_dir.mkdir()
    for source in (Path(__file__).resolve().parents[2] / "prompts").glob("*.md"):
        (prompts_dir / source.name).write_bytes(source.read_bytes())
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
        groq_api_key=GROQ_KEY,
        groq_base_url=groq_server.base_url,
        ollama_host=ollama_server.base_url,
        # Every run proposes an entry (any forecast clears the margin), so the checks run.
        policy_entry_margin_bps=-1000.0,
        policy_exit_margin_bps=1000.0,
        policy_max_entries_per_day=1440,
        policy_reentry_pause_minutes=0,
        prompts_dir=prompts_dir,
        api_port=free_port(),
    )


class Served:
    """The engine's services, its API on a real port, and a client with the token."""

    def __init__(self, services: Services, client: httpx.AsyncClient, token: str) -> None:
        self.services = services
        self.client = client
        self.token = token
        self.auth = {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def served(
    settings: Settings, tmp_path: Path, closes: list[BarClose]
) -> AsyncIterator[Served]:
    async with open_services(
        settings, session_id="api", account_path=tmp_path / "acct.json"
    ) as services:
        services.engine.warm_up(closes[: WARMUP_BARS + 5])
        server, task = await start_server(services, feed="test replay")
        token = token_path(settings).read_text(encoding="utf-8").strip()
        base = f"http://127.0.0.1:{settings.api_port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=DEADLINE_S) as client:
                yield Served(services, client, token)
        finally:
            server.should_exit = True
            await task


async def sse_events(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """Yield SSE events (dicts of their fields) as they arrive; comments are skipped."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields:
                yield fields
                fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields[name] = value.removeprefix(" ")


async def collect_run(bus: Any, run_id: str, ready: asyncio.Event) -> list[dict[str, Any]]:
    """Every event of one run straight from the bus, until its run_finished."""
    seen = []
    subscriber = bus.subscribe(0)
    ready.set()
    async for event in subscriber:
        if event.get("run_id") == run_id:
            seen.append(event)
            if event["type"] == "run_finished":
                break
    await subscriber.aclose()
    return seen


async def test_generated_token_file_is_private_and_guards_changes(
    served: Served, settings: Settings
) -> None:
    mode = stat.S_IMODE(token_path(settings).stat().st_mode)

    missing = await served.client.post("/api/runs")
    wrong = await served.client.post("/api/runs", headers={"Authorization": "Bearer nope"})
    ok = await served.client.post("/api/auth/check", headers=served.auth)
    info = await served.client.get("/api/info")

    assert mode == 0o600
    assert (missing.status_code, wrong.status_code, ok.status_code) == (401, 401, 200)
    assert "bearer token" in missing.json()["detail"]
    assert info.json()["can_run"] is True and info.json()["session_id"] == "api"


async def test_client_leaving_mid_run_resumes_by_last_event_id_with_every_event_once(
    served: Served, groq_server: GroqServer
) -> None:
    gate = threading.Event()
    groq_server.default = gated(gate)
    try:
        started = await served.client.post("/api/runs", headers=served.auth)
        run_id = started.json()["run_id"]
        ready = asyncio.Event()
        truth_task = asyncio.create_task(collect_run(served.services.bus, run_id, ready))
        await ready.wait()

        first_part: list[dict[str, str]] = []
        async with asyncio.timeout(DEADLINE_S):
            async with served.client.stream("GET", f"/api/runs/{run_id}/stream") as response:
                async for event in sse_events(response):
                    first_part.append(event)
                    if event["event"] == "llm_start":  # the run now waits inside Groq
                        break
            # The client has left; the run goes on with nobody watching.
            gate.set()
            await served.services.engine.wait_idle()
            decision = served.services.journal.get_decision(run_id)
            second_part: list[dict[str, str]] = []
            headers = {"Last-Event-ID": first_part[-1]["id"]}
            async with served.client.stream(
                "GET", f"/api/runs/{run_id}/stream", headers=headers
            ) as response:
                async for event in sse_events(response):
                    second_part.append(event)
            truth = await truth_task
    finally:
        gate.set()

    assert started.status_code == 202
    assert decision is not None and decision["trigger"] == "manual"
    assert first_part[-1]["event"] == "llm_start"
    assert decision["reviewer_labels"]["groq_check"] == "groq:llama-3.1-8b-instant"
    received = [int(e["id"]) for e in first_part + second_part]
    assert received == [e["seq"] for e in truth]  # every event, in order, exactly once
    assert len(set(received)) == len(received)
    assert second_part[-1]["event"] == "run_finished"  # and the stream ended with the run
    types = [e["event"] for e in first_part + second_part]
    assert types[0] == "run_started"
    assert {"node_started", "node_finished", "verdict", "decision"} <= set(types)


async def test_run_started_with_no_client_completes_and_is_listed(served: Served) -> None:
    started = await served.client.post("/api/runs", json={"market": "KRW-ETH"}, headers=served.auth)
    run_id = started.json()["run_id"]
    await served.services.engine.wait_idle()

    listed = await served.client.get("/api/runs", params={"session_id": "api"})
    detail = await served.client.get(f"/api/runs/{run_id}")
    late_stream = await served.client.get(f"/api/runs/{run_id}/stream")

    assert run_id in [r["run_id"] for r in listed.json()["runs"]]
    body = detail.json()
    assert set(body["ml"]["signals"]) == {"KRW-ETH"}
    assert body["prompt_refs"]["groq_check"].startswith("groq_check@")
    assert body["llm_calls"][0]["request"]["system"]
    assert body["nodes"]["input"]["closes"]["KRW-ETH"] > 0
    pages = [listed.text, detail.text, late_stream.text]
    pages += [(await served.client.get(p)).text for p in ("/api/info", "/api/prompts")]
    assert not [page for page in pages if GROQ_KEY in page or served.token in page]
    # A stream opened after the run ended replays what is buffered and ends at run_finished.
    names = [line for line in late_stream.text.splitlines() if line.startswith("event:")]
    assert names[0] == "event: run_started"
    assert names[-1] == "event: run_finished"


async def test_replay_with_an_edited_prompt_forks_without_placing_an_order(
    served: Served, groq_server: GroqServer
) -> None:
    started = await served.client.post("/api/runs", headers=served.auth)
    run_id = started.json()["run_id"]
    await served.services.engine.wait_idle()
    original = (await served.client.get(f"/api/runs/{run_id}")).json()
    orders_before = served.services.journal.list_orders()
    account_before = await served.services.exchange.get_account()
    prompt = (await served.client.get("/api/prompts/groq_check")).json()
    edited = prompt["text"].replace("# user\n", f"{EDIT_MARK}\n\n# user\n", 1)
    requests_before = len(groq_server.chat_requests)

    response = await served.client.post(
        f"/api/runs/{run_id}/replay",
        json={"prompts": {"groq_check": edited}, "groq_model": "llama-3.3-70b-versatile"},
        headers=served.auth,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["forked_before"] == ["groq_check"]
    assert body["original"]["action"] == original["action"]
    replayed = body["replayed"]
    assert replayed["order"]["state"] == "not_sent"  # what it would send, never sent
    assert replayed["would_trade"] is True
    assert replayed["prompt_refs"]["groq_check"] != body["original"]["prompt_refs"]["groq_check"]
    assert replayed["reviewers"]["groq_check"] == "groq:llama-3.3-70b-versatile"
    fork_request = groq_server.chat_requests[requests_before].json
    assert fork_request["model"] == "llama-3.3-70b-versatile"
    assert EDIT_MARK in fork_request["messages"][0]["content"]
    assert served.services.journal.list_orders() == orders_before
    assert await served.services.exchange.get_account() == account_before
    # The edit was only for the fork: the file is as it was.
    assert (await served.client.get("/api/prompts/groq_check")).json()["text"] == prompt["text"]


async def test_replay_refuses_bad_edits_and_unknown_runs(served: Served) -> None:
    started = await served.client.post("/api/runs", headers=served.auth)
    run_id = started.json()["run_id"]
    await served.services.engine.wait_idle()
    prompt = (await served.client.get("/api/prompts/groq_check")).json()

    typo = await served.client.post(
        f"/api/runs/{run_id}/replay",
        json={"prompts": {"groq_check": prompt["text"].replace("{{ market }}", "{{ markt }}")}},
        headers=served.auth,
    )
    unknown = await served.client.post("/api/runs/nope/replay", json={}, headers=served.auth)
    no_token = await served.client.post(f"/api/runs/{run_id}/replay", json={})

    assert typo.status_code == 422
    assert "markt" in typo.json()["detail"]
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "run nope not found"})
    assert no_token.status_code == 401


async def test_saved_prompt_is_used_by_the_next_run(
    served: Served, groq_server: GroqServer
) -> None:
    prompt = (await served.client.get("/api/prompts/groq_check")).json()
    edited = prompt["text"].replace("# user\n", f"{EDIT_MARK}\n\n# user\n", 1)

    saved = await served.client.put(
        "/api/prompts/groq_check", json={"text": edited}, headers=served.auth
    )
    started = await served.client.post("/api/runs", headers=served.auth)
    await served.services.engine.wait_idle()
    detail = (await served.client.get(f"/api/runs/{started.json()['run_id']}")).json()

    assert saved.status_code == 200
    assert detail["prompt_refs"]["groq_check"] == saved.json()["ref"]
    assert EDIT_MARK in groq_server.chat_requests[-1].json["messages"][0]["content"]


async def test_account_routes_read_the_engine(served: Served) -> None:
    balances = await served.client.get("/api/balances")
    positions = await served.client.get("/api/positions")
    watchdog = await served.client.get("/api/watchdog")

    assert balances.status_code == 200
    body = balances.json()
    assert body["balances"][0]["currency"] == "KRW"
    assert Decimal(body["equity"]) == Decimal(body["krw"])  # nothing held yet
    assert positions.json() == {"positions": [], "source": "engine"}
    assert watchdog.json()["enabled"] is True
    assert [m["market"] for m in watchdog.json()["markets"]] == served.services.settings.markets


def test_lxa_serve_replays_serves_the_api_and_prints_the_token_once(tmp_path: Path) -> None:
    import contextlib
    import os
    import signal
    import subprocess
    import sys
    import time

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env |= {"LXA_DATA_DIR": str(tmp_path / "data"), "LXA_API_PORT": str(port)}
    command = [sys.executable, "-m", "app.cli", "serve", "--minutes", "3", "--pace", "0"]
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        command, cwd=root, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stderr is not None
        lines = []
        while not any("API token" in line for line in lines):
            line = process.stderr.readline()
            assert line, "lxa serve exited before printing its token: " + "".join(lines)
            lines.append(line)
        token = lines[-1].rsplit(": ", 1)[1].strip()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + DEADLINE_S
            total = 0
            while total < 3:  # the three replayed bars become three runs
                assert time.monotonic() < deadline, "the replay did not journal 3 runs"
                with contextlib.suppress(httpx.TransportError):  # not listening yet
                    total = client.get("/api/runs").json()["total"]
                time.sleep(0.1)
            info = client.get("/api/info").json()
            refused = client.post("/api/runs")
            started = client.post("/api/runs", headers={"Authorization": f"Bearer {token}"})
            page = client.get("/")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)

    assert info["feed"].startswith("replay of candles_upbit_1m_demo.parquet")
    assert info["mode"] == "paper"
    assert refused.status_code == 401
    assert started.status_code == 202
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert token_path_text(tmp_path) == token
    assert "".join(lines).count(token) == 1


def token_path_text(tmp_path: Path) -> str:
    return (tmp_path / "data" / "api_token").read_text(encoding="utf-8").strip()


@pytest.mark.services
def test_lxa_api_alone_streams_events_an_engine_process_publishes_to_redis(
    tmp_path: Path, redis_url: str
) -> None:
    import contextlib
    import os
    import secrets
    import signal
    import subprocess
    import sys
    import time

    from store.redis_bus import RedisBus

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LXA_")}
    env |= {
        "LXA_DATA_DIR": str(tmp_path / "data"),
        "LXA_API_PORT": str(port),
        "LXA_REDIS_URL": redis_url,
    }
    root = Path(__file__).resolve().parents[2]
    missing = subprocess.run(
        [sys.executable, "-m", "app.cli", "api"],
        cwd=root,
        env={k: v for k, v in env.items() if k != "LXA_REDIS_URL"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    engine_bus = RedisBus(redis_url)
    marker = secrets.token_hex(6)
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "api"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + DEADLINE_S
            up = False
            while not up:
                assert time.monotonic() < deadline, "lxa api did not start"
                with contextlib.suppress(httpx.TransportError):
                    up = client.get("/api/health").status_code == 200
                time.sleep(0.1)
            after = engine_bus.last_seq
            seq = engine_bus.publish({"type": "run_started", "run_id": f"engine-{marker}"})
            with client.stream("GET", f"/api/stream?last_event_id={after}") as response:
                data = next(line for line in response.iter_lines() if line.startswith("data:"))
            no_engine = client.post("/api/runs", headers={"Authorization": "Bearer x"})
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        engine_bus.close()

    assert missing.returncode == 2 and "LXA_REDIS_URL" in missing.stderr
    assert json.loads(data.removeprefix("data:")) == {
        "type": "run_started",
        "run_id": f"engine-{marker}",
        "seq": seq,
    }
    assert no_engine.status_code == 401  # the token guards it before anything else
