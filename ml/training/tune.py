"""Optional Optuna search over the LightGBM parameters (``lxa train --tune``; not the default).

The search never sees the windows that report results: it uses only the base window of the
full set (``ml.training.windows``: bars before the stack window), split once more in time: fit
on its first 80%, score the buy AUC on the rest after a purge of the label horizon. Optuna is
an optional dependency (``pip install 'autotrader-lxa[tune]'``).

Across processes and machines (``lxa train --tune --storage URL --workers N``): the trials
live in a named Optuna study in a database (``RDBStorage``; PostgreSQL through psycopg 3, or
SQLite on one machine), every worker loads the same study and runs trials until the study
holds ``trials`` finished ones, so workers on other machines pointed at the same URL and name
join in. The study is resumable: run the same command again after a crash and it carries on
(``load_if_exists``); a worker's heartbeat lets the others fail and retry a trial whose worker
died. Each worker samples with its own seed, so two never propose the same first trials.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import socket
import warnings
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ml.features import FEATURE_NAMES
from ml.training.boosting import BASE_PARAMS
from ml.training.candles import training_candles
from ml.training.full_set import FullConfig, tables_and_windows

if TYPE_CHECKING:
    import optuna

Objective = Callable[["optuna.Trial"], float]
HEARTBEAT_S = 2  # a worker's trial is taken as dead after two missed heartbeats


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as error:
        raise ImportError(
            "--tune needs optuna: pip install 'autotrader-lxa[tune]' (or optuna>=4)"
        ) from error
    return optuna


def lightgbm_objective(
    candles: pd.DataFrame,
    *,
    until: datetime | None = None,
    rounds: int = 300,
    config: FullConfig | None = None,
    log: Callable[[str], None] | None = None,
) -> Objective:
    """The search's objective: buy AUC on the last 20% of the base window (see the docstring)."""
    config = config or FullConfig()
    candles, bar = training_candles(candles, until=until, caller="tune_lightgbm")
    tables, windows = tables_and_windows(candles, bar, config)
    ts = np.concatenate([t.ts for t in tables])
    x = np.concatenate([t.features for t in tables])
    y = np.concatenate([t.label_buy for t in tables])
    purge = np.timedelta64(windows.purge.value, "ns")
    base = np.concatenate(windows.rows("base"))
    if base.sum() < 2000:
        raise ValueError(f"only {int(base.sum())} base-window rows: too little to tune on")
    cut = np.sort(ts[base])[int(base.sum() * 0.8)]
    fit = base & (ts < cut - purge)
    check = base & (ts >= cut)
    fit_set = lgb.Dataset(x[fit], label=y[fit], feature_name=list(FEATURE_NAMES))
    fit_set.construct()

    def objective(trial: optuna.Trial) -> float:
        params = dict(BASE_PARAMS) | {
            "seed": config.seed,
            "num_threads": config.threads,
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.15, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 50, 1000, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        }
        booster = lgb.train(params, fit_set, num_boost_round=rounds)
        scores = booster.predict(x[check], num_threads=config.threads)
        auc = float(roc_auc_score(y[check], np.asarray(scores)))
        if log is not None:
            log(f"trial {trial.number}: auc_buy {auc:.4f} {trial.params}")
        return auc

    return objective


