"""Outcomes: what each decision was worth once its window closed, written next to its run.

One row per run and subject: "ml" (the ML's proposal, followed or not), "groq" and "ollama"
(a verdict, right or wrong by the veto ledger's rule), "trade" (the round trip the run's order
opened or closed, its realised P&L from the fills). `app/outcomes.py` computes and writes them;
a row once written is never changed, so writing the same run and subject twice keeps the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from store.journal.base import JournalTables, as_dicts, checked, equal_to, in_period
from store.rows import OutcomeRow
from store.schema import decisions, outcomes

__all__ = ["OUTCOME_SUBJECTS", "Outcomes"]

OUTCOME_SUBJECTS = ("ml", "groq", "ollama", "trade")


class Outcomes(JournalTables):
    """Write outcomes once; read them, and the decisions still waiting for theirs."""

    def record_outcomes(self, rows: Sequence[OutcomeRow]) -> int:
        """Insert the rows whose run and subject have no outcome yet; return how many."""
        values = [checked(outcomes, row) for row in rows]
        bad = sorted({str(v.get("subject")) for v in values} - set(OUTCOME_SUBJECTS))
        if bad:
            raise ValueError(f"unknown outcome subject(s): {', '.join(bad)}")
        if not values:
            return 0
        written = 0
        with self.engine.begin() as connection:
            known = {
                (run_id, subject)
                for run_id, subject in connection.execute(
                    sa.select(outcomes.c.run_id, outcomes.c.subject).where(
                        outcomes.c.run_id.in_({v["run_id"] for v in values})
                    )
                )
            }
            for value in values:
                key = (value["run_id"], value["subject"])
                if key in known:
                    continue
                connection.execute(outcomes.insert().values(**value))
                known.add(key)
                written += 1
        return written

    def list_outcomes(
        self,
        *,
        subject: str | None = None,
        market: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        known_by: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Outcomes oldest first by bar; `since <= bar_ts < until`; `known_by`: only those
        whose window had closed by then (`window_end <= known_by`)."""
        conditions = [
            *equal_to(outcomes, subject=subject, market=market),
            *in_period(outcomes.c.bar_ts, since, until),
        ]
        if known_by is not None:
            conditions.append(outcomes.c.window_end <= known_by)
        stmt = (
            outcomes.select()
            .where(*conditions)
            .order_by(outcomes.c.bar_ts, outcomes.c.run_id, outcomes.c.subject)
        )
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))

    def decisions_without_outcomes(
        self, *, until: datetime, since: datetime | None = None
    ) -> list[dict[str, Any]]:
        """Decisions with `since <= bar_ts < until` that have no outcome row at all, oldest
        first (the outcome job's work list; a proposal-less hold gets none and stays here)."""
        stmt = (
            decisions.select()
            .where(
                *in_period(decisions.c.bar_ts, since, until),
                ~sa.exists().where(outcomes.c.run_id == decisions.c.run_id),
            )
            .order_by(decisions.c.bar_ts, decisions.c.run_id)
        )
        with self.engine.connect() as connection:
            return as_dicts(connection.execute(stmt))
