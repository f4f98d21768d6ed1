"""Build the reviewers and the sizer from settings: Groq, Ollama, or the rule-based stand-ins."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.settings import Settings
from graph.review import Reviewer, Sizer
from llm.cache import ResponseCache
from llm.cost import CallMeter
from llm.news_scorer import NEWS_SENTIMENT_PROMPT, NEWS_SENTIMENT_VARIABLES, LLMNewsScorer
from llm.provider import ChatProvider
from llm.resilience import CircuitBreaker
from llm.reviewers import REVIEW_VARIABLES, SIZING_VARIABLES, LLMReviewer, LLMSizer
from llm.rule_based import RuleBasedMoodReviewer, RuleBasedSizer, RuleBasedTechnicalReviewer
from prompts.loader import DEFAULT_PROMPTS_DIR, Blind, PromptLibrary

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reviewers:
    """The two checks and the sizer a graph run uses."""

    groq: Reviewer
    ollama: Reviewer
    sizer: Sizer


def groq_provider(
    settings: Settings, cache: ResponseCache | None, meter: CallMeter | None = None
) -> ChatProvider:
    """Groq through `langchain-groq`, asked for a JSON object (JSON mode does not stream)."""
    from langchain_groq import ChatGroq

    assert settings.groq_api_key is not None

    def factory(schema: dict[str, Any]) -> Any:
        chat = ChatGroq(
            model=settings.groq_model,
            api_key=settings.groq_api_key,
            base_url=settings.groq_base_url,
            temperature=0.0,
            max_retries=0,  # retries, backoff and the breaker are ours
            timeout=settings.llm_timeout_s,
            max_tokens=settings.groq_max_tokens,
        )
        return chat.bind(response_format={"type": "json_object"})

    return _provider("groq", settings.groq_model, factory, False, settings, cache, meter)


def ollama_provider(
    settings: Settings, cache: ResponseCache | None, meter: CallMeter | None = None
) -> ChatProvider:
    """Ollama through `langchain-ollama`, with the answer's JSON schema as `format`, streamed.

    The schema is the grammar-safe one (`llm.answers.answer_wire_schema`); `num_predict` caps
    the tokens generated, and the timeout applies to the HTTP client as well as to the whole
    call (`ChatProvider.complete`), so a model that never stops ends as a recorded hold.
    """
    from langchain_ollama import ChatOllama

    assert settings.ollama_host is not None

    def factory(schema: dict[str, Any]) -> Any:
        return ChatOllama(
            model=settings.ollama_model,
            base_url=settings.ollama_host,
            format=schema,
            temperature=0.0,
            num_predict=settings.ollama_num_predict,
            client_kwargs={"timeout": settings.llm_timeout_s},
        )

    return _provider("ollama", settings.ollama_model, factory, True, settings, cache, meter)


def _provider(
    name: str,
    model: str,
    factory: Any,
    stream: bool,
    settings: Settings,
    cache: ResponseCache | None,
    meter: CallMeter | None,
) -> ChatProvider:
    return ChatProvider(
        name=name,
        model=model,
        factory=factory,
        stream=stream,
        timeout_s=settings.llm_timeout_s,
        max_retries=settings.llm_max_retries,
        breaker=CircuitBreaker(
            failure_threshold=settings.llm_breaker_failures,
            reset_after_s=settings.llm_breaker_reset_s,
        ),
        cache=cache,
        meter=meter,
    )


def build_meter(settings: Settings, on_spent: Callable[[str], None] | None = None) -> CallMeter:
    """The meter of this process's LLM calls: the price table and the daily budget."""
    return CallMeter(
        prices=dict(settings.llm_prices),
        daily_budget_usd=settings.llm_daily_budget_usd,
        daily_budget_tokens=settings.llm_daily_budget_tokens,
        on_spent=on_spent,
    )


def build_reviewers(
    settings: Settings,
    cache: ResponseCache | None,
    meter: CallMeter | None = None,
    *,
    offline: bool = False,
    blind: Blind | None = None,
) -> Reviewers:
    """Use Groq and Ollama where configured, the labelled rule-based stand-ins elsewhere.

    The prompt files are validated first: the service refuses to start with a prompt that
    uses an undeclared variable or lacks one the code passes, naming the file and variable.
    """
    prompts = PromptLibrary(settings.prompts_dir or DEFAULT_PROMPTS_DIR)
    prompts.require(
        ["groq_check", "ollama_check", "sizing"],
        {
            "groq_check": set(REVIEW_VARIABLES),
            "ollama_check": set(REVIEW_VARIABLES),
            "sizing": set(SIZING_VARIABLES),
        },
    )
    groq = groq_provider(settings, cache, meter) if settings.groq_api_key is not None else None
    ollama = ollama_provider(settings, cache, meter) if settings.ollama_host is not None else None
    for provider in (groq, ollama):
        if provider is not None:
            provider.offline = offline
    sizer: Sizer = RuleBasedSizer()
    if settings.sizing_provider == "groq" and groq is not None:
        sizer = LLMSizer(groq, prompts, blind)
    elif settings.sizing_provider == "ollama" and ollama is not None:
        sizer = LLMSizer(ollama, prompts, blind)
    return Reviewers(
        groq=(LLMReviewer("groq_check", groq, prompts, blind) if groq else RuleBasedMoodReviewer()),
        ollama=(
            LLMReviewer("ollama_check", ollama, prompts, blind)
            if ollama
            else RuleBasedTechnicalReviewer()
        ),
        sizer=sizer,
    )


def news_scorer_choice(settings: Settings) -> str:
    """Who scores the news: `LXA_NEWS_SCORER`, else groq with a key, ollama with a host, or
    the lexicon."""
    if settings.news_scorer is not None:
        return settings.news_scorer
    if settings.groq_api_key is not None:
        return "groq"
    if settings.ollama_host is not None:
        return "ollama"
    return "lexicon"


def build_news_scorer(
    settings: Settings, cache: ResponseCache | None, meter: CallMeter | None = None
) -> LLMNewsScorer | None:
    """The LLM news scorer the settings choose (None: the lexicon alone scores).

    Its provider is its own (its own breaker: a failing news call never opens the checks'),
    sharing the response cache and the meter, so its calls count against the daily budget.
    """
    choice = news_scorer_choice(settings)
    if choice == "lexicon":
        return None
    prompts = PromptLibrary(settings.prompts_dir or DEFAULT_PROMPTS_DIR)
    if not prompts.path_of(NEWS_SENTIMENT_PROMPT).exists():  # a folder copied before it shipped
        log.warning(
            "%s has no %s.md: the news scorer uses the shipped one",
            prompts.directory,
            NEWS_SENTIMENT_PROMPT,
        )
        prompts = PromptLibrary(DEFAULT_PROMPTS_DIR)
    prompts.require([NEWS_SENTIMENT_PROMPT], {NEWS_SENTIMENT_PROMPT: set(NEWS_SENTIMENT_VARIABLES)})
    if choice == "groq":
        provider = groq_provider(settings, cache, meter)
    else:
        provider = ollama_provider(settings, cache, meter)
    return LLMNewsScorer(provider, prompts)
