"""A live session served (`lxa serve --feed live`): its charts' candles are the bars the engine
was given, with volume, not the journaled closes; its news service's sources are on the API
(over the local fake Upbit of tests/exchange, with a news feed on it that answers 404)."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

TESTS = Path(__file__).resolve().parents[1]
if str(TESTS / "exchange") not in sys.path:
    sys.path.insert(0, str(TESTS / "exchange"))

from fake_upbit_ws import FakeUpbitWS  # noqa: E402

from app.live import run_live_session  # noqa: E402
from app.settings import Settings  # noqa: E402
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS  # noqa: E402
from ml.features import LONG_BARS  # noqa: E402
from ml.registry import latest_model_dir  # noqa: E402

WARMUP = LONG_BARS + 16  # what run_live_session asks Upbit for
LIVE_MINUTES = 4


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_live_charts_show_the_warm_up_and_live_bars_with_volume(tmp_path: Path) -> None:
    frame = pd.read_parquet(BUNDLED_CANDLES)
    history = WARMUP + 10
    candles = frame[frame["ts"] < frame["ts"].min() + pd.Timedelta(minutes=history + 20)]
    seen: dict[str, Any] = {}
    async with FakeUpbitWS(candles, history_minutes=history, pace_s=0.0005) as fake:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            checkpoint_url="memory",
            model_dir=latest_model_dir(BUNDLED_MODELS),
            upbit_ws_url=fake.ws_url,
            upbit_rest_url=fake.rest_url,
            feed_stale_after_s=600.0,
            api_port=_free_port(),
            api_token="live-test-token",  # type: ignore[arg-type]
            news_enabled=True,
            news_feeds=[f"localfeed={fake.rest_url}/no-such-feed.xml"],
        )

        async def keep_serving() -> None:  # the server is still up: ask it as a viewer would
            base = f"http://127.0.0.1:{settings.api_port}"
            async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
                seen["candles"] = (
                    await http.get("/api/candles", params={"market": "KRW-BTC", "max_points": 5000})
                ).json()
                for _ in range(200):  # until the service's first poll is counted (10 s at most)
                    seen["sources"] = (await http.get("/api/news/sources")).json()
                    if seen["sources"]["sources"][0]["polls"] > 0:
                        break
                    await asyncio.sleep(0.05)

        summary = await run_live_session(
            settings,
            session_id="live-charts",
            account_path=tmp_path / "account.json",
            minutes=LIVE_MINUTES,
            serve=True,
            keep_serving=keep_serving,
        )

    body = seen["candles"]
    assert summary.runs_this_call == LIVE_MINUTES
    assert body["source"] == "bars", body.get("source")
    assert body["bucket_minutes"] == 1
    # The warm-up's candles (from Upbit's REST) and the live minutes, each with its volume.
    assert body["bars"] >= WARMUP + LIVE_MINUTES
    assert all(c["volume"] is not None for c in body["candles"])
    assert any(float(c["volume"]) > 0 for c in body["candles"][-LIVE_MINUTES:])
    last = datetime.fromisoformat(body["candles"][-1]["ts"]).astimezone(UTC)
    assert last == datetime.fromisoformat(body["last_bar"]).astimezone(UTC)
    sources = seen["sources"]
    assert sources["running"] is True
    (feed,) = sources["sources"]
    assert (feed["name"], feed["kind"]) == ("localfeed", "feed")
    assert feed["url"].endswith("/no-such-feed.xml")
    assert feed["polls"] >= 1 and sum(feed["errors"].values()) >= 1  # the 404, counted
