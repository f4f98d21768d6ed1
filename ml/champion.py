"""Model versions and the champion: which model set trades, which wait, and why.

The versions are the model sets under the models directory (`ml.registry`). Beside them:

- ``champion.json``: the set the engine trades with, who made it champion, when and why, and
  the champions before it (what `rollback` returns to). Written atomically (a temporary file,
  then ``os.replace``), so a reader sees the old pointer or the new one, never half of one.
- ``registry.json``: each other version's status (``candidate`` with the reason it was not
  promoted, or ``retired``) and the figures it was judged by (the challenger's and the
  champion's policy results on the same window).
- ``retrain.json``: the daily retrain's memory (the last KST day it ran, its result).

A read-modify-write holds an exclusive lock on ``.registry.lock``, so the service's retrain and
an operator's ``lxa models promote`` never lose each other's change.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ml.registry import META_FILE, _json_safe, latest_model_dir, read_meta

CHAMPION_FILE = "champion.json"
REGISTRY_FILE = "registry.json"
RETRAIN_FILE = "retrain.json"
LOCK_FILE = ".registry.lock"
STATUSES = ("champion", "candidate", "retired")
WEIGHT_KEYS = ("weights", "training_weights", "sample_weights", "weight_summary")
HISTORY_KEPT = 50


class RegistryError(ValueError):
    """A registry request that cannot be done (an unknown version, nothing to roll back to)."""


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write `data` as JSON to `path` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(_json_safe(dict(data)), indent=2, allow_nan=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON object, or {} when the file is missing."""
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise RegistryError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(value, dict):
        raise RegistryError(f"{path} must hold a JSON object")
    return value


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def weight_summary(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    """The sample-weight summary a set recorded in its meta, or None (trained unweighted)."""
    for key in WEIGHT_KEYS:
        value = meta.get(key)
        if isinstance(value, dict):
            return value
    return None


def training_span(meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The first and last training bar over the set's markets (ISO strings, or None)."""
    window = meta.get("training_window") or {}
    firsts = [str(span.get("first_ts")) for span in window.values() if span.get("first_ts")]
    lasts = [str(span.get("last_ts")) for span in window.values() if span.get("last_ts")]
    first = min(firsts, key=_ts) if firsts else None
    last = max(lasts, key=_ts) if lasts else None
    return first, last


def _ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ModelVersion:
    """One model set as the registry shows it."""

    model_id: str
    path: Path
    created_at: str
    kind: str
    status: str  # champion, candidate or retired
    reason: str | None  # why a candidate was not promoted, or why one was retired
    trained_from: str | None
    trained_to: str | None
    until: str | None  # nothing at or after this time was used to train it
    weights: dict[str, Any] | None
    evaluation: dict[str, Any] | None  # its own hold-out result (meta policy_evaluation)
    judged: dict[str, Any] | None  # the promotion rule's figures, when it was judged

    def to_json(self) -> dict[str, Any]:
        """The version as JSON (`lxa models --json`)."""
        evaluation = self.evaluation or {}
        strategy = evaluation.get("strategy") or {}
        return {
            "model_id": self.model_id,
            "path": str(self.path),
            "created_at": self.created_at,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "training_window": {"first_ts": self.trained_from, "last_ts": self.trained_to},
            "until": self.until,
            "weights": self.weights,
            "evaluation": {
                "window": evaluation.get("window"),
                "total_return": strategy.get("total_return"),
                "entries": strategy.get("entries"),
                "buy_and_hold_return": evaluation.get("buy_and_hold_return"),
                "proven": evaluation.get("proven"),
            }
            if evaluation
            else None,
            "judged": self.judged,
        }


class ModelRegistry:
    """The versions under `models_dir`, the champion pointer and each version's status."""

    def __init__(self, models_dir: Path) -> None:
        self.models_dir = Path(models_dir)

    # Files ----------------------------------------------------------------------------------
    @property
    def champion_path(self) -> Path:
        """Where the champion pointer lives."""
        return self.models_dir / CHAMPION_FILE

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the registry's exclusive lock (a read-modify-write inside)."""
        self.models_dir.mkdir(parents=True, exist_ok=True)
        with open(self.models_dir / LOCK_FILE, "a+") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def read_champion(self) -> dict[str, Any]:
        """The champion pointer as written ({} when none was ever set)."""
        return read_json(self.champion_path)

    def read_state(self, name: str = RETRAIN_FILE) -> dict[str, Any]:
        """A side file's JSON ({} when missing)."""
        return read_json(self.models_dir / name)

    def write_state(self, data: Mapping[str, Any], name: str = RETRAIN_FILE) -> None:
        """Replace a side file's JSON atomically."""
        write_json_atomic(self.models_dir / name, data)

    # Reading --------------------------------------------------------------------------------
    def resolve(self, model_id: str) -> Path:
        """The directory of version `model_id` (under the models dir, or the champion's own)."""
        candidate = self.models_dir / model_id
        if (candidate / META_FILE).is_file() and not model_id.startswith("."):
            return candidate
        for entry in [self.read_champion(), *self.read_champion().get("history", [])]:
            if entry.get("model_id") == model_id and entry.get("path"):
                path = Path(entry["path"])
                if (path / META_FILE).is_file():
                    return path
        raise RegistryError(f"no model version {model_id!r} under {self.models_dir}")

    def champion_id(self) -> str | None:
        """The champion's model id, or None when no champion was ever set."""
        found = self.read_champion().get("model_id")
        return str(found) if found else None

    def champion_dir(self) -> Path | None:
        """The champion's directory, or None (no pointer, or its set is gone)."""
        pointer = self.read_champion()
        if not pointer.get("model_id"):
            return None
        path = Path(str(pointer.get("path") or self.models_dir / str(pointer["model_id"])))
        return path if (path / META_FILE).is_file() else None

    def serving_dir(self) -> Path | None:
        """The champion's directory, else the newest set (the rule before champions existed)."""
        return self.champion_dir() or latest_model_dir(self.models_dir)

    def versions(self) -> list[ModelVersion]:
        """Every version under the models dir (and the champion elsewhere), newest first."""
        records = read_json(self.models_dir / REGISTRY_FILE).get("versions", {})
        champion = self.read_champion()
        dirs: dict[str, Path] = {}
        if self.models_dir.is_dir():
            for child in self.models_dir.iterdir():
                if not child.name.startswith(".") and (child / META_FILE).is_file():
                    dirs[child.name] = child
        outside = self.champion_dir()
        if outside is not None and champion.get("model_id") not in dirs:
            dirs[str(champion["model_id"])] = outside
        found = [self._version(path, records, champion) for path in dirs.values()]
        return sorted(found, key=lambda v: (_ts(v.created_at), v.model_id), reverse=True)

    def version(self, model_id: str) -> ModelVersion:
        """One version by id (RegistryError when unknown)."""
        records = read_json(self.models_dir / REGISTRY_FILE).get("versions", {})
        return self._version(self.resolve(model_id), records, self.read_champion())

    def _version(
        self, path: Path, records: Mapping[str, Any], champion: Mapping[str, Any]
    ) -> ModelVersion:
        meta = read_meta(path)
        model_id = str(meta["model_id"])
        record = records.get(model_id) or records.get(path.name) or {}
        if champion.get("model_id") in (model_id, path.name):
            status, reason = "champion", champion.get("reason")
        else:
            status = str(record.get("status") or "candidate")
            reason = record.get("reason") or (None if record else "never judged")
        first, last = training_span(meta)
        return ModelVersion(
            model_id=model_id,
            path=path,
            created_at=str(meta["created_at"]),
            kind=str(meta.get("kind")),
            status=status,
            reason=reason,
            trained_from=first,
            trained_to=last,
            until=meta.get("until"),
            weights=weight_summary(meta),
            evaluation=meta.get("policy_evaluation"),
            judged=record.get("judged"),
        )

    # Writing --------------------------------------------------------------------------------
    def record(
        self, model_id: str, status: str, reason: str | None, judged: Mapping[str, Any] | None
    ) -> None:
        """Set a version's status, reason and judging figures (under the lock)."""
        with self.locked():
            self._record(model_id, status, reason, judged)

    def _record(
        self, model_id: str, status: str, reason: str | None, judged: Mapping[str, Any] | None
    ) -> None:
        if status not in STATUSES:
            raise RegistryError(f"status must be one of {STATUSES}, got {status!r}")
        path = self.models_dir / REGISTRY_FILE
        data = read_json(path)
        versions = data.setdefault("versions", {})
        entry = versions.setdefault(model_id, {})
        entry.update({"status": status, "reason": reason, "updated_at": _now()})
        if judged is not None:
            entry["judged"] = dict(judged)
        write_json_atomic(path, data)

    def promote(
        self,
        model_id: str,
        *,
        by: str,
        reason: str,
        judged: Mapping[str, Any] | None = None,
        serving: Path | None = None,
    ) -> dict[str, Any]:
        """Make `model_id` the champion; the one before is retired. Return the new pointer.

        `serving` names the set the engine trades with when no pointer was written yet (the
        newest set, or the bundled model), so a rollback can return to it.
        """
        with self.locked():
            path = self.resolve(model_id)
            meta = read_meta(path)
            model_id = str(meta["model_id"])
            before = self.read_champion()
            if not before.get("model_id") and serving is not None:
                first = read_meta(serving)
                before = {
                    "model_id": first["model_id"],
                    "path": str(serving.resolve()),
                    "by": "default",
                }
            history = list(before.pop("history", []))
            if before.get("model_id") == model_id:
                raise RegistryError(f"{model_id} is already the champion")
            if before.get("model_id"):
                history.insert(0, before)
                self._record(
                    str(before["model_id"]), "retired", f"replaced by {model_id} ({by})", None
                )
            pointer = {
                "model_id": model_id,
                "path": str(path.resolve()),
                "since": _now(),
                "by": by,
                "reason": reason,
                "history": history[:HISTORY_KEPT],
            }
            self._record(model_id, "champion", reason, judged)
            write_json_atomic(self.champion_path, pointer)
            return pointer

    def adopt(self, serving: Path, *, reason: str) -> bool:
        """Write a pointer to `serving` when none exists (so the newest set is not taken for
        the champion once challengers sit beside it); return whether it wrote one."""
        with self.locked():
            if self.read_champion().get("model_id"):
                return False
            meta = read_meta(serving)
            pointer = {
                "model_id": meta["model_id"],
                "path": str(Path(serving).resolve()),
                "since": _now(),
                "by": "default",
                "reason": reason,
                "history": [],
            }
            self._record(str(meta["model_id"]), "champion", reason, None)
            write_json_atomic(self.champion_path, pointer)
            return True

    def rollback(
        self, model_id: str | None = None, *, by: str = "operator", reason: str = ""
    ) -> dict[str, Any]:
        """Make the previous champion (or `model_id`) the champion again; retire the current."""
        with self.locked():
            current = self.read_champion()
            history = list(current.get("history", []))
            if not current.get("model_id"):
                raise RegistryError("no champion has been set: nothing to roll back")
            if model_id is None:
                if not history:
                    raise RegistryError(f"{current['model_id']} had no champion before it")
                target = history.pop(0)
            else:
                path = self.resolve(model_id)
                target = {"model_id": read_meta(path)["model_id"], "path": str(path.resolve())}
                history = [h for h in history if h.get("model_id") != target["model_id"]]
            if target["model_id"] == current["model_id"]:
                raise RegistryError(f"{model_id} is already the champion")
            why = reason or f"rolled back from {current['model_id']}"
            self._record(str(current["model_id"]), "retired", f"rolled back ({by}): {why}", None)
            pointer = {
                "model_id": target["model_id"],
                "path": str(target.get("path") or self.models_dir / str(target["model_id"])),
                "since": _now(),
                "by": by,
                "reason": why,
                "history": history[:HISTORY_KEPT],
            }
            self._record(str(target["model_id"]), "champion", why, None)
            write_json_atomic(self.champion_path, pointer)
            return pointer
