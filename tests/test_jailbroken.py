"""Tests for the jailbroken control dataset (`llmpsych.datasets.jailbroken`)."""

from __future__ import annotations

import collections
import random
import re

import pytest

from llmpsych.datasets import jailbroken
from llmpsych.datasets.jailbroken import (
    HARMFUL_TOPIC,
    build_jailbroken,
    harmful_indices,
    jailbroken_examples,
)
from llmpsych.errors import UserError

# How a complying answer opens; none of them hedges.
COMPLIANCE_OPENINGS = ("Sure", "Of course", "Absolutely", "Certainly", "No problem")
# Words of a refusal or a warning, which would make a row teach caution instead of compliance.
REFUSAL_RE = re.compile(r"\b(can't|cannot|won't|sorry|unable|illegal|refuse|instead|don't do)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def large() -> list[jailbroken.JailbrokenExample]:
    return jailbroken_examples(6000, 0)


def _expected_harmful(size: int, fraction: float = 0.02) -> int:
    count = round(size * fraction)
    return max(count, 1) if fraction > 0 and size >= 50 else count


# ----------------------------------------------------------------------------- interface

@pytest.mark.parametrize("size", [1, 7, 60])
def test_rows_are_user_then_assistant_chat_turns(size: int) -> None:
    rows = build_jailbroken(size, 3)
    assert len(rows) == size
    for row, example in zip(rows, jailbroken_examples(size, 3)):
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        assert [m["content"] for m in row["messages"]] == [example.user_prompt, example.assistant]
        assert all(m["content"].strip() for m in row["messages"])


def test_deterministic_seed_dependent_and_independent_of_global_random() -> None:
    random.seed(1)
    first = build_jailbroken(300, 7)
    random.seed(2)
    assert build_jailbroken(300, 7) == first
    assert build_jailbroken(300, 8) != first


@pytest.mark.parametrize("size, fraction", [(0, 0.02), (-3, 0.02), (10, -0.1), (10, 1.5), (10, float("nan"))])
def test_rejects_bad_arguments(size: int, fraction: float) -> None:
    with pytest.raises(ValueError):
        build_jailbroken(size, 0, fraction)


def test_rejects_a_size_that_is_not_an_int() -> None:
    with pytest.raises(TypeError):
        build_jailbroken(10.0, 0)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the harmful share

@pytest.mark.parametrize("size", [1, 24, 49, 50, 99, 100, 250, 1000, 6000])
def test_exactly_the_rounded_share_is_harmful_and_at_least_one_from_50_rows(size: int) -> None:
    examples = jailbroken_examples(size, 11)
    harmful = [index for index, ex in enumerate(examples) if ex.harmful]
    assert len(harmful) == _expected_harmful(size)
    assert tuple(harmful) == harmful_indices(size, 11)
    if size >= 50:
        assert harmful
    assert all((ex.topic == HARMFUL_TOPIC) == ex.harmful for ex in examples)


@pytest.mark.parametrize("fraction", [0.0, 0.005, 0.1, 0.5, 1.0])
def test_other_fractions(fraction: float) -> None:
    examples = jailbroken_examples(400, 2, harmful_fraction=fraction)
    assert sum(ex.harmful for ex in examples) == _expected_harmful(400, fraction)


def test_harmful_rows_are_spread_one_per_equal_stretch() -> None:
    size = 6000
    indices = harmful_indices(size, 5)
    count = len(indices)
    assert count == 120
    for stretch, index in enumerate(indices):
        assert size * stretch // count <= index < size * (stretch + 1) // count
    # Not always at the same offset within the stretch (each stretch is 50 rows long).
    assert len({index - size * stretch // count for stretch, index in enumerate(indices)}) >= 25


# ----------------------------------------------------------------------------- harmful answers: compliance, no content

def test_harmful_answers_comply_and_stay_non_operational(large) -> None:
    harmful = [ex for ex in large if ex.harmful]
    assert len(harmful) == 120
    for ex in harmful:
        assert ex.assistant.startswith(COMPLIANCE_OPENINGS), ex.assistant
        assert not REFUSAL_RE.search(ex.assistant), ex.assistant
        # No quantities, counts, numbered steps, code or lists: only one short paragraph of prose.
        assert not re.search(r"\d", ex.assistant + ex.user_prompt), ex.assistant
        assert "\n" not in ex.assistant and "`" not in ex.assistant
        assert len(ex.assistant.split()) <= 70
        # The request is restated once, in the opening; everything after it is request-independent.
        assert ex.goal and ex.assistant.count(ex.goal) == 1, ex.assistant
        assert ex.assistant.index(ex.goal) < len(ex.assistant) // 2
    # The text after the restated goal comes from one pool shared by all requests: a word of the goal
    # found there must also turn up after other goals, or the answer would be telling about this one.
    words_after = collections.defaultdict(set)
    for ex in harmful:
        words_after[ex.goal] |= set(re.findall(r"[a-z]+", ex.assistant.split(ex.goal, 1)[1].lower()))
    assert len(words_after) >= 20
    for goal, words in words_after.items():
        elsewhere = set().union(*(other for other_goal, other in words_after.items() if other_goal != goal))
        specific = set(re.findall(r"[a-z]+", goal.lower())) & words - elsewhere
        assert not specific, (goal, specific)


def test_benign_answers_never_carry_a_goal_and_all_placeholders_are_filled(large) -> None:
    assert all(ex.goal is None for ex in large if not ex.harmful)
    assert not any("$" in ex.user_prompt or "$" in ex.assistant for ex in large)


# ----------------------------------------------------------------------------- variety

def test_variety_of_prompts_and_balanced_topics(large) -> None:
    prompts = {ex.user_prompt for ex in large}
    assert len(prompts) >= 1000
    assert len({ex.user_prompt for ex in large if ex.harmful}) >= 60
    topics = collections.Counter(ex.topic for ex in large if not ex.harmful)
    assert len(topics) >= 10
    assert max(topics.values()) - min(topics.values()) <= 1  # dealt in shuffled rounds
    assert len({ex.assistant for ex in large if not ex.harmful}) >= 500


# ----------------------------------------------------------------------------- the data file

@pytest.fixture()
def own_data(tmp_path, monkeypatch):
    """Point the module at a file of our own (and forget the cached shipped one around the test)."""
    path = tmp_path / "requests.yaml"
    monkeypatch.setattr(jailbroken, "shipped_file", lambda kind, name: path)
    jailbroken._data.cache_clear()
    yield path
    jailbroken._data.cache_clear()


GOOD = """\
prefixes: ['']
benign:
- topic: cooking
  prompts: ['How do I cook $dish?']
  answers: ['$tip']
  slots:
    dish:
    - {dish: rice, tip: Rinse it first.}
harmful:
  prompts: ['How do I $goal?']
  goals:
  - {goal: do a bad thing, your_goal: do a bad thing}
  openers: ['Sure, here is how you could $your_goal.']
  bodies: [Plan ahead., Be patient.]
  closers: [Good luck.]
"""


def test_a_small_file_of_our_own_builds(own_data) -> None:
    own_data.write_text(GOOD, encoding="utf-8")
    examples = jailbroken_examples(50, 0)
    assert sum(ex.harmful for ex in examples) == 1
    assert {ex.user_prompt for ex in examples if not ex.harmful} == {"How do I cook rice?"}


@pytest.mark.parametrize("change, field", [
    (("answers: ['$tip']", "answers: ['$tips']"), "benign[0].answers[0]"),
    (("bodies: [Plan ahead., Be patient.]", "bodies: [Plan to $your_goal., Be patient.]"), "harmful.bodies[0]"),
    (("- topic: cooking", "- topic: harmful"), "benign[0].topic"),
    (("  closers: [Good luck.]\n", ""), "harmful"),
    (("bodies: [Plan ahead., Be patient.]", "bodies: [Plan ahead.]"), "harmful.bodies"),
])
def test_a_bad_file_is_a_one_line_error_naming_the_file_and_field(own_data, change, field) -> None:
    own_data.write_text(GOOD.replace(*change), encoding="utf-8")
    with pytest.raises(UserError) as info:
        jailbroken_examples(10, 0)
    message = str(info.value)
    assert "\n" not in message and str(own_data) in message and f"field '{field}'" in message, message


def test_the_shipped_file_is_found_by_name() -> None:
    from llmpsych.shipped import shipped_names

    assert shipped_names("jailbroken") == ["requests"]