def storage_url(url: str) -> str:
    """A study's database URL: PostgreSQL URLs get the psycopg 3 driver, SQLite stays."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"not a database URL: {url!r}")
    if scheme.split("+", 1)[0] in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    if scheme.split("+", 1)[0] == "sqlite":
        return url
    raise ValueError(f"unsupported study storage {scheme!r}: use postgresql://... or sqlite:///...")


def open_study(storage: str | None, study_name: str | None, *, seed: int) -> Any:
    """Create the study, or load it when it exists (a resumed or shared search)."""
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rdb = None
    if storage is not None:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 4
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback"):  # Optuna 4.9+
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
                stale = {"heartbeat_stale_trial_callback": retry}
            else:
                retry = optuna.storages.RetryFailedTrialCallback(max_retry=1)
                stale = {"failed_trial_callback": retry}
            rdb = optuna.storages.RDBStorage(
                storage_url(storage),
                heartbeat_interval=HEARTBEAT_S,
                grace_period=2 * HEARTBEAT_S,
                **stale,
            )
    return optuna.create_study(
        study_name=study_name,
        storage=rdb,
        load_if_exists=True,
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
    )


def finished_trials(study: Any) -> int:
    """How many trials of the study completed (failed and running ones do not count)."""
    optuna = _import_optuna()
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def work_on_study(
    make_objective: Callable[[], Objective],
    *,
    storage: str | None,
    study_name: str | None,
    trials: int,
    seed: int,
) -> int:
    """Run trials of the study until it holds `trials` finished ones; return how many ran here.

    One worker's loop: several of them, in processes or on machines, share one study.
    """
    return _work(open_study(storage, study_name, seed=seed), make_objective(), trials)


def _work(study: Any, objective: Objective, trials: int) -> int:
    worker = f"{socket.gethostname()}:{os.getpid()}"

    def tagged(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)  # which process ran it, for the record
        return objective(trial)

    ran = 0
    while finished_trials(study) < trials:
        study.optimize(tagged, n_trials=1)
        ran += 1
    return ran


def _worker(
    make_objective: Callable[[], Objective],
    storage: str,
    study_name: str,
    trials: int,
    seed: int,
) -> None:
    work_on_study(make_objective, storage=storage, study_name=study_name, trials=trials, seed=seed)


def _worker_context() -> Any:
    """Workers fork from a server that imported this module once and ran no LightGBM or torch
    threads (a plain fork could inherit a busy OpenMP pool; a spawn imports it all again)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def run_study(
    make_objective: Callable[[], Objective],
    *,
    trials: int,
    seed: int,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Run (or resume) a study to `trials` finished trials in `workers` processes.

    `make_objective` must pickle (a module-level function or a `functools.partial` of one):
    each worker process builds its own objective. Returns the best parameters, the best value
    and how many trials finished. Without a storage the study lives in memory, in this
    process only.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers > 1 and storage is None:
        raise ValueError("--workers above 1 needs --storage (the study the workers share)")
    if storage is not None and not study_name:
        raise ValueError("a stored study needs a name (to share and resume it)")
    study = open_study(storage, study_name, seed=seed)  # created once, before the workers
    if workers == 1:
        _work(study, make_objective(), trials)
    else:
        assert storage is not None and study_name is not None
        context = _worker_context()
        processes = [
            context.Process(
                target=_worker,
                args=(make_objective, storage, study_name, trials, seed + index),
                name=f"tune-worker-{index}",
            )
            for index in range(workers)
        ]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        failed = [p.name for p in processes if p.exitcode != 0]
        if failed and finished_trials(study) < trials:
            raise RuntimeError(
                f"tuning workers {', '.join(failed)} failed before the study finished; "
                "run the same command again to resume it"
            )
    return {
        "best_params": dict(study.best_params),
        "best_value": float(study.best_value),
        "finished_trials": finished_trials(study),
        "study_name": study_name,
    }


def tune_lightgbm(
    candles: pd.DataFrame,
    *,
    until: datetime | None = None,
    trials: int = 20,
    rounds: int = 300,
    config: FullConfig | None = None,
    log: Callable[[str], None] | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    workers: int = 1,
) -> dict[str, Any]:
    """Return the best LightGBM parameters found in ``trials`` trials (seeded TPE).

    With ``storage`` (and ``study_name``), the study is kept in that database, shared by
    ``workers`` processes and resumed when it already exists.
    """
    _import_optuna()
    config = config or FullConfig()
    make_objective = functools.partial(
        lightgbm_objective,
        candles,
        until=until,
        rounds=rounds,
        config=config,
        log=log if workers == 1 else None,
    )
    result = run_study(
        make_objective,
        trials=trials,
        seed=config.seed,
        storage=storage,
        study_name=study_name,
        workers=workers,
    )
    if log is not None:
        log(
            f"study {study_name or '(in memory)'}: {result['finished_trials']} trials, "
            f"best auc_buy {result['best_value']:.4f}"
        )
    return dict(result["best_params"])
