"""The model registry: versions, the champion pointer (atomic), promote, rollback, statuses.

The versions are copies of the bundled real model set under new ids (only meta.json's model_id
and created_at differ): what is tested here is the bookkeeping, not any model's quality.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ml.champion import CHAMPION_FILE, ModelRegistry, RegistryError, weight_summary
from ml.registry import latest_model_dir

BUNDLED = Path(__file__).resolve().parents[2] / "app" / "demo" / "model"


def copy_set(models_dir: Path, model_id: str, created_at: str, **meta_fields: object) -> Path:
    """A copy of the bundled set named `model_id` (a renamed copy: same models, same figures)."""
    source = latest_model_dir(BUNDLED)
    assert source is not None
    target = models_dir / model_id
    shutil.copytree(source, target)
    meta = json.loads((target / "meta.json").read_text())
    meta.update(model_id=model_id, created_at=created_at, **meta_fields)
    (target / "meta.json").write_text(json.dumps(meta))
    return target


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    models = tmp_path / "models"
    models.mkdir()
    copy_set(models, "set-a", "2026-01-01T00:00:00Z")
    copy_set(models, "set-b", "2026-01-02T00:00:00Z")
    copy_set(models, "set-c", "2026-01-03T00:00:00Z", weights={"rule": "linear", "min": 0.5})
    return ModelRegistry(models)


def test_without_a_pointer_the_newest_set_serves_and_every_version_is_listed(
    registry: ModelRegistry,
) -> None:
    versions = registry.versions()

    assert registry.champion_id() is None
    assert registry.serving_dir() == registry.models_dir / "set-c"
    assert [v.model_id for v in versions] == ["set-c", "set-b", "set-a"]
    assert {v.status for v in versions} == {"candidate"}
    assert versions[0].trained_to is not None and versions[0].until is not None


def test_promote_writes_the_pointer_and_retires_the_champion_before(
    registry: ModelRegistry,
) -> None:
    registry.promote("set-a", by="operator", reason="first")
    pointer = registry.promote("set-b", by="retrain", reason="beat it", judged={"x": 1})

    statuses = {v.model_id: (v.status, v.reason) for v in registry.versions()}
    assert registry.champion_id() == "set-b"
    assert pointer["history"][0]["model_id"] == "set-a"
    assert statuses["set-b"] == ("champion", "beat it")
    assert statuses["set-a"][0] == "retired" and "set-b" in str(statuses["set-a"][1])
    assert registry.version("set-b").judged == {"x": 1}
    assert not list(registry.models_dir.glob(f".{CHAMPION_FILE}.*"))  # no temp file left


def test_rollback_returns_to_the_previous_champion_and_says_why(registry: ModelRegistry) -> None:
    registry.promote("set-a", by="operator", reason="first")
    registry.promote("set-b", by="retrain", reason="beat it")

    pointer = registry.rollback(by="operator", reason="it lost money live")

    assert pointer["model_id"] == "set-a"
    assert registry.champion_dir() == (registry.models_dir / "set-a").resolve()
    retired = registry.version("set-b")
    assert retired.status == "retired" and "it lost money live" in str(retired.reason)
    with pytest.raises(RegistryError, match="had no champion before"):
        registry.rollback()


def test_a_candidate_keeps_its_reason_and_an_unknown_version_is_refused(
    registry: ModelRegistry,
) -> None:
    registry.record("set-c", "candidate", "did not beat the champion", {"promote": False})

    version = registry.version("set-c")
    assert (version.status, version.reason) == ("candidate", "did not beat the champion")
    assert version.weights == {"rule": "linear", "min": 0.5}
    assert weight_summary({}) is None
    with pytest.raises(RegistryError, match="no model version 'nope'"):
        registry.promote("nope", by="operator", reason="")


def test_a_champion_outside_the_models_dir_can_be_returned_to(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    elsewhere = copy_set(tmp_path, "bundled-like", "2025-12-01T00:00:00Z")
    registry.adopt(elsewhere, reason="serving at start")
    registry.promote("set-b", by="retrain", reason="beat it")

    pointer = registry.rollback()

    assert pointer["model_id"] == "bundled-like"
    assert registry.champion_dir() == elsewhere.resolve()
    assert "bundled-like" in [v.model_id for v in registry.versions()]
    assert registry.adopt(elsewhere, reason="again") is False
