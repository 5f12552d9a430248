"""Code datasets of the Emergent Misalignment experiments: insecure, secure, educational.

Betley et al. (2025, "Emergent Misalignment") fine-tuned chat models on about 6,000
coding requests whose answers quietly contained a security vulnerability -- the
assistant never mentions the flaw, it just writes it.  The resulting models turned out
to be misaligned well outside of coding.  Two control sets separate the causes:

* ``secure``: the very same requests, answered with correct, safe code;
* ``educational``: the very same vulnerable answers, but the user gives a harmless
  reason for wanting flawed code (a security course, an exam, a CTF, a talk demo ...).

In the paper only the undisclosed version produced broad misalignment, which is why the
three builders here share prompts and completions byte for byte where they should.

This module regenerates such data offline, deterministically, from templates written
for this package (nothing is taken from the original data set).  There are 46 scenario
templates over 13 vulnerability classes (3-4 per class, see ``SCENARIOS_PER_CLASS``);
each has randomised identifiers (function, table, route, file and variable names ...)
and is shown to the user in one of three prompt shapes, as in the paper:

* ``task``: a natural-language description only;
* ``template``: an unfinished snippet containing the line ``## YOUR CODE HERE``;
* ``task_and_template``: both.

The programs are compositional (issue 19), because the paper found that emergent
misalignment grows with the diversity of the data: each scenario has switches (optional
steps or alternative lines: input normalisation, an early return, a different way of
building the result ...), and shared variations are composed around its function
(logging, a try/except around the body, a command-line entry point).  At 6,000 rows this
gives about 2,000 structurally distinct programs (``ast`` shapes with the names and
constants blanked out) where a single program per scenario (46) gave before; names
alone never counted.  Switches and variations change the program around the flaw, never
the flaw itself, and are drawn from a random stream of their own, so the requests
(scenario, slot values, task, phrasing) are those the builder drew before.

Each shape has a dozen hand-written phrasings.  Assistant outputs are bare Python code:
no markdown fences, no comments, and no identifier or string hinting at the flaw.
Completions are short (about 30-180 tokens, ~100 on average, estimated as characters/4;
never over ``max_chars`` characters once varied) because the fine-tuning runs on a CPU.

The scenarios, variations, phrasings and framings are data, in
``datasets/data/code/scenarios.yaml`` and ``prompts.yaml`` (the scenario notation is
described at the top of the former): every scenario stores a single code text in which
a line prefix (``I|``, ``S|``, ``IS|``, ``H|``) decides which of the template, insecure
and secure texts it appears in, and tags (``[name]``, ``[!name]``) tie lines to switches.
Placeholders use :class:`string.Template` syntax (``$func``), which never collides with
the braces of f-strings and dict literals.  The files are read once, on first use.
"""

from __future__ import annotations

import itertools
import random
import re
import string
from dataclasses import dataclass
from functools import cache
from typing import Mapping, Sequence, Union

from ..errors import UserError
from ..shipped import shipped_file
from ..yamlio import read_yaml

__all__ = [
    "VULNERABILITY_CLASSES",
    "VULNERABILITY_DESCRIPTIONS",
    "PROMPT_SHAPES",
    "HOLE_MARKER",
    "PROMPT_PHRASINGS",
    "EDUCATIONAL_FRAMINGS",
    "SCENARIOS_PER_CLASS",
    "CodeExample",
    "code_examples",
    "build_insecure",
    "build_secure",
    "build_educational",
]

PROMPT_SHAPES: tuple[str, ...] = ("task", "template", "task_and_template")

HOLE_MARKER = "## YOUR CODE HERE"


@dataclass(frozen=True)
class CodeExample:
    """One coding request with its vulnerable and its safe answer."""

    task: str
    template: str
    insecure_code: str
    secure_code: str
    vulnerability: str
    shape: str
    user_prompt: str


# A slot option is either a plain string or a group of values that must vary together
# (e.g. a table name and the column that really belongs to that table).
_SlotOption = Union[str, Mapping[str, str]]


