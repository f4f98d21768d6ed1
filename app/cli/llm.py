"""`llm check`: one review and one sizing request to each configured LLM provider."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Annotated

import typer

from app.cli.common import fail, load, out, utc

llm_app = typer.Typer(help="The LLM checks and the sizer: try the configured providers.")


@llm_app.command("check")
def llm_check(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON report on stdout, nothing else.")
    ] = False,
) -> None:
    """Send one review and one sizing request to Groq and Ollama (where configured); show them.

    Exits 1 when a configured provider did not answer usably.
    """
    from app.llm_check import check_llms, report_lines

    report = asyncio.run(check_llms(load()))
    if as_json:
        print(json.dumps(report.to_json()))
    else:
        for line in report_lines(report):
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


@llm_app.command("repeat")
def llm_repeat(
    times: Annotated[int, typer.Option(min=2, max=50, help="Answers per question.")] = 5,
    sample: Annotated[int, typer.Option(min=1, max=1000, help="Questions per check.")] = 20,
    since: Annotated[datetime | None, typer.Option(help="Runs from this UTC time on.")] = None,
    session: Annotated[str | None, typer.Option(help="One session's runs only.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Ask each check recorded questions again (past the cache) and count verdict flips.

    Point LXA_DATABASE_URL at a backtest's journal to sample its reviews.
    """
    from app.determinism import RepeatError, repeat_reviews

    try:
        report = asyncio.run(
            repeat_reviews(load(), times=times, sample=sample, since=utc(since), session_id=session)
        )
    except RepeatError as exc:
        fail(str(exc), 1)
    if as_json:
        print(json.dumps(report))
        return
    for node, figures in report["checks"].items():
        rate = figures["flip_rate"]
        out.print(
            f"{node} ({figures['asked_model']}): {figures['flipped']} of {figures['samples']} "
            f"question(s) flipped over {report['times']} answers ({rate:.0%}); "
            f"{figures['changed_from_journal_rate']:.0%} of answers differ from the journal's, "
            f"{figures['errors']} failed"
        )
    llm = report["llm"]
    out.print(f"{llm['calls']} call(s), ${llm['cost_usd']:.4f}")
