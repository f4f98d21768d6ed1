"""Model sets for the champion/challenger tests, made from the bundled real set.

- `copy_set`: the bundled set under a new id (same models and figures; a renamed copy).
- `churning_set`: the bundled set with its expected-return calibration replaced by a constant
  +5 scaled return in every bin (a deliberately degraded model, labelled as such): its policy
  enters at every chance and pays the fees for it. Whether it does worse than the original on a
  window is measured by the simulator on real candles, never assumed by a test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from app.wiring import BUNDLED_MODELS
from ml.registry import latest_model_dir

SHARED_1M = Path(__file__).resolve().parents[3] / "shared" / "data" / "candles_upbit_1m.parquet"


def bundled_set() -> Path:
    found = latest_model_dir(BUNDLED_MODELS)
    assert found is not None
    return found


def copy_set(models_dir: Path, model_id: str, **meta_fields: Any) -> Path:
    """The bundled set copied under `models_dir` as `model_id` (meta fields replaced)."""
    target = models_dir / model_id
    shutil.copytree(bundled_set(), target)
    meta = json.loads((target / "meta.json").read_text())
    meta.update(model_id=model_id, **meta_fields)
    (target / "meta.json").write_text(json.dumps(meta))
    return target


def churning_set(models_dir: Path, model_id: str) -> Path:
    """A degraded copy: its calibration expects a large gain at every bar (see the module)."""
    target = copy_set(models_dir, model_id)
    meta = json.loads((target / "meta.json").read_text())
    calibration = meta["expected_return"]
    calibration["z"] = [5.0] * len(calibration["z"])
    (target / "meta.json").write_text(json.dumps(meta))
    return target
