"""`lxa backtest --ablation`: what each LLM check adds, on the same candles and the same ML.

The real engine replays the same unseen candles once per variant, with the same model, policy
and sizing; only the reviewers change:

- `ml_alone`: both checks agree with every proposal (the policy decides alone);
- `groq_only`, `ollama_only`: one configured LLM check, the other agreeing;
- `both`: the plan, Groq then Ollama;
- `random_veto`: a seeded coin vetoes each proposal at the rate `both` vetoed (20 seeds by
  default), so a check that only trades less is told apart from one that picks well.

Every LLM answer goes through the response cache (`--reviewers llm` calls only what it lacks;
`cache-only` calls nothing and stops on a miss). Return, drawdown, round trips, entries and
fees for each variant go side by side into `ablation.json`, with the spread of the random
vetoes.

Each replay is the fast path (`app.graph_loop`: the simulator walks the bars, the graph runs at
each proposed order; the arrays and features are made once for all the variants), so the
twenty random-veto seeds cost little; `engine_path` replays every bar through the engine
instead (the reference).
"""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.backtest import (
    AgreeReviewer,
    PreparedBacktest,
    Simulation,
    collect_clients,
    llm_reviewers,
    prepare_backtest,
    simulate,
    simulate_fast,
)
from app.graph_loop import FastInputs, fast_inputs
from app.llm import Reviewers, build_meter
from app.session import collect_closes
from app.settings import Settings
from evaluation.policy_result import json_ready
from graph.review import ReviewRequest, TokenCallback, Verdict
from llm.cost import CallMeter
from llm.rule_based import RuleBasedSizer
from ml.evaluate import fold_fills, max_drawdown
from ml.predict import Predictor
from prompts.loader import Blind

VARIANTS = ("ml_alone", "groq_only", "ollama_only", "both")
AblationProgress = Callable[[str, int, int], None]  # (variant, bars done, bars in all)


