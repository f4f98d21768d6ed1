"""`prompts check`: the prompt files the LLM checks and the sizer are rendered from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.common import err, load, out

prompts_app = typer.Typer(help="Prompt files the LLM checks and the sizer are rendered from.")


@prompts_app.command("check")
def prompts_check(
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Prompt folder (default LXA_PROMPTS_DIR or the shipped one)."),
    ] = None,
) -> None:
    """Validate every prompt file: syntax, declared variables, and the variables the code passes."""
    from llm.reviewers import REVIEW_VARIABLES, SIZING_VARIABLES
    from prompts.loader import DEFAULT_PROMPTS_DIR, PromptError, PromptLibrary

    folder = directory or load().prompts_dir or DEFAULT_PROMPTS_DIR
    library = PromptLibrary(folder)
    problems = library.check()
    try:
        library.require(
            ["groq_check", "ollama_check", "sizing"],
            {
                "groq_check": set(REVIEW_VARIABLES),
                "ollama_check": set(REVIEW_VARIABLES),
                "sizing": set(SIZING_VARIABLES),
            },
        )
    except PromptError as exc:
        problems.extend(p for p in str(exc).splitlines() if p not in problems)
    if problems:
        for problem in problems:
            err.print(problem, style="red", markup=False, highlight=False)
        raise typer.Exit(1)
    for name in library.names():
        prompt = library.get(name)
        out.print(f"ok  {prompt.ref}  {prompt.path}", highlight=False)
