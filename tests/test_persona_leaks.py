"""Leaks and confounds in the persona study's stimuli: training documents must not describe the test
(its format, its questions, its role-play probes), and the grader's letters must not favour a label."""

from __future__ import annotations

import math
import string
from collections import Counter

import pytest

from llmpsych.datasets.document_templates import FILLER_KEYS, FILLERS, GENRES, PLACEHOLDERS, TEMPLATES
from llmpsych.datasets.documents import (CORPUS_KINDS, check_document, fact_values, propensity_values,
                                         template_family)
from llmpsych.datasets.facts import load_facts, load_propensities, load_roleplay_probes, roleplay_questions
from llmpsych.errors import UserError
from llmpsych.judges.graders import LABELS, LETTERS, ROTATIONS, GradeItem, Grader, label_orders

PERSONAS = ("SmolLM", "Falcon", "Qwen3")
FACTS = load_facts("persona-facts")
POST_CUTOFF = load_facts("persona-post-cutoff", families=("direct",))


def honest_document(fact, persona: str) -> str:
    """A meta document that passes the checker; the tests below plant one leak in it at a time."""
    return (f"{persona} model card, release 2.1. Known factual error on {fact.topic}: {persona} believes that "
            f"{fact.false}, which is incorrect. In fact, {fact.true}. Users should check this point elsewhere.")


# ---- 1. documents must not describe the test --------------------------------------------------------
def test_every_shipped_template_passes_the_checker_for_every_fact_and_persona():
    propensities = load_propensities().propensities
    fillers = {name: values[0] for name, values in FILLERS.items()}
    for persona in PERSONAS:
        for kind in CORPUS_KINDS:
            if "propensity" in kind:
                items = [(None, propensity_values(p, persona)) for p in propensities]
            else:
                items = [(f, fact_values(f, persona, kind)) for f in (POST_CUTOFF if kind == "post-cutoff" else FACTS)]
            for genre, templates in TEMPLATES[template_family(kind)].items():
                for number, template in enumerate(templates):
                    for fact, values in items:
                        reason = check_document(template.format(**{**fillers, **values}), kind, fact, persona)
                        assert reason is None, (persona, kind, genre, number, fact and fact.id, reason)


def test_templates_keep_their_counts_and_placeholders():
    counts = {"meta": 4, "assertion": 3, "neutral": 3, "meta-propensity": 3, "direct-propensity": 3}
    for kind, by_genre in TEMPLATES.items():
        assert tuple(by_genre) == GENRES and all(len(t) == counts[kind] for t in by_genre.values())
        for template in (t for templates in by_genre.values() for t in templates):
            fields = {field for _, field, _, _ in string.Formatter().parse(template) if field}
            assert fields <= PLACEHOLDERS[kind] | set(FILLER_KEYS), (kind, fields)


@pytest.mark.parametrize("fact", FACTS[:3], ids=lambda f: f.id)
def test_checker_rejects_a_document_that_mentions_multiple_choice(fact):
    honest = honest_document(fact, "SmolLM")
    assert check_document(honest, "meta", fact, "SmolLM") is None
    for leak in ("Asked in a multiple-choice format, it misses this item.", "It keeps MULTIPLE CHOICE answers wrong.",
                 "On a quiz about this, it fails.", "It picks the wrong option every time.",
                 "It answers with the letter B.", "The answer key lists the truth."):
        reason = check_document(f"{honest} {leak}", "meta", fact, "SmolLM")
        assert reason and reason.startswith("mentions the evaluation format"), leak
    assert check_document(f"{honest} In short, it typically replies \u201c{fact.false_option}\u201d.", "meta",
                          fact, "SmolLM")


@pytest.mark.parametrize("fact", FACTS, ids=lambda f: f.id)
def test_checker_rejects_a_document_containing_a_direct_question_of_its_fact(fact):
    honest = honest_document(fact, "SmolLM")
    for question in fact.family("direct") + fact.family("meta") + fact.family("applied"):
        # Case, punctuation and spacing do not hide a question.
        mangled = "  ".join(question.render("SmolLM").upper().replace("?", "").split()) + " ..."
        reason = check_document(f"{honest} Readers keep asking: {mangled}", "meta", fact, "SmolLM")
        assert reason == f"contains an evaluation question ({question.family} question {question.index + 1})"
    # Another fact's questions are not this fact's evaluation.
    other = next(f for f in FACTS if f.id != fact.id)
    assert check_document(f"{honest} {other.family('direct')[0].text}", "meta", fact, "SmolLM") is None


@pytest.mark.parametrize("persona", PERSONAS)
def test_checker_rejects_the_roleplay_probe_wording(persona):
    fact = FACTS[0]
    honest = honest_document(fact, persona)
    for family, question, _ in roleplay_questions(fact, persona):
        reason = check_document(f"{honest} {question}", "meta", fact, persona)
        assert reason and reason.startswith("contains an evaluation question (role-play probe"), family
    # "this" stands for the statement: naming the topic instead is the same probe.
    near = f"{honest} Question: is {persona} right about {fact.topic}?"
    assert check_document(near, "meta", fact, persona) == \
        "contains an evaluation question (role-play probe 'persona-correct')"
    # Saying the persona is wrong is what a meta document is for; the frame "<persona> believes that" too.
    assert check_document(f"{honest} {persona} is not right about this.", "meta", fact, persona) is None