@dataclass
class RandomVetoReviewer:
    """Vetoes each proposal with probability `rate` (seeded), agrees otherwise."""

    rate: float
    seed: int
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @property
    def name(self) -> str:
        """How its verdicts are labelled in the journal."""
        return f"random-veto {self.rate:.3f} (seed {self.seed})"

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Hold with probability `rate`, else repeat the proposed action."""
        veto = self.rng.random() < self.rate
        return Verdict(
            verdict="hold" if veto else request.action,
            confidence=0.5,
            reasoning="a seeded coin (the ablation's baseline), not a review",
            reviewer=self.name,
        )


def variant_figures(simulation: Simulation) -> dict[str, Any]:
    """Return, drawdown, round trips, entries and fees of one replay."""
    curve = np.concatenate([[simulation.initial_krw], simulation.equity.to_numpy()])
    books = fold_fills(simulation.fills)
    ledger = simulation.veto_ledger
    proposals = ledger.get("proposals", 0)
    passed = ledger.get("agreement", {}).get("groq agreed / ollama agreed", 0)
    return {
        "total_return": float(curve[-1] / simulation.initial_krw - 1),
        "max_drawdown": max_drawdown(curve),
        "round_trips": sum(len(book.round_trips) for book in books.values()),
        "entries": simulation.summary.get("buys", 0),
        "fees_krw": round(sum(book.fees_krw for book in books.values()), 2),
        "proposals_reviewed": proposals,
        "veto_rate": (1 - passed / proposals) if proposals else None,
    }


def spread(rows: Sequence[dict[str, Any]], key: str) -> dict[str, float | None]:
    """Mean, standard deviation, min and max of `key` over the random-veto seeds."""
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    if not values:
        return {"mean": None, "sd": None, "min": None, "max": None}
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
    }


async def run_ablation(
    settings: Settings,
    *,
    candles_paths: Sequence[Path],
    report_dir: Path,
    model_dir: Path | None = None,
    minutes: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    reviewers_mode: str = "llm",
    llm_cache: Path | None = None,
    seeds: int = 20,
    blind: bool = False,
    on_progress: AblationProgress | None = None,
    engine_path: bool = False,
) -> dict[str, Any]:
    """Replay the candles once per variant and write `ablation.json`; return it.

    `blind` adds `both_blind`: the plan with the prompts stripped of what identifies the
    period (`prompts.loader.Blind`), to put against `both` (named). `engine_path` replays
    through the engine instead of the fast path.
    """
    prepared = prepare_backtest(
        settings,
        candles_paths=candles_paths,
        report_dir=report_dir,
        model_dir=model_dir,
        since=since,
        until=until,
        keep_llm=True,
    )
    settings = prepared.settings
    replay = _Replayer(settings, report_dir, minutes, on_progress)
    if engine_path:
        replay.closes = await collect_closes(prepared.candles)
    else:
        replay.fast = (
            prepared,
            fast_inputs(settings, prepared.candles, Predictor.load(prepared.model_path), minutes),
        )
    meter = build_meter(settings)
    try:
        results, rate, random_rows, names = await _variants(
            settings, prepared, replay, meter, reviewers_mode, llm_cache, seeds, blind
        )
    finally:  # the variants' LLM clients, let go of while the loop runs
        await collect_clients()
    report = {
        "variants": results,
        "random_veto": {
            "rate": rate,
            "seeds": seeds,
            **{
                key: spread(random_rows, key)
                for key in ("total_return", "max_drawdown", "round_trips", "fees_krw")
            },
        },
        "reviewers": names,
        "reviewers_mode": reviewers_mode,
        "path": "engine" if engine_path else "fast",
        "blind": blind,
        "llm": meter.to_json(),
        "bars": minutes,
    }
    report = json_ready(report)
    (report_dir / "ablation.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


async def _variants(
    settings: Settings,
    prepared: PreparedBacktest,
    replay: _Replayer,
    meter: CallMeter,
    reviewers_mode: str,
    llm_cache: Path | None,
    seeds: int,
    blind: bool,
) -> tuple[dict[str, Any], float, list[dict[str, Any]], dict[str, str]]:
    """Replay every variant, then the random vetoes at both's rate: (figures by variant, the
    rate, each seed's figures, the reviewers' names)."""
    configured, cache_journal = llm_reviewers(
        settings, reviewers_mode, llm_cache or prepared.llm_cache, meter
    )
    names = {"groq": configured.groq.name, "ollama": configured.ollama.name}
    agree, sizer = AgreeReviewer(), RuleBasedSizer()
    plans = {
        "ml_alone": Reviewers(agree, agree, sizer),
        "groq_only": Reviewers(configured.groq, agree, sizer),
        "ollama_only": Reviewers(agree, configured.ollama, sizer),
        "both": Reviewers(configured.groq, configured.ollama, sizer),
    }
    journals = [cache_journal]
    try:
        if blind:
            hidden, hidden_journal = llm_reviewers(
                settings,
                reviewers_mode,
                llm_cache or prepared.llm_cache,
                meter,
                Blind(tuple(prepared.markets)),
            )
            journals.append(hidden_journal)
            plans["both_blind"] = Reviewers(hidden.groq, hidden.ollama, sizer)
        results: dict[str, Any] = {}
        for name, reviewers in plans.items():
            results[name] = variant_figures(await replay(name, reviewers))
        rate = results["both"]["veto_rate"] or 0.0
        random_rows = []
        for seed in range(seeds):
            coin = RandomVetoReviewer(rate, seed)
            simulation = await replay(f"random_veto_{seed}", Reviewers(coin, agree, sizer))
            random_rows.append(variant_figures(simulation))
    finally:
        for journal in journals:
            journal.close()
    return results, rate, random_rows, names


@dataclass
class _Replayer:
    """One replay of the candles per variant, each with its own journal under the report."""

    settings: Settings
    report_dir: Path
    minutes: int | None
    on_progress: AblationProgress | None
    closes: Sequence[Any] = ()  # the engine path's bar closes
    fast: tuple[PreparedBacktest, FastInputs] | None = None  # the fast path's inputs

    async def __call__(self, name: str, reviewers: Reviewers) -> Simulation:
        folder = self.report_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        variant = self.settings.model_copy(
            update={"database_url": f"sqlite:///{(folder / 'journal.db').resolve()}"}
        )
        on_progress = self.on_progress

        def progress(done: int, total: int, _llm: Any) -> None:
            if on_progress is not None:
                on_progress(name, done, total)

        if self.fast is not None:
            prepared, inputs = self.fast
            return await simulate_fast(
                variant,
                prepared.candles,
                prepared.model_path,
                report_dir=folder,
                minutes=self.minutes,
                on_progress=progress,
                reviewers=reviewers,
                inputs=inputs,
            )
        return await simulate(
            variant,
            self.closes,
            report_dir=folder,
            minutes=self.minutes,
            on_progress=progress,
            reviewers=reviewers,
        )
