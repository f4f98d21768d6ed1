"""The full set trained with sample weights (real Upbit candles; the verdicts are synthetic)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from ml_kit import FULL_UNTIL

from ml.registry import read_meta
from ml.training.full_set import FullConfig, train_full
from ml.training.torch_loops import HybridTrainConfig
from ml.training.weights import JudgedVerdict, TrainingWeights, WeightRule

RIGHT_HOUR = datetime(2025, 9, 2, 6, tzinfo=UTC)  # inside the base window of the four days


def test_the_full_set_weights_its_base_models_and_records_the_summary(
    upbit_1m: pd.DataFrame, tmp_path: Path
) -> None:
    verdicts = tuple(  # synthetic: right for an hour, then wrong for an hour, every 5 minutes
        JudgedVerdict(
            RIGHT_HOUR + timedelta(minutes=m), RIGHT_HOUR + timedelta(minutes=m + 11), m < 60
        )
        for m in range(0, 120, 5)
    )
    rule = WeightRule(rule="step", right_weight=2.0, wrong_weight=0.5, recency_half_life_days=2.0)
    weights = TrainingWeights(verdicts, rule, known_at=datetime(2025, 9, 30, tzinfo=UTC))
    config = FullConfig(
        lgb_rounds=40,
        hybrid=HybridTrainConfig(epochs=1, samples_per_epoch=3000, threads=1),
        autoencoder_epochs=1,
        walk_forward_folds=2,
        threads=1,
        weights=weights,
    )
    four_days = upbit_1m[upbit_1m["ts"] < pd.Timestamp(FULL_UNTIL)]

    model_dir = train_full(four_days, tmp_path, until=FULL_UNTIL, config=config)

    summary = read_meta(model_dir)["training_weights"]
    markets = four_days["market"].nunique()
    assert (summary["up_weighted"], summary["down_weighted"]) == (60 * markets, 60 * markets)
    assert summary["known_at"] == pd.Timestamp(FULL_UNTIL).isoformat()  # no later than the cutoff
    assert summary["mean"] == pytest.approx(1.0)
    assert summary["min"] < 1.0 < summary["max"]