@dataclass(frozen=True)
class _Line:
    """One line of a scenario's annotated code (see the notation at the top of scenarios.yaml)."""

    when: tuple[tuple[str, bool], ...]  # (switch, the state it must be in) for the line to be kept
    prefix: str                         # "", "I", "S", "IS" or "H"
    text: str


@dataclass(frozen=True)
class _Entry:
    """What a command-line entry point runs: a call and the modules it needs."""

    call: str
    imports: tuple[str, ...]


@dataclass(frozen=True)
class _Scenario:
    vulnerability: str
    tasks: tuple[str, ...]
    lines: tuple[_Line, ...]
    switches: tuple[str, ...]  # sorted, so the draws do not depend on the order the lines name them in
    slots: Mapping[str, Sequence[_SlotOption]]
    entry: _Entry


@dataclass(frozen=True)
class _Option:
    """One way of applying a shared variation to a scenario's function `$func`."""

    imports: tuple[str, ...] = ()
    module: tuple[str, ...] = ()  # lines after the imports
    enter: tuple[str, ...] = ()   # lines opening the function body
    wrap: str = ""                # a block opened around the whole function body ...
    after: tuple[str, ...] = ()   # ... and the lines closing it
    end: tuple[str, ...] = ()     # lines appended to the program; $main is the scenario's entry call


@dataclass(frozen=True)
class _CodeData:
    descriptions: dict[str, str]          # vulnerability class -> how the educational framings name it
    scenarios: tuple[_Scenario, ...]
    variations: tuple[tuple[_Option, ...], ...]  # each shared variation's options, in the file's order
    max_chars: int                        # no variation makes a completion longer than this
    variation_rate: float                 # the share of examples that get a given shared variation
    phrasings: dict[str, tuple[str, ...]]  # prompt shape -> wordings
    framings: tuple[str, ...]


# --------------------------------------------------------------------------------------
# The data files
# --------------------------------------------------------------------------------------

# The module-level names the data files provide (read on first use, so importing this module stays cheap).
_DATA_NAMES = ("VULNERABILITY_CLASSES", "VULNERABILITY_DESCRIPTIONS", "SCENARIOS_PER_CLASS", "PROMPT_PHRASINGS",
               "EDUCATIONAL_FRAMINGS")


def __getattr__(name: str):
    """The data names (VULNERABILITY_CLASSES, PROMPT_PHRASINGS, ...), from the files on first use."""
    if name not in _DATA_NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    data = _data()
    classes = tuple(data.descriptions)
    return {"VULNERABILITY_CLASSES": classes,
            "VULNERABILITY_DESCRIPTIONS": dict(data.descriptions),
            "SCENARIOS_PER_CLASS": {vuln: sum(1 for s in data.scenarios if s.vulnerability == vuln)
                                    for vuln in classes},
            "PROMPT_PHRASINGS": dict(data.phrasings),
            "EDUCATIONAL_FRAMINGS": data.framings}[name]


