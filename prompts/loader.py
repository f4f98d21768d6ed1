"""Load, validate and render the prompt files (Markdown with YAML front matter).

A prompt file looks like this::

    ---
    name: groq_check            # must equal the file stem
    description: one line
    variables:                  # every variable the templates use, with what it means
      market: the Upbit market, e.g. KRW-BTC
    ---
    # system
    <Jinja template for the system message>
    # user
    <Jinja template for the user message>

Loading is strict: a template that uses an undeclared variable, a declared variable that no
template uses, or a Jinja/YAML syntax error is a `PromptError` naming the file (and the
variable or line). Rendering is strict too: a missing or an unknown variable is an error, never
a blank. Every rendering carries `name@sha256[:8]` of the file it came from.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import SandboxedEnvironment

DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parent

SYSTEM_HEADING = "# system"
USER_HEADING = "# user"
FRONT_MATTER_FENCE = "---"
FRONT_MATTER_KEYS = ("name", "description", "variables", "identifying")
# How a blind run (`--blind`) hides what an identifying variable would tell of the period:
# market -> a neutral label, time -> "hidden", prices -> an index (the last close = 100),
# position -> its prices as that index, account -> cash and equity only, text -> dropped,
# model -> "model".
IDENTIFYING_KINDS = ("market", "time", "prices", "position", "account", "text", "model")
_PRICE_KEYS = ("avg_buy_price", "stop_loss_price", "take_profit_price", "price", "close")
MISSING = "n/a"  # how the number filters render None / NaN

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_TEMPLATE_FILENAME = "<template>"  # what jinja2 names a template built by from_string


class PromptError(ValueError):
    """A prompt file is missing or invalid, or was rendered with the wrong variables."""


# --------------------------------------------------------------------------- filters


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _plain(value: Any, digits: int) -> Any:
    """Return JSON-ready data: floats to `digits` significant digits, NaN/inf as None."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return float(f"{value:.{digits}g}")
    if isinstance(value, Mapping):
        return {str(key): _plain(item, digits) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [_plain(item, digits) for item in items]
    return value  # Decimal, datetime, ...: json.dumps turns them into text


def tojson_filter(value: Any, indent: int | None = None, digits: int = 6) -> str:
    """Render a value as JSON: sorted keys, floats to `digits` significant digits, NaN as null.

    Replaces Jinja's own `tojson`, which HTML-escapes `<`, `>`, `&` and `'` (wrong for LLM text).
    """
    return json.dumps(
        _plain(value, digits),
        default=str,
        sort_keys=True,
        ensure_ascii=False,
        indent=indent,
        allow_nan=False,
    )


def num_filter(value: Any, digits: int = 4) -> str:
    """Round a number to `digits` decimals, without trailing zeros; None or NaN as 'n/a'."""
    number = _finite_or_none(value)
    if number is None:
        return MISSING
    text = f"{round(number, digits):.{max(digits, 0)}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def pct_filter(value: Any, digits: int = 2) -> str:
    """Render a fraction as a percentage (0.0123 -> '1.23%'); None or NaN as 'n/a'."""
    number = _finite_or_none(value)
    if number is None:
        return MISSING
    text = f"{number * 100:.{digits}f}"
    if text.lstrip("-").strip("0.") == "":
        text = text.lstrip("-")  # no '-0.00%'
    return f"{text}%"


def krw_filter(value: Any) -> str:
    """Render a KRW amount with thousands separators (1234567.8 -> '1,234,568 KRW')."""
    number = _finite_or_none(value)
    if number is None:
        return MISSING
    return f"{round(number):,} KRW"


def _make_environment() -> SandboxedEnvironment:
    environment = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["tojson"] = tojson_filter
    environment.filters["num"] = num_filter
    environment.filters["pct"] = pct_filter
    environment.filters["krw"] = krw_filter
    return environment


_ENVIRONMENT = _make_environment()
_GLOBAL_NAMES = frozenset(_ENVIRONMENT.globals)  # range, dict, namespace, ...: not variables


# --------------------------------------------------------------------------- the prompt


@dataclass(frozen=True)
class Blind:
    """Hides what identifies the replayed period (`lxa backtest --blind`).

    Each market gets a neutral label (COIN-A, COIN-B, ... in the order given), prices become an
    index on which the reviewed market's last close is 100, times and the model id are hidden,
    news is dropped and the account keeps only its cash and equity. Returns, volatilities and
    the other features are unitless and stay as they are.
    """

    markets: tuple[str, ...]

    def label(self, market: Any) -> str:
        """The neutral label of `market`."""
        if market in self.markets:
            return f"COIN-{chr(ord('A') + self.markets.index(market))}"
        return "COIN-?"

    def apply(self, identifying: Mapping[str, str], values: Mapping[str, Any]) -> dict[str, Any]:
        """The values with every identifying variable hidden as its kind says."""
        reference = _reference_price(identifying, values)
        out = dict(values)
        for name, kind in identifying.items():
            value = values.get(name)
            if kind == "market":
                out[name] = self.label(value)
            elif kind in ("time", "model"):
                out[name] = "hidden" if kind == "time" else "model"
            elif kind == "text":
                out[name] = []
            elif kind == "prices":
                out[name] = _index(value, reference)
            elif kind == "position" and isinstance(value, Mapping):
                out[name] = {
                    k: _index(v, reference) if k in _PRICE_KEYS else v for k, v in value.items()
                }
            elif kind == "account" and isinstance(value, Mapping):
                out[name] = {k: v for k, v in value.items() if k in ("krw", "equity")}
        return out


def _reference_price(identifying: Mapping[str, str], values: Mapping[str, Any]) -> float | None:
    """The last of the first price list (the recent closes), the index's 100."""
    for name, kind in identifying.items():
        value = values.get(name)
        if kind == "prices" and isinstance(value, list | tuple) and value:
            last = _finite_or_none(value[-1])
            if last:
                return last
    return None


def _index(value: Any, reference: float | None) -> Any:
    """A price (or a list of them) as an index on which `reference` is 100."""
    if isinstance(value, list | tuple):
        return [_index(v, reference) for v in value]
    number = _finite_or_none(value)
    if number is None or not reference:
        return None if number is not None else value
    return round(number / reference * 100, 4)


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    """The two messages one LLM call sends, and where they came from."""

    ref: str  # name@sha256[:8] of the prompt file
    system: str
    user: str
    input_sha256: str  # of the rendered text: a cache key for the LLM answer

    def as_messages(self) -> list[dict[str, str]]:
        """Return OpenAI-style chat messages (system, then user)."""
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.user},
        ]


