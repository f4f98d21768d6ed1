"""The `lxa` command line: one module per command group, put together here.

Commands only parse options, call what `app` composes (sessions, wiring, training) and print;
`common` holds what they share (consoles, settings, failing with a message), `tables` what
they print for people.
"""

from __future__ import annotations

import logging

import typer

from app.cli import candles, control, evaluate, graph, llm, prompts, run, train

app = typer.Typer(
    name="lxa",
    help=(
        "AutoTrader-LXA: an Upbit KRW trader. An ML signal proposes, two reviewers (Groq, "
        "Ollama; rule-based stand-ins until configured) must agree, sizing is clamped by hard "
        "limits. Paper trading is the default."
    ),
    no_args_is_help=True,
    add_completion=False,
)
app.command()(run.demo)
app.command()(run.record)
app.command()(run.run)
app.command()(run.serve)
app.command("api")(run.api_only)
app.command()(graph.graph)
app.command()(train.train)
app.command()(candles.download)
app.command()(evaluate.backtest)
app.command()(train.walkforward)
app.command()(evaluate.lookahead)
app.command()(control.halt)
app.command()(control.resume)
app.command()(control.status)
app.command()(control.reconcile)
app.add_typer(prompts.prompts_app, name="prompts")
app.add_typer(llm.llm_app, name="llm")


def main() -> None:
    """Run the CLI."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app()