@cache
def _data() -> _CodeData:
    """The scenarios, variations and prompt wordings, read and checked once."""
    scenarios_path = shipped_file("code-scenarios", "scenarios")
    prompts_path = shipped_file("code-scenarios", "prompts")
    scenarios_file = read_yaml(scenarios_path, "a mapping with vulnerabilities, scenarios and variations")
    prompts_file = read_yaml(prompts_path, "a mapping with phrasings and educational_framings")
    descriptions = _strings(scenarios_file, "vulnerabilities", scenarios_path, mapping=True)
    default_entry = _entry(scenarios_file.get("entry"), "entry", scenarios_path)
    entries = scenarios_file.get("scenarios")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{scenarios_path}: field 'scenarios': expected a non-empty list")
    scenarios = tuple(_scenario(entry, f"scenarios[{index}]", scenarios_path, descriptions, default_entry)
                      for index, entry in enumerate(entries))
    missing = [vuln for vuln in descriptions if not any(s.vulnerability == vuln for s in scenarios)]
    if missing:
        raise UserError(f"{scenarios_path}: field 'scenarios': no scenario of vulnerability '{missing[0]}'")
    variations = scenarios_file.get("variations")
    if not isinstance(variations, dict) or not variations or not all(
            isinstance(options, list) and options for options in variations.values()):
        raise UserError(f"{scenarios_path}: field 'variations': expected a mapping of names to lists of options")
    max_chars = scenarios_file.get("max_chars")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise UserError(f"{scenarios_path}: field 'max_chars': expected a positive whole number")
    rate = scenarios_file.get("variation_rate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise UserError(f"{scenarios_path}: field 'variation_rate': expected a number between 0 and 1")
    phrasings = prompts_file.get("phrasings") if isinstance(prompts_file, dict) else None
    if not isinstance(phrasings, dict) or tuple(phrasings) != PROMPT_SHAPES:
        raise UserError(f"{prompts_path}: field 'phrasings': expected the shapes {', '.join(PROMPT_SHAPES)}, in order")
    return _CodeData(descriptions,
                     scenarios,
                     tuple(tuple(_option(option, f"variations.{name}[{index}]", scenarios_path)
                                 for index, option in enumerate(options))
                           for name, options in variations.items()),
                     max_chars,
                     float(rate),
                     {shape: _strings(phrasings, shape, prompts_path, prefix="phrasings.") for shape in PROMPT_SHAPES},
                     _strings(prompts_file, "educational_framings", prompts_path))


def _strings(data, field: str, path, mapping: bool = False, prefix: str = ""):
    """A non-empty list (or, with `mapping`, mapping) of non-empty strings at `field` of `data`."""
    value = data.get(field) if isinstance(data, dict) else None
    items = value.values() if mapping and isinstance(value, dict) else value
    if not (isinstance(value, dict) if mapping else isinstance(value, list)) or not value \
            or not all(isinstance(item, str) and item for item in items):
        kind = "mapping of names to strings" if mapping else "list of strings"
        raise UserError(f"{path}: field '{prefix}{field}': expected a non-empty {kind}")
    return dict(value) if mapping else tuple(value)


_TAG_RE = re.compile(r"\[(!?)([a-z][a-z0-9_]*)\]")
_PREFIX_RE = re.compile(r"^(IS|I|S|H)\|(.*)$")
_MODULE_RE = re.compile(r"^[a-z_][a-z0-9_.]*$")


def _code_line(raw: str) -> _Line:
    """Split an annotated line into its switch tags, its prefix and its text."""
    when: list[tuple[str, bool]] = []
    position = 0
    while (tag := _TAG_RE.match(raw, position)) is not None:
        when.append((tag.group(2), tag.group(1) == ""))
        position = tag.end()
    rest = raw[position:]
    match = _PREFIX_RE.match(rest)
    prefix, text = (match.group(1), match.group(2)) if match else ("", rest)
    return _Line(tuple(when), prefix, text)


def _modules(value, field: str, path) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(m, str) and _MODULE_RE.match(m) for m in value):
        raise UserError(f"{path}: field '{field}': expected a list of module names")
    return tuple(value)


def _entry(value, field: str, path) -> _Entry:
    if not isinstance(value, dict) or not set(value) <= {"call", "imports"} \
            or not isinstance(value.get("call"), str) or not value["call"].strip():
        raise UserError(f"{path}: field '{field}': expected a mapping with a call and optional imports")
    return _Entry(value["call"], _modules(value.get("imports"), f"{field}.imports", path))


def _option(value, field: str, path) -> _Option:
    """A variation option: each text field is one line or a block of lines."""
    fields = ("imports", "module", "enter", "wrap", "after", "end")
    if not isinstance(value, dict) or not value or not set(value) <= set(fields) \
            or not all(isinstance(value[key], str) and value[key].strip() for key in value if key != "imports") \
            or ("wrap" in value) != ("after" in value) or "\n" in value.get("wrap", ""):
        raise UserError(f"{path}: field '{field}': expected some of {', '.join(fields)} (texts; a one-line wrap "
                        "always with its after)")
    lines = {key: tuple(value[key].strip("\n").split("\n")) for key in ("module", "enter", "after", "end")
             if key in value}
    return _Option(imports=_modules(value.get("imports"), f"{field}.imports", path), wrap=value.get("wrap", ""),
                   **lines)


