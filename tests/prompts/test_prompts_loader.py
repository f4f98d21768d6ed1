"""Loading, validating, rendering and reloading prompt files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from prompts.loader import (
    Prompt,
    PromptError,
    PromptLibrary,
    load_prompt,
    num_filter,
    pct_filter,
    tojson_filter,
)

VALID = """\
---
name: greet
description: a small test prompt
variables:
  market: the market
  price: the last price
---
# system
You review {{ market }}.
# user
Price: {{ price | num(2) }}
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.md"
    path.write_text(text, encoding="utf-8")
    return path


def bump_mtime(path: Path, seconds: int = 10) -> None:
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + seconds * 1_000_000_000))


def test_valid_prompt_loads_with_its_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID)

    prompt = load_prompt(path)

    assert prompt.name == "greet"
    assert prompt.path == path
    assert prompt.description == "a small test prompt"
    assert prompt.variables == {"market": "the market", "price": "the last price"}
    assert prompt.system_template == "You review {{ market }}."
    assert prompt.user_template == "Price: {{ price | num(2) }}"
    assert re.fullmatch(r"[0-9a-f]{64}", prompt.sha256)


def test_ref_is_name_at_first_eight_hex_of_the_file_sha(tmp_path: Path) -> None:
    prompt = load_prompt(write(tmp_path, "greet", VALID))

    assert re.fullmatch(r"greet@[0-9a-f]{8}", prompt.ref)
    assert prompt.ref == f"greet@{prompt.sha256[:8]}"


def test_render_fills_both_messages(tmp_path: Path) -> None:
    prompt = load_prompt(write(tmp_path, "greet", VALID))

    rendered = prompt.render({"market": "KRW-BTC", "price": 1234.5678})

    assert rendered.system == "You review KRW-BTC."
    assert rendered.user == "Price: 1234.57"
    assert rendered.ref == prompt.ref
    assert rendered.as_messages() == [
        {"role": "system", "content": "You review KRW-BTC."},
        {"role": "user", "content": "Price: 1234.57"},
    ]


def test_input_sha256_changes_with_values_and_repeats_for_same_values(tmp_path: Path) -> None:
    prompt = load_prompt(write(tmp_path, "greet", VALID))

    first = prompt.render({"market": "KRW-BTC", "price": 1.0})
    again = prompt.render({"market": "KRW-BTC", "price": 1.0})
    other = prompt.render({"market": "KRW-ETH", "price": 1.0})

    assert re.fullmatch(r"[0-9a-f]{64}", first.input_sha256)
    assert first.input_sha256 == again.input_sha256
    assert first.input_sha256 != other.input_sha256


def test_undeclared_variable_fails_naming_file_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID.replace("{{ market }}", "{{ market }} {{ foo }}"))

    with pytest.raises(PromptError) as caught:
        load_prompt(path)

    message = str(caught.value)
    assert "greet.md" in message
    assert "undeclared variable 'foo'" in message
    assert "greet.md:9:" in message  # the system template's line in the file


def test_declared_but_unused_variable_fails_naming_it(tmp_path: Path) -> None:
    text = VALID.replace("  price: the last price\n", "  price: the last price\n  bar: unused\n")
    path = write(tmp_path, "greet", text)

    with pytest.raises(PromptError) as caught:
        load_prompt(path)

    message = str(caught.value)
    assert "greet.md" in message
    assert "'bar'" in message
    assert "declared but unused" in message


def test_jinja_globals_are_not_taken_for_variables(tmp_path: Path) -> None:
    text = VALID.replace(
        "Price: {{ price | num(2) }}",
        "{% for i in range(2) %}{{ loop.index }}{% endfor %} {{ price }}",
    )
    path = write(tmp_path, "greet", text)

    rendered = load_prompt(path).render({"market": "m", "price": 1})

    assert rendered.user == "12 1"


def test_bad_jinja_syntax_fails_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID.replace("{{ price | num(2) }}", "{{ price | num(2) }"))

    with pytest.raises(PromptError) as caught:
        load_prompt(path)

    message = str(caught.value)
    assert "greet.md:11:" in message
    assert "Jinja syntax error" in message


def test_missing_front_matter_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", "# system\nhello\n# user\nthere\n")

    with pytest.raises(PromptError, match=r"greet\.md:1: missing front matter"):
        load_prompt(path)


def test_unclosed_front_matter_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", "---\nname: greet\n# system\nhi\n# user\nthere\n")

    with pytest.raises(PromptError, match=r"greet\.md: front matter is not closed"):
        load_prompt(path)


def test_invalid_yaml_front_matter_fails_with_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID.replace("  price: the last price", "  price: [oops"))

    with pytest.raises(PromptError) as caught:
        load_prompt(path)

    message = str(caught.value)
    assert "greet.md:" in message
    assert "not valid YAML" in message
    assert re.search(r"greet\.md:\d+:", message)


