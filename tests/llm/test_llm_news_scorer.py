"""The news sentiment answer: its grammar-safe schema, the prompt, and strict reading."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from llm.answers import ANSWER_MODELS, NewsSentimentAnswer, answer_wire_schema
from llm.news_scorer import (
    NEWS_SENTIMENT_PROMPT,
    NEWS_SENTIMENT_VARIABLES,
    NewsScorerFigures,
    news_values,
    read_news_scores,
)
from llm.parsing import LLMOutputError
from llm.provider import LLMCall
from llm.schema import grammar_problems
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary

MARKETS = ["KRW-BTC", "KRW-SOL"]


@dataclass(frozen=True)
class Item:
    """The attributes the scorer reads of a news item (`llm.news_scorer.NewsItemLike`)."""

    title: str
    coins: tuple[str, ...]
    source: str = "wire"
    summary: str = ""
    kind: str = "news"
    notice_kind: str | None = None
    published_at: datetime | None = None


def call_with(raw: str) -> LLMCall:
    return LLMCall(provider="groq", model="m", raw=raw)


def entry(market: str, score: float | str = 0.5, relevance: float | str = 1.0) -> dict[str, object]:
    return {"market": market, "score": score, "relevance": relevance, "reason": "why\nso"}


def test_the_answer_schema_is_registered_and_compiles_for_llama_cpp() -> None:
    schema = answer_wire_schema(NewsSentimentAnswer)

    assert NewsSentimentAnswer in ANSWER_MODELS
    assert grammar_problems(schema) == []
    assert schema["properties"]["scores"]["maxItems"] == 20


def test_scores_come_back_in_market_order_with_tickers_read_as_krw_markets() -> None:
    raw = json.dumps({"scores": [entry("sol", -0.4, "80%"), entry("KRW-BTC", "0.7")]})

    scores, missing = read_news_scores(call_with(raw), MARKETS, "groq:m")

    assert [(s.market, s.score, s.relevance, s.scorer) for s in scores] == [
        ("KRW-BTC", 0.7, 1.0, "groq:m"),
        ("KRW-SOL", -0.4, 0.8, "groq:m"),
    ]
    assert scores[0].reason == "why so"  # one line
    assert missing == ()


def test_a_market_left_out_is_missing_for_the_lexicon_to_score() -> None:
    raw = "<think>only BTC matters</think>" + json.dumps({"scores": [entry("KRW-BTC")]})
    call = call_with(raw)

    scores, missing = read_news_scores(call, MARKETS, "groq:m")

    assert [s.market for s in scores] == ["KRW-BTC"]
    assert missing == ("KRW-SOL",)
    assert call.thinking == "only BTC matters"


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ("no JSON here", LLMOutputError),
        (json.dumps({"scores": [entry("KRW-DOGE")]}), LLMOutputError),
        (json.dumps({"scores": [entry("KRW-BTC"), entry("BTC")]}), LLMOutputError),
        (json.dumps({"scores": [entry("KRW-BTC", 1.5)]}), ValidationError),
        (json.dumps({"scores": [entry("KRW-BTC", 0.5, -0.1)]}), ValidationError),
        (json.dumps({"scores": [entry("KRW-BTC", "n/a")]}), ValidationError),
        (json.dumps({"scores": []}), ValidationError),
        (json.dumps({"verdict": "buy"}), ValidationError),
    ],
    ids=[
        "prose",
        "unknown-market",
        "twice",
        "score-range",
        "relevance-range",
        "no-score",
        "empty",
        "other-json",
    ],
)
def test_a_bad_answer_is_refused(answer: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_news_scores(call_with(answer), MARKETS, "groq:m")


def test_the_prompt_renders_an_item_without_the_local_time_it_was_seen() -> None:
    library = PromptLibrary(DEFAULT_PROMPTS_DIR)
    (prompt,) = library.require(
        [NEWS_SENTIMENT_PROMPT], {NEWS_SENTIMENT_PROMPT: set(NEWS_SENTIMENT_VARIABLES)}
    ).values()
    item = Item(
        "[거래] 리플(XRP) 투자 유의 종목 지정 안내",
        ("KRW-XRP",),
        source="upbit",
        kind="notice",
        notice_kind="warning",
        published_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
    )

    rendered = prompt.render(news_values(item))
    again = prompt.render(news_values(item))

    assert re.fullmatch(r"news_sentiment@[0-9a-f]{8}", rendered.ref)
    assert "투자 유의 종목" in rendered.user and '["KRW-XRP"]' in rendered.user
    assert "Upbit notice: warning" in rendered.user and "2026-12-01T09:00:00+00:00" in rendered.user
    assert rendered.input_sha256 == again.input_sha256  # the cache key of a rerun
    assert '"scores"' in rendered.system and "JSON" in rendered.system
    assert "{{" not in rendered.system + rendered.user


def test_the_figures_count_every_fallback() -> None:
    figures = NewsScorerFigures(items=6, scored=1, partial=1, budget=2, unparseable=1, no_coins=1)

    assert figures.fallbacks == 4
    assert figures.to_json()["fallbacks"] == 4