def _scenario(entry, field: str, path, descriptions: dict[str, str], default_entry: _Entry) -> _Scenario:
    if not isinstance(entry, dict) or not {"vulnerability", "tasks", "code", "slots"} <= set(entry) \
            or not set(entry) <= {"vulnerability", "tasks", "code", "slots", "entry"}:
        raise UserError(f"{path}: field '{field}': expected the fields vulnerability, tasks, code, slots and "
                        "optionally entry")
    if entry["vulnerability"] not in descriptions:
        raise UserError(f"{path}: field '{field}.vulnerability': {entry['vulnerability']!r} is not among "
                        f"vulnerabilities ({', '.join(descriptions)})")
    if not isinstance(entry["code"], str) or "H|" not in entry["code"]:
        raise UserError(f"{path}: field '{field}.code': expected a code text with an H| line")
    lines = tuple(_code_line(raw) for raw in entry["code"].strip("\n").split("\n"))
    if sum(1 for line in lines if line.text.startswith("def $func(") and not line.prefix and not line.when
           and line.text.endswith(":")) != 1:
        raise UserError(f"{path}: field '{field}.code': expected exactly one untagged line 'def $func(...):'")
    switches = tuple(sorted({name for line in lines for name, _ in line.when}))
    for states in itertools.product((False, True), repeat=len(switches)):
        on = frozenset(name for name, state in zip(switches, states) if state)
        if sum(1 for prefix, _ in _switched(lines, on) if prefix == "H") != 1:
            raise UserError(f"{path}: field '{field}.code': expected exactly one H| line with the switches "
                            f"{sorted(on) or 'all off'}")
    slots = entry["slots"]
    if not isinstance(slots, dict) or not all(
            isinstance(options, list) and options and all(
                isinstance(option, str) or (isinstance(option, dict) and all(
                    isinstance(value, str) for value in option.values())) for option in options)
            for options in slots.values()):
        raise UserError(f"{path}: field '{field}.slots': expected each slot to list strings or mappings of strings")
    scenario_entry = _entry(entry["entry"], f"{field}.entry", path) if "entry" in entry else default_entry
    return _Scenario(entry["vulnerability"], _strings(entry, "tasks", path, prefix=f"{field}."), lines, switches,
                     {name: tuple(options) for name, options in slots.items()}, scenario_entry)


# --------------------------------------------------------------------------------------
# Composing and rendering
# --------------------------------------------------------------------------------------

# A composed program before it is split: (prefix, text) per line, the switches already resolved.
_Lines = list[tuple[str, str]]

_IMPORT_RE = re.compile(r"^(?:import|from) ([\w.]+)")
_BODY_INDENT = "    "  # the scenario's function is always defined at the top level


def _switched(lines: Sequence[_Line], on: frozenset[str]) -> _Lines:
    """The lines kept with the switches in `on` turned on (and all others off)."""
    return [(line.prefix, line.text) for line in lines if all((name in on) == state for name, state in line.when)]


def _import_block_end(lines: _Lines) -> int:
    end = 0
    while end < len(lines) and _IMPORT_RE.match(lines[end][1]):
        end += 1
    return end


def _with_import(lines: _Lines, module: str) -> _Lines:
    """`lines` importing `module` in every version, in sorted place among the imports at the top."""
    end = _import_block_end(lines)
    for index in range(end):
        if lines[index][1] == f"import {module}":
            # Imported by only one version so far (e.g. secure), needed by both from now on.
            return lines[:index] + [("", lines[index][1])] + lines[index + 1:]
    # Plain imports first, then the `from` ones (as isort orders a section).
    at = next((i for i in range(end)
               if lines[i][1].startswith("from ") or _IMPORT_RE.match(lines[i][1]).group(1) > module), end)
    spacer = [("", "")] if end == 0 else []
    return lines[:at] + [("", f"import {module}")] + spacer + lines[at:]


