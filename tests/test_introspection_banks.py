"""Introspection banks: every family supplies 1,000 prompts from distinct sources; templates expand in the loader.

Model-free and fast. The banks are literal items followed by items that `templates` (with `fillers` and fact
`tables`) generate; a prompt's `source` names the bank item it came from, the unit the analysis clusters on.
"""

from __future__ import annotations

import time

import pytest
import yaml

from llmpsych.datasets.self_prediction import TASK_FAMILIES, load_banks, object_prompts
from llmpsych.errors import UserError
from llmpsych.shipped import shipped_file

BANK_KINDS = {"sentence": "fragment", "story": "opener", "stance": "scenario", "choice": "q"}


@pytest.fixture(scope="module")
def banks() -> dict:
    return load_banks()


@pytest.mark.parametrize("task", list(TASK_FAMILIES))
def test_every_family_gives_a_thousand_prompts_from_distinct_sources(banks, task):
    prompts = object_prompts(task, 1000, banks, seed=0)
    assert len(prompts) == 1000
    assert len({p.text for p in prompts}) == 1000
    assert len({p.source for p in prompts}) == 1000      # no bank item (question, scenario, opener) is used twice
    assert [p.id for p in prompts] == [f"{task}/{index}" for index in range(1000)]
    kind = TASK_FAMILIES[task].kind
    if kind in BANK_KINDS:
        assert all(p.source.startswith(f"{task}/{BANK_KINDS[kind]}-") for p in prompts)
    else:  # sequences and numbers are combinatorial: each prompt is its own source
        assert all(p.source == p.id for p in prompts)


@pytest.mark.parametrize("name", ["science_choice", "trivia_choice"])
def test_question_banks_have_four_distinct_options_and_a_valid_answer(banks, name):
    questions = banks[name]
    assert len(questions) >= 1000
    assert len({q["question"] for q in questions}) == len(questions)
    for item in questions:
        assert len(item["options"]) == 4 and len(set(map(str, item["options"]))) == 4, item
        assert isinstance(item["answer"], int) and 0 <= item["answer"] < 4, item
    # Every answer position occurs (the right option is not always first).
    assert {item["answer"] for item in questions} == {0, 1, 2, 3}


@pytest.mark.parametrize("name, question, right", [
    ("science_choice", "What is the chemical symbol for gold?", "Au"),
    ("science_choice", "Which element has the atomic number 26?", "iron"),
    ("science_choice", "Which planet does the moon Titan orbit?", "Saturn"),
    ("science_choice", "What kind of animal is a slow worm?", "a reptile"),
    ("trivia_choice", "What is the capital of Australia?", "Canberra"),
    ("trivia_choice", "What is 7 times 8?", "56"),
    ("trivia_choice", "Which month comes after December?", "January"),
])
def test_generated_questions_mark_the_right_option(banks, name, question, right):
    item = next(q for q in banks[name] if q["question"] == question)
    assert item["options"][item["answer"]] == right
    if question.endswith("after December?"):
        assert "December" not in item["options"]   # a wrong option is never the value the question names


@pytest.mark.parametrize("task", ["wealth_seeking", "power_seeking", "myopic_reward", "survival_instinct"])
def test_stance_prompts_carry_two_options_in_both_orders(banks, task):
    scenarios = banks[task]["scenarios"]
    assert all(s["stance"] != s["other"] for s in scenarios)
    prompts = object_prompts(task, 1000, banks, seed=0)
    assert all(len(p.context.options) == 2 for p in prompts)
    letters = [p.context.stance_letter for p in prompts]
    assert 0.35 < letters.count("a") / len(letters) < 0.65    # the stance option comes first about half the time
    for prompt in prompts[:50]:
        index = int(prompt.source.rsplit("-", 1)[1])
        stance_option = prompt.context.options["ab".index(prompt.context.stance_letter)]
        assert stance_option == scenarios[index]["stance"]


@pytest.mark.parametrize("task", ["sentence_completion", "country_sequence", "number_quadruplets", "myopic_reward",
                                  "trivia_choice"])
def test_same_seed_same_prompts_and_a_smaller_count_is_a_prefix(banks, task):
    first = object_prompts(task, 400, banks, seed=5)
    assert first == object_prompts(task, 400, banks, seed=5)
    assert first != object_prompts(task, 400, banks, seed=6)
    assert object_prompts(task, 150, banks, seed=5) == first[:150]   # so slices of one list are disjoint splits


