"""`lxa llm check`: one review and one sizing request to each configured LLM, shown parsed.

It goes through the same code as a trading cycle (prompt files, the grammar-safe answer schema,
timeouts, retries, token caps, parsing), without the cache, so what it prints is what the
service would get from the same providers now.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from app.llm import groq_provider, ollama_provider
from app.settings import Settings
from graph.context import TradingPolicy
from graph.review import ReviewRequest, SizingProposal, SizingRequest, Verdict
from llm.provider import ChatProvider
from llm.reviewers import LLMReviewer, LLMSizer
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary

_RAW_SHOWN = 300


@dataclass(frozen=True)
class CheckResult:
    """What one request to one provider brought back."""

    provider: str  # groq or ollama
    reviewer: str  # provider:model
    request: Literal["review", "sizing"]
    ok: bool
    answer: dict[str, Any]  # the parsed fields (empty when nothing could be read)
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    error: str | None
    raw: str

    def to_json(self) -> dict[str, Any]:
        """Return the result as plain JSON values."""
        return asdict(self)


@dataclass(frozen=True)
class CheckReport:
    """Every result, and what is not configured (and so rule-based)."""

    results: tuple[CheckResult, ...]
    rule_based: tuple[str, ...]  # one line per provider that is not configured
    sizing_provider: str

    @property
    def ok(self) -> bool:
        """Whether every configured provider answered both requests usably."""
        return all(result.ok for result in self.results)

    def to_json(self) -> dict[str, Any]:
        """Return the report as plain JSON values."""
        return {
            "ok": self.ok,
            "results": [result.to_json() for result in self.results],
            "rule_based": list(self.rule_based),
            "sizing_provider": self.sizing_provider,
        }


def sample_review_request(role: Literal["groq_check", "ollama_check"]) -> ReviewRequest:
    """A buy proposal for KRW-BTC with plausible numbers, as a cycle would send it."""
    bar = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    closes = tuple(95_000_000.0 + 12_000.0 * i for i in range(25))
    return ReviewRequest(
        role=role,
        action="buy",
        market="KRW-BTC",
        entry_probability=0.62,
        exit_probability=0.08,
        features={
            "ret_60": 0.0031,
            "volatility_60": 0.0009,
            "rsi_14": 61.5,
            "macd_hist": 0.00002,
            "range_pct_mean_10": 0.0011,
            "volume_ratio_60": 1.4,
        },
        position=None,
        model_id="lxa-llm-check",
        bar_time=bar.isoformat(),
        recent_closes=closes,
        account={"equity_krw": 1_000_000, "krw": 1_000_000, "positions": {}},
    )


def sample_sizing_request(settings: Settings) -> SizingRequest:
    """An approved KRW-BTC entry to size, with the limits the service would clamp to."""
    policy = TradingPolicy(stop_loss_cap_pct=settings.stop_loss_cap_pct)
    return SizingRequest(
        market="KRW-BTC",
        capital_krw=1_000_000.0,
        cash_krw=1_000_000.0,
        positions={},
        entry_probability=0.62,
        volatility_60m=0.0009,
        range_10m=0.0011,
        recent_results=[0.004, -0.002, 0.006],
        risk_level=settings.risk_level,
        signal_strength="medium",
        atr_pct=0.11,
        bollinger_width_pct=0.42,
        win_rate=0.667,
        losing_streak=0,
        winning_streak=1,
        limits={
            "min_investment_ratio": policy.min_investment_ratio,
            "max_investment_ratio": policy.max_investment_ratio,
            "stop_loss_cap_pct": policy.stop_loss_cap_pct,
            "take_profit_cap_pct": policy.take_profit_cap_pct,
        },
    )


def _result(
    provider: ChatProvider,
    request: Literal["review", "sizing"],
    error: str | None,
    answer: dict[str, Any],
    call: dict[str, Any] | None,
) -> CheckResult:
    call = call or {}
    return CheckResult(
        provider=provider.name,
        reviewer=provider.label,
        request=request,
        ok=error is None,
        answer=answer if error is None else {},
        latency_ms=call.get("latency_ms"),
        input_tokens=call.get("input_tokens"),
        output_tokens=call.get("output_tokens"),
        error=error,
        raw=str(call.get("raw", "")),
    )


def _review_result(provider: ChatProvider, verdict: Verdict) -> CheckResult:
    answer = {
        "verdict": verdict.verdict,
        "confidence": verdict.confidence,
        "reasoning": verdict.reasoning,
        "risks": list(verdict.risks),
    }
    return _result(provider, "review", verdict.error, answer, verdict.call)


def _sizing_result(provider: ChatProvider, proposal: SizingProposal) -> CheckResult:
    answer = {
        "investment_ratio": proposal.investment_ratio,
        "stop_loss_pct": proposal.stop_loss_pct,
        "take_profit_pct": proposal.take_profit_pct,
        "reasoning": proposal.reasoning,
    }
    return _result(provider, "sizing", proposal.error, answer, proposal.call)


async def check_llms(settings: Settings) -> CheckReport:
    """Send one review and one sizing request to Groq and to Ollama, where configured."""
    prompts = PromptLibrary(settings.prompts_dir or DEFAULT_PROMPTS_DIR)
    configured: list[tuple[Literal["groq_check", "ollama_check"], Any]] = []
    rule_based: list[str] = []
    if settings.groq_api_key is not None:
        configured.append(("groq_check", groq_provider))
    else:
        rule_based.append(
            "groq: not configured (LXA_GROQ_API_KEY is unset); the first check is rule-based"
        )
    if settings.ollama_host is not None:
        configured.append(("ollama_check", ollama_provider))
    else:
        rule_based.append(
            "ollama: not configured (LXA_OLLAMA_HOST is unset); the second check is rule-based"
        )
    results: list[CheckResult] = []
    for role, build in configured:
        # A provider each, without the cache: the sizing request gets a fresh breaker even
        # when the review failed, and nothing comes from an earlier answer.
        reviewer_provider: ChatProvider = build(settings, None)
        verdict = await LLMReviewer(role, reviewer_provider, prompts).review(
            sample_review_request(role)
        )
        results.append(_review_result(reviewer_provider, verdict))
        sizer_provider: ChatProvider = build(settings, None)
        proposal = await LLMSizer(sizer_provider, prompts).size(sample_sizing_request(settings))
        results.append(_sizing_result(sizer_provider, proposal))
    return CheckReport(tuple(results), tuple(rule_based), settings.sizing_provider)


def _tokens(value: int | None) -> str:
    return "-" if value is None else str(value)


def report_lines(report: CheckReport) -> list[str]:
    """The report as lines for a terminal."""
    lines: list[str] = []
    if not report.results:
        lines.append(
            "No LLM is configured: both checks and the sizing are the rule-based stand-ins. "
            "Set LXA_GROQ_API_KEY and/or LXA_OLLAMA_HOST to use Groq and Ollama."
        )
    lines.extend(report.rule_based)
    for result in report.results:
        status = "ok  " if result.ok else "FAIL"
        latency = "-" if result.latency_ms is None else f"{result.latency_ms:.0f} ms"
        lines.append(
            f"{status}  {result.reviewer}  {result.request}  {latency}  "
            f"tokens in {_tokens(result.input_tokens)} / out {_tokens(result.output_tokens)}"
        )
        if result.ok:
            fields = {k: v for k, v in result.answer.items() if k != "reasoning"}
            lines.append("      " + json.dumps(fields, ensure_ascii=False))
            lines.append(f"      reasoning: {result.answer.get('reasoning', '')}")
        else:
            lines.append(f"      error: {result.error}")
            if result.raw:
                shown = result.raw[:_RAW_SHOWN] + ("..." if len(result.raw) > _RAW_SHOWN else "")
                lines.append(f"      raw answer: {shown!r}")
    lines.append(f"sizing in trading: {report.sizing_provider} (LXA_SIZING_PROVIDER)")
    return lines
