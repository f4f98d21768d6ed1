"""The retraining weights read from a journal whose reviewers are right or wrong by construction.

The journal is tests/app/learning_journal: real candles, scripted verdicts, all right in hour 0,
all wrong in hour 1, none in hour 2.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from learning_journal import T0, bundled_candles, scripted_journal

from app.outcomes import record_outcomes, reviewer_weights, weights_for_retrain
from app.settings import Settings
from app.training import train_model_set
from app.wiring import BUNDLED_MODELS
from ml.features import FEATURE_NAMES
from ml.registry import latest_model_dir, read_meta, update_meta
from ml.training.quick_pair import build_dataset, train_quick
from ml.training.weights import reviewer_factors
from store.journal import Journal

END = T0 + timedelta(hours=3)
HOUR = timedelta(hours=1)


@pytest.fixture(scope="module")
def candles() -> pd.DataFrame:
    return bundled_candles()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        retrain_weight_rule="step",
        retrain_right_weight=2.0,
        retrain_wrong_weight=0.5,
        retrain_period_minutes=60,
    )


@pytest.fixture
def journal(tmp_path: Path, candles: pd.DataFrame) -> Iterator[Journal]:
    journal = scripted_journal(f"sqlite:///{tmp_path / 'journal.db'}", candles)
    record_outcomes(journal, now=END, since=T0)
    yield journal
    journal.close()


def hour_rows(candles: pd.DataFrame) -> pd.Series:
    """The real bar times of the three scripted hours, every market."""
    inside = (candles["ts"] >= pd.Timestamp(T0)) & (candles["ts"] < pd.Timestamp(END))
    return candles.loc[inside, "ts"]


def test_rows_where_the_reviewers_were_right_weigh_more_and_wrong_less(
    journal: Journal, settings: Settings, candles: pd.DataFrame
) -> None:
    weights = reviewer_weights(journal, settings, known_at=END)
    ts = hour_rows(candles)

    factors = reviewer_factors(ts, weights.verdicts, weights.rule, known_at=END)

    hour = ((ts - pd.Timestamp(T0)) // pd.Timedelta(HOUR)).to_numpy()
    assert len(weights.verdicts) == 2 * 2 * 24  # two reviewers, two hours, 24 proposals each
    assert set(factors[hour == 0]) == {2.0}  # the oracles' hour
    assert set(factors[hour == 1]) == {0.5}  # the anti-oracles' hour
    assert set(factors[hour == 2]) == {1.0}  # nobody asked


def test_nothing_learned_after_known_at_weighs_a_row(
    journal: Journal, settings: Settings, candles: pd.DataFrame
) -> None:
    # an hour in, hour 0's first verdicts are known, hour 1's are not
    weights = reviewer_weights(journal, settings, known_at=T0 + HOUR)
    ts = hour_rows(candles)

    factors = reviewer_factors(ts, weights.verdicts, weights.rule, known_at=T0 + HOUR)

    hour = ((ts - pd.Timestamp(T0)) // pd.Timedelta(HOUR)).to_numpy()
    assert all(v.closes_at <= T0 + HOUR for v in weights.verdicts)
    assert set(factors[hour == 0]) == {2.0}
    assert set(factors[hour >= 1]) == {1.0}


def test_a_retrain_uses_the_weights_and_records_their_summary(
    journal: Journal, settings: Settings, candles: pd.DataFrame, tmp_path: Path
) -> None:
    weights = reviewer_weights(journal, settings, known_at=END)
    days = candles

    trained = train_model_set(days, tmp_path / "models", settings, quick=True, weights=weights)

    summary = trained.meta["training_weights"]
    until = pd.Timestamp(trained.meta["until"])
    dataset = build_dataset(days[days["ts"] < until], horizon=10, threshold=0.002)
    in_training = dataset["ts"] < pd.Timestamp(trained.meta["metrics"]["validation_start"])
    hours = (dataset["ts"] - pd.Timestamp(T0)) // pd.Timedelta(HOUR)
    assert summary["rule"] == "step"
    assert summary["params"]["right_weight"] == 2.0
    assert summary["up_weighted"] == int((in_training & (hours == 0)).sum()) > 0
    assert summary["down_weighted"] == int((in_training & (hours == 1)).sum()) > 0
    assert summary["mean"] == pytest.approx(1.0)
    plain = train_quick(days, tmp_path / "plain", until=until.to_pydatetime())
    assert read_meta(plain)["training_weights"] is None
    x = dataset[list(FEATURE_NAMES)].to_numpy(dtype="float64")
    weighted_scores = lgb.Booster(model_file=str(trained.model_dir / "model_buy.txt")).predict(x)
    plain_scores = lgb.Booster(model_file=str(plain / "model_buy.txt")).predict(x)
    assert not np.allclose(weighted_scores, plain_scores)  # the weights changed the model


def test_a_retrain_keeps_rows_before_the_replaced_sets_cutoff_as_known_then(
    journal: Journal, settings: Settings, tmp_path: Path
) -> None:
    bundled = latest_model_dir(BUNDLED_MODELS)
    assert bundled is not None
    serving = tmp_path / "serving"
    shutil.copytree(bundled, serving)
    update_meta(serving, until=(T0 + HOUR).isoformat())
    settings = settings.model_copy(update={"database_url": str(journal.engine.url)})

    weights = weights_for_retrain(settings, known_at=END, replacing=serving)

    assert weights.frozen_before == T0 + HOUR
    assert weights.known_at == END
    _, summary = weights.weights(hour_rows(bundled_candles()))
    assert summary["frozen_before"] == pd.Timestamp(T0 + HOUR).isoformat()
    assert (summary["up_weighted"], summary["down_weighted"]) == (60 * 4, 60 * 4)
