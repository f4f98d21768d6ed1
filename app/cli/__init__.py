"""The `lxa` command line: one module per command group, put together here.

Commands only parse options, call what `app` composes (sessions, wiring, training) and print;
`common` holds what they share (consoles, settings, failing with a message), `tables` what
they print for people. Every fatal condition ends as one line and a non-zero exit; `main`
is the last resort for whatever a command did not expect, and `--debug` shows the traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from app.cli import candles, control, evaluate, graph, llm, news, prompts, report, run, train
from app.cli import models as models_cli
from app.cli.common import report_fatal, set_debug

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


@app.callback()
def options(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Print the traceback above a fatal error, and log at DEBUG level."
        ),
    ] = False,
) -> None:
    """Options for every command (before the command's name: lxa --debug run ...)."""
    set_debug(debug)


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
app.command()(train.outcomes)
app.command()(evaluate.lookahead)
app.command()(control.halt)
app.command()(control.resume)
app.command()(control.status)
app.command()(control.reconcile)
app.command()(news.news)
app.add_typer(prompts.prompts_app, name="prompts")
app.add_typer(llm.llm_app, name="llm")
app.add_typer(report.report_app, name="report")
app.add_typer(models_cli.models_app, name="models")
app.command()(models_cli.retrain)


def main() -> None:
    """Run the CLI: anything a command lets escape ends as one line and exit 1 (Ctrl-C: 130).

    Typer's own usage errors and exits pass through as they are.
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # the last resort: a line, never a traceback (unless --debug)
        sys.exit(report_fatal(exc))
