"""A news item scored per coin by an LLM: `prompts/news_sentiment.md` through a `ChatProvider`.

`LLMNewsScorer.score_item(item)` renders the prompt from the item (title, summary, source,
kind, published time, the markets it was tagged with: never the time this process saw it, so
the same item renders the same input and a rerun is answered from the response cache), asks
the provider (cache, retries, breaker, the `CallMeter` and its daily budget) and reads the
answer strictly (`llm.answers.NewsSentimentAnswer`: scores in [-1, 1], relevance in [0, 1], a
reason; every market at most once, none it was not asked about).

Nothing here raises on a bad day: the result is a `NewsScoring` with the scores the LLM gave
(none when it failed) and why not (`outcome`), counted in `figures`. The composition root
(`app/news.py`) adapts it to `news.scoring.Scorer` and puts the lexicon scorer after it, so a
coin the LLM did not score keeps the lexicon's score. This module does not import `news`: an
item is anything with the attributes of `NewsItemLike`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from llm.answers import NewsSentimentAnswer
from llm.cost import BudgetSpent
from llm.parsing import LLMOutputError, extract_json, split_thinking
from llm.provider import ChatProvider, LLMCall, ProviderError
from prompts.loader import PromptError, PromptLibrary

__all__ = [
    "NEWS_SENTIMENT_PROMPT",
    "NEWS_SENTIMENT_VARIABLES",
    "LLMCoinScore",
    "LLMNewsScorer",
    "NewsItemLike",
    "NewsScorerFigures",
    "NewsScoring",
    "news_values",
    "read_news_scores",
]

log = logging.getLogger(__name__)

NEWS_SENTIMENT_PROMPT = "news_sentiment"
NEWS_SENTIMENT_VARIABLES = frozenset(
    {"title", "summary", "source", "kind", "notice_kind", "published_at", "markets"}
)
SUMMARY_CHARS = 600  # the lexicon reads as much of a summary

Outcome = Literal["scored", "partial", "no_coins", "prompt", "budget", "unavailable", "unparseable"]


class NewsItemLike(Protocol):
    """What the scorer reads of an item (`news.items.NewsItem` has it)."""

    @property
    def source(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def notice_kind(self) -> str | None: ...
    @property
    def published_at(self) -> datetime | None: ...
    @property
    def coins(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class LLMCoinScore:
    """One coin's score as the LLM gave it (the fields of `news.scoring.CoinScore`)."""

    market: str
    score: float
    relevance: float
    reason: str
    scorer: str  # provider:model


@dataclass(frozen=True)
class NewsScoring:
    """What scoring one item gave: the LLM's scores, the call made (if any), and why not all.

    `outcome`: scored (every market), partial (some markets missing from the answer: they are
    in `missing`), no_coins (nothing to ask), prompt (the file is unusable), budget (today's
    budget is spent), unavailable (the provider failed), unparseable (a bad answer).
    """

    scores: tuple[LLMCoinScore, ...]
    call: LLMCall | None
    outcome: Outcome
    missing: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class NewsScorerFigures:
    """How the scorer's items went, by outcome; `cached` of the calls that were answered."""

    items: int = 0
    scored: int = 0
    partial: int = 0
    no_coins: int = 0
    prompt: int = 0
    budget: int = 0
    unavailable: int = 0
    unparseable: int = 0
    cached: int = 0

    @property
    def fallbacks(self) -> int:
        """Items with coins the LLM did not score (fully or in part): the lexicon stood in."""
        return self.partial + self.prompt + self.budget + self.unavailable + self.unparseable

    def to_json(self) -> dict[str, Any]:
        """The counts, and the fallbacks."""
        return {**asdict(self), "fallbacks": self.fallbacks}


def news_values(item: NewsItemLike) -> dict[str, Any]:
    """The variables the prompt is rendered with: only what the source gave (no local time)."""
    published = item.published_at
    return {
        "title": item.title.strip(),
        "summary": (item.summary or "").strip()[:SUMMARY_CHARS],
        "source": item.source,
        "kind": item.kind,
        "notice_kind": item.notice_kind,
        "published_at": None if published is None else published.isoformat(),
        "markets": list(dict.fromkeys(item.coins)),
    }


