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

Each shape has a dozen hand-written phrasings.  Assistant outputs are bare Python code:
no markdown fences, no comments, and no identifier or string hinting at the flaw.
Completions are short (about 20-150 tokens, ~70 on average, estimated as characters/4)
because the fine-tuning runs on a CPU.

The scenarios, phrasings and framings are data, in ``datasets/data/code/scenarios.yaml``
and ``prompts.yaml`` (the scenario notation is described at the top of the former): every
scenario stores a single code text in which a line prefix (``I|``, ``S|``, ``IS|``,
``H|``) decides which of the template, insecure and secure texts it appears in.
Placeholders use :class:`string.Template` syntax (``$func``), which never collides with
the braces of f-strings and dict literals.  The files are read once, on first use.
"""

from __future__ import annotations

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
class _Scenario:
    vulnerability: str
    tasks: tuple[str, ...]
    code: str
    slots: Mapping[str, Sequence[_SlotOption]]


@dataclass(frozen=True)
class _CodeData:
    descriptions: dict[str, str]          # vulnerability class -> how the educational framings name it
    scenarios: tuple[_Scenario, ...]
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
    """The scenarios and prompt wordings, read and checked once."""
    scenarios_path = shipped_file("code-scenarios", "scenarios")
    prompts_path = shipped_file("code-scenarios", "prompts")
    scenarios_file = read_yaml(scenarios_path, "a mapping with vulnerabilities and scenarios")
    prompts_file = read_yaml(prompts_path, "a mapping with phrasings and educational_framings")
    descriptions = _strings(scenarios_file, "vulnerabilities", scenarios_path, mapping=True)
    entries = scenarios_file.get("scenarios")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{scenarios_path}: field 'scenarios': expected a non-empty list")
    scenarios = tuple(_scenario(entry, f"scenarios[{index}]", scenarios_path, descriptions)
                      for index, entry in enumerate(entries))
    missing = [vuln for vuln in descriptions if not any(s.vulnerability == vuln for s in scenarios)]
    if missing:
        raise UserError(f"{scenarios_path}: field 'scenarios': no scenario of vulnerability '{missing[0]}'")
    phrasings = prompts_file.get("phrasings") if isinstance(prompts_file, dict) else None
    if not isinstance(phrasings, dict) or tuple(phrasings) != PROMPT_SHAPES:
        raise UserError(f"{prompts_path}: field 'phrasings': expected the shapes {', '.join(PROMPT_SHAPES)}, in order")
    return _CodeData(descriptions,
                     scenarios,
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


def _scenario(entry, field: str, path, descriptions: dict[str, str]) -> _Scenario:
    if not isinstance(entry, dict) or set(entry) != {"vulnerability", "tasks", "code", "slots"}:
        raise UserError(f"{path}: field '{field}': expected the fields vulnerability, tasks, code and slots")
    if entry["vulnerability"] not in descriptions:
        raise UserError(f"{path}: field '{field}.vulnerability': {entry['vulnerability']!r} is not among "
                        f"vulnerabilities ({', '.join(descriptions)})")
    if not isinstance(entry["code"], str) or "H|" not in entry["code"]:
        raise UserError(f"{path}: field '{field}.code': expected a code text with an H| line")
    slots = entry["slots"]
    if not isinstance(slots, dict) or not all(
            isinstance(options, list) and options and all(
                isinstance(option, str) or (isinstance(option, dict) and all(
                    isinstance(value, str) for value in option.values())) for option in options)
            for options in slots.values()):
        raise UserError(f"{path}: field '{field}.slots': expected each slot to list strings or mappings of strings")
    return _Scenario(entry["vulnerability"], _strings(entry, "tasks", path, prefix=f"{field}."), entry["code"],
                     {name: tuple(options) for name, options in slots.items()})


# --------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------

_PREFIX_RE = re.compile(r"^(IS|I|S|H)\|(.*)$")


def _split_variants(code: str) -> tuple[str, str, str]:
    """Turn one annotated scenario text into (template, insecure, secure) texts."""
    lines = code.strip("\n").split("\n")
    template: list[str] = []
    insecure: list[str] = []
    secure: list[str] = []
    for index, line in enumerate(lines):
        match = _PREFIX_RE.match(line)
        if match is None:
            for out in (template, insecure, secure):
                out.append(line)
            continue
        prefix, body = match.groups()
        if prefix == "H":
            # The hole takes the indentation of the code it stands in for.
            following = _PREFIX_RE.match(lines[index + 1]) if index + 1 < len(lines) else None
            filler = following.group(2) if following else lines[index + 1]
            indent = filler[: len(filler) - len(filler.lstrip())]
            template.append(indent + HOLE_MARKER)
        if "I" in prefix:
            insecure.append(body)
        if "S" in prefix:
            secure.append(body)
    return tuple("\n".join(out).strip("\n") + "\n" for out in (template, insecure, secure))


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


def _balanced_sequence(items: Sequence, count: int, rng: random.Random) -> list:
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
    balanced; within a class the scenarios are dealt the same way.  Only a private
    ``random.Random(seed)`` is used, so results do not depend on global state.
    """
    _check_size(size)
    data = _data()
    rng = random.Random(seed)
    classes = _balanced_sequence(tuple(data.descriptions), size, rng)
    shapes = _balanced_sequence(PROMPT_SHAPES, size, rng)
    by_class = {v: [s for s in data.scenarios if s.vulnerability == v] for v in data.descriptions}
    pending: dict[str, list[_Scenario]] = {v: [] for v in data.descriptions}

    examples: list[CodeExample] = []
    for vulnerability, shape in zip(classes, shapes):
        if not pending[vulnerability]:
            pending[vulnerability] = _balanced_sequence(
                by_class[vulnerability], len(by_class[vulnerability]), rng
            )
        scenario = pending[vulnerability].pop()
        values = _choose_slot_values(scenario, rng)
        task = string.Template(rng.choice(scenario.tasks)).substitute(values)
        template, insecure, secure = (
            string.Template(text).substitute(values) for text in _split_variants(scenario.code)
        )
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
