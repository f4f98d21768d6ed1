"""Answer schemas that a grammar-constrained backend (Ollama, llama.cpp) can compile.

Ollama turns the JSON schema sent as `format` into a llama.cpp grammar. A string or array
bound of N becomes an N-fold repetition there, and llama.cpp refuses a grammar whose
repetitions reach 2,000 (`MAX_REPETITION_THRESHOLD` in src/llama-grammar.cpp; the check
multiplies the bound by the size of the repeated rule, so an array of 1,998 items already
fails). Its converter (common/json-schema-to-grammar.cpp, limits listed in grammars/README.md)
also rejects or silently drops a short list of constructs.

So the schema *sent* is derived from the strict answer model: bounds of `GRAMMAR_BOUND_LIMIT`
or more are taken out and written into the field's description, where the model still reads
them, and the strict model enforces them after parsing. `grammar_problems` lists whatever a
schema still has that llama.cpp cannot compile; the provider refuses to send such a schema.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

GRAMMAR_BOUND_LIMIT = 1000  # llama.cpp fails at 2,000 repetitions (less for arrays); keep a margin

_BOUNDS = {
    "maxLength": "at most {n} characters",
    "minLength": "at least {n} characters",
    "maxItems": "at most {n} items",
    "minItems": "at least {n} items",
}
# Keywords llama.cpp's converter does not support (grammars/README.md): each one is either
# rejected or skipped, and a skipped one only shows up later as an answer that fails validation.
_UNSUPPORTED = {
    "patternProperties": "patternProperties is not supported",
    "uniqueItems": "uniqueItems is not supported",
    "contains": "contains is not supported",
    "minContains": "minContains is not supported",
    "maxContains": "maxContains is not supported",
    "not": "not is not supported",
    "if": "if/then/else is not supported",
    "then": "if/then/else is not supported",
    "else": "if/then/else is not supported",
    "dependentSchemas": "dependentSchemas is not supported",
    "dependentRequired": "dependentRequired is not supported",
    "$anchor": "$anchor is not supported",
    "$dynamicRef": "$dynamicRef is not supported",
    "unevaluatedProperties": "unevaluatedProperties is not supported",
    "unevaluatedItems": "unevaluatedItems is not supported",
    "prefixItems": "prefixItems is broken in llama.cpp (use items)",
}
_SCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SCHEMA_ONES = (
    "items",
    "additionalProperties",
    "additionalItems",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedItems",
    "unevaluatedProperties",
)
# Escapes llama.cpp's regex-to-grammar step passes through and its grammar parser reads;
# any other (\d, \w, \s, \b ...) ends as an "unknown escape" when the grammar is parsed.
_PATTERN_ESCAPES = set("^$.[]()|{}*+?") | set('xuUtrn\\"-')
_QUANTIFIER_RE = re.compile(r"\{\s*(\d*)\s*(?:,\s*(\d*)\s*)?\}")


def _subschemas(schema: dict[str, Any], path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Yield every schema nested directly in `schema`, with its path."""
    for key in _SCHEMA_MAPS:
        children = schema.get(key)
        if isinstance(children, dict):
            for name, child in children.items():
                if isinstance(child, dict):
                    yield child, f"{path}.{key}.{name}"
    for key in (*_SCHEMA_LISTS, "items"):
        children = schema.get(key)
        if isinstance(children, list):
            for index, child in enumerate(children):
                if isinstance(child, dict):
                    yield child, f"{path}.{key}[{index}]"
    for key in _SCHEMA_ONES:
        child = schema.get(key)
        if isinstance(child, dict):
            yield child, f"{path}.{key}"


def _walk(schema: dict[str, Any], path: str = "$") -> Iterator[tuple[dict[str, Any], str]]:
    yield schema, path
    for child, child_path in _subschemas(schema, path):
        yield from _walk(child, child_path)


def _pattern_problems(pattern: str) -> list[str]:
    problems = []
    if not (pattern.startswith("^") and pattern.endswith("$")):
        problems.append("pattern must start with ^ and end with $")
    if "(?" in pattern.replace("(?:", ""):
        problems.append("pattern uses a lookaround or inline flag")
    index = 0
    while index < len(pattern) - 1:
        if pattern[index] == "\\":
            escaped = pattern[index + 1]
            if escaped not in _PATTERN_ESCAPES:
                problems.append(f"pattern escape \\{escaped} is not supported")
            index += 2
        else:
            index += 1
    for low, high in _QUANTIFIER_RE.findall(pattern):
        bound = max(int(low or 0), int(high or 0))
        if bound >= GRAMMAR_BOUND_LIMIT:
            problems.append(f"pattern repeats {bound} times (limit {GRAMMAR_BOUND_LIMIT - 1})")
    return problems


def grammar_problems(schema: dict[str, Any]) -> list[str]:
    """List what keeps llama.cpp from compiling `schema` into a grammar; empty when it can."""
    problems: list[str] = []
    for node, path in _walk(schema):
        for key in _BOUNDS:
            value = node.get(key)
            if isinstance(value, int) and value >= GRAMMAR_BOUND_LIMIT:
                problems.append(
                    f"{path}: {key} {value} is {GRAMMAR_BOUND_LIMIT} or more "
                    "(llama.cpp refuses repetitions of 2000)"
                )
        for key, why in _UNSUPPORTED.items():
            if key in node:
                problems.append(f"{path}: {why}")
        ref = node.get("$ref")
        if isinstance(ref, str):
            if not ref.startswith("#/"):
                problems.append(f"{path}: $ref {ref!r} is not local (#/...)")
            elif path.startswith(("$.$defs.", "$.definitions.")):
                problems.append(f"{path}: nested $ref {ref!r} (inline the definition)")
        if "properties" in node and ("anyOf" in node or "oneOf" in node):
            problems.append(f"{path}: properties mixed with anyOf/oneOf are not supported")
        if node.get("type") == "object" and node.get("properties") == {}:
            problems.append(f"{path}: an object with no properties gives an invalid grammar")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            problems.extend(f"{path}: {problem}" for problem in _pattern_problems(pattern))
    return problems


def _move_bounds_into_descriptions(node: dict[str, Any]) -> None:
    moved = []
    for key, wording in _BOUNDS.items():
        value = node.get(key)
        if isinstance(value, int) and value >= GRAMMAR_BOUND_LIMIT:
            del node[key]
            moved.append(wording.format(n=value))
    if moved:
        limit = "; ".join(moved)
        limit = limit[0].upper() + limit[1:] + "."
        description = str(node.get("description", "")).strip()
        node["description"] = f"{description} {limit}".strip() if description else limit


def grammar_safe_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of `model` to send as a grammar: large bounds moved into descriptions.

    The model itself keeps every bound, so an answer that breaks one fails validation after
    parsing (a recorded hold) instead of failing the grammar before the model runs.
    """
    schema = copy.deepcopy(model.model_json_schema())
    for node, _path in _walk(schema):
        _move_bounds_into_descriptions(node)
    return schema
