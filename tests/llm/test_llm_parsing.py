"""llm.parsing: thinking split from the answer, and the JSON object found in it."""

from __future__ import annotations

import pytest

from llm.parsing import LLMOutputError, extract_json, split_thinking


# split_thinking ------------------------------------------------------------------------------
def test_think_block_before_json_is_kept_as_thinking_and_the_json_is_the_answer() -> None:
    text = '<think>\nRSI is low, MACD turning.\n</think>\n\n{"verdict": "buy"}'

    thinking, answer = split_thinking(text)

    assert thinking == "RSI is low, MACD turning."
    assert extract_json(answer) == {"verdict": "buy"}


def test_unterminated_think_with_no_answer_leaves_an_empty_answer() -> None:
    thinking, answer = split_thinking('<think>maybe {"verdict": "buy"} if the trend holds')

    assert answer == ""
    assert thinking == 'maybe {"verdict": "buy"} if the trend holds'


def test_unterminated_think_after_an_answer_keeps_only_the_answer() -> None:
    thinking, answer = split_thinking('{"verdict": "hold"}\n<think>second thoughts {"verdict"')

    assert answer == '{"verdict": "hold"}'
    assert thinking == 'second thoughts {"verdict"'


def test_several_think_blocks_are_joined_in_order_and_removed_from_the_answer() -> None:
    text = '<think>one</think>{"verdict": <think>two</think>"sell"}<think>three</think>'

    thinking, answer = split_thinking(text)

    assert thinking == "one\ntwo\nthree"
    assert answer == '{"verdict": "sell"}'


@pytest.mark.parametrize(
    "text",
    ['<THINK>hmm</THINK>{"v": 1}', '<Think>hmm</tHiNk>{"v": 1}', '<think>hmm</THINK> {"v": 1}'],
)
def test_think_tags_match_whatever_their_case(text: str) -> None:
    thinking, answer = split_thinking(text)

    assert (thinking, answer) == ("hmm", '{"v": 1}')


def test_closing_tag_without_an_opening_one_makes_everything_before_it_thinking() -> None:
    # DeepSeek-R1 chat templates put "<think>" in the prompt, so the answer starts inside it.
    text = 'Maybe {"verdict": "buy"}? No, volume is thin.\n</think>\n{"verdict": "hold"}'

    thinking, answer = split_thinking(text)

    assert answer == '{"verdict": "hold"}'
    assert thinking == 'Maybe {"verdict": "buy"}? No, volume is thin.'


def test_text_that_grows_when_lowercased_does_not_shift_the_unterminated_block() -> None:
    # "İ".lower() is two characters: offsets found on the lowered text would cut the wrong place.
    text = "İ" * 40 + '<think>{"verdict": "buy"}'

    thinking, answer = split_thinking(text)

    assert answer == "İ" * 40
    assert thinking == '{"verdict": "buy"}'


def test_text_without_think_tags_is_all_answer() -> None:
    assert split_thinking('  {"verdict": "sell"}  ') == ("", '{"verdict": "sell"}')


# extract_json ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"verdict": "buy", "confidence": 0.7}',
        '```json\n{"verdict": "buy", "confidence": 0.7}\n```',
        '```JSON {"verdict": "buy", "confidence": 0.7} ```',
        '```\n{"verdict": "buy", "confidence": 0.7}\n```',
        'Here is my answer: {"verdict": "buy", "confidence": 0.7} Hope that helps!',
        'Sure.\n```json\n{"verdict": "buy", "confidence": 0.7}\n```\nDone.',
    ],
    ids=["bare", "fenced-json", "fenced-upper", "fenced-plain", "prose", "prose-and-fence"],
)
def test_json_object_is_found_bare_fenced_or_inside_prose(text: str) -> None:
    assert extract_json(text) == {"verdict": "buy", "confidence": 0.7}


def test_braces_inside_strings_do_not_end_the_object() -> None:
    text = 'x {"verdict": "hold", "reasoning": "a } then a { and \\"}\\"", "risks": []} y'

    assert extract_json(text) == {
        "verdict": "hold",
        "reasoning": 'a } then a { and "}"',
        "risks": [],
    }


def test_first_json_object_wins_over_later_ones() -> None:
    text = '{"verdict": "hold"} and later {"verdict": "buy"}'

    assert extract_json(text) == {"verdict": "hold"}


def test_nested_object_is_returned_whole() -> None:
    assert extract_json('{"a": {"b": {"c": 1}}}') == {"a": {"b": {"c": 1}}}


def test_broken_brace_before_a_valid_object_is_skipped() -> None:
    assert extract_json('{oops} {"verdict": "sell"}') == {"verdict": "sell"}


@pytest.mark.parametrize(
    "text",
    ["", "BUY", "[1, 2, 3]", "{verdict: buy}", '{"verdict": "buy"', "```json\n```", "42"],
)
def test_text_without_a_json_object_raises_llm_output_error(text: str) -> None:
    with pytest.raises(LLMOutputError, match="no JSON object"):
        extract_json(text)


@pytest.mark.parametrize(
    "poison",
    ['{"n": ' + "9" * 5000 + "}", '{"n": ' + "[" * 100_000 + "}"],
    ids=["5000-digit-int", "deeply-nested"],
)
def test_undecodable_json_is_an_output_error_not_a_crash(poison: str) -> None:
    with pytest.raises(LLMOutputError):
        extract_json(poison)

    assert extract_json(poison + ' {"verdict": "hold"}') == {"verdict": "hold"}
