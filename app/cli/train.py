"""Commands that train: `train` (a model set into the registry) and `walkforward`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.common import err, exits_on, fail, load, out, print_json_line, utc
from app.cli.tables import print_policy_evaluation, print_train_metrics, print_walkforward

if TYPE_CHECKING:
    import pandas as pd

    from app.settings import Settings
    from ml.training.full_set import FullConfig
    from ml.training.weights import TrainingWeights


def train(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) or folder(s) in the shared schema.")
    ],
    quick: Annotated[
        bool, typer.Option(help="Train only the quick LightGBM buy/sell pair (under a minute).")
    ] = False,
    until: Annotated[
        datetime | None,
        typer.Option(help="Use candles before this UTC time only (keep later ones unseen)."),
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Models directory (default <data_dir>/models).")
    ] = None,
    tune: Annotated[
        bool,
        typer.Option(help="Search LightGBM parameters with Optuna first (needs optuna; slow)."),
    ] = False,
    tune_trials: Annotated[int, typer.Option(min=1, help="Optuna trials with --tune.")] = 20,
    storage: Annotated[
        str | None,
        typer.Option(
            help="With --tune: the Optuna study's database (postgresql://... or sqlite:///...), "
            "shared by every worker and resumed when the same command runs again."
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1, help="With --tune: worker processes sharing the study (needs --storage)."
        ),
    ] = 1,
    study: Annotated[
        str | None,
        typer.Option(
            help="With --tune --storage: the study's name (default: from the tuning cutoff, so a "
            "rerun resumes it and workers on other machines join it)."
        ),
    ] = None,
    all_markets: Annotated[
        bool,
        typer.Option(
            "--all-markets", help="Train on every market in the files, not only LXA_MARKETS."
        ),
    ] = False,
    weights: Annotated[
        bool,
        typer.Option(
            "--weights/--no-weights",
            help="Weight the training rows by the reviewers' record in the journal (the "
            "outcomes of their verdicts; LXA_RETRAIN_* settings) and by recency; rows before the "
            "serving set's cutoff keep what was known then.",
        ),
    ] = False,
    eval_fraction: Annotated[
        float,
        typer.Option(
            help="Share of the most recent stretch kept out of training as the policy's "
            "hold-out window (its result is stored with the set)."
        ),
    ] = 0.15,
    news_journal: Annotated[
        str | None,
        typer.Option(
            help="Journal URL whose stored news give the news features (each bar's sentiment "
            "index and item count, point in time, LXA_NEWS_HALF_LIFE_MINUTES); without it they "
            "are NaN."
        ),
    ] = None,
) -> None:
    """Train a model set on real candles and save it to the model registry.

    The full set (default): LightGBM pair, LSTM+CNN hybrid, a stack calibrated per coin and
    the anomaly autoencoder, with walk-forward figures. --quick: the LightGBM pair only. Every
    set also gets its expected-return calibration and its policy's result on a hold-out window
    no model saw (the last --eval-fraction of the most recent stretch).
    """
    from ml.data import load_candles

    settings = load()
    until = utc(until)
    with exits_on(FileNotFoundError, ValueError, code=2):
        frame = load_candles(
            [str(p) for p in candles], markets=None if all_markets else settings.markets
        )
    files = [str(p) for p in candles]
    news = None
    if news_journal is not None:
        with exits_on(ValueError, code=2):
            frame, news = _news_columns(frame, news_journal, settings, until)
    target = out_dir or settings.models_dir
    from app.training import train_model_set

    if quick and tune:
        fail("--tune applies to the full set, not --quick", 2)
    if not tune and (storage or workers != 1 or study):
        fail("--storage, --workers and --study apply to --tune", 2)
    if workers > 1 and storage is None:
        fail("--workers above 1 needs --storage (the database the workers share the study in)", 2)
    search = TuneOptions(tune_trials, storage, workers, study) if tune else None
    if not 0 < eval_fraction < 1:
        fail("--eval-fraction must be between 0 and 1", 2)
    with exits_on(ValueError, ImportError, code=1):
        config = None if quick else _full_config(frame, until, eval_fraction, search)
        row_weights = _reviewer_weights(settings, until) if weights else None
        trained = train_model_set(
            frame,
            target,
            settings,
            until=until,
            quick=quick,
            full_config=config,
            data_files=files,
            eval_fraction=eval_fraction,
            log=err.print,
            weights=row_weights,
            news=news,
        )
    meta = trained.meta
    out.print(f"saved {meta['model_id']} to {trained.model_dir}")
    print_train_metrics(meta.get("metrics", {}))
    print_policy_evaluation(meta.get("policy_evaluation") or {})


@dataclass(frozen=True)
class TuneOptions:
    """How `--tune` searches: trials, and the shared study (`--storage`, `--workers`)."""

    trials: int
    storage: str | None = None
    workers: int = 1
    study: str | None = None


def _full_config(
    frame: pd.DataFrame,
    until: datetime | None,
    eval_fraction: float,
    search: TuneOptions | None,
) -> FullConfig:
    """The full set's configuration; with `search`, LightGBM parameters searched by Optuna.

    The search sees only candles before the policy's hold-out window.
    """
    from app.training import EVAL_FRACTION, evaluation_start
    from ml.training.full_set import FullConfig

    config = FullConfig()
    if search is not None:
        from ml.training.tune import tune_lightgbm

        before = frame if until is None else frame[frame["ts"] < until]
        tune_until = evaluation_start(before, eval_fraction or EVAL_FRACTION)
        name = search.study
        if search.storage is not None and name is None:
            name = f"lxa-lightgbm-{tune_until.strftime('%Y%m%dT%H%MZ')}"
        if search.storage is not None:
            err.print(f"study {name} on {_without_password(search.storage)}")
        best = tune_lightgbm(
            frame,
            until=tune_until.to_pydatetime(),
            trials=search.trials,
            log=err.print,
            storage=search.storage,
            study_name=name,
            workers=search.workers,
        )
        config.lgb_params = best
        err.print(f"tuned LightGBM parameters: {json.dumps(best)}")
    return config


def _reviewer_weights(settings: Settings, until: datetime | None) -> TrainingWeights:
    """The journal's judged verdicts as training weights, known by `until` (default: now)."""
    from app.outcomes import weights_for_retrain
    from app.wiring import ModelNotFoundError, resolve_model_dir

    try:
        serving: Path | None = resolve_model_dir(settings)
    except ModelNotFoundError:  # no set yet: nothing to keep frozen
        serving = None
    known_at = until or datetime.now(UTC)
    return weights_for_retrain(settings, known_at=known_at, replacing=serving)


