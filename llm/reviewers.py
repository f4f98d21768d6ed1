"""The LLM-backed `Reviewer` and `Sizer`: a prompt file rendered, a provider asked, JSON read.

They implement the protocols in `graph.review`. Every failure ends in a `hold` verdict (or an
unusable sizing) that carries the error and whatever the model said, never in an approval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import ValidationError

from graph.review import ReviewRequest, SizingProposal, SizingRequest, TokenCallback, Verdict
from llm.answers import SizingAnswer, VerdictAnswer
from llm.parsing import LLMOutputError, extract_json, split_thinking
from llm.provider import ChatProvider, LLMCall, ProviderError
from prompts.loader import Blind, PromptError, PromptLibrary

REVIEW_VARIABLES = frozenset(
    {
        "market",
        "action",
        "entry_probability",
        "exit_probability",
        "model_id",
        "bar_time",
        "features",
        "recent_closes",
        "position",
        "news",
        "account",
    }
)
SIZING_VARIABLES = frozenset(
    {
        "market",
        "capital_krw",
        "cash_krw",
        "positions",
        "entry_probability",
        "signal_strength",
        "volatility_60m",
        "atr_pct",
        "bollinger_width_pct",
        "win_rate",
        "recent_results",
        "losing_streak",
        "winning_streak",
        "risk_level",
        "limits",
    }
)


def review_values(request: ReviewRequest) -> dict[str, Any]:
    """The variables a review prompt is rendered with."""
    return {
        "market": request.market,
        "action": request.action,
        "entry_probability": request.entry_probability,
        "exit_probability": request.exit_probability,
        "model_id": request.model_id,
        "bar_time": request.bar_time,
        "features": {k: v for k, v in request.features.items() if v is not None},
        "recent_closes": list(request.recent_closes),
        "position": request.position,
        "news": list(request.news),
        "account": dict(request.account),
    }


def _hold(reviewer: str, reasoning: str, error: str, call: LLMCall | None) -> Verdict:
    return Verdict(
        verdict="hold",
        confidence=0.0,
        reasoning=reasoning,
        reviewer=reviewer,
        error=error,
        call=call.to_json() if call is not None else None,
    )


def read_verdict(call: LLMCall) -> VerdictAnswer:
    """The verdict in a call's answer (its thinking moved aside); raises on a bad answer."""
    thinking, answer = split_thinking(call.raw)
    call.thinking = "\n".join(t for t in (call.thinking, thinking) if t)
    return VerdictAnswer.model_validate(extract_json(answer))


@dataclass
class LLMReviewer:
    """A review check answered by an LLM through a prompt file."""

    role: Literal["groq_check", "ollama_check"]
    provider: ChatProvider
    prompts: PromptLibrary
    blind: Blind | None = None  # hide what identifies the period (a blind backtest)

    @property
    def name(self) -> str:
        """provider:model, as every verdict and journal row names it."""
        return self.provider.label

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Render the prompt, ask the model, and read its verdict; any failure is a hold."""
        try:
            rendered = self.prompts.get(self.role).render(review_values(request), self.blind)
        except PromptError as exc:
            return _hold(self.name, f"prompt unusable: {exc}", f"prompt: {exc}", None)
        try:
            call = await self.provider.complete(rendered, VerdictAnswer, on_token)
        except ProviderError as exc:
            return _hold(self.name, f"{self.provider.name} unavailable: {exc}", str(exc), exc.call)
        try:
            parsed = read_verdict(call)
        except (LLMOutputError, ValidationError) as exc:
            reason = _brief(exc)
            call.error = f"unparseable answer: {reason}"
            return _hold(self.name, f"unparseable answer, held: {reason}", call.error, call)
        return Verdict(
            verdict=parsed.verdict,
            confidence=parsed.confidence,
            reasoning=parsed.reasoning,
            reviewer=self.name,
            risks=tuple(parsed.risks),
            call=call.to_json(),
        )


@dataclass
class LLMSizer:
    """The sizing proposal answered by an LLM through `prompts/sizing.md`."""

    provider: ChatProvider
    prompts: PromptLibrary
    blind: Blind | None = None

    @property
    def name(self) -> str:
        """provider:model."""
        return self.provider.label

    async def size(
        self, request: SizingRequest, on_token: TokenCallback | None = None
    ) -> SizingProposal:
        """Ask the model for the sizing JSON; an unusable answer is a NaN proposal (a hold)."""
        call: LLMCall | None = None
        try:
            rendered = self.prompts.get("sizing").render(sizing_values(request), self.blind)
            call = await self.provider.complete(rendered, SizingAnswer, on_token)
            thinking, answer = split_thinking(call.raw)
            call.thinking = "\n".join(t for t in (call.thinking, thinking) if t)
            parsed = SizingAnswer.model_validate(extract_json(answer))
            stop, take = parsed.protections()
        except ProviderError as exc:
            return _unusable(self.name, str(exc), exc.call)
        except (PromptError, LLMOutputError, ValidationError) as exc:
            if call is not None:
                call.error = f"unparseable answer: {_brief(exc)}"
            return _unusable(self.name, _brief(exc), call)
        return SizingProposal(
            investment_ratio=parsed.investment_ratio,
            stop_loss_pct=stop,
            take_profit_pct=take,
            reasoning=parsed.reasoning,
            reviewer=self.name,
            call=call.to_json(),
        )


def sizing_values(request: SizingRequest) -> dict[str, Any]:
    """The variables the sizing prompt is rendered with."""
    return {
        "market": request.market,
        "capital_krw": round(request.capital_krw),
        "cash_krw": round(request.cash_krw),
        "positions": request.positions,
        "entry_probability": request.entry_probability,
        "signal_strength": request.signal_strength,
        "volatility_60m": request.volatility_60m,
        "atr_pct": request.atr_pct,
        "bollinger_width_pct": request.bollinger_width_pct,
        "win_rate": request.win_rate,
        "recent_results": list(request.recent_results),
        "losing_streak": request.losing_streak,
        "winning_streak": request.winning_streak,
        "risk_level": request.risk_level,
        "limits": dict(request.limits),
    }


def _unusable(reviewer: str, error: str, call: LLMCall | None) -> SizingProposal:
    return SizingProposal(
        investment_ratio=math.nan,
        stop_loss_pct=math.nan,
        take_profit_pct=math.nan,
        reasoning=f"no usable sizing: {error}",
        reviewer=reviewer,
        error=error,
        call=call.to_json() if call is not None else None,
    )


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return f"{where}: {first['msg']}"
    return str(exc)[:300]
