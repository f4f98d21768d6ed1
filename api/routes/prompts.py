"""Prompt files: read, validate, save (versioned, with diffs) and roll back."""

from __future__ import annotations

import hashlib
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, status

from api.deps import (
    CHANGE_RESPONSES,
    JournalDep,
    Services,
    ServicesDep,
    error,
    require_read_access,
    require_token,
)
from api.schemas import (
    PROMPT_NAME_PATTERN,
    PromptCheck,
    PromptList,
    PromptOut,
    PromptRollback,
    PromptSave,
    PromptSummary,
    PromptVersionList,
    PromptVersionOut,
)
from prompts.loader import (
    PromptError,
    check_prompt_text,
    prompt_diff,
    write_prompt_text,
)
from store.journal import Journal

router = APIRouter(prefix="/api/prompts", tags=["prompts"])

PromptName = Annotated[
    str, Path(min_length=1, max_length=100, pattern=PROMPT_NAME_PATTERN, examples=["groq_check"])
]
_save_lock = threading.Lock()
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    status.HTTP_404_NOT_FOUND: error("no prompt file with that name")
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _read_text(services: Services, name: str) -> str:
    """Return a prompt file's text, or answer 404 naming the prompts there are."""
    path = services.prompts.path_of(name)
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except (FileNotFoundError, IsADirectoryError):
        available = ", ".join(services.prompts.names()) or "none"
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"prompt {name!r} not found (available: {available})"
        ) from None


def _required(services: Services, name: str) -> frozenset[str] | None:
    return services.prompt_variables.get(name)


def validated_text(services: Services, name: str, text: str) -> str:
    """Return `text` when it is a valid prompt `name` (existing); else answer 404 or 422."""
    _read_text(services, name)
    try:
        check_prompt_text(services.prompts, name, text, _required(services, name))
    except PromptError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, _relative(services, exc)
        ) from exc
    return text


def _relative(services: Services, exc: PromptError) -> str:
    """The loader's message with the folder left out (the name says which file)."""
    return str(exc).replace(f"{services.prompts.directory}/", "")


def _summary(services: Services, name: str, text: str) -> dict[str, Any]:
    try:
        prompt = check_prompt_text(services.prompts, name, text, _required(services, name))
    except PromptError as exc:
        return {
            "name": name,
            "ref": None,
            "sha256": _sha(text),
            "description": None,
            "variables": {},
            "valid": False,
            "error": _relative(services, exc),
        }
    return {
        "name": name,
        "ref": prompt.ref,
        "sha256": prompt.sha256,
        "description": prompt.description,
        "variables": prompt.variables,
        "valid": True,
        "error": None,
    }


def _baseline(journal: Journal, name: str, text: str) -> dict[str, Any] | None:
    """Record the file as found on disk when it differs from the newest version."""
    versions = journal.prompt_versions(name)
    sha = _sha(text)
    if versions and versions[0]["sha256"] == sha:
        return versions[0]
    previous = journal.prompt_version(versions[0]["id"]) if versions else None
    return journal.record_prompt_version(
        name,
        sha,
        text,
        created_by="file",
        message="the file as found on disk",
        previous_sha256=previous["sha256"] if previous else None,
        diff=prompt_diff(name, previous["text"] if previous else None, text),
    )


def _version_out(row: dict[str, Any], *, with_text: bool) -> PromptVersionOut:
    return PromptVersionOut(
        id=row["id"],
        name=row["name"],
        sha256=row["sha256"],
        ref=f"{row['name']}@{row['sha256'][:8]}",
        created_at=row["created_at"],
        created_by=row["created_by"],
        message=row["message"],
        previous_sha256=row["previous_sha256"],
        diff=row["diff"],
        text=row.get("text") if with_text else None,
    )


@router.get("", response_model=PromptList, dependencies=[Depends(require_read_access)])
def list_prompts(services: ServicesDep) -> PromptList:
    """List the prompt files with their refs and whether each is valid."""
    summaries = []
    for name in services.prompts.names():
        summaries.append(PromptSummary(**_summary(services, name, _read_text(services, name))))
    return PromptList(prompts=summaries, directory=str(services.prompts.directory))


@router.get(
    "/{name}",
    response_model=PromptOut,
    dependencies=[Depends(require_read_access)],
    responses=NOT_FOUND,
)
def get_prompt(name: PromptName, services: ServicesDep) -> PromptOut:
    """Return a prompt file's text, its ref, its variables and whether it is valid."""
    text = _read_text(services, name)
    return PromptOut(
        **_summary(services, name, text),
        text=text,
        required_variables=sorted(_required(services, name) or []),
    )


