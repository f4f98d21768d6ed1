"""The veto ledger: what each reviewer's verdicts were worth, in money, after the fact.

A view of the journal's runs, like `store.trading_view`: the API, `lxa report reviewers` and
the backtest report all build it here.

For every proposal a reviewer saw (the ML's buy or sell that the policy put forward), the
ledger keeps the reviewer's verdict and what following the proposal would have returned over
the label horizon: for a buy, the close `horizon` minutes later over the close at the bar,
less the round-trip fee; for a sell, minus that move (what selling avoided or gave up). The
closes come from the runs themselves (each decision journals every market's close), so the
same ledger is built for a backtest, a paper run or a live one from the journal alone.

Per reviewer: how often it was asked and vetoed, the mean net return of the proposals it
vetoed against those it let through (each with a 95% confidence interval, normal
approximation), and the difference. A reviewer earns its place when what it vetoed did worse
than what it let through. The Ollama check sees only what Groq let through (the graph asks
them in turn), so its figures are conditional on Groq's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

REVIEWERS = ("groq", "ollama")


@dataclass(frozen=True)
class LedgerRow:
    """One proposal the reviewers saw, their verdicts and what following it returned."""

    run_id: str
    bar_ts: str
    market: str
    action: str  # the ML's proposal: "buy" or "sell"
    groq: str | None  # the verdict ("buy", "sell", "hold"), None when not asked
    ollama: str | None
    decided: str  # what the run did in the end
    forward_return: float | None  # close at bar + horizon over close at bar, minus 1
    net_return: float | None  # of following the proposal, net of the round-trip fee

    def to_json(self) -> dict[str, Any]:
        """The row as plain JSON values."""
        return asdict(self)


def _ts(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def reviewer_verdict(verdicts: Mapping[str, Any] | None, name: str) -> str | None:
    """A reviewer's verdict ("buy", "sell", "hold") in a decision's verdicts; None if not asked."""
    view = (verdicts or {}).get(name)
    if not isinstance(view, Mapping):
        return None
    verdict = view.get("verdict")
    return str(verdict) if verdict is not None else None


def decision_closes(decisions: Iterable[Mapping[str, Any]]) -> dict[str, dict[datetime, float]]:
    """Every market's close at each decision's bar, from what the runs journaled."""
    closes: dict[str, dict[datetime, float]] = {}
    for decision in decisions:
        at = _ts(decision["bar_ts"])
        for market, close in (
            ((decision.get("nodes") or {}).get("input") or {}).get("closes", {}).items()
        ):
            if close is not None:
                closes.setdefault(market, {})[at] = float(close)
    return closes


def proposal_net_return(action: str, forward_return: float, fee_rate: float) -> float:
    """What following a proposal returned: a buy, the move less the round-trip fee; a sell,
    minus the move (what selling avoided or gave up)."""
    return forward_return - 2 * fee_rate if action == "buy" else -forward_return


def verdict_right(verdict: str, action: str, net_return: float) -> bool:
    """A verdict was right when it agreed with a proposal that paid after fees (net > 0), or
    vetoed one that would have lost (net <= 0); wrong otherwise."""
    agreed = verdict == action
    return net_return > 0 if agreed else net_return <= 0


def ledger_rows(
    decisions: Iterable[Mapping[str, Any]], *, horizon_minutes: int, fee_rate: float
) -> list[LedgerRow]:
    """The ledger of every proposal a reviewer saw, oldest first (see the module docstring)."""
    ordered = sorted(decisions, key=lambda d: _ts(d["bar_ts"]))
    closes = decision_closes(ordered)
    horizon = timedelta(minutes=horizon_minutes)
    rows = []
    for decision in ordered:
        nodes = decision.get("nodes") or {}
        proposal = (nodes.get("ml_signal") or {}).get("proposal") or {}
        action, market = proposal.get("action"), proposal.get("market")
        verdicts = decision.get("verdicts") or {}
        groq, ollama = reviewer_verdict(verdicts, "groq"), reviewer_verdict(verdicts, "ollama")
        if action not in ("buy", "sell") or market is None or (groq is None and ollama is None):
            continue
        at = _ts(decision["bar_ts"])
        series = closes.get(market, {})
        now, later = series.get(at), series.get(at + horizon)
        forward = net = None
        if now and later:
            forward = later / now - 1
            net = proposal_net_return(action, forward, fee_rate)
        rows.append(
            LedgerRow(
                run_id=str(decision["run_id"]),
                bar_ts=at.isoformat(),
                market=market,
                action=action,
                groq=groq,
                ollama=ollama,
                decided=str(decision.get("action")),
                forward_return=forward,
                net_return=net,
            )
        )
    return rows


def _mean_ci(values: list[float]) -> dict[str, Any]:
    """Count, mean and a 95% confidence interval (normal approximation; None below two)."""
    n = len(values)
    if n == 0:
        return {"n": 0, "mean": None, "ci95": None}
    mean = sum(values) / n
    if n < 2:
        return {"n": n, "mean": mean, "ci95": None}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = 1.96 * sd / math.sqrt(n)
    return {"n": n, "mean": mean, "ci95": [mean - half, mean + half]}


def reviewer_summary(rows: list[LedgerRow], name: str) -> dict[str, Any]:
    """How often `name` was asked and vetoed, and what its vetoed and passed proposals did."""
    asked = [r for r in rows if getattr(r, name) is not None]
    vetoed = [r for r in asked if getattr(r, name) != r.action]
    passed = [r for r in asked if getattr(r, name) == r.action]
    vetoed_net = _mean_ci([r.net_return for r in vetoed if r.net_return is not None])
    passed_net = _mean_ci([r.net_return for r in passed if r.net_return is not None])
    edge = None
    if vetoed_net["mean"] is not None and passed_net["mean"] is not None:
        edge = passed_net["mean"] - vetoed_net["mean"]
    return {
        "asked": len(asked),
        "vetoed": len(vetoed),
        "veto_rate": len(vetoed) / len(asked) if asked else None,
        "vetoed_net_return": vetoed_net,
        "passed_net_return": passed_net,
        # > 0: what it let through did better than what it stopped (it earned its place)
        "passed_minus_vetoed": edge,
    }


def agreement_table(rows: list[LedgerRow]) -> dict[str, int]:
    """Counts of (Groq, Ollama) outcomes on the ML's proposals: agreed, vetoed, not asked."""

    def outcome(verdict: str | None, action: str) -> str:
        if verdict is None:
            return "not asked"
        return "agreed" if verdict == action else "vetoed"

    table: dict[str, int] = {}
    for row in rows:
        key = f"groq {outcome(row.groq, row.action)} / ollama {outcome(row.ollama, row.action)}"
        table[key] = table.get(key, 0) + 1
    return dict(sorted(table.items()))


