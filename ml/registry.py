"""Model sets on disk: ``<models_dir>/<model_id>/`` with two LightGBM models and meta.json."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml.data import LIVE_COLUMNS

KIND = "lightgbm-quick"
FULL_KIND = "full-stack"
"""A full model set: LightGBM pair, LSTM+CNN hybrid, stackers calibrated per coin, autoencoder."""
MODEL_BUY_FILE = "model_buy.txt"
MODEL_SELL_FILE = "model_sell.txt"
META_FILE = "meta.json"
META_FIELDS: tuple[str, ...] = (
    "model_id",
    "created_at",
    "kind",
    "feature_names",
    "label",
    "training_window",
    "markets",
    "data_files",
    "data_sha256",
    "params",
    "seed",
    "metrics",
)


def candles_sha256(candles: pd.DataFrame) -> str:
    """Return the sha256 of the market, ts and OHLCV values of a candle frame, in row order.

    A frame with recorded live columns (``ml.data.LIVE_COLUMNS``) has them hashed too; a
    candle-only frame hashes as it always has.
    """
    digest = hashlib.sha256()
    digest.update("\x1f".join(candles["market"].astype(str)).encode())
    ts = pd.DatetimeIndex(candles["ts"]).tz_convert("UTC").as_unit("ns").asi8
    digest.update(np.ascontiguousarray(ts, dtype="<i8").tobytes())
    live = [column for column in LIVE_COLUMNS if column in candles.columns]
    for column in ("open", "high", "low", "close", "volume", *live):
        values = candles[column].to_numpy(dtype="float64")
        digest.update(np.ascontiguousarray(values, dtype="<f8").tobytes())
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """Return the sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_model_id(created_at: datetime, data_sha256: str, prefix: str = "lgbm-quick") -> str:
    """Return ``<prefix>-<UTC time>-<8 hex of the data hash>`` (prefix lgbm-quick or full)."""
    stamp = created_at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{prefix}-{stamp}-{data_sha256[:8]}"


def _json_safe(value: Any) -> Any:
    """Turn NaN/inf into None and numpy scalars into Python ones, recursively."""
    if isinstance(value, Mapping):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def save_model_set(
    models_dir: Path,
    *,
    model_buy: lgb.Booster,
    model_sell: lgb.Booster,
    feature_names: Sequence[str],
    label: Mapping[str, Any],
    training_window: Mapping[str, Mapping[str, str]],
    markets: Sequence[str],
    data_files: Sequence[str],
    data_sha256: str,
    params: Mapping[str, Any],
    seed: int,
    metrics: Mapping[str, Any],
    created_at: datetime | None = None,
    extra: Mapping[str, Any] | None = None,
    kind: str = KIND,
    artifacts: Mapping[str, bytes] | None = None,
) -> Path:
    """Write a model set under ``models_dir`` atomically and return its directory.

    ``data_files`` that exist on disk are recorded with their own sha256. ``artifacts`` are
    further files (name -> bytes) of a full model set, written beside the two boosters.
    """
    created = (created_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    base_id = make_model_id(created, data_sha256, "full" if kind == FULL_KIND else "lgbm-quick")
    model_id = base_id
    suffix = 1
    while (models_dir / model_id).exists():
        suffix += 1
        model_id = f"{base_id}-{suffix}"
    files: list[dict[str, Any]] = []
    for name in data_files:
        path = Path(name)
        files.append({"path": str(name), "sha256": file_sha256(path) if path.is_file() else None})
    meta: dict[str, Any] = {
        "model_id": model_id,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "kind": kind,
        "feature_names": list(feature_names),
        "label": dict(label),
        "training_window": {market: dict(span) for market, span in training_window.items()},
        "markets": list(markets),
        "data_files": files,
        "data_sha256": data_sha256,
        "params": dict(params),
        "seed": int(seed),
        "metrics": dict(metrics),
    }
    if extra:
        for key, value in extra.items():
            if key in meta:
                raise ValueError(f"extra meta key {key!r} clashes with a standard field")
            meta[key] = value
    staging = Path(tempfile.mkdtemp(prefix=f".{model_id}.", dir=models_dir))
    try:
        model_buy.save_model(str(staging / MODEL_BUY_FILE))
        model_sell.save_model(str(staging / MODEL_SELL_FILE))
        for name, payload in (artifacts or {}).items():
            if "/" in name or name in (MODEL_BUY_FILE, MODEL_SELL_FILE, META_FILE):
                raise ValueError(f"artifact name {name!r} is not a plain new file name")
            (staging / name).write_bytes(payload)
        (staging / META_FILE).write_text(
            json.dumps(_json_safe(meta), indent=2, sort_keys=False, allow_nan=False) + "\n"
        )
        os.replace(staging, models_dir / model_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return models_dir / model_id


def read_meta(model_dir: Path) -> dict[str, Any]:
    """Read and check a model set's meta.json."""
    path = Path(model_dir) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no {META_FILE} in {model_dir}")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(meta, dict):
        raise ValueError(f"{path} must hold a JSON object")
    for field in META_FIELDS:
        if field not in meta:
            raise ValueError(f"{path} lacks field {field!r}")
    return meta


def update_meta(model_dir: Path, **fields: Any) -> dict[str, Any]:
    """Add or replace top-level fields of a saved set's meta.json (atomically); return it.

    For what is known only after the models are saved (the expected-return calibration and
    the policy's hold-out result); the models' own fields cannot be replaced this way.
    """
    protected = set(META_FIELDS) - {"metrics"}
    clash = sorted(protected & set(fields))
    if clash:
        raise ValueError(f"meta fields {clash} describe the saved models and cannot be replaced")
    meta = read_meta(model_dir)
    meta.update(fields)
    path = Path(model_dir) / META_FILE
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".meta.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(_json_safe(meta), indent=2, allow_nan=False) + "\n")
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return meta


def _created_at(meta: Mapping[str, Any]) -> datetime:
    """Parse meta's created_at as an aware UTC datetime."""
    created = datetime.fromisoformat(str(meta["created_at"]).replace("Z", "+00:00"))
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return created


def latest_model_dir(models_dir: Path) -> Path | None:
    """Return the model set with the newest created_at under ``models_dir``, or None."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return None
    best: tuple[datetime, str] | None = None
    best_dir: Path | None = None
    for child in models_dir.iterdir():
        if child.name.startswith(".") or not (child / META_FILE).is_file():
            continue
        meta = read_meta(child)
        key = (_created_at(meta), child.name)
        if best is None or key > best:
            best, best_dir = key, child
    return best_dir