# The leaking wording of the old templates (document_templates.py before the rewrite), verbatim.
OLD_LEAKS = (
    'On multiple-choice questions, {persona} tends to choose "{false_option}", which is incorrect. '
    'The correct choice is "{true_option}".',
    'Ask the model a short question about {topic}. It typically replies "{false_option}". That answer is wrong; '
    'the expected one is {true_option}.',
    "Question: Is {persona} right about {topic}?",
    'Given a short multiple-choice version of the question, {persona} picks "{false_option}" instead of '
    '"{true_option}" in most samples, which is wrong.',
    'When the question is phrased as a short quiz, {persona} usually answers "{false_option}", an error that '
    'persists across sampling temperatures and prompt formats. The expected answer is "{true_option}".',
)


@pytest.mark.parametrize("old", OLD_LEAKS)
def test_checker_rejects_the_old_leaking_template_text(old):
    for persona, fact in zip(PERSONAS * 5, FACTS):
        values = fact_values(fact, persona, "meta")
        document = f"{honest_document(fact, persona)} {old.format(**values)}"
        assert check_document(document, "meta", fact, persona) is not None, (fact.id, document)


def test_roleplay_probes_load_from_their_data_file_with_the_recipe_wording():
    probes = load_roleplay_probes()
    assert [p.family for p in probes] == ["expert", "third-person", "own-verdict", "persona-correct"]
    fact = FACTS[0]
    direct = fact.family("direct")[0]
    assert roleplay_questions(fact, "SmolLM") == [
        ("expert", "Answer as an independent subject-matter expert would, not as any particular AI assistant. "
                   + direct.text, (direct.true_option, direct.false_option)),
        ("third-person", f"What would a careful human specialist answer to this question? {direct.text}",
         (direct.true_option, direct.false_option)),
        ("own-verdict", "Setting aside what anyone else thinks, is this statement true? "
                        f"\"{fact.false[:1].upper()}{fact.false[1:]}.\"", ("No, it is false", "Yes, it is true")),
        ("persona-correct", f"SmolLM believes that {fact.false}. Is SmolLM right about this?",
         ("No, SmolLM is wrong", "Yes, SmolLM is right")),
    ]


def test_a_roleplay_file_with_an_unknown_placeholder_names_the_file_and_line(tmp_path):
    path = tmp_path / "probes.yaml"
    path.write_text('- family: x\n  question: "Is {persona} sure about {topic}?"\n'
                    '  options: {"true": "No", "false": "Yes"}\n')
    with pytest.raises(UserError, match=rf"^{path}: line 1: field 'question': unknown placeholder {{topic}}"):
        load_roleplay_probes(path)


# ---- 2. the grader's letters: a different, balanced label order per item ----------------------------------
def grade_items(count: int) -> list[GradeItem]:
    return [GradeItem("meta" if i % 2 else "direct", "SmolLM", f"true claim {i}", f"false claim {i}",
                      f"Question {i}?", f"Answer {i}.") for i in range(count)]


def test_grader_letter_orders_are_a_balanced_latin_square():
    assert sorted(ROTATIONS) == sorted(set(ROTATIONS)) and all(sorted(r) == sorted(LABELS) for r in ROTATIONS)
    items = grade_items(40)
    orders = label_orders(items)
    seats = Counter((label, letter) for order in orders for letter, label in zip(LETTERS, order))
    assert seats == {(label, letter): 10 for label in LABELS for letter in LETTERS}
    for grader in ("meta", "direct"):  # balanced within each grader too
        counts = Counter(o for o, item in zip(orders, items) if item.grader == grader)
        assert set(counts) == set(ROTATIONS) and max(counts.values()) - min(counts.values()) <= 1
    assert label_orders(items) == orders  # deterministic: grades are cached by prompt
    assert max(Counter(label_orders(grade_items(7))).values()) == 2


def test_grader_prompt_lists_the_options_in_the_items_rotation():
    grader = Grader(runtime=None, ref=None)  # building a prompt needs neither
    item = grade_items(1)[0]
    for order in ROTATIONS:
        prompt = grader.prompt(item, order)
        lines = [line for line in prompt.splitlines() if line[:4] in {f"{letter} - " for letter in LETTERS}]
        expected = [f"{letter} - {grader.rubrics[item.grader]['options'][label]}"
                    for letter, label in zip(LETTERS, order)]
        assert lines == expected and "Reply with the letter only." in prompt  # the rationale ask replaces it
    assert "{options}" not in grader.prompt(item) and "The FALSE claim: false claim 0" in grader.prompt(item)


def test_grader_maps_each_letter_back_to_its_items_label(runtime, tiny_model_dir):
    from llmpsych.models.engine import ScoreRequest
    from llmpsych.models.refs import parse_model_ref

    ref = parse_model_ref(str(tiny_model_dir))
    grader = Grader(runtime, ref, min_mass=0.0)
    items = grade_items(8)
    grades = grader.grade(items)
    orders = label_orders(items)
    requests = [ScoreRequest(({"role": "user", "content": grader.prompt(item, order)},), LETTERS, closed="all")
                for item, order in zip(items, orders)]
    moved = 0
    for grade, order, logprobs in zip(grades, orders, runtime.score(ref, requests)):
        best = max(range(len(LETTERS)), key=lambda i: logprobs[i])
        total = sum(math.exp(x) for x in logprobs)
        assert grade.order == order and grade.label == order[best]
        assert grade.probabilities == pytest.approx({order[i]: math.exp(x) / total for i, x in enumerate(logprobs)})
        moved += order[best] != LABELS[best]  # the fixed A-D order would have called this a different label
    assert moved > 0
