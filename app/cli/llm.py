"""`llm check`: one review and one sizing request to each configured LLM provider."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer

from app.cli.common import load, out

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
