"""`lxa llm repeat`: ask each check the same question again and count how often it flips.

A sample of the review prompts the journal recorded (the exact system and user text a check
was sent) is sent again to the configured provider `times` times, past the response cache.
Per check: how many of the sampled questions got more than one verdict across the repeats
(the flip rate), and how many repeats differ from the verdict the journal holds. Models run at
temperature 0, yet servers batch and round differently: a check that flips is one whose vetoes
the veto ledger cannot trust one by one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.llm import build_meter, groq_provider, ollama_provider
from app.settings import Settings
from llm.answers import VerdictAnswer
from llm.provider import ChatProvider, ProviderError
from llm.reviewers import read_verdict
from prompts.loader import RenderedPrompt
from store.journal import Journal

NODES = {"groq_check": "groq", "ollama_check": "ollama"}


class RepeatError(RuntimeError):
    """Nothing to repeat (no provider configured, or no recorded review to sample)."""


@dataclass
class RepeatFigures:
    """One check's repeats."""

    samples: int = 0
    flipped: int = 0  # questions that got more than one verdict across the repeats
    changed: int = 0  # repeats whose verdict differs from the journal's
    repeats: int = 0
    errors: int = 0

    def to_json(self) -> dict[str, Any]:
        """Counts and rates."""
        return {
            "samples": self.samples,
            "repeats": self.repeats,
            "flipped": self.flipped,
            "flip_rate": self.flipped / self.samples if self.samples else None,
            "changed_from_journal_rate": self.changed / self.repeats if self.repeats else None,
            "errors": self.errors,
        }


async def repeat_reviews(
    settings: Settings,
    *,
    times: int,
    sample: int,
    since: datetime | None = None,
    session_id: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample recorded reviews per check and ask each again `times` times (no cache)."""
    meter = build_meter(settings)
    providers: dict[str, ChatProvider] = {}
    if settings.groq_api_key is not None:
        providers["groq"] = groq_provider(settings, None, meter)
    if settings.ollama_host is not None:
        providers["ollama"] = ollama_provider(settings, None, meter)
    if not providers:
        raise RepeatError("no LLM is configured: set LXA_GROQ_API_KEY or LXA_OLLAMA_HOST")
    with Journal.open(settings.journal_url) as journal:
        calls = journal.list_llm_calls(since=since, session_id=session_id)
    rng = random.Random(seed)
    report: dict[str, Any] = {"times": times, "checks": {}}
    for node, name in NODES.items():
        provider = providers.get(name)
        recorded = [
            c
            for c in calls
            if c["node"] == node and c.get("prompt_ref") and not c.get("error") and c["verdict"]
        ]
        if provider is None or not recorded:
            continue
        chosen = rng.sample(recorded, min(sample, len(recorded)))
        figures = RepeatFigures(samples=len(chosen))
        for call in chosen:
            request = call["request"] or {}
            rendered = RenderedPrompt(
                call["prompt_ref"], request["system"], request["user"], request["input_sha256"]
            )
            verdicts = set()
            for _ in range(times):
                verdict = await _ask(provider, rendered)
                figures.repeats += 1
                if verdict is None:
                    figures.errors += 1
                    continue
                verdicts.add(verdict)
                figures.changed += int(verdict != call["verdict"])
            figures.flipped += int(len(verdicts) > 1)
        report["checks"][node] = {
            **figures.to_json(),
            "recorded_model": chosen[0]["model"],
            "asked_model": provider.model,
        }
    if not report["checks"]:
        raise RepeatError("the journal holds no LLM review to repeat (rule-based runs only?)")
    report["llm"] = meter.to_json()
    return report


async def _ask(provider: ChatProvider, rendered: RenderedPrompt) -> str | None:
    """One fresh answer's verdict, or None when the provider failed or answered badly."""
    try:
        call = await provider.complete(rendered, VerdictAnswer)
        return read_verdict(call).verdict
    except (ProviderError, ValueError):
        return None
