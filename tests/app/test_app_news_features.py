"""The news features from a journal, point in time, for training; and through the engine.

The candles are the bundled real Upbit bars (2025-09-19..21). The news items are SYNTHETIC,
written here at known times: titles say so, and their scores are made up (in the quick-set
test, made from the bars' own forward returns, so a model has something to learn from them).
"""

from __future__ import annotations

import asyncio
import math
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from app.cli import app
from app.engine.news import load_journal_news
from app.news import index_from_journal, item_row, score_rows
from app.news_features import news_series, with_news_columns
from app.session import collect_closes
from app.settings import Settings
from app.wiring import BUNDLED_CANDLES, BUNDLED_MODELS, open_services
from ml.data import NEWS_COLUMNS, load_candles
from ml.features import WARMUP_BARS
from ml.predict import Predictor
from ml.registry import latest_model_dir, read_meta
from ml.training import quick_pair
from ml.training.quick_pair import train_quick
from news.items import NewsItem
from news.scoring import CoinScore
from news.service import ScoredNews
from store.journal import Journal

HALF_LIFE = timedelta(minutes=30)
NEWSY = ("KRW-BTC", "KRW-XRP")  # KRW-ETH and KRW-SOL get no item


def store_item(
    journal: Journal,
    number: int,
    market: str,
    seen: datetime,
    score: float,
    *,
    published: datetime | None,
) -> None:
    item = NewsItem(
        source="synthetic",
        title=f"SYNTHETIC test headline {number} about {market}",
        link=f"https://news.test/synthetic/{number}",
        first_seen_at=seen,
        published_at=published,
        coins=(market,),
    )
    scores = (CoinScore(market, score, 1.0, "synthetic score", "lexicon"),)
    journal.record_news(
        item_row(ScoredNews(item, scores)),
        score_rows(ScoredNews(item, scores)),
        title_window=timedelta(days=7),
    )


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return load_candles([BUNDLED_CANDLES])


