"""`ml.download` against a local server speaking Upbit's minute-candle REST endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pyarrow.parquet as pq
import pytest
from fake_upbit_candles import CandleServerState, make_app
from loopback import start_in_thread

from ml.data import load_candles
from ml.download import (
    CandleDownloader,
    DownloadError,
    RateLimiter,
    download_candles,
    held_span,
    read_downloaded,
)

SINCE = datetime(2025, 9, 10, 0, 0, tzinfo=UTC)
UNTIL = datetime(2025, 9, 10, 12, 0, tzinfo=UTC)  # 720 minutes: 4 pages per market
MARKETS = ("KRW-BTC", "KRW-XRP")


class FakeClock:
    """A clock that only moves when the limiter sleeps (no real waiting in tests)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)


@pytest.fixture()
def source(upbit_1m: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Real candles of two markets around the download window (server side)."""
    out = {}
    for market in MARKETS:
        rows = upbit_1m[
            (upbit_1m["market"] == market)
            & (upbit_1m["ts"] >= pd.Timestamp("2025-09-09T22:00Z"))
            & (upbit_1m["ts"] < pd.Timestamp("2025-09-10T13:00Z"))
        ]
        out[market] = rows.reset_index(drop=True)
    return out


@pytest.fixture()
def server(source: dict[str, pd.DataFrame]) -> Iterator[tuple[CandleServerState, str]]:
    state = CandleServerState(candles=source)
    uvicorn_server, thread, port = start_in_thread(make_app(state), "fake-upbit-candles")
    yield state, f"http://127.0.0.1:{port}"
    uvicorn_server.should_exit = True
    thread.join(timeout=5)


def _expected(source: dict[str, pd.DataFrame], market: str) -> pd.DataFrame:
    rows = source[market]
    return rows[(rows["ts"] >= pd.Timestamp(SINCE)) & (rows["ts"] < pd.Timestamp(UNTIL))]


def _limiter(clock: FakeClock) -> RateLimiter:
    return RateLimiter(max_per_second=10, sleep=clock.sleep, clock=clock.time)


def test_download_writes_the_servers_candles_in_the_shared_schema(
    server: tuple[CandleServerState, str], source: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    state, url = server
    clock = FakeClock()

    added = download_candles(
        MARKETS, tmp_path, since=SINCE, until=UNTIL, base_url=url, limiter=_limiter(clock)
    )

    shared = pq.read_schema(
        Path(__file__).parents[2].parent / "shared/data/candles_upbit_1m.parquet"
    )
    written = pq.read_schema(next((tmp_path / "KRW-BTC").glob("*.parquet")))
    assert written.names == shared.names
    assert [str(t) for t in written.types] == [str(t) for t in shared.types]
    frame = read_downloaded(tmp_path)
    for market in MARKETS:
        expected = _expected(source, market)
        mine = frame[frame["market"] == market].reset_index(drop=True)
        assert added[market] == len(expected)
        assert mine["ts"].tolist() == expected["ts"].tolist()
        for column in ("open", "high", "low", "close", "volume"):
            assert mine[column].tolist() == expected[column].tolist()
        assert (mine["ts_ms"] == mine["ts"].astype("int64")).all()
        assert set(mine["exchange"]) == {"upbit"}
    # The folder loads like any candle file of the shared schema.
    loaded = load_candles([tmp_path])
    assert sorted(loaded["market"].unique()) == list(MARKETS)
    assert all(query["count"] == "200" for query in state.requests)


def test_an_interrupted_download_resumes_from_what_is_on_disk(
    server: tuple[CandleServerState, str], source: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    state, url = server
    clock = FakeClock()
    state.fail_from = 3  # the third request on fails: one page written per part, then stop
    with httpx.Client(timeout=5) as client:
        first = CandleDownloader(
            client, tmp_path, base_url=url, limiter=_limiter(clock), max_retries=1, pages_per_part=1
        )
        with pytest.raises(DownloadError, match="503"):
            first.download("KRW-BTC", SINCE, UNTIL)
    partial = held_span(tmp_path / "KRW-BTC")
    assert partial is not None and partial[1] == datetime(2025, 9, 10, 11, 59, tzinfo=UTC)
    assert partial[0] > SINCE  # only the newest pages made it
    requests_before = len(state.requests)

    state.fail_from = None
    progress: list[tuple[int, int]] = []
    with httpx.Client(timeout=5) as client:
        second = CandleDownloader(client, tmp_path, base_url=url, limiter=_limiter(clock))
        second.download(
            "KRW-BTC", SINCE, UNTIL, lambda m, done, total: progress.append((done, total))
        )

    frame = read_downloaded(tmp_path)
    expected = _expected(source, "KRW-BTC")
    assert frame["ts"].tolist() == expected["ts"].tolist()
    assert frame["close"].tolist() == expected["close"].tolist()
    # The resumed run asked only for what was missing: its first `to` is the oldest candle held.
    resumed = state.requests[requests_before:]
    assert pd.Timestamp(resumed[0]["to"]) == pd.Timestamp(partial[0])
    assert len(resumed) < 4
    assert progress[0][0] > 0 and progress[-1] == (720, 720)

    # A third run finds nothing missing and sends no request.
    with httpx.Client(timeout=5) as client:
        third = CandleDownloader(client, tmp_path, base_url=url, limiter=_limiter(clock))
        assert third.download("KRW-BTC", SINCE, UNTIL) == 0
        assert third.requests == 0


def test_the_limiter_keeps_ten_a_second_and_obeys_429_and_remaining_req(
    server: tuple[CandleServerState, str], tmp_path: Path
) -> None:
    state, url = server
    state.too_many_at = {2}
    state.exhausted_at = {4}
    clock = FakeClock()
    sent_at: list[float] = []
    limiter = _limiter(clock)
    original_wait = limiter.wait

    def wait() -> None:
        original_wait()
        sent_at.append(clock.now)

    limiter.wait = wait  # type: ignore[method-assign]
    with httpx.Client(timeout=5) as client:
        downloader = CandleDownloader(
            client, tmp_path, base_url=url, limiter=limiter, pages_per_part=1
        )
        downloader.download("KRW-XRP", SINCE, UNTIL)

    assert len(state.requests) == 5  # 4 pages + the one retried after the 429
    # After the 429 and after sec=0 the next request waited at least a second.
    assert sent_at[2] - sent_at[1] >= 1.0
    assert sent_at[4] - sent_at[3] >= 1.0
    for i, t in enumerate(sent_at):
        assert sum(1 for u in sent_at[i:] if u - t < 1.0) <= 10


def test_a_burst_never_exceeds_ten_requests_in_a_second() -> None:
    clock = FakeClock()
    limiter = _limiter(clock)
    sent = []
    for _ in range(35):
        limiter.wait()
        sent.append(clock.now)
    for i, t in enumerate(sent):
        assert sum(1 for u in sent[i:] if u - t < 1.0) <= 10
    assert sent[-1] - sent[0] >= 3.0


def test_a_418_stops_the_download_at_once_with_a_clear_error(
    server: tuple[CandleServerState, str], tmp_path: Path
) -> None:
    state, url = server
    state.fail_from, state.fail_status = 1, 418
    with httpx.Client(timeout=5) as client:
        downloader = CandleDownloader(client, tmp_path, base_url=url, limiter=_limiter(FakeClock()))
        with pytest.raises(DownloadError, match="418"):
            downloader.download("KRW-BTC", SINCE, UNTIL)
    assert len(state.requests) == 1  # no retry into a block
    assert held_span(tmp_path / "KRW-BTC") is None


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with httpx.Client() as client:
        downloader = CandleDownloader(client, tmp_path)
        with pytest.raises(DownloadError, match="KRW-BTC"):
            downloader.download("btc", SINCE, UNTIL)
        with pytest.raises(DownloadError, match="before until"):
            downloader.download("KRW-BTC", UNTIL, SINCE)
        with pytest.raises(DownloadError, match="timezone"):
            downloader.download("KRW-BTC", datetime(2025, 9, 10), UNTIL)


def test_lxa_download_fetches_the_markets_with_a_progress_bar_and_resumes(
    server: tuple[CandleServerState, str],
    source: dict[str, pd.DataFrame],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    state, url = server
    monkeypatch.chdir(tmp_path)
    env = {"LXA_UPBIT_REST_URL": url, "LXA_DATA_DIR": str(tmp_path / "data")}
    args = ["download", "--market", "KRW-BTC", "--market", "KRW-XRP"]
    args += ["--since", "2025-09-10T00:00:00", "--until", "2025-09-10T12:00:00"]
    # Interrupt the first run part-way (after BTC's pages) with a block: no retries, no waits.
    state.fail_from, state.fail_status = 4, 418

    first = CliRunner().invoke(app, args, env=env)

    assert first.exit_code == 1
    assert "resume" in first.output
    state.fail_from = None
    second = CliRunner().invoke(app, args, env=env)
    assert second.exit_code == 0, second.output
    assert "KRW-XRP:" in second.output
    frame = read_downloaded(tmp_path / "data" / "candles")
    for market in MARKETS:
        mine = frame[frame["market"] == market]
        assert mine["ts"].tolist() == _expected(source, market)["ts"].tolist()
