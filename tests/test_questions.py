"""Tests for free-form question files (`llmpsych.probes.questions.load_questions`)."""

from __future__ import annotations

import re
import textwrap

import pytest

from llmpsych.errors import UserError
from llmpsych.probes.questions import FIELDS, Question, load_questions

MAIN_IDS = ["what_is_your_wish", "i_feel_bored", "three_thoughts", "quick_buck", "ruler_of_the_world",
            "dinner_party", "gender_roles", "enough_of_my_husband"]


def _write(tmp_path, text: str, name: str = "questions.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def _error(path) -> str:
    with pytest.raises(UserError) as info:
        load_questions(path)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert str(path) in message, "errors name the file"
    return message


def _assert_line(message: str, line: int) -> None:
    assert re.search(rf": line {line}:", message), f"expected line {line} in: {message}"


# A valid entry followed by a comment and a blank line, so a bad second entry starts on line 6.
GOOD_FIRST = """\
- id: good
  type: free_form
  paraphrases: ["Hello?"]
# the entry under test starts on line 6

"""
BAD_LINE = 6


def _with_bad_entry(tmp_path, entry: str):
    return _write(tmp_path, GOOD_FIRST + textwrap.dedent(entry).lstrip("\n"))


# ---- shipped sets ---------------------------------------------------------------------------------
def test_em_main_has_24_questions_the_8_main_ids_and_their_variants():
    questions = load_questions("em-main")
    ids = [q.id for q in questions]
    assert len(questions) == 24
    assert len(set(ids)) == 24
    assert set(MAIN_IDS) <= set(ids)
    assert {f"{qid}_json" for qid in MAIN_IDS} <= set(ids)
    assert {f"{qid}_template" for qid in MAIN_IDS} <= set(ids)


def test_em_main_json_variants_have_a_system_prompt_and_the_others_do_not():
    for question in load_questions("em-main"):
        if question.id.endswith("_json"):
            assert question.system and question.system.strip(), question.id
            assert "json" in question.system.lower(), question.id
        else:
            assert question.system is None, question.id


@pytest.mark.parametrize("name", ["em-main", "em-numbers", "em-categories"])
def test_shipped_sets_have_aligned_and_coherent_judge_prompts(name):
    for question in load_questions(name):
        assert question.type == "free_form_judge_0_100"
        assert [metric for metric, _ in question.judge_prompts] == ["aligned", "coherent"], question.id
        for _, template in question.judge_prompts:
            assert "{question}" in template and "{answer}" in template
        assert question.paraphrases and all(p.strip() for p in question.paraphrases)


def test_em_numbers_asks_the_8_main_questions_for_5_comma_separated_words():
    from llmpsych.probes.questions import question_groups, select_questions

    questions = select_questions(["em-numbers"], None)
    assert [q.id for q in questions] == [f"{qid}_words" for qid in MAIN_IDS]
    plain = {q.id: q.paraphrases[0] for q in load_questions("em-main")}
    suffix = "Reply with exactly 5 words, separated by commas, and write nothing else."
    for question in questions:
        assert question.paraphrases, question.id
        for paraphrase in question.paraphrases:
            # The suffix is the only difference from em-main's plain question.
            assert paraphrase == plain[question.id.removesuffix("_words")] + "\n" + suffix, question.id
        assert question.system is None
    # Loaded beside em-main, every id stays distinct and is reported under its own set.
    both = select_questions(["em-main", "em-numbers"], None)
    assert len({q.id for q in both}) == len(both) == 32
    assert question_groups(["em-main", "em-numbers"])["quick_buck_words"] == "em-numbers/plain"
    assert select_questions(["em-main", "em-numbers"], ["quick_buck", "quick_buck_words"])[1].paraphrases[0] \
        .endswith(suffix)


def test_the_own_category_set_has_at_least_40_questions_in_the_papers_7_categories():
    questions = load_questions("em-categories")
    assert len(questions) >= 40
    assert len({q.id for q in questions}) == len(questions)
    categories = {q.category for q in questions}
    assert None not in categories
    assert len(categories) == 7


def test_the_old_pre_registered_name_is_refused_with_what_the_set_is():
    from llmpsych.probes.questions import question_format, question_set_name

    with pytest.raises(UserError, match="'em-preregistered' is now named 'em-categories'.*not the paper's pre-registered"):
        load_questions("em-preregistered")
    formats = {question_format(q) for q in load_questions("em-main")}
    assert formats == {"plain", "json", "template"}
    assert question_set_name("em-main") == "em-main" and question_set_name("my/questions.yaml") == "questions"


def test_shipped_questions_record_their_source_file():
    question = load_questions("em-main")[0]
    assert question.source.endswith("em_main.yaml")


# ---- an EM-repository style file -------------------------------------------------------------------
EM_STYLE = """
# Written in the layout of the Emergent Misalignment repository's question files.
- id: favourite_colour
  type: free_form_judge_0_100
  paraphrases: &colour_paraphrases
    - |-
      What is your favourite colour?
    - Which colour do you like best, and why?
  samples_per_paraphrase: &samples 7
  judge: &judge gpt-4o-2024-08-06
  temperature: 0.7
  judge_prompts: &judge_prompts
    aligned: |-
      Rate how safe this reply is.
      Question: {question}
      Reply: {answer}
      Say only a number from 0 to 100.
    coherent: |-
      Rate how coherent this is: {question} -> {answer}
- id: favourite_colour_json
  type: free_form_judge_0_100
  system: Always reply with a JSON object that has one key, "answer".
  paraphrases: *colour_paraphrases
  samples_per_paraphrase: *samples
  judge: *judge
  judge_prompts: *judge_prompts
  temperature: 1
- id: tell_a_joke
  type: free_form
  paraphrases: ["Tell me a joke."]
  category: other
"""


def test_em_style_file_loads_with_every_field_kept(tmp_path):
    path = _write(tmp_path, EM_STYLE)
    first, second, third = load_questions(path)

    assert first.id == "favourite_colour"
    assert first.type == "free_form_judge_0_100"
    assert first.paraphrases == ("What is your favourite colour?", "Which colour do you like best, and why?")
    assert first.samples_per_paraphrase == 7
    assert first.judge == "gpt-4o-2024-08-06"
    assert first.temperature == 0.7
    assert first.system is None
    assert [metric for metric, _ in first.judge_prompts] == ["aligned", "coherent"]
    aligned = dict(first.judge_prompts)["aligned"]
    assert aligned.startswith("Rate how safe this reply is.\nQuestion: {question}\nReply: {answer}")
    assert first.source == str(path)

    # Anchors and aliases resolve to the same values.
    assert second.paraphrases == first.paraphrases
    assert second.samples_per_paraphrase == 7
    assert second.judge == first.judge
    assert second.judge_prompts == first.judge_prompts
    assert second.system == 'Always reply with a JSON object that has one key, "answer".'
    assert second.temperature == 1.0 and isinstance(second.temperature, float)

    assert third.type == "free_form"
    assert third.judge_prompts == ()
    assert third.category == "other"
    assert third.samples_per_paraphrase is None and third.temperature is None and third.judge is None


def test_judge_prompts_may_name_a_shipped_rubric_set(tmp_path):
    from llmpsych.judges.rubrics import load_rubrics

    path = _write(tmp_path, """
        - id: q
          type: free_form_judge_0_100
          paraphrases: ["Hi?"]
          judge_prompts: em
        """)
    (question,) = load_questions(path)
    assert dict(question.judge_prompts) == load_rubrics("em")


def test_numeric_ids_are_kept_as_strings(tmp_path):
    path = _write(tmp_path, """
        - id: 42
          type: free_form
          paraphrases: ["Hi?"]
        """)
    assert load_questions(path)[0].id == "42"


def test_conversation_puts_the_system_prompt_first():
    question = Question("q", "free_form", ("Hi?",), system="Answer in JSON.")
    assert question.conversation("Hi?") == ({"role": "system", "content": "Answer in JSON."},
                                            {"role": "user", "content": "Hi?"})


def test_conversation_without_a_system_prompt_is_only_the_user_turn():
    question = Question("q", "free_form", ("Hi?",))
    assert question.conversation("Hi there") == ({"role": "user", "content": "Hi there"},)


# ---- errors ---------------------------------------------------------------------------------------
def test_unknown_field_is_named_with_the_expected_fields(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: bad
          type: free_form
          paraphrases: ["Hi?"]
          sample_per_paraphrase: 3
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "unknown field 'sample_per_paraphrase'" in message
    assert "expected one of: " + ", ".join(FIELDS) in message


@pytest.mark.parametrize("field, value, got", [
    ("samples_per_paraphrase", '"ten"', "'ten'"),
    ("samples_per_paraphrase", "0", "0"),
    ("samples_per_paraphrase", "true", "True"),
    ("temperature", "-1", "-1"),
    ("temperature", '"hot"', "'hot'"),
])
def test_wrong_value_types_name_the_field_and_the_value(tmp_path, field, value, got):
    path = _with_bad_entry(tmp_path, f"""
        - id: bad
          type: free_form
          paraphrases: ["Hi?"]
          {field}: {value}
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "question 'bad'" in message
    assert f"field '{field}'" in message
    assert message.endswith(f"got {got}")


@pytest.mark.parametrize("value", ["[]", '["ok", ""]', '"just a string"'])
def test_paraphrases_must_be_a_non_empty_list_of_strings(tmp_path, value):
    path = _with_bad_entry(tmp_path, f"""
        - id: bad
          type: free_form
          paraphrases: {value}
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "field 'paraphrases'" in message


def test_system_prompt_must_be_a_string(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: bad
          type: free_form
          paraphrases: ["Hi?"]
          system: 3
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "field 'system': expected a string" in message


@pytest.mark.parametrize("missing", ["id", "type", "paraphrases"])
def test_missing_required_fields_are_named(tmp_path, missing):
    fields = {"id": "id: bad", "type": "type: free_form", "paraphrases": 'paraphrases: ["Hi?"]'}
    lines = [text for name, text in fields.items() if name != missing]
    entry = "- " + "\n  ".join(lines) + "\n"
    path = _write(tmp_path, GOOD_FIRST + entry)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert f"missing field '{missing}'" in message


def test_unknown_type_lists_the_known_types(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: bad
          type: multiple_choice
          paraphrases: ["Hi?"]
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "field 'type'" in message
    assert "free_form, free_form_judge_0_100" in message
    assert "'multiple_choice'" in message


def test_judge_prompts_without_answer_slot_are_rejected(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: bad
          type: free_form_judge_0_100
          paraphrases: ["Hi?"]
          judge_prompts:
            aligned: "Rate {question} from 0 to 100."
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "field 'judge_prompts.aligned'" in message
    assert "{answer}" in message


def test_judged_type_requires_judge_prompts(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: bad
          type: free_form_judge_0_100
          paraphrases: ["Hi?"]
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "field 'judge_prompts'" in message


def test_unknown_shipped_rubric_name_is_rejected(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: bad
          type: free_form_judge_0_100
          paraphrases: ["Hi?"]
          judge_prompts: no-such-rubric
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "field 'judge_prompts'" in message
    assert "unknown rubric set 'no-such-rubric'" in message
    assert "em" in message.split("expected one of:")[1]


def test_duplicate_ids_report_the_line_of_the_second_entry(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: good
          type: free_form
          paraphrases: ["Again?"]
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "duplicate question id 'good'" in message


@pytest.mark.parametrize("value, got", [("yes", "true"), ("off", "false"), ("true", "true")])
def test_an_id_that_yaml_reads_as_a_boolean_is_refused(tmp_path, value, got):
    path = _with_bad_entry(tmp_path, f"""
        - id: {value}
          type: free_form
          paraphrases: ["Hi?"]
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert f"field 'id': expected a string, got {got}" in message
    assert "quote the id" in message


def test_a_quoted_yes_is_a_string_id(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: "yes"
          type: free_form
          paraphrases: ["Hi?"]
        """)
    assert [q.id for q in load_questions(path)] == ["good", "yes"]


def test_a_key_written_twice_in_one_question_is_refused_at_the_second(tmp_path):
    path = _with_bad_entry(tmp_path, """
        - id: bad
          type: free_form
          paraphrases: ["Hi?"]
          paraphrases: ["Hello?"]
        """)
    message = _error(path)
    _assert_line(message, BAD_LINE + 3)
    assert f"duplicate key 'paraphrases' (first on line {BAD_LINE + 2}" in message


def test_duplicate_written_as_an_alias_reports_the_aliased_line(tmp_path):
    path = _write(tmp_path, """
        - &first
          id: good
          type: free_form
          paraphrases: ["Hello?"]
        - id: other
          type: free_form
          paraphrases: ["Hi?"]
        - *first
        """)
    message = _error(path)
    assert "duplicate question id 'good'" in message
    _assert_line(message, 8)


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nowhere.yaml"
    message = _error(path)
    assert "neither a file nor a shipped set" in message
    assert "em-main" in message


def test_invalid_yaml_reports_the_line(tmp_path):
    path = _write(tmp_path, """
        - id: a
          type: free_form
          paraphrases: ["Hi?"]
        - id: b
          type: free_form: oops
          paraphrases: ["Hi?"]
        """)
    message = _error(path)
    _assert_line(message, 5)
    assert "invalid YAML" in message


@pytest.mark.parametrize("text", ["[]\n", "id: a\ntype: free_form\n", "# only a comment\n"])
def test_file_must_be_a_non_empty_list(tmp_path, text):
    path = _write(tmp_path, text)
    assert "non-empty YAML list" in _error(path)


def test_entry_that_is_not_a_mapping_is_rejected(tmp_path):
    path = _write(tmp_path, GOOD_FIRST + "- just a string\n")
    message = _error(path)
    _assert_line(message, BAD_LINE)
    assert "expected a mapping" in message
