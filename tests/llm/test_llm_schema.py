"""Answer schemas that llama.cpp can compile, and lengths enforced after parsing instead."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import ollama
import pytest
from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, Field

from graph.review import ReviewRequest
from llm.answers import ANSWER_MODELS, SizingAnswer, VerdictAnswer
from llm.provider import ChatProvider, ProviderError
from llm.resilience import is_retryable
from llm.reviewers import LLMReviewer, review_values
from llm.schema import GRAMMAR_BOUND_LIMIT, grammar_problems, grammar_safe_schema
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary


@dataclass
class CannedRunnable:
    """Answers every call with one message, like a non-streaming chat model."""

    content: str
    metadata: dict[str, Any] = field(default_factory=dict)
    calls: int = 0

    async def ainvoke(self, messages: list[BaseMessage]) -> AIMessage:
        self.calls += 1
        return AIMessage(content=self.content, response_metadata=self.metadata)


@dataclass
class RecordingFactory:
    """Records every schema a provider turns into a runnable (what would go on the wire)."""

    runnable: CannedRunnable
    schemas: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, schema: dict[str, Any]) -> CannedRunnable:
        self.schemas[str(schema.get("title"))] = schema
        return self.runnable


def provider_with(runnable: CannedRunnable) -> tuple[ChatProvider, RecordingFactory]:
    factory = RecordingFactory(runnable)
    provider = ChatProvider(name="ollama", model="qwen2.5:14b", factory=factory, stream=False)
    return provider, factory


def review_request() -> ReviewRequest:
    return ReviewRequest(
        role="ollama_check",
        action="buy",
        market="KRW-ETH",
        entry_probability=0.6,
        exit_probability=0.1,
        features={"rsi_14": 55.0},
        position=None,
    )


def reviewer_with(runnable: CannedRunnable) -> tuple[LLMReviewer, RecordingFactory]:
    provider, factory = provider_with(runnable)
    return LLMReviewer("ollama_check", provider, PromptLibrary(DEFAULT_PROMPTS_DIR)), factory


def object_with(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties)}


# What is sent ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ANSWER_MODELS, ids=lambda model: model.__name__)
async def test_every_answer_schema_a_provider_is_given_compiles_in_llama_cpp(
    model: type[BaseModel],
) -> None:
    provider, factory = provider_with(CannedRunnable("{}"))

    provider._runnable(model)

    sent = factory.schemas[model.__name__]
    assert grammar_problems(sent) == []


def test_the_registry_holds_the_review_and_sizing_answers() -> None:
    names = {model.__name__ for model in ANSWER_MODELS}

    assert {"VerdictAnswer", "SizingAnswer"} <= names


@pytest.mark.parametrize("model", [VerdictAnswer, SizingAnswer], ids=lambda model: model.__name__)
def test_the_strict_models_keep_bounds_that_llama_cpp_would_refuse(
    model: type[BaseModel],
) -> None:
    # Sent as they are, both answer models would fail on a real Ollama: the checker sees it.
    problems = grammar_problems(model.model_json_schema())

    assert any("maxLength 4000" in problem for problem in problems)


def test_the_sent_reasoning_field_states_its_limit_in_its_description() -> None:
    provider, factory = provider_with(CannedRunnable("{}"))

    provider._runnable(VerdictAnswer)

    reasoning = factory.schemas["VerdictAnswer"]["properties"]["reasoning"]
    assert "maxLength" not in reasoning
    assert "At most 4000 characters." in reasoning["description"]


async def test_a_model_outside_the_registry_is_refused_before_anything_is_sent() -> None:
    class Unregistered(BaseModel):
        note: str = Field(max_length=50)

    runnable = CannedRunnable('{"note": "x"}')
    provider, factory = provider_with(runnable)
    rendered = PromptLibrary(DEFAULT_PROMPTS_DIR).get("ollama_check")

    with pytest.raises(ProviderError, match="not in ANSWER_MODELS"):
        await provider.complete(rendered.render(review_values(review_request())), Unregistered)
    assert factory.schemas == {}
    assert runnable.calls == 0


# The checker -----------------------------------------------------------------------------
def test_the_checker_catches_a_string_bound_of_2000() -> None:
    schema = object_with(reasoning={"type": "string", "maxLength": 2000})

    problems = grammar_problems(schema)

    assert problems == [
        "$.properties.reasoning: maxLength 2000 is 1000 or more "
        "(llama.cpp refuses repetitions of 2000)"
    ]


@pytest.mark.parametrize(
    ("kind", "bound"),
    [
        ("string", "maxLength"),
        ("string", "minLength"),
        ("array", "maxItems"),
        ("array", "minItems"),
    ],
)
def test_a_bound_of_the_limit_is_a_problem_and_one_below_is_not(kind: str, bound: str) -> None:
    def schema(value: int) -> dict[str, Any]:
        node: dict[str, Any] = {"type": kind, bound: value}
        if kind == "array":
            node["items"] = {"type": "number"}
        return object_with(field=node)

    at_limit = grammar_problems(schema(GRAMMAR_BOUND_LIMIT))
    below = grammar_problems(schema(GRAMMAR_BOUND_LIMIT - 1))

    assert len(at_limit) == 1
    assert f"{bound} {GRAMMAR_BOUND_LIMIT}" in at_limit[0]
    assert below == []


def test_a_bound_deep_inside_definitions_and_arrays_is_found_with_its_path() -> None:
    schema = {
        "$defs": {"Risk": object_with(text={"type": "string", "maxLength": 5000})},
        **object_with(risks={"type": "array", "items": {"$ref": "#/$defs/Risk"}}),
    }

    problems = grammar_problems(schema)

    assert problems == [
        "$.$defs.Risk.properties.text: maxLength 5000 is 1000 or more "
        "(llama.cpp refuses repetitions of 2000)"
    ]


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"type": "object", "patternProperties": {"^x": {}}}, "patternProperties"),
        ({"type": "array", "items": {"type": "string"}, "uniqueItems": True}, "uniqueItems"),
        ({"type": "array", "contains": {"type": "number"}}, "contains"),
        ({"not": {"type": "null"}}, "not is not supported"),
        ({"if": {"type": "string"}, "then": {"minLength": 1}}, "if/then/else"),
        ({"type": "object", "dependentSchemas": {"a": {}}}, "dependentSchemas"),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, "prefixItems"),
        ({"$ref": "https://example.org/schema.json"}, "is not local"),
        ({"type": "string", "pattern": "[a-z]+"}, "must start with ^ and end with $"),
        ({"type": "string", "pattern": "^\\d{4}$"}, "escape \\d"),
        ({"type": "string", "pattern": "^(?=a)b$"}, "lookaround"),
        ({"type": "string", "pattern": "^a{0,5000}$"}, "repeats 5000 times"),
        ({"type": "object", "properties": {}}, "no properties"),
        (
            {"properties": {"a": {"type": "string"}}, "anyOf": [{"required": ["a"]}]},
            "mixed with anyOf",
        ),
    ],
)
def test_constructs_llama_cpp_cannot_convert_are_problems(
    node: dict[str, Any], expected: str
) -> None:
    problems = grammar_problems(object_with(field=node))

    assert len(problems) >= 1
    assert any(problem.startswith("$.properties.field") for problem in problems)
    assert any(expected in problem for problem in problems)


@pytest.mark.parametrize(
    "node",
    [
        {"type": "string", "pattern": "^[A-Z]{2,10}-[0-9]+\\.?$"},
        {"type": "string", "enum": ["buy", "sell", "hold"]},
        {"anyOf": [{"type": "number"}, {"type": "null"}]},
        {"type": "array", "items": {"type": "string", "maxLength": 200}, "maxItems": 20},
        {"type": "integer", "minimum": 0, "maximum": 100},
    ],
)
def test_constructs_llama_cpp_converts_are_not_problems(node: dict[str, Any]) -> None:
    assert grammar_problems(object_with(field=node)) == []


def test_a_local_ref_at_the_top_is_fine_but_one_inside_a_definition_is_not() -> None:
    number = object_with(x={"type": "number"})
    top = {"$defs": {"A": number}, **object_with(a={"$ref": "#/$defs/A"})}
    nested = {
        "$defs": {"A": object_with(b={"$ref": "#/$defs/B"}), "B": number},
        **object_with(a={"$ref": "#/$defs/A"}),
    }

    assert grammar_problems(top) == []
    assert grammar_problems(nested) == [
        "$.$defs.A.properties.b: nested $ref '#/$defs/B' (inline the definition)"
    ]


# The grammar-safe schema -------------------------------------------------------------------
def test_grammar_safe_schema_moves_large_bounds_into_descriptions_and_keeps_small_ones() -> None:
    class Report(BaseModel):
        summary: str = Field(max_length=2000, description="What happened.")
        note: str = Field(min_length=1000)
        tags: list[str] = Field(max_length=5)

    schema = grammar_safe_schema(Report)

    summary, note, tags = (schema["properties"][name] for name in ("summary", "note", "tags"))
    assert "maxLength" not in summary
    assert summary["description"] == "What happened. At most 2000 characters."
    assert "minLength" not in note
    assert note["description"] == "At least 1000 characters."
    assert tags["maxItems"] == 5
    assert grammar_problems(schema) == []
    assert Report.model_json_schema()["properties"]["summary"]["maxLength"] == 2000


# Lengths enforced after parsing --------------------------------------------------------------
async def test_a_reasoning_over_its_limit_is_a_recorded_hold_with_the_raw_answer_kept() -> None:
    raw = '{"verdict": "buy", "confidence": 0.9, "reasoning": "' + "x" * 4001 + '"}'
    reviewer, _ = reviewer_with(CannedRunnable(raw))

    verdict = await reviewer.review(review_request())

    assert verdict.verdict == "hold"
    assert verdict.error is not None
    assert "reasoning" in verdict.error
    assert "4000 characters" in verdict.error
    assert verdict.call is not None
    assert verdict.call["raw"] == raw


async def test_a_reasoning_at_its_limit_is_accepted() -> None:
    raw = '{"verdict": "buy", "confidence": 0.9, "reasoning": "' + "x" * 4000 + '"}'
    reviewer, _ = reviewer_with(CannedRunnable(raw))

    verdict = await reviewer.review(review_request())

    assert (verdict.verdict, verdict.error) == ("buy", None)
    assert len(verdict.reasoning) == 4000


@pytest.mark.parametrize("metadata", [{"finish_reason": "length"}, {"done_reason": "length"}])
async def test_an_answer_cut_at_the_token_cap_is_a_hold_that_says_so(
    metadata: dict[str, Any],
) -> None:
    raw = '{"verdict": "buy", "confidence": 0.9, "reasoning": "and again and again'
    runnable = CannedRunnable(raw, metadata=metadata)
    reviewer, _ = reviewer_with(runnable)

    verdict = await reviewer.review(review_request())

    assert verdict.verdict == "hold"
    assert verdict.error is not None
    assert "token cap" in verdict.error
    assert verdict.call is not None
    assert verdict.call["raw"] == raw
    assert runnable.calls == 1  # the same prompt would loop the same way: not retried


@pytest.mark.parametrize(
    "message",
    ["failed to load model vocabulary required for format", "invalid JSON schema in format"],
)
def test_ollama_refusing_the_schema_is_not_retried_though_it_is_a_500(message: str) -> None:
    assert is_retryable(ollama.ResponseError(message, 500)) is False
    assert is_retryable(ollama.ResponseError("model runner crashed", 500)) is True