def veto_ledger(
    decisions: Iterable[Mapping[str, Any]], *, horizon_minutes: int, fee_rate: float
) -> dict[str, Any]:
    """The whole ledger as JSON: its rows, each reviewer's summary and the agreement table."""
    rows = ledger_rows(decisions, horizon_minutes=horizon_minutes, fee_rate=fee_rate)
    return {
        "horizon_minutes": horizon_minutes,
        "round_trip_fee": 2 * fee_rate,
        "proposals": len(rows),
        "with_outcome": sum(1 for r in rows if r.net_return is not None),
        "reviewers": {name: reviewer_summary(rows, name) for name in REVIEWERS},
        "agreement": agreement_table(rows),
        "rows": [r.to_json() for r in rows],
    }


def horizon_of(decisions: Iterable[Mapping[str, Any]], default: int = 10) -> int:
    """The label horizon the policy judged with (each proposal records its parameters)."""
    for decision in decisions:
        proposal = ((decision.get("nodes") or {}).get("ml_signal") or {}).get("proposal") or {}
        horizon = ((proposal.get("policy") or {}).get("params") or {}).get("horizon_minutes")
        if horizon:
            return int(horizon)
    return default


BAR_MS = 60_000.0  # the one-minute bar every decision must fit in


def _kst_day(value: Any) -> str:
    return (_ts(value).astimezone(UTC) + timedelta(hours=9)).date().isoformat()


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _call_figures(calls: list[Mapping[str, Any]], decisions: int) -> dict[str, Any]:
    """Tokens, money and latency of some calls (cached answers cost nothing and take ~0 ms)."""
    out = [c for c in calls if not c.get("cached")]
    latencies = [float(c["latency_ms"]) for c in out if c.get("latency_ms") is not None]
    tokens = sum((c.get("input_tokens") or 0) + (c.get("output_tokens") or 0) for c in out)
    cost = sum(float(((c.get("response") or {}).get("cost_usd")) or 0.0) for c in out)
    p99 = _quantile(latencies, 0.99)
    return {
        "calls": len(out),
        "cache_hits": len(calls) - len(out),
        "errors": sum(1 for c in calls if c.get("error")),
        "tokens": tokens,
        "cost_usd": round(cost, 6),
        "tokens_per_decision": tokens / decisions if decisions else None,
        "cost_usd_per_decision": cost / decisions if decisions else None,
        "latency_p50_ms": _quantile(latencies, 0.5),
        "latency_p99_ms": p99,
        "p99_share_of_bar": p99 / BAR_MS if p99 is not None else None,
    }


def call_costs(calls: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per node (groq_check, ollama_check, sizing) and per KST day: tokens, money, latency.

    `calls` are the journal's LLM call rows with their run's `bar_ts` (`list_llm_calls`);
    answers no model gave (rule-based stand-ins, the backtest's agree stand-in: no prompt was
    rendered, so no `prompt_ref`) are left out.
    """
    real = [c for c in calls if c.get("prompt_ref")]
    runs = {c["run_id"] for c in real}
    by_node: dict[str, list[Mapping[str, Any]]] = {}
    by_day: dict[str, list[Mapping[str, Any]]] = {}
    for call in real:
        by_node.setdefault(str(call["node"]), []).append(call)
        by_day.setdefault(_kst_day(call["bar_ts"]), []).append(call)
    return {
        "decisions_with_calls": len(runs),
        "nodes": {node: _call_figures(rows, len(runs)) for node, rows in sorted(by_node.items())},
        "days": {
            day: _call_figures(rows, len({c["run_id"] for c in rows}))
            for day, rows in sorted(by_day.items())
        },
    }