def _market_of(written: str, markets: Sequence[str]) -> str:
    code = written.strip().upper()
    if code in markets:
        return code
    if f"KRW-{code}" in markets:  # "BTC" for KRW-BTC
        return f"KRW-{code}"
    raise LLMOutputError(f"the answer scores {written!r}, which is not one of {list(markets)}")


def read_news_scores(
    call: LLMCall, markets: Sequence[str], scorer: str
) -> tuple[tuple[LLMCoinScore, ...], tuple[str, ...]]:
    """The scores in a call's answer, in `markets` order, and the markets it left out.

    Raises `LLMOutputError` or `ValidationError` on a bad answer: no JSON, a value out of
    range, a market it was not asked about or one scored twice, no market scored at all.
    """
    thinking, answer = split_thinking(call.raw)
    call.thinking = "\n".join(t for t in (call.thinking, thinking) if t)
    parsed = NewsSentimentAnswer.model_validate(extract_json(answer))
    by_market: dict[str, LLMCoinScore] = {}
    for entry in parsed.scores:
        market = _market_of(entry.market, markets)
        if market in by_market:
            raise LLMOutputError(f"the answer scores {market} twice")
        by_market[market] = LLMCoinScore(
            market, round(entry.score, 4), round(entry.relevance, 4), entry.reason, scorer
        )
    scores = tuple(by_market[m] for m in markets if m in by_market)
    return scores, tuple(m for m in markets if m not in by_market)


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return f"{where}: {first['msg']}"
    return str(exc)[:300]


@dataclass
class LLMNewsScorer:
    """Scores news items per coin with an LLM (module docstring); never raises."""

    provider: ChatProvider
    prompts: PromptLibrary
    figures: NewsScorerFigures = field(default_factory=NewsScorerFigures)

    @property
    def name(self) -> str:
        """provider:model, as the journal's score rows and LLM calls name it."""
        return self.provider.label

    async def score_item(self, item: NewsItemLike) -> NewsScoring:
        """Ask the LLM for the item's scores; any failure leaves them to the next scorer."""
        self.figures.items += 1
        markets = list(dict.fromkeys(item.coins))
        if not markets:
            self.figures.no_coins += 1
            return NewsScoring((), None, "no_coins")
        try:
            rendered = self.prompts.get(NEWS_SENTIMENT_PROMPT).render(news_values(item))
        except PromptError as exc:
            return self._failed("prompt", f"prompt: {exc}", None, item)
        try:
            call = await self.provider.complete(rendered, NewsSentimentAnswer)
        except ProviderError as exc:
            kind: Outcome = "budget" if self._budget_refused(exc.call) else "unavailable"
            return self._failed(kind, str(exc), exc.call, item)
        self.figures.cached += int(call.cached)
        try:
            scores, missing = read_news_scores(call, markets, self.name)
        except (LLMOutputError, ValidationError) as exc:
            call.error = f"unparseable answer: {_brief(exc)}"
            return self._failed("unparseable", call.error, call, item)
        if missing:
            self.figures.partial += 1
            log.warning(
                "news scorer %s left %s out of %r: the lexicon scores them",
                self.name,
                ", ".join(missing),
                item.title,
            )
            return NewsScoring(scores, call, "partial", missing)
        self.figures.scored += 1
        return NewsScoring(scores, call, "scored")

    def _budget_refused(self, call: LLMCall) -> bool:
        meter = self.provider.meter
        if call.attempts > 0 or meter is None:
            return False
        try:
            meter.check()
        except BudgetSpent:
            return True
        return False

    def _failed(
        self, outcome: Outcome, error: str, call: LLMCall | None, item: NewsItemLike
    ) -> NewsScoring:
        setattr(self.figures, outcome, getattr(self.figures, outcome) + 1)
        log.warning(
            "news scorer %s: %s on %r, the lexicon's score stands: %s",
            self.name,
            outcome,
            item.title,
            error,
        )
        missing = tuple(dict.fromkeys(item.coins))
        return NewsScoring((), call, outcome, missing, error)
