"""What LLM calls cost: tokens, money from a price table, latency, and a daily budget.

One `CallMeter` is shared by the providers of a process. Every call is counted as it ends
(a cached answer costs nothing and says so); money comes from the price table, per model and
per million input and output tokens (a model not in the table, a local Ollama for one, costs 0
and is counted as such). The budget, in money or tokens per KST day, is checked before a call
goes out: once spent, the provider refuses (`BudgetSpent`) and the reviewer holds, and the
meter's `on_spent` hook (an alert) is called once that day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

KST = timedelta(hours=9)

# USD per million tokens (input, output), as Groq publishes them; edit with LXA_LLM_PRICES.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "llama-3.1-8b-instant": (0.05, 0.08),
    "llama-3.3-70b-versatile": (0.59, 0.79),
    "openai/gpt-oss-20b": (0.075, 0.30),
    "openai/gpt-oss-120b": (0.15, 0.60),
    "qwen/qwen3-32b": (0.29, 0.59),
}


class BudgetSpent(RuntimeError):
    """Today's LLM budget is spent: no call goes out until the next KST day."""


def kst_day(now: datetime) -> date:
    """The KST calendar day of `now` (budgets roll at midnight in Seoul)."""
    return (now.astimezone(UTC) + KST).date()


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile (0..1) by nearest rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class ProviderFigures:
    """One provider's calls so far."""

    calls: int = 0
    cache_hits: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Counts, money and p50/p99 latency of the calls that went out."""
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "failures": self.failures,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "latency_p50_ms": percentile(self.latencies_ms, 0.5),
            "latency_p99_ms": percentile(self.latencies_ms, 0.99),
        }


@dataclass
class CallMeter:
    """Tokens, money and latency of every LLM call; the daily budget."""

    prices: Mapping[str, tuple[float, float]] = field(default_factory=lambda: dict(DEFAULT_PRICES))
    daily_budget_usd: float | None = None
    daily_budget_tokens: int | None = None
    on_spent: Callable[[str], None] | None = None
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    by_provider: dict[str, ProviderFigures] = field(default_factory=dict)
    _day: date | None = None
    _day_usd: float = 0.0
    _day_tokens: int = 0
    _alerted: date | None = None

    def cost_usd(self, model: str, input_tokens: int | None, output_tokens: int | None) -> float:
        """The price of a call with these tokens (0 for a model the table does not list)."""
        price_in, price_out = self.prices.get(model, (0.0, 0.0))
        return ((input_tokens or 0) * price_in + (output_tokens or 0) * price_out) / 1e6

    def check(self) -> None:
        """Raise `BudgetSpent` when today's budget is spent (before a call goes out)."""
        self._roll()
        reason = None
        if self.daily_budget_usd is not None and self._day_usd >= self.daily_budget_usd:
            reason = f"today's LLM budget of ${self.daily_budget_usd:g} is spent"
        if self.daily_budget_tokens is not None and self._day_tokens >= self.daily_budget_tokens:
            reason = f"today's LLM budget of {self.daily_budget_tokens} tokens is spent"
        if reason is None:
            return
        if self.on_spent is not None and self._alerted != self._day:
            self._alerted = self._day
            self.on_spent(reason)
        raise BudgetSpent(reason)

    def record(
        self,
        provider: str,
        model: str,
        *,
        input_tokens: int | None,
        output_tokens: int | None,
        latency_ms: float,
        cached: bool,
        failed: bool = False,
    ) -> float:
        """Count one call; return its cost (0 when it came from the cache)."""
        self._roll()
        figures = self.by_provider.setdefault(provider, ProviderFigures())
        if cached:
            figures.cache_hits += 1
            return 0.0
        figures.calls += 1
        figures.failures += int(failed)
        figures.input_tokens += input_tokens or 0
        figures.output_tokens += output_tokens or 0
        figures.latencies_ms.append(latency_ms)
        cost = self.cost_usd(model, input_tokens, output_tokens)
        figures.cost_usd += cost
        self._day_usd += cost
        self._day_tokens += (input_tokens or 0) + (output_tokens or 0)
        return cost

    def totals(self) -> dict[str, Any]:
        """Calls, cache hits and money over every provider."""
        every = self.by_provider.values()
        return {
            "calls": sum(f.calls for f in every),
            "cache_hits": sum(f.cache_hits for f in every),
            "cost_usd": round(sum(f.cost_usd for f in every), 6),
            "tokens": sum(f.input_tokens + f.output_tokens for f in every),
        }

    def to_json(self) -> dict[str, Any]:
        """Totals and each provider's figures."""
        return {
            **self.totals(),
            "providers": {name: f.to_json() for name, f in sorted(self.by_provider.items())},
        }

    def _roll(self) -> None:
        day = kst_day(self.clock())
        if day != self._day:
            self._day, self._day_usd, self._day_tokens = day, 0.0, 0