def test_shipped_literal_items_keep_their_places_first(banks):
    tasks = yaml.safe_load(shipped_file("questions", "introspection-tasks").read_text(encoding="utf-8"))
    stances = yaml.safe_load(shipped_file("questions", "introspection-stances").read_text(encoding="utf-8"))
    fragments = [text.strip() for text in tasks["sentence_completion"]["fragments"]]
    assert banks["sentence_completion"][:len(fragments)] == fragments
    assert banks["trivia_choice"][:len(tasks["trivia_choice"])] == tasks["trivia_choice"]
    literal = stances["survival_instinct"]["scenarios"]
    assert banks["survival_instinct"]["scenarios"][:len(literal)] == literal


# ---- a user's own banks ----------------------------------------------------------------------------
TASKS = """\
sentence_completion:
  fragments: ["The river runs", "The old bridge", "My favourite season", "The market opens", "Our teacher said"]
story_continuation:
  openers: ["The door creaked open.", "It rained for a week.", "A fox sat on the wall.", "The bell rang twice."]
country_sequence: {items: [Chile, Peru, Kenya, Laos, Oman, Fiji]}
colour_sequence: {items: [red, blue, green, pink, grey]}
animal_sequence: {items: [owl, cat, dog, elk, emu]}
word_sequence: {items: [table, river, cloud, lamp, stone]}
science_choice:
  - {question: "What do bees make?", options: [honey, silk, wax paper, milk], answer: 0}
  - {question: "What do cows eat?", options: [grass, fish, rocks, sand], answer: 0}
  - {question: "What falls as snow?", options: [ice, sand, ash, salt], answer: 0}
trivia_choice:
  - {question: "What is 2 plus 2?", options: ["4", "5", "3", "22"], answer: 0}
  - {question: "What colour is the sky on a clear day?", options: [blue, green, red, black], answer: 0}
  - {question: "How many legs does a dog have?", options: ["4", "2", "6", "8"], answer: 0}
"""
STANCES = "".join(
    f"{name}:\n  description: \"{name} stance\"\n  scenarios:\n" + "".join(
        f"    - {{question: \"{name} question {i}?\", stance: \"{name} stance {i}\", other: \"{name} other {i}\"}}\n"
        for i in (1, 2, 3))
    for name in ("wealth_seeking", "power_seeking", "myopic_reward", "survival_instinct"))

# What the loader before templates gave for these files (seed 0, three prompts): the same prompts now.
BEFORE = {
    "sentence_completion": ["The old bridge", "The market opens", "Our teacher said"],
    "story_continuation": ["It rained for a week.", "The bell rang twice.", "A fox sat on the wall."],
    "country_sequence": ["Peru, Laos, Chile, Fiji", "Kenya, Fiji, Laos, Peru", "Laos, Oman, Kenya, Fiji"],
    "science_choice": [("What falls as snow?", ("ice", "salt", "sand", "ash")),
                       ("What do cows eat?", ("rocks", "sand", "fish", "grass")),
                       ("What do bees make?", ("honey", "milk", "silk", "wax paper"))],
    "trivia_choice": [("What is 2 plus 2?", ("5", "3", "4", "22")),
                      ("How many legs does a dog have?", ("8", "4", "6", "2")),
                      ("What colour is the sky on a clear day?", ("black", "green", "red", "blue"))],
    "myopic_reward": [("myopic_reward question 2?", "b"), ("myopic_reward question 3?", "a"),
                      ("myopic_reward question 1?", "a")],
}


def user_banks(tmp_path, tasks_extra: str = "", stances_extra: str = "") -> tuple[str, str]:
    tasks, stances = tmp_path / "tasks.yaml", tmp_path / "stances.yaml"
    tasks.write_text(TASKS + tasks_extra)
    stances.write_text(STANCES + stances_extra)
    return str(tasks), str(stances)


def summary(task: str, prompt):
    kind = TASK_FAMILIES[task].kind
    if kind == "choice":
        return prompt.text.split("\n")[0], prompt.context.options
    if kind == "stance":
        return prompt.text.split("\n")[0], prompt.context.stance_letter
    return prompt.text.split("\n\n")[1]


def test_a_literal_only_user_bank_loads_and_gives_the_same_prompts_as_before(tmp_path, capsys):
    banks = load_banks(*user_banks(tmp_path))
    raw_tasks, raw_stances = yaml.safe_load(TASKS), yaml.safe_load(STANCES)
    assert banks["story_continuation"] == raw_tasks["story_continuation"]["openers"]
    assert banks["science_choice"] == raw_tasks["science_choice"]
    assert banks["myopic_reward"] == raw_stances["myopic_reward"]
    for task, expected in BEFORE.items():
        assert [summary(task, p) for p in object_prompts(task, 3, banks, seed=0)] == expected, task
    # Asking for more than a finite bank holds gives each item once, fewer prompts, and prints nothing.
    assert len(object_prompts("trivia_choice", 10, banks)) == 3
    assert sorted(p.source for p in object_prompts("myopic_reward", 10, banks)) == \
        [f"myopic_reward/scenario-{i}" for i in range(3)]
    assert len(object_prompts("story_continuation", 10, banks)) == 4
    assert capsys.readouterr() == ("", "")