def test_name_that_differs_from_the_file_stem_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID.replace("name: greet", "name: hello"))

    with pytest.raises(PromptError) as caught:
        load_prompt(path)

    message = str(caught.value)
    assert "greet.md" in message
    assert "'hello'" in message and "'greet'" in message


def test_missing_user_heading_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID.replace("# user\n", ""))

    with pytest.raises(PromptError, match=r"greet\.md: missing the '# user' heading"):
        load_prompt(path)


def test_missing_system_heading_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID.replace("# system\n", ""))

    with pytest.raises(PromptError, match=r"greet\.md: missing the '# system' heading"):
        load_prompt(path)


def test_user_heading_before_system_fails(tmp_path: Path) -> None:
    body = "# user\nPrice: {{ price }}\n# system\nYou review {{ market }}.\n"
    path = write(tmp_path, "greet", VALID.split("# system")[0] + body)

    with pytest.raises(PromptError, match="must come after"):
        load_prompt(path)


def test_empty_message_fails(tmp_path: Path) -> None:
    text = VALID.replace("You review {{ market }}.\n", "\n").replace(
        "Price: {{ price | num(2) }}", "{{ market }} {{ price }}"
    )
    path = write(tmp_path, "greet", text)

    with pytest.raises(PromptError, match=r"'# system' message is empty"):
        load_prompt(path)


def test_unknown_front_matter_key_fails(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID.replace("name: greet\n", "name: greet\nvariable: x\n"))

    with pytest.raises(PromptError, match=r"unknown front matter key 'variable'"):
        load_prompt(path)


def test_missing_variables_mapping_fails(tmp_path: Path) -> None:
    text = VALID.replace("variables:\n  market: the market\n  price: the last price\n", "")
    path = write(tmp_path, "greet", text)

    with pytest.raises(PromptError, match=r"'variables' must be a mapping"):
        load_prompt(path)


def test_missing_variable_at_render_names_it(tmp_path: Path) -> None:
    prompt = load_prompt(write(tmp_path, "greet", VALID))

    with pytest.raises(PromptError) as caught:
        prompt.render({"market": "KRW-BTC"})

    message = str(caught.value)
    assert "greet.md" in message
    assert "missing variable 'price' when rendering" in message


def test_unknown_variable_at_render_names_it(tmp_path: Path) -> None:
    prompt = load_prompt(write(tmp_path, "greet", VALID))

    with pytest.raises(PromptError) as caught:
        prompt.render({"market": "KRW-BTC", "price": 1.0, "bar": 2})

    message = str(caught.value)
    assert "greet.md" in message
    assert "unknown variable 'bar' passed" in message
    assert "declared: market, price" in message


def test_missing_attribute_at_render_fails_with_file_and_line(tmp_path: Path) -> None:
    text = VALID.replace("{{ price | num(2) }}", "{{ price.cap }}")
    prompt = load_prompt(write(tmp_path, "greet", text))

    with pytest.raises(PromptError) as caught:
        prompt.render({"market": "KRW-BTC", "price": {"floor": 1}})

    message = str(caught.value)
    assert "greet.md:11:" in message
    assert "cap" in message


def test_sandbox_refuses_unsafe_attribute_access(tmp_path: Path) -> None:
    text = VALID.replace("{{ price | num(2) }}", "{{ price.__class__.__mro__ }}")
    prompt = load_prompt(write(tmp_path, "greet", text))

    with pytest.raises(PromptError, match=r"greet\.md"):
        prompt.render({"market": "m", "price": 1.0})


def test_prompt_is_frozen(tmp_path: Path) -> None:
    prompt = load_prompt(write(tmp_path, "greet", VALID))

    with pytest.raises(AttributeError):
        prompt.name = "other"  # type: ignore[misc]
    assert isinstance(prompt, Prompt)


# --------------------------------------------------------------------------- filters


def test_pct_renders_a_fraction_as_percent() -> None:
    assert pct_filter(0.0123) == "1.23%"
    assert pct_filter(0.5, 1) == "50.0%"
    assert pct_filter(-0.00001) == "0.00%"
    assert pct_filter(None) == "n/a"
    assert pct_filter(float("nan")) == "n/a"


def test_num_rounds_without_trailing_zeros() -> None:
    assert num_filter(1234.5678, 2) == "1234.57"
    assert num_filter(3.0, 2) == "3"
    assert num_filter(0.000012345, 6) == "0.000012"
    assert num_filter(-0.0000001, 2) == "0"
    assert num_filter(None) == "n/a"
    assert num_filter(float("inf")) == "n/a"


