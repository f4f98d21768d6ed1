"""The veto ledger of the runs in the journal: what each reviewer's verdicts were worth.

Also which reviewer each LLM node had in the latest run that asked it (`/reviewers/in-use`),
so the viewer can say honestly when a prompt is not used: a rule-based stand-in reads none.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api.deps import LLM_SETTINGS, JournalDep, ServicesDep, require_read_access
from api.routes.runs import Time, as_utc
from exchange.rules import FEE_RATE
from store.reviewer_ledger import horizon_of, veto_ledger

router = APIRouter(prefix="/api", tags=["reviewers"], dependencies=[Depends(require_read_access)])

MAX_DECISIONS = 200_000  # about 140 days of minutes
IN_USE_PAGE = 500
IN_USE_PAGES = 8  # the latest 4,000 runs: a session whose ML proposed nothing asks no one


def is_llm(label: object) -> bool:
    """An LLM names itself provider:model; rule-based, deterministic and llm-off do not."""
    return isinstance(label, str) and ":" in label


@router.get("/reviewers")
def read_reviewer_ledger(
    journal: JournalDep,
    since: Annotated[
        Time | None, Query(description="Runs from this bar time on (no zone means UTC).")
    ] = None,
    session: Annotated[
        str | None, Query(min_length=1, max_length=200, description="One session only.")
    ] = None,
    rows: Annotated[bool, Query(description="Include every proposal's row.")] = False,
) -> dict[str, Any]:
    """Per reviewer: asked, vetoed, and the net return of what it vetoed against what it passed.

    Forward returns over the label horizon come from the closes the runs journaled, net of
    the round-trip fee; a proposal whose horizon has not passed yet has no outcome.
    `labels` counts who answered for each reviewer (rule-based or provider:model).
    """
    decisions = journal.list_decisions(
        limit=MAX_DECISIONS, since=as_utc(since, "since"), session_id=session
    )
    ledger = veto_ledger(decisions, horizon_minutes=horizon_of(decisions), fee_rate=float(FEE_RATE))
    labels: dict[str, dict[str, int]] = {"groq": {}, "ollama": {}}
    for decision in decisions:
        for name, node in (("groq", "groq_check"), ("ollama", "ollama_check")):
            label = (decision.get("reviewer_labels") or {}).get(node)
            if isinstance(label, str):
                labels[name][label] = labels[name].get(label, 0) + 1
    ledger["labels"] = labels
    if not rows:
        ledger.pop("rows")
    return ledger


@router.get("/reviewers/in-use")
def reviewers_in_use(
    journal: JournalDep,
    services: ServicesDep,
    session: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="The session (default: this server's, else the journal's latest).",
        ),
    ] = None,
) -> dict[str, Any]:
    """Who answered each LLM node in the session's latest run that asked it.

    `llm` is false for a rule-based stand-in (its prompt file is not read: an edit changes
    nothing until `setting` is configured) and null when no run asked the node yet.
    """
    session_id = session or services.session_id or journal.latest_session_id()
    found: dict[str, dict[str, Any]] = {}
    scanned = 0
    for page in range(IN_USE_PAGES if session_id else 0):
        decisions = journal.list_decisions(
            limit=IN_USE_PAGE, offset=page * IN_USE_PAGE, session_id=session_id
        )
        scanned += len(decisions)
        for decision in decisions:
            for node, label in (decision.get("reviewer_labels") or {}).items():
                if node in LLM_SETTINGS and node not in found and isinstance(label, str):
                    found[node] = {
                        "reviewer": label,
                        "llm": is_llm(label),
                        "run_id": decision["run_id"],
                        "bar_ts": decision["bar_ts"],
                    }
        if len(found) == len(LLM_SETTINGS) or len(decisions) < IN_USE_PAGE:
            break
    nodes = {
        node: {
            **found.get(node, {"reviewer": None, "llm": None, "run_id": None, "bar_ts": None}),
            "setting": setting,
        }
        for node, setting in LLM_SETTINGS.items()
    }
    return {"session_id": session_id, "runs_scanned": scanned, "nodes": nodes}