def _news_columns(
    frame: pd.DataFrame, url: str, settings: Settings, until: datetime | None
) -> tuple[pd.DataFrame, dict[str, object]]:
    """The candles with the news features from the journal at `url`, and their summary."""
    from datetime import timedelta

    from app.news_features import with_news_columns
    from store.journal import Journal

    journal = Journal.open(url)
    try:
        with_news, summary = with_news_columns(
            frame,
            journal,
            half_life=timedelta(minutes=settings.news_half_life_minutes),
            until=until,
        )
    finally:
        journal.close()
    err.print(
        f"news features from {_without_password(url)}: {summary.items} scored items, "
        f"{summary.bars_with_index} of {summary.bars} bars with an index"
    )
    return with_news, summary.to_json()


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # only for the log line
        return "(the given storage)"


def walkforward(
    candles: Annotated[
        list[Path], typer.Option(help="Candle parquet file(s) or folder(s) in the shared schema.")
    ],
    train_days: Annotated[float, typer.Option(min=1.0, help="Training days of each window.")],
    test_days: Annotated[float, typer.Option(min=0.1, help="Test days of each window.")],
    step_days: Annotated[
        float | None, typer.Option(min=0.1, help="Days between windows (default: test days).")
    ] = None,
    report_dir: Annotated[
        Path, typer.Option("--report", help="Folder for walkforward.json and report.html.")
    ] = Path("walkforward"),
    seeds: Annotated[
        int, typer.Option(min=1, max=200, help="Random-entry baselines per window.")
    ] = 20,
    max_windows: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many windows (a quick look).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Run the windows in this many processes (same report, in window order).",
        ),
    ] = 1,
    margins: Annotated[
        list[float] | None,
        typer.Option(
            "--margin",
            help="Entry margins (bps) the sweep tries, repeatable (default 0, 10, 25, 50; a "
            "negative one admits entries the calibration expects to lose after costs).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the totals as JSON.")] = False,
) -> None:
    """Retrain and trade window after window over every market in the files, never on a seen bar.

    Each window trains the quick model set on its training days (calibration and the policy's
    hold-out inside them), sweeps the policy's parameters on that hold-out, then trades its test
    days in the fast simulator: returns, drawdown, trades and fees against buy-and-hold, cash,
    the lowest-volatility rotation and random entries at the same rate.
    """
    from app.walkforward import run_walkforward
    from ml.data import load_candles

    settings = load()
    with exits_on(FileNotFoundError, ValueError, code=2):
        frame = load_candles([str(p) for p in candles], markets=None)
        report = run_walkforward(
            frame,
            settings,
            report_dir,
            train_days=train_days,
            test_days=test_days,
            step_days=step_days,
            seeds=seeds,
            max_windows=max_windows,
            files=[str(p) for p in candles],
            log=err.print,
            entry_margins=margins,
            workers=workers,
        )
    if as_json:
        print_json_line(report["total"])
        return
    print_walkforward(report, report_dir)


def outcomes(
    candles: Annotated[
        list[Path] | None,
        typer.Option(
            help="Candle parquet file(s) to read the closes from (default: the closes the runs "
            "journaled)."
        ),
    ] = None,
    since: Annotated[
        datetime | None,
        typer.Option(help="Look at decisions from this UTC time (default: the last three days)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Write the outcome of every decision whose horizon has closed (the learning loop's labels).

    Per decision with a buy or sell proposal: the forward return over the label horizon net of
    the round-trip fee, whether the proposal paid, each reviewer's verdict right or wrong; per
    closed round trip: its realised P&L from the fills. Running it again writes only what is new.
    """
    from app.outcomes import record_outcomes
    from ml.data import load_candles
    from store.journal import Journal

    settings = load()
    frame = None
    if candles:
        with exits_on(FileNotFoundError, ValueError, code=2):
            frame = load_candles([str(p) for p in candles], markets=settings.markets)
    with Journal.open(settings.journal_url) as journal:
        summary = record_outcomes(journal, now=datetime.now(UTC), since=utc(since), candles=frame)
    if as_json:
        print_json_line(summary)
        return
    out.print(
        f"{summary['outcomes_written']} outcomes written ({summary['outcomes_computed']} known, "
        f"{summary['decisions_waiting']} decisions without one, horizon "
        f"{summary['horizon_minutes']} min)"
    )