@pytest.fixture(scope="module")
def news_db(candles: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A journal with an item every 20 minutes about BTC and XRP from the second hour on,
    seen at a random second of the minute, published 1 to 5 minutes before; its score the sign
    of the next 10 bars' return (synthetic); plus items no training may read (no usable time)."""
    path = tmp_path_factory.mktemp("news") / "news.db"
    journal = Journal.open(f"sqlite:///{path}")
    rng = np.random.default_rng(17)
    number = 0
    for market in NEWSY:
        bars = candles[candles["market"] == market].reset_index(drop=True)
        close = bars["close"].to_numpy()
        for row in range(60, len(bars) - 10, 20):
            ts = bars["ts"].iloc[row].to_pydatetime()
            seen = ts + timedelta(seconds=int(rng.integers(1, 60)))
            ahead = close[row + 10] / close[row] - 1.0
            score = 0.8 if ahead > 0 else -0.8
            published = seen - timedelta(minutes=int(rng.integers(1, 6)))
            store_item(journal, number, market, seen, score, published=published)
            number += 1
        middle = bars["ts"].iloc[len(bars) // 2].to_pydatetime()
        store_item(journal, number, market, middle, -1.0, published=None)  # no time given
        store_item(  # published long after it was first seen: no usable time either
            journal, number + 1, market, middle, -1.0, published=middle + timedelta(hours=3)
        )
        number += 2
    journal.close()
    return path


@pytest.fixture
def journal(news_db: Path) -> Journal:
    opened = Journal.open(f"sqlite:///{news_db}")
    yield opened  # type: ignore[misc]
    opened.close()


@pytest.fixture(scope="module")
def with_news(candles: pd.DataFrame, news_db: Path) -> pd.DataFrame:
    journal = Journal.open(f"sqlite:///{news_db}")
    try:
        frame, _ = with_news_columns(candles, journal, half_life=HALF_LIFE)
    finally:
        journal.close()
    return frame


def closes_of(frame: pd.DataFrame) -> pd.Series:
    return frame["ts"] + pd.Timedelta(minutes=1)


def test_each_bar_reads_the_index_as_index_at_its_close_gives_it(
    with_news: pd.DataFrame, journal: Journal
) -> None:
    index = index_from_journal(
        journal, NEWSY, until=closes_of(with_news).max().to_pydatetime(), half_life=HALF_LIFE
    )
    rng = np.random.default_rng(3)
    compared = 0
    for market in NEWSY:
        rows = with_news[with_news["market"] == market]
        for at in rng.choice(len(rows), 120, replace=False):
            row = rows.iloc[at]
            close = (row["ts"] + pd.Timedelta(minutes=1)).to_pydatetime()
            reading = index.index_at(market, close)
            if pd.isna(row["news_count"]):  # before the journal's first item
                assert reading.items == 0
                continue
            assert row["news_count"] == reading.items
            if reading.index is None:
                assert math.isnan(row["news_sentiment"])
            else:
                assert row["news_sentiment"] == pytest.approx(reading.index, abs=2e-6)
                compared += 1
    assert compared > 150


def test_a_bar_never_reads_an_item_first_seen_after_its_close(
    with_news: pd.DataFrame, candles: pd.DataFrame, news_db: Path, tmp_path: Path
) -> None:
    market = "KRW-XRP"
    bars = candles[candles["market"] == market].reset_index(drop=True)
    seen = bars["ts"].iloc[2000].to_pydatetime() + timedelta(seconds=30)  # inside bar 2000
    later_db = tmp_path / "later.db"
    shutil.copy(news_db, later_db)
    later = Journal.open(f"sqlite:///{later_db}")
    try:
        store_item(later, 99_999, market, seen, -1.0, published=seen - timedelta(minutes=1))
        frame, _ = with_news_columns(candles, later, half_life=HALF_LIFE)
        cut, _ = with_news_columns(candles, later, half_life=HALF_LIFE, until=seen)
    finally:
        later.close()

    mine = (frame["market"] == market).to_numpy()
    close = closes_of(frame)
    before = mine & (close < pd.Timestamp(seen)).to_numpy()
    after = mine & ~before
    columns = list(NEWS_COLUMNS)
    pd.testing.assert_frame_equal(frame.loc[before, columns], with_news.loc[before, columns])
    assert (frame.loc[after, "news_count"] == with_news.loc[after, "news_count"] + 1).iloc[0]
    assert (
        frame.loc[after, "news_sentiment"].iloc[0] < with_news.loc[after, "news_sentiment"].iloc[0]
    )
    # Truncated at the item: every bar that closed by then is as in the full computation.
    by_then = (close <= pd.Timestamp(seen)).to_numpy()
    pd.testing.assert_frame_equal(frame.loc[by_then, columns], cut.loc[by_then, columns])


def test_no_news_is_nan_before_the_first_item_and_a_count_of_0_after_never_a_zero_index(
    with_news: pd.DataFrame, journal: Journal
) -> None:
    first = min(row["first_seen_at"] for row in journal.news_items(require_time=True, limit=10_000))
    close = closes_of(with_news)
    collecting = (close >= first).to_numpy()
    quiet = with_news["market"].isin(["KRW-ETH", "KRW-SOL"]).to_numpy()

    assert collecting.any() and (~collecting).any()
    assert with_news.loc[~collecting, list(NEWS_COLUMNS)].isna().all().all()
    assert (with_news.loc[collecting & quiet, "news_count"] == 0).all()
    assert with_news.loc[quiet, "news_sentiment"].isna().all()
    newsy = with_news.loc[collecting & ~quiet]
    assert newsy["news_sentiment"].notna().mean() > 0.9
    assert newsy["news_count"].max() >= 3


def test_items_without_a_usable_time_never_enter_training(journal: Journal) -> None:
    untimed = [
        row
        for row in journal.news_items(limit=10_000)
        if row["published_at"] is None or row["published_at"] > row["first_seen_at"]
    ]
    until = max(row["first_seen_at"] for row in untimed) + timedelta(days=1)
    # The live view keeps them (aged from first seen), so news_series must leave them out.
    everything = index_from_journal(journal, NEWSY, until=until, half_life=HALF_LIFE, view="live")
    timed = index_from_journal(journal, NEWSY, until=until, half_life=HALF_LIFE)
    seen = untimed[0]["first_seen_at"]
    closes = np.array([pd.Timestamp(seen + timedelta(minutes=m)).value for m in range(30)])

    assert len(untimed) == 4
    for market in NEWSY:
        assert len(everything.points(market)) == len(timed.points(market)) + 2
        got = news_series(everything.points(market), closes, HALF_LIFE)
        want = news_series(timed.points(market), closes, HALF_LIFE)
        assert np.isfinite(want[0]).all()
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_a_quick_set_trained_with_news_predicts_through_the_engine_with_a_reader(
    with_news: pd.DataFrame, news_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quick_pair, "NUM_BOOST_ROUND", 30)  # a small set: the test's speed
    with_news = with_news[with_news["market"].isin(NEWSY)]
    until = with_news["ts"].quantile(0.8)
    model_dir = train_quick(with_news, tmp_path / "models", until=until.to_pydatetime())
    predictor = Predictor.load(model_dir)
    assert set(NEWS_COLUMNS) <= set(predictor.feature_names)
    booster = lgb.Booster(model_file=str(model_dir / "model_buy.txt"))
    splits = dict(zip(booster.feature_name(), booster.feature_importance(), strict=True))
    assert splits["news_sentiment"] > 0  # the synthetic scores tell the next bars' return

    news_journal = Journal.open(f"sqlite:///{news_db}")
    first = until.to_pydatetime()
    news = load_journal_news(
        news_journal, since=first - timedelta(days=1), until=first + timedelta(hours=3),
        half_life=HALF_LIFE,
    )  # fmt: skip
    news_journal.close()
    closes = asyncio.run(
        collect_closes(with_news[with_news["ts"] >= until - pd.Timedelta(minutes=130)])
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        checkpoint_url="memory",
        model_dir=model_dir,
        markets=list(NEWSY),
    )

    async def run() -> list[dict[str, object]]:
        async with open_services(settings, session_id="n", account_path=tmp_path / "a.json") as svc:
            svc.engine.attach_news(news, timedelta(days=7))
            svc.engine.warm_up(closes[: WARMUP_BARS + 10])
            seen = []
            for close in closes[WARMUP_BARS + 10 : WARMUP_BARS + 18]:
                await svc.engine.on_bar_close(close)
                at = close.ts + timedelta(minutes=1)
                rows = {m: svc.engine.features[m].latest() for m in NEWSY}
                seen.append({"at": at, "rows": rows})
            decisions = svc.journal.list_decisions(limit=100, session_id="n")
            return [*seen, {"decisions": decisions}]

    *steps, tail = asyncio.run(run())
    decisions = {d["bar_ts"] + timedelta(minutes=1): d for d in tail["decisions"]}  # type: ignore[union-attr]
    assert len(steps) == 8
    for step in steps:
        at, rows = step["at"], step["rows"]
        for market, row in rows.items():  # type: ignore[union-attr]
            reading = news.reading(market, at)  # type: ignore[arg-type]
            assert reading.index is not None and reading.items > 0
            assert row["news_count"] == reading.items
            assert row["news_sentiment"] == reading.index
        signals = decisions[at]["nodes"]["ml_signal"]["signals"]
        direct = predictor.predict(rows)  # type: ignore[arg-type]
        for market in NEWSY:
            assert signals[market]["p_buy"] == round(direct[market].p_buy, 6)


def test_without_a_news_reader_the_engine_feature_rows_have_nan_news(
    tmp_path: Path, candles: pd.DataFrame
) -> None:
    closes = asyncio.run(
        collect_closes(
            candles[candles["ts"] < candles["ts"].min() + pd.Timedelta(minutes=WARMUP_BARS + 5)]
        )
    )
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        checkpoint_url="memory",
        model_dir=latest_model_dir(BUNDLED_MODELS),
    )

    async def rows() -> dict[str, dict[str, float] | None]:
        async with open_services(settings, session_id="q", account_path=tmp_path / "a.json") as svc:
            assert svc.engine.news is None
            svc.engine.warm_up(closes[:-1])
            await svc.engine.on_bar_close(closes[-1])
            return {m: svc.engine.features[m].latest() for m in svc.engine.markets}

    found = asyncio.run(rows())

    assert found and all(row is not None for row in found.values())
    for row in found.values():
        assert row is not None
        assert math.isnan(row["news_sentiment"]) and math.isnan(row["news_count"])
        assert math.isfinite(row["rsi_14"])


def test_lxa_train_news_journal_trains_with_the_news_features_and_records_them(
    news_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(quick_pair, "NUM_BOOST_ROUND", 30)  # a small set: the test's speed
    monkeypatch.setenv("LXA_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LXA_NEWS_HALF_LIFE_MINUTES", str(HALF_LIFE.total_seconds() / 60))
    args = ["--candles", str(BUNDLED_CANDLES), "--quick", "--out", str(tmp_path / "models")]

    result = CliRunner().invoke(app, ["train", *args, "--news-journal", f"sqlite:///{news_db}"])

    assert result.exit_code == 0, result.output
    meta = read_meta(latest_model_dir(tmp_path / "models"))
    assert set(NEWS_COLUMNS) <= set(meta["feature_names"])
    news = meta["news_features"]
    assert news["half_life_minutes"] == HALF_LIFE.total_seconds() / 60
    assert news["items"] > 300 and 0 < news["bars_with_index"] < news["bars_with_count"]
    assert meta["policy_evaluation"]["strategy"]["entries"] >= 0
