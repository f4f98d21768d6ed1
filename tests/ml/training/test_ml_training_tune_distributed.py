"""`lxa train --tune --storage URL --workers N`: one Optuna study on the real PostgreSQL.

Needs the PostgreSQL of tests/conftest.py (skipped with the reason when absent, failing under
LXA_REQUIRE_SERVICES=1). The objective is the real LightGBM search on two days of real Upbit
candles, with 5 boosting rounds so a trial takes a fraction of a second.
"""

from __future__ import annotations

import functools
import time

import pandas as pd
import pytest
import tune_kit

from ml.training import tune

pytestmark = pytest.mark.services

optuna = pytest.importorskip("optuna")


@pytest.fixture(scope="module")
def two_days(upbit_1m: pd.DataFrame) -> pd.DataFrame:
    return upbit_1m[upbit_1m["ts"] < pd.Timestamp("2025-09-03T00:00Z")].reset_index(drop=True)


def trials_of(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name=name, storage=tune.storage_url(url))
    return study.get_trials(deepcopy=False)


def test_two_worker_processes_share_one_study_and_finish_it_together(
    postgres_url: str, two_days: pd.DataFrame
) -> None:
    result = tune.run_study(
        functools.partial(tune_kit.gated, two_days),
        trials=4,
        seed=7,
        storage=postgres_url,
        study_name="shared",
        workers=2,
    )

    trials = trials_of(postgres_url, "shared")
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert 4 <= result["finished_trials"] == len(done) <= 5  # each may start one last trial
    assert len({t.user_attrs["worker"] for t in done}) == 2  # both processes ran trials
    assert sorted(t.number for t in trials) == list(range(len(trials)))  # one study
    assert result["best_value"] == max(t.value for t in done)
    assert set(result["best_params"]) == set(done[0].params)


def test_a_study_whose_worker_was_killed_resumes_where_it_stopped(
    postgres_url: str, two_days: pd.DataFrame
) -> None:
    tune.open_study(postgres_url, "resumed", seed=7)
    worker = tune._worker_context().Process(
        target=tune._worker,
        args=(functools.partial(tune_kit.stalling, two_days), postgres_url, "resumed", 3, 7),
    )
    worker.start()
    try:
        deadline = time.monotonic() + 60
        states: list[optuna.trial.TrialState] = []
        while states[:2] != [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]:
            assert worker.is_alive() and time.monotonic() < deadline, "trial 1 never started"
            time.sleep(0.05)  # polling the study, not timing
            states = [t.state for t in trials_of(postgres_url, "resumed")]
    finally:
        worker.kill()  # a crash: SIGKILL in the middle of trial 1
        worker.join()
    before = trials_of(postgres_url, "resumed")[0]

    result = tune.run_study(
        functools.partial(tune_kit.gated, two_days),  # trial 0 exists: no gate left
        trials=3,
        seed=7,
        storage=postgres_url,
        study_name="resumed",
    )

    trials = trials_of(postgres_url, "resumed")
    assert result["finished_trials"] == 3
    assert trials[0].value == before.value  # kept, not run again
    assert trials[1].state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.FAIL)
    assert [t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE][1:] == [
        n for n in range(2, len(trials)) if trials[n].state == optuna.trial.TrialState.COMPLETE
    ]