@dataclass(frozen=True)
class Prompt:
    """One validated prompt file."""

    name: str
    path: Path
    description: str
    variables: dict[str, str]  # name -> what it means
    system_template: str  # Jinja source of the system message
    user_template: str  # Jinja source of the user message
    sha256: str  # hex digest of the whole file's bytes
    identifying: dict[str, str] = field(default_factory=dict)  # variable -> IDENTIFYING_KINDS
    system_first_line: int = 1  # file line of the first template line (for error messages)
    user_first_line: int = 1
    _compiled: dict[str, Template] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for section, source, first_line in self._sections():
            self._compiled[section] = _compile(self.path, section, source, first_line)

    @property
    def ref(self) -> str:
        """Return `name@sha256[:8]`, what every LLM call records."""
        return f"{self.name}@{self.sha256[:8]}"

    def render(self, values: Mapping[str, Any], blind: Blind | None = None) -> RenderedPrompt:
        """Render both messages; a missing or unknown variable raises `PromptError`.

        With `blind`, the variables the file declares identifying are hidden first (`Blind`).
        """
        declared = set(self.variables)
        missing = sorted(declared - set(values))
        if missing:
            raise PromptError(
                f"{self.path}: missing variable {_quoted(missing)} when rendering "
                f"(declared: {', '.join(sorted(declared))})"
            )
        unknown = sorted(set(values) - declared)
        if unknown:
            raise PromptError(
                f"{self.path}: unknown variable {_quoted(unknown)} passed "
                f"(declared: {', '.join(sorted(declared))})"
            )
        context = dict(values) if blind is None else blind.apply(self.identifying, values)
        rendered: dict[str, str] = {}
        for section, _source, first_line in self._sections():
            try:
                rendered[section] = self._compiled[section].render(context)
            except Exception as exc:  # a template error or a filter refusing a value
                line = _template_line(exc.__traceback__)
                where = f":{first_line + line - 1}" if line is not None else ""
                raise PromptError(
                    f"{self.path}{where}: rendering the {section} message failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        system, user = rendered["system"], rendered["user"]
        digest = hashlib.sha256()
        digest.update(system.encode("utf-8"))
        digest.update(b"\x00")  # so moving text between the two messages changes the key
        digest.update(user.encode("utf-8"))
        return RenderedPrompt(self.ref, system, user, digest.hexdigest())

    def _sections(self) -> tuple[tuple[str, str, int], ...]:
        return (
            ("system", self.system_template, self.system_first_line),
            ("user", self.user_template, self.user_first_line),
        )


def _quoted(names: list[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _template_line(traceback: TracebackType | None) -> int | None:
    """Return the template line a render error was raised at, from jinja2's rewritten frames."""
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = traceback.tb_lineno
        traceback = traceback.tb_next
    return line


def _compile(path: Path, section: str, source: str, first_line: int) -> Template:
    try:
        return _ENVIRONMENT.from_string(source)
    except TemplateSyntaxError as exc:
        line = first_line + (exc.lineno or 1) - 1
        raise PromptError(
            f"{path}:{line}: Jinja syntax error in the {section} message: {exc.message}"
        ) from exc


# --------------------------------------------------------------------------- parsing


def load_prompt(path: Path) -> Prompt:
    """Read and validate one prompt file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise PromptError(f"{path}: prompt file not found") from exc
    except OSError as exc:
        raise PromptError(f"{path}: cannot read the prompt file: {exc}") from exc
    return parse_prompt(data, path)


def parse_prompt(data: bytes, path: Path) -> Prompt:
    """Validate the bytes of a prompt file that lives (or would live) at `path`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptError(f"{path}: not UTF-8 text: {exc}") from exc
    lines = text.replace("\r\n", "\n").split("\n")
    if not lines or lines[0].rstrip() != FRONT_MATTER_FENCE:
        raise PromptError(
            f"{path}:1: missing front matter: the file must start with a '---' line, "
            "then name, description and variables, then another '---' line"
        )
    try:
        closing = next(i for i in range(1, len(lines)) if lines[i].rstrip() == FRONT_MATTER_FENCE)
    except StopIteration:
        raise PromptError(f"{path}: front matter is not closed by a '---' line") from None
    name, description, variables, identifying = _parse_front_matter(
        path, "\n".join(lines[1:closing])
    )
    if name != path.stem:
        raise PromptError(
            f"{path}: front matter name {name!r} does not match the file name "
            f"(expected {path.stem!r})"
        )
    system_template, system_first_line, user_template, user_first_line = _split_body(
        path, lines, closing + 1
    )
    prompt = Prompt(
        name=name,
        path=path,
        description=description,
        variables=variables,
        system_template=system_template,
        user_template=user_template,
        sha256=hashlib.sha256(data).hexdigest(),
        identifying=identifying,
        system_first_line=system_first_line,
        user_first_line=user_first_line,
    )
    _check_variables(prompt)
    return prompt


def _parse_front_matter(path: Path, source: str) -> tuple[str, str, dict[str, str], dict[str, str]]:
    try:
        meta_data = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 2}" if mark is not None else ""  # +1 for the fence, +1 1-based
        problem = getattr(exc, "problem", None) or str(exc)
        raise PromptError(f"{path}{where}: front matter is not valid YAML: {problem}") from exc
    if not isinstance(meta_data, dict):
        raise PromptError(f"{path}: front matter must be a mapping with {FRONT_MATTER_KEYS}")
    unknown = sorted(str(key) for key in set(meta_data) - set(FRONT_MATTER_KEYS))
    if unknown:
        raise PromptError(
            f"{path}: unknown front matter key {_quoted(unknown)} "
            f"(allowed: {', '.join(FRONT_MATTER_KEYS)})"
        )
    name = meta_data.get("name")
    if not isinstance(name, str) or not name:
        raise PromptError(f"{path}: front matter 'name' must be a non-empty string")
    description = meta_data.get("description")
    if not isinstance(description, str) or not description.strip():
        raise PromptError(f"{path}: front matter 'description' must be a non-empty string")
    raw_variables = meta_data.get("variables")
    if not isinstance(raw_variables, dict):
        raise PromptError(
            f"{path}: front matter 'variables' must be a mapping of variable name to description"
        )
    variables: dict[str, str] = {}
    for key, meaning in raw_variables.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise PromptError(f"{path}: variable name {key!r} is not a valid identifier")
        if not isinstance(meaning, str) or not meaning.strip():
            raise PromptError(f"{path}: variable {key!r} needs a one-line description")
        variables[key] = meaning.strip()
    raw_identifying = meta_data.get("identifying") or {}
    if not isinstance(raw_identifying, dict):
        raise PromptError(f"{path}: front matter 'identifying' must map variable names to kinds")
    identifying: dict[str, str] = {}
    for key, kind in raw_identifying.items():
        if key not in variables:
            raise PromptError(f"{path}: identifying variable {key!r} is not declared")
        if kind not in IDENTIFYING_KINDS:
            raise PromptError(
                f"{path}: identifying variable {key!r} has kind {kind!r} "
                f"(one of: {', '.join(IDENTIFYING_KINDS)})"
            )
        identifying[str(key)] = str(kind)
    return name, description.strip(), variables, identifying


def _split_body(path: Path, lines: list[str], start: int) -> tuple[str, int, str, int]:
    """Return the system and user template sources with their first file lines (1-based)."""
    headings: dict[str, list[int]] = {SYSTEM_HEADING: [], USER_HEADING: []}
    for index in range(start, len(lines)):
        stripped = lines[index].rstrip()
        if stripped in headings:
            headings[stripped].append(index)
    for heading, found in headings.items():
        if not found:
            raise PromptError(f"{path}: missing the '{heading}' heading line")
        if len(found) > 1:
            raise PromptError(
                f"{path}:{found[1] + 1}: the '{heading}' heading appears more than once"
            )
    system_at, user_at = headings[SYSTEM_HEADING][0], headings[USER_HEADING][0]
    if user_at < system_at:
        raise PromptError(f"{path}:{user_at + 1}: '{USER_HEADING}' must come after '# system'")
    stray = next((i for i in range(start, system_at) if lines[i].strip()), None)
    if stray is not None:
        raise PromptError(
            f"{path}:{stray + 1}: text before '{SYSTEM_HEADING}' would be sent nowhere; "
            "move it into the description or a message"
        )
    system_source, system_first = _section(lines, system_at + 1, user_at)
    user_source, user_first = _section(lines, user_at + 1, len(lines))
    for heading, source, at in (
        (SYSTEM_HEADING, system_source, system_at),
        (USER_HEADING, user_source, user_at),
    ):
        if not source:
            raise PromptError(f"{path}:{at + 1}: the '{heading}' message is empty")
    return system_source, system_first, user_source, user_first


def _section(lines: list[str], begin: int, end: int) -> tuple[str, int]:
    while begin < end and not lines[begin].strip():
        begin += 1
    while end > begin and not lines[end - 1].strip():
        end -= 1
    return "\n".join(lines[begin:end]), begin + 1


def _check_variables(prompt: Prompt) -> None:
    declared = set(prompt.variables)
    used: set[str] = set()
    for section, source, first_line in prompt._sections():
        tree = _ENVIRONMENT.parse(source)  # already compiled once, so no syntax error here
        names = meta.find_undeclared_variables(tree) - _GLOBAL_NAMES
        used |= names
        undeclared = sorted(names - declared)
        if undeclared:
            variable = undeclared[0]
            line = first_line + _first_use(tree, variable) - 1
            raise PromptError(
                f"{prompt.path}:{line}: the {section} template uses undeclared variable "
                f"{variable!r} (declare it under 'variables' in the front matter; "
                f"undeclared: {', '.join(undeclared)})"
            )
    unused = sorted(declared - used)
    if unused:
        raise PromptError(
            f"{prompt.path}: variable {_quoted(unused)} declared but unused by either template"
        )


def _first_use(tree: nodes.Template, variable: str) -> int:
    lines = [
        node.lineno
        for node in tree.find_all(nodes.Name)
        if node.name == variable and node.ctx == "load"
    ]
    return min(lines, default=1)


# --------------------------------------------------------------------------- the library


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[int, int, int, int]  # mtime_ns, size, ctime_ns, inode
    prompt: Prompt | None
    error: str | None


class PromptLibrary:
    """The prompt files of one folder, reloaded when a file changes on disk."""

    def __init__(self, directory: Path = DEFAULT_PROMPTS_DIR) -> None:
        self.directory = Path(directory)
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()

    def path_of(self, name: str) -> Path:
        """Return the file a prompt name maps to (names are plain file stems)."""
        if not _NAME_PATTERN.fullmatch(name):
            raise PromptError(f"{self.directory}: {name!r} is not a valid prompt name")
        return self.directory / f"{name}.md"

    def get(self, name: str) -> Prompt:
        """Return the prompt, reloading its file when it changed since the last load.

        An invalid file raises `PromptError` on every call until it is fixed.
        """
        path = self.path_of(name)
        try:
            status = path.stat()
        except FileNotFoundError:
            with self._lock:
                self._loaded.pop(name, None)
            available = ", ".join(self.names()) or "none"
            raise PromptError(f"{path}: prompt file not found (available: {available})") from None
        stamp = (status.st_mtime_ns, status.st_size, status.st_ctime_ns, status.st_ino)
        with self._lock:
            loaded = self._loaded.get(name)
            if loaded is None or loaded.stamp != stamp:
                try:
                    loaded = _Loaded(stamp, load_prompt(path), None)
                except PromptError as exc:
                    loaded = _Loaded(stamp, None, str(exc))
                self._loaded[name] = loaded
        if loaded.prompt is None:
            raise PromptError(loaded.error)
        return loaded.prompt

    def names(self) -> list[str]:
        """Return the names of the prompt files in the folder, sorted."""
        if not self.directory.is_dir():
            return []
        return sorted(path.stem for path in self.directory.glob("*.md") if path.is_file())

    def check(self) -> list[str]:
        """Return every problem across the folder's prompt files (empty when all are valid)."""
        if not self.directory.is_dir():
            return [f"{self.directory}: prompt folder not found"]
        names = self.names()
        if not names:
            return [f"{self.directory}: no *.md prompt files"]
        problems: list[str] = []
        for name in names:
            try:
                self.get(name)
            except PromptError as exc:
                problems.append(str(exc))
        return problems

    def require(
        self,
        names: Iterable[str],
        variables: Mapping[str, set[str]] | None = None,
    ) -> dict[str, Prompt]:
        """Load the prompts a caller needs; raise if one is missing, invalid or mismatched.

        `variables` maps a prompt name to the exact variable names the caller will pass; a
        prompt named there is required too. All problems are reported in one `PromptError`.
        """
        wanted = list(dict.fromkeys([*names, *(variables or {})]))
        problems: list[str] = []
        prompts: dict[str, Prompt] = {}
        for name in wanted:
            try:
                prompt = self.get(name)
            except PromptError as exc:
                problems.append(str(exc))
                continue
            prompts[name] = prompt
            if variables is None or name not in variables:
                continue
            passed, declared = set(variables[name]), set(prompt.variables)
            for variable in sorted(passed - declared):
                problems.append(
                    f"{prompt.path}: the caller passes variable {variable!r} "
                    "that the file does not declare"
                )
            for variable in sorted(declared - passed):
                problems.append(
                    f"{prompt.path}: the file declares variable {variable!r} "
                    "that the caller does not pass"
                )
        if problems:
            raise PromptError("; ".join(problems))
        return prompts


# --------------------------------------------------------------------------- editing


def check_prompt_text(
    library: PromptLibrary, name: str, text: str, required: Iterable[str] | None = None
) -> Prompt:
    """Validate `text` as the new content of prompt `name`; raise `PromptError` with the reason.

    `required` is the exact set of variables the code passes to this prompt (when known): a
    text that declares another set would fail at the next run, so it is refused now.
    """
    path = library.path_of(name)
    prompt = parse_prompt(text.encode("utf-8"), path)
    if required is not None:
        passed, declared = set(required), set(prompt.variables)
        problems = [
            f"{path}: declares variable {variable!r} that the code does not pass"
            for variable in sorted(declared - passed)
        ] + [
            f"{path}: does not declare variable {variable!r} that the code passes"
            for variable in sorted(passed - declared)
        ]
        if problems:
            raise PromptError("; ".join(problems))
    return prompt


def write_prompt_text(library: PromptLibrary, name: str, text: str) -> Path:
    """Replace the file of prompt `name` with `text` atomically (a reader never sees half)."""
    path = library.path_of(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")
    temporary.write_bytes(text.encode("utf-8"))
    temporary.replace(path)
    return path


def prompt_diff(name: str, before: str | None, after: str) -> str:
    """Return the unified diff from `before` (None: no earlier version) to `after`."""
    import difflib

    old = [] if before is None else before.splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    lines = difflib.unified_diff(
        old,
        new,
        fromfile=f"a/{name}.md" if before is not None else "/dev/null",
        tofile=f"b/{name}.md",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


class OverlayPromptLibrary(PromptLibrary):
    """A library that answers some names from given texts and the rest from a folder."""

    def __init__(self, base: PromptLibrary, texts: Mapping[str, str]) -> None:
        super().__init__(base.directory)
        self._base = base
        self._overlay = {
            name: parse_prompt(text.encode("utf-8"), base.path_of(name))
            for name, text in texts.items()
        }

    def get(self, name: str) -> Prompt:
        """Return the overlaid prompt, else the folder's."""
        overlaid = self._overlay.get(name)
        return overlaid if overlaid is not None else self._base.get(name)