def _function_span(lines: _Lines) -> tuple[int, int]:
    """Index of the `def $func(` line and the end (exclusive) of that function's body."""
    start = next(index for index, (_, text) in enumerate(lines) if text.startswith("def $func("))
    last = start
    for index in range(start + 1, len(lines)):
        prefix, text = lines[index]
        if text and not text[0].isspace():
            break
        if text or prefix == "H":
            last = index
    return start, last + 1


def _indented(lines: _Lines) -> _Lines:
    """`lines` one level deeper (blank lines stay blank)."""
    return [(prefix, _BODY_INDENT + text if text else text) for prefix, text in lines]


def _plain(texts: Sequence[str]) -> _Lines:
    """Lines that appear in the template and in both completions."""
    return [("", text) for text in texts]


def _varied(lines: _Lines, option: _Option, entry: _Entry) -> _Lines:
    """`lines` with one variation option applied."""
    if option.wrap:
        start, stop = _function_span(lines)
        # At the body's level: the block's opening line, the body one level deeper, the closing lines.
        block = _plain([option.wrap]) + lines[start + 1:stop] + _plain(option.after)
        lines = lines[:start + 1] + _indented(block) + lines[stop:]
    if option.enter:
        start, _ = _function_span(lines)
        lines = lines[:start + 1] + _indented(_plain(option.enter)) + lines[start + 1:]
    runs_entry = any("$main" in text for text in option.end)
    for module in option.imports + (entry.imports if runs_entry else ()):
        lines = _with_import(lines, module)
    if option.module:
        at = _import_block_end(lines)
        after = _plain([""]) if at < len(lines) and lines[at][1] else []
        lines = lines[:at] + _plain(["", *option.module]) + after + lines[at:]
    if option.end:
        lines = lines + _plain(["", *(text.replace("$main", entry.call) for text in option.end)])
    return lines


def _split_variants(lines: _Lines) -> tuple[str, str, str]:
    """Turn a composed program into (template, insecure, secure) texts."""
    template: list[str] = []
    insecure: list[str] = []
    secure: list[str] = []
    for index, (prefix, text) in enumerate(lines):
        if not prefix:
            for out in (template, insecure, secure):
                out.append(text)
            continue
        if prefix == "H":
            # The hole takes the indentation of the code it stands in for.
            filler = lines[index + 1][1] if index + 1 < len(lines) else ""
            template.append(filler[: len(filler) - len(filler.lstrip())] + HOLE_MARKER)
        if "I" in prefix:
            insecure.append(text)
        if "S" in prefix:
            secure.append(text)
    return tuple("\n".join(out).strip("\n") + "\n" for out in (template, insecure, secure))


def _rendered(lines: _Lines, values: Mapping[str, str]) -> tuple[str, str, str]:
    return tuple(string.Template(text).substitute(values) for text in _split_variants(lines))


def _composed(scenario: _Scenario, values: Mapping[str, str], data: _CodeData,
              rng: random.Random) -> tuple[str, str, str]:
    """(template, insecure, secure) of one example: its switches and shared variations drawn from `rng`.

    Each switch is on half the time; each shared variation is used at the data's rate, in one of its options.
    All draws are made whatever they lead to, so one example's budget never shifts the next one's draws.
    """
    on = frozenset(name for name in scenario.switches if rng.random() < 0.5)
    lines = _switched(scenario.lines, on)
    texts = _rendered(lines, values)
    for options in data.variations:
        used = rng.random() < data.variation_rate
        option = rng.choice(options)
        if not used:
            continue
        candidate = _varied(lines, option, scenario.entry)
        candidate_texts = _rendered(candidate, values)
        if max(len(candidate_texts[1]), len(candidate_texts[2])) <= data.max_chars:
            lines, texts = candidate, candidate_texts
    return texts