def test_tojson_sorts_keys_rounds_floats_and_nulls_nan() -> None:
    from decimal import Decimal

    value = {"b": 0.123456789, "a": None, "c": float("nan"), "d": Decimal("1.5"), "e": "<&>"}

    assert tojson_filter(value) == '{"a": null, "b": 0.123457, "c": null, "d": "1.5", "e": "<&>"}'


# --------------------------------------------------------------------------- the library


def test_library_get_reloads_after_an_edit(tmp_path: Path) -> None:
    path = write(tmp_path, "greet", VALID)
    library = PromptLibrary(tmp_path)
    before = library.get("greet")

    path.write_text(VALID.replace("You review", "You carefully review"), encoding="utf-8")
    bump_mtime(path)
    after = library.get("greet")

    assert after.sha256 != before.sha256
    assert after.ref != before.ref
    assert after.render({"market": "m", "price": 1}).system == "You carefully review m."


def test_library_get_returns_the_cached_prompt_when_unchanged(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)
    library = PromptLibrary(tmp_path)

    assert library.get("greet") is library.get("greet")


def test_library_get_raises_after_an_invalid_edit_and_recovers_after_a_fix(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "greet", VALID)
    library = PromptLibrary(tmp_path)
    library.get("greet")

    path.write_text(VALID.replace("{{ market }}", "{{ foo }}"), encoding="utf-8")
    bump_mtime(path)
    with pytest.raises(PromptError, match=r"greet\.md.*'foo'"):
        library.get("greet")
    with pytest.raises(PromptError, match=r"greet\.md.*'foo'"):
        library.get("greet")  # still invalid: raises again, never serves the old text

    path.write_text(VALID, encoding="utf-8")
    bump_mtime(path, seconds=20)
    assert library.get("greet").name == "greet"


def test_library_get_of_a_missing_prompt_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)
    library = PromptLibrary(tmp_path)

    with pytest.raises(PromptError) as caught:
        library.get("absent")

    message = str(caught.value)
    assert "absent.md" in message
    assert "available: greet" in message


def test_library_refuses_a_path_as_a_name(tmp_path: Path) -> None:
    library = PromptLibrary(tmp_path)

    with pytest.raises(PromptError, match="not a valid prompt name"):
        library.get("../greet")


def test_library_names_lists_the_md_files(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)
    write(tmp_path, "other", VALID.replace("name: greet", "name: other"))
    (tmp_path / "notes.txt").write_text("not a prompt", encoding="utf-8")

    assert PromptLibrary(tmp_path).names() == ["greet", "other"]


def test_library_check_reports_every_invalid_file(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)
    write(tmp_path, "bad_name", VALID)
    bad_var = VALID.replace("name: greet", "name: bad_var").replace("price |", "x |")
    write(tmp_path, "bad_var", bad_var)

    problems = PromptLibrary(tmp_path).check()

    assert len(problems) == 2
    assert any("bad_name.md" in p and "does not match the file name" in p for p in problems)
    assert any("bad_var.md" in p and "'x'" in p for p in problems)


def test_library_check_is_empty_for_a_valid_folder(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)

    assert PromptLibrary(tmp_path).check() == []


def test_library_check_reports_a_missing_folder(tmp_path: Path) -> None:
    problems = PromptLibrary(tmp_path / "absent").check()

    assert len(problems) == 1
    assert "prompt folder not found" in problems[0]


def test_require_returns_prompts_when_variables_match(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)

    prompts = PromptLibrary(tmp_path).require(["greet"], {"greet": {"market", "price"}})

    assert prompts["greet"].name == "greet"


def test_require_names_a_variable_the_caller_does_not_pass(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)

    with pytest.raises(PromptError) as caught:
        PromptLibrary(tmp_path).require(["greet"], {"greet": {"market"}})

    message = str(caught.value)
    assert "greet.md" in message
    assert "declares variable 'price' that the caller does not pass" in message


def test_require_names_a_variable_the_file_does_not_declare(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)

    with pytest.raises(PromptError) as caught:
        PromptLibrary(tmp_path).require(["greet"], {"greet": {"market", "price", "volume"}})

    message = str(caught.value)
    assert "greet.md" in message
    assert "passes variable 'volume' that the file does not declare" in message


def test_require_fails_for_a_missing_prompt(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID)

    with pytest.raises(PromptError, match=r"sizing\.md: prompt file not found"):
        PromptLibrary(tmp_path).require(["greet", "sizing"])


def test_require_fails_for_an_invalid_prompt(tmp_path: Path) -> None:
    write(tmp_path, "greet", VALID.replace("# user\n", ""))

    with pytest.raises(PromptError, match=r"greet\.md: missing the '# user' heading"):
        PromptLibrary(tmp_path).require(["greet"])