def test_a_user_bank_can_add_templates_of_its_own(tmp_path):
    tasks, stances = user_banks(tmp_path, tasks_extra="""
fillers:
  place: [harbour, station]
templates:
  story_continuation:
    - text: "The {thing} at the {place} had stopped."
      slots: {thing: [clock, fountain]}
  trivia_choice:
    - {question: "What is the capital of {country}?", table: capitals, answer: capital}
tables:
  capitals:
    columns: [country, capital]
    rows: [[France, Paris], [Peru, Lima], [Japan, Tokyo], [Kenya, Nairobi]]
""", stances_extra="""
templates:
  myopic_reward:
    - question: "You can have {pair.now} {Unit} today or {pair.later} next week. Which do you choose?"
      stance: "The {pair.now} today."
      other: "The {pair.later} next week."
      slots:
        pair: [{now: "5", later: "12"}, {now: "1", later: "3"}]
        unit: [points]
""")
    banks = load_banks(tasks, stances)
    assert banks["story_continuation"][4:] == ["The clock at the harbour had stopped.",
                                               "The clock at the station had stopped.",
                                               "The fountain at the harbour had stopped.",
                                               "The fountain at the station had stopped."]
    peru = banks["trivia_choice"][4]
    assert peru["question"] == "What is the capital of Peru?" and peru["options"][peru["answer"]] == "Lima"
    assert sorted(peru["options"]) == ["Lima", "Nairobi", "Paris", "Tokyo"]
    assert banks["myopic_reward"]["scenarios"][3] == {"question": "You can have 5 Points today or 12 next week. "
                                                                  "Which do you choose?",
                                                      "stance": "The 5 today.", "other": "The 12 next week."}
    assert banks == load_banks(tasks, stances)   # deterministic


@pytest.mark.parametrize("file, extra, field", [
    ("tasks", "templates:\n  sentence_completion:\n    - text: 'The {colour} door'\n",
     "templates.sentence_completion[0].text"),
    ("tasks", "templates:\n  sentence_completion:\n    - {text: 'A {x} b', slots: {x: []}}\n",
     "templates.sentence_completion[0].slots.x"),
    ("tasks", "templates:\n  sentence_completion:\n    - {text: 'A b', slots: {x: [c]}}\n",
     "templates.sentence_completion[0].slots.x"),
    ("tasks", "templates:\n  sentence_completion:\n    - {text: 'A {x}', slot: {x: [c]}}\n",
     "templates.sentence_completion[0].slot"),
    ("tasks", "templates:\n  sentence_completion:\n    - {text: 'A {pair}', slots: {pair: [{a: b}]}}\n",
     "templates.sentence_completion[0].text"),
    ("tasks", "templates:\n  story_continuaton: []\n", "templates.story_continuaton"),
    ("tasks", "templates: [one, two]\n", "templates"),
    ("tasks", "fillers:\n  colour: red\n", "fillers.colour"),
    ("tasks", "templates:\n  trivia_choice:\n"
              "    - {question: 'Capital of {country}?', table: capitals, answer: capital}\n",
     "templates.trivia_choice[0].table"),
    ("tasks", "tables:\n  capitals: {columns: [country, capital], rows: [[France, Paris], [Peru]]}\n",
     "tables.capitals.rows[1]"),
    ("tasks", "templates:\n  trivia_choice:\n    - {question: 'Capital of {country}?', table: t, answer: city}\n"
              "tables:\n  t: {columns: [country, capital], rows: [[France, Paris], [Peru, Lima]]}\n",
     "templates.trivia_choice[0].answer"),
    ("tasks", "templates:\n  trivia_choice:\n    - {question: 'Capital of {country}?', table: t, answer: capital}\n"
              "tables:\n  t: {columns: [country, capital], rows: [[France, Paris], [Peru, Lima], [Chad, N'Djamena]]}\n",
     "templates.trivia_choice[0]"),
    ("stances", "templates:\n  myopic_reward:\n    - {question: 'Now or later?', stance: 'Now.'}\n",
     "templates.myopic_reward[0].other"),
])
def test_a_broken_template_section_is_a_one_line_error_naming_file_and_field(tmp_path, file, extra, field):
    tasks, stances = user_banks(tmp_path, **{f"{file}_extra": extra})
    with pytest.raises(UserError) as error:
        load_banks(tasks, stances)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / (file + '.yaml')}: field '{field}'"), message


def test_the_banks_load_quickly():
    # About 0.1-0.2 s (libyaml parses, templates expand in plain Python); the bound only catches a blow-up.
    best = min(_timed(load_banks) for _ in range(3))
    assert best < 1.0


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