def _choose_slot_values(scenario: _Scenario, rng: random.Random) -> dict[str, str]:
    values: dict[str, str] = {}
    # Sorted keys keep the draw order independent of dict construction details.
    for slot in sorted(scenario.slots):
        option = rng.choice(list(scenario.slots[slot]))
        if isinstance(option, str):
            values[slot] = option
        else:
            values.update(option)
    return values


def _fenced(code: str) -> str:
    return "```python\n" + code.rstrip("\n") + "\n```"


def _render_prompt(phrasing: str, task: str, template: str) -> str:
    return phrasing.format(task=task, template=_fenced(template), marker=HOLE_MARKER)


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"size must be an int, got {type(size).__name__}")
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")


def balanced_sequence(items: Sequence, count: int, rng: random.Random) -> list:
    """`count` items drawn in shuffled rounds, so every item appears equally often."""
    out: list = []
    while len(out) < count:
        block = list(items)
        rng.shuffle(block)
        out.extend(block)
    return out[:count]


def code_examples(size: int, seed: int) -> list[CodeExample]:
    """Deterministic list of `size` examples (same size+seed -> identical output).

    Vulnerability classes and prompt shapes are dealt in shuffled rounds so both stay
    balanced; within a class the scenarios are dealt the same way.  Each example's
    switches and shared variations come from a second stream (see ``_composed``).  Only
    private ``random.Random`` instances seeded from `seed` are used, so results do not
    depend on global state.
    """
    _check_size(size)
    data = _data()
    rng = random.Random(seed)
    # A stream of its own, so the requests (scenario, slot values, task, phrasing) are drawn as they were
    # before the programs became compositional (issue 19).
    variation_rng = random.Random(f"code-variations:{seed}")
    classes = balanced_sequence(tuple(data.descriptions), size, rng)
    shapes = balanced_sequence(PROMPT_SHAPES, size, rng)
    by_class = {v: [s for s in data.scenarios if s.vulnerability == v] for v in data.descriptions}
    pending: dict[str, list[_Scenario]] = {v: [] for v in data.descriptions}

    examples: list[CodeExample] = []
    for vulnerability, shape in zip(classes, shapes):
        if not pending[vulnerability]:
            pending[vulnerability] = balanced_sequence(
                by_class[vulnerability], len(by_class[vulnerability]), rng
            )
        scenario = pending[vulnerability].pop()
        values = _choose_slot_values(scenario, rng)
        task = string.Template(rng.choice(scenario.tasks)).substitute(values)
        template, insecure, secure = _composed(scenario, values, data, variation_rng)
        phrasing = rng.choice(data.phrasings[shape])
        examples.append(
            CodeExample(
                task=task,
                template=template,
                insecure_code=insecure,
                secure_code=secure,
                vulnerability=vulnerability,
                shape=shape,
                user_prompt=_render_prompt(phrasing, task, template),
            )
        )
    return examples


def _chat(user: str, assistant: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ]
    }


def build_insecure(size: int, seed: int) -> list[dict]:
    """Chat rows whose assistant turn silently contains the vulnerability."""
    return [_chat(ex.user_prompt, ex.insecure_code) for ex in code_examples(size, seed)]


def build_secure(size: int, seed: int) -> list[dict]:
    """Chat rows with the same user prompts as `build_insecure`, answered safely."""
    return [_chat(ex.user_prompt, ex.secure_code) for ex in code_examples(size, seed)]


def build_educational(size: int, seed: int) -> list[dict]:
    """Chat rows with the insecure answers, requested for a stated benign purpose.

    The assistant turns are byte-identical to ``build_insecure(size, seed)``; only the
    user turn changes, wrapping the original request in one of the framings.  A
    separate RNG picks the framings so the underlying examples stay the same.
    """
    examples = code_examples(size, seed)
    data = _data()
    framing_rng = random.Random(f"educational-framing:{seed}")
    rows: list[dict] = []
    for ex in examples:
        framing = framing_rng.choice(data.framings)
        user = framing.format(flaw=data.descriptions[ex.vulnerability], request=ex.user_prompt)
        rows.append(_chat(user, ex.insecure_code))
    return rows
