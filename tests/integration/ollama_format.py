"""What a real Ollama answers for a `format` schema its llama.cpp cannot compile.

Written apart from the project's own checker (llm/schema.py) and from llama.cpp's
sources, so the fake server does not simply agree with the code under test:

- Ollama converts `format` with llama.cpp's json-schema-to-grammar; a conversion error (a
  `$ref` that is neither local nor https, a `pattern` not written `^...$`, a type it does not
  know) makes it answer HTTP 500 `{"error": "invalid JSON schema in format"}`.
- The grammar is then parsed by llama.cpp (src/llama-grammar.cpp), which refuses repetitions
  of 2,000 or more (`MAX_REPETITION_THRESHOLD`); a `pattern` escape like `\\d` is an "unknown
  escape" there. The runner then answers HTTP 500
  `{"error": "failed to load model vocabulary required for format"}` (runner/ollamarunner).
  The thresholds are those measured on Ollama 0.32.1 (unsloth issue 9888): a string bound of
  2,000 fails, an array bound of 1,998 fails (its rule repeats a separator too).
- Keywords the converter does not support (`uniqueItems`, `not`, ...) are skipped silently
  by Ollama, so they are accepted here too.
"""

from __future__ import annotations

import re
from typing import Any

INVALID_SCHEMA = "invalid JSON schema in format"
GRAMMAR_FAILED = "failed to load model vocabulary required for format"
_PRIMITIVES = {"boolean", "number", "integer", "string", "null", "object", "array"}
_REGEX_META = set("^$.[]()|{}*+?")
_GRAMMAR_ESCAPES = set('xuUtrn\\"[]-')


def _children(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[Any] = []
    for key in ("properties", "$defs", "definitions"):
        found += list((schema.get(key) or {}).values())
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        found += list(schema.get(key) or [])
    items = schema.get("items")
    found += items if isinstance(items, list) else [items]
    found.append(schema.get("additionalProperties"))
    return [child for child in found if isinstance(child, dict)]


def _conversion_error(schema: dict[str, Any]) -> bool:
    ref = schema.get("$ref")
    if isinstance(ref, str) and not ref.startswith(("#/", "https://")):
        return True
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and not (pattern.startswith("^") and pattern.endswith("$")):
        return True
    kind = schema.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if any(k is not None and k not in _PRIMITIVES for k in kinds):
        return True
    return any(_conversion_error(child) for child in _children(schema))


def _pattern_fails(pattern: str) -> bool:
    body = pattern[1:-1]
    index = 0
    while index < len(body) - 1:
        if body[index] == "\\":
            escaped = body[index + 1]
            if escaped not in _REGEX_META and escaped not in _GRAMMAR_ESCAPES:
                return True  # kept as "\d" in the grammar: an unknown escape
            index += 2
        else:
            index += 1
    for low, high in re.findall(r"\{(\d*),?(\d*)\}", body):
        if max(int(low or 0), int(high or 0)) >= 2000:
            return True
    return False


def _grammar_fails(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "string":
        length = max(schema.get("minLength", 0), schema.get("maxLength", 0))
        if length >= 2000:
            return True
    if kind == "array" or "items" in schema:
        count = max(schema.get("minItems", 0), schema.get("maxItems", 0))
        if count >= 1998:
            return True
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and _pattern_fails(pattern):
        return True
    return any(_grammar_fails(child) for child in _children(schema))


def ollama_format_refusal(schema: dict[str, Any]) -> str | None:
    """The error Ollama answers (HTTP 500) for this `format`, or None when it compiles."""
    if _conversion_error(schema):
        return INVALID_SCHEMA
    if _grammar_fails(schema):
        return GRAMMAR_FAILED
    return None