@router.post(
    "/{name}/check",
    response_model=PromptCheck,
    dependencies=[Depends(require_read_access)],
    responses=NOT_FOUND,
)
def check_prompt(name: PromptName, body: PromptSave, services: ServicesDep) -> PromptCheck:
    """Validate a text without saving it; answer the reason and the diff (changes nothing)."""
    current = _read_text(services, name)
    summary = _summary(services, name, body.text)
    return PromptCheck(
        valid=summary["valid"],
        error=summary["error"],
        ref=summary["ref"],
        diff=prompt_diff(name, current, body.text),
    )


def _save(
    services: Services, journal: Journal, name: str, text: str, *, by: str, message: str
) -> PromptVersionOut:
    current = _read_text(services, name)
    validated_text(services, name, text)
    baseline = _baseline(journal, name, current)
    if _sha(text) == _sha(current) and baseline is not None:
        return _version_out(baseline, with_text=True)
    write_prompt_text(services.prompts, name, text)
    row = journal.record_prompt_version(
        name,
        _sha(text),
        text,
        created_by=by,
        message=message,
        previous_sha256=_sha(current),
        diff=prompt_diff(name, current, text),
    )
    services.bus.publish(
        {"type": "prompt_saved", "name": name, "ref": f"{name}@{row['sha256'][:8]}", "by": by}
    )
    return _version_out(row, with_text=True)


@router.put(
    "/{name}",
    response_model=PromptVersionOut,
    dependencies=[Depends(require_token)],
    responses={
        **CHANGE_RESPONSES,
        **NOT_FOUND,
        status.HTTP_409_CONFLICT: error("the file changed since the edit began"),
        status.HTTP_422_UNPROCESSABLE_CONTENT: error(
            "the text is not a valid prompt: the reason", unprocessable=True
        ),
    },
)
def save_prompt(
    name: PromptName, body: PromptSave, services: ServicesDep, journal: JournalDep
) -> PromptVersionOut:
    """Validate and save a prompt file as a new version; the next run uses it.

    A text that fails validation (syntax, an undeclared or unused variable, variables other
    than the code passes) is refused with 422 and the reason; nothing is written. Needs the
    token.
    """
    with _save_lock:
        if body.base_sha256 is not None:
            current = _sha(_read_text(services, name))
            if not current.startswith(body.base_sha256):
                raise HTTPException(
                    status.HTTP_409_CONFLICT,
                    f"prompt {name!r} changed since the edit began (now {current[:8]}, "
                    f"edit based on {body.base_sha256[:8]}): reload and edit again",
                )
        return _save(services, journal, name, body.text, by="api", message=body.message)


@router.get(
    "/{name}/versions",
    response_model=PromptVersionList,
    dependencies=[Depends(require_read_access)],
    responses=NOT_FOUND,
)
def list_versions(
    name: PromptName, services: ServicesDep, journal: JournalDep
) -> PromptVersionList:
    """List a prompt's saved versions newest first, each with its diff to the previous."""
    text = _read_text(services, name)
    versions = journal.prompt_versions(name)
    if not versions or versions[0]["sha256"] != _sha(text):
        # Show the file on disk as a version too (edited outside the API, or never saved).
        with _save_lock:
            _baseline(journal, name, text)
        versions = journal.prompt_versions(name)
    return PromptVersionList(
        name=name, versions=[_version_out(row, with_text=False) for row in versions]
    )


@router.get(
    "/{name}/versions/{version_id}",
    response_model=PromptVersionOut,
    dependencies=[Depends(require_read_access)],
    responses={status.HTTP_404_NOT_FOUND: error("no such prompt or version")},
)
def get_version(
    name: PromptName,
    version_id: Annotated[int, Path(ge=1, le=2**62)],
    services: ServicesDep,
    journal: JournalDep,
) -> PromptVersionOut:
    """Return one version with its text."""
    _read_text(services, name)
    row = journal.prompt_version(version_id)
    if row is None or row["name"] != name:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"prompt {name!r} has no version {version_id}"
        )
    return _version_out(row, with_text=True)


@router.post(
    "/{name}/rollback",
    response_model=PromptVersionOut,
    dependencies=[Depends(require_token)],
    responses={
        **CHANGE_RESPONSES,
        status.HTTP_404_NOT_FOUND: error("no such prompt or version"),
        status.HTTP_422_UNPROCESSABLE_CONTENT: error(
            "that version no longer validates", unprocessable=True
        ),
    },
)
def rollback_prompt(
    name: PromptName, body: PromptRollback, services: ServicesDep, journal: JournalDep
) -> PromptVersionOut:
    """Restore an earlier version (saved as a new version, so it can be undone); needs token."""
    with _save_lock:
        row = journal.prompt_version(body.version_id)
        if row is None or row["name"] != name:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND, f"prompt {name!r} has no version {body.version_id}"
            )
        message = body.message or f"rollback to version {row['id']} ({row['sha256'][:8]})"
        return _save(services, journal, name, row["text"], by="rollback", message=message)
