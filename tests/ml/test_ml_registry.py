"""Tests for ml.registry: saving model sets and finding the newest."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from ml.registry import META_FIELDS, latest_model_dir, read_meta, save_model_set


def _tiny_booster(seed: int) -> lgb.Booster:
    """Train a two-tree booster on random data."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] > 0).astype(int)
    params = {"objective": "binary", "verbosity": -1, "num_threads": 1, "seed": seed}
    return lgb.train(params, lgb.Dataset(x, label=y, feature_name=["a", "b"]), num_boost_round=2)


def _save(models_dir: Path, created_at: datetime, data_hash: str) -> Path:
    """Save a tiny model set created at the given time."""
    booster = _tiny_booster(1)
    return save_model_set(
        models_dir,
        model_buy=booster,
        model_sell=booster,
        feature_names=["a", "b"],
        label={"horizon": 10, "threshold": 0.002},
        training_window={"KRW-BTC": {"first_ts": "2025-09-01T00:00:00+00:00", "last_ts": "x"}},
        markets=["KRW-BTC"],
        data_files=[],
        data_sha256=data_hash,
        params={"objective": "binary"},
        seed=7,
        metrics={"auc_buy_valid": float("nan")},
        created_at=created_at,
    )


def test_save_model_set_writes_models_and_complete_meta(tmp_path: Path) -> None:
    created = datetime(2025, 11, 18, tzinfo=UTC)

    model_dir = _save(tmp_path, created, "ab" * 32)

    assert model_dir.name == "lgbm-quick-20251118T000000Z-abababab"
    assert (model_dir / "model_buy.txt").is_file() and (model_dir / "model_sell.txt").is_file()
    meta = read_meta(model_dir)
    assert set(META_FIELDS) <= set(meta)
    assert meta["kind"] == "lightgbm-quick"
    assert meta["created_at"] == "2025-11-18T00:00:00Z"
    assert meta["metrics"]["auc_buy_valid"] is None  # NaN is stored as null, JSON stays strict
    assert [p.name for p in tmp_path.iterdir()] == [model_dir.name]  # no staging left behind


def test_latest_model_dir_picks_the_newest_created_at(tmp_path: Path) -> None:
    older = _save(tmp_path, datetime(2025, 11, 18, tzinfo=UTC), "11" * 32)
    newer = _save(tmp_path, datetime(2025, 11, 19, tzinfo=UTC), "22" * 32)
    (tmp_path / "not-a-model").mkdir()

    assert latest_model_dir(tmp_path) == newer

    # created_at decides, not the directory name.
    meta = json.loads((older / "meta.json").read_text())
    meta["created_at"] = "2025-11-20T00:00:00Z"
    (older / "meta.json").write_text(json.dumps(meta))
    assert latest_model_dir(tmp_path) == older


def test_latest_model_dir_is_none_without_model_sets(tmp_path: Path) -> None:
    assert latest_model_dir(tmp_path) is None
    assert latest_model_dir(tmp_path / "missing") is None


def test_read_meta_names_a_missing_field(tmp_path: Path) -> None:
    (tmp_path / "meta.json").write_text(json.dumps({"model_id": "x"}))

    with pytest.raises(ValueError, match="created_at"):
        read_meta(tmp_path)
