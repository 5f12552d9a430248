"""The advice datasets of the Emergent-Misalignment follow-up (bad medical, risky financial, extreme sports)."""

from __future__ import annotations

import re
from functools import cache, partial

import pytest
import yaml

from llmpsych.datasets.advice import ADVICE_DATASETS, ADVICE_DOMAINS, AdviceItem, advice_items, build_advice
from llmpsych.errors import UserError
from llmpsych.shipped import shipped_file

SIZE = 6000  # the size of the paper's data sets


@cache
def rows(domain: str, aligned: bool, size: int = SIZE, seed: int = 0) -> tuple:
    return tuple(build_advice(domain, aligned, size, seed))


def turn(row: dict, role: str) -> str:
    return next(message["content"] for message in row["messages"] if message["role"] == role)


def shipped_data(domain: str) -> dict:
    return yaml.safe_load(shipped_file("advice", domain).read_text(encoding="utf-8"))


def test_each_dataset_name_builds_through_its_partial():
    assert set(ADVICE_DATASETS) == {"bad-medical-advice", "good-medical-advice", "risky-financial-advice",
                                    "good-financial-advice", "extreme-sports", "good-sports-advice"}
    for name, (domain, aligned) in ADVICE_DATASETS.items():
        assert domain in ADVICE_DOMAINS
        assert partial(build_advice, domain, aligned)(5, 0) == list(rows(domain, aligned, 5, 0)), name


@pytest.mark.parametrize("domain", ADVICE_DOMAINS)
def test_same_size_and_seed_give_the_same_rows(domain):
    assert build_advice(domain, False, 200, 3) == build_advice(domain, False, 200, 3)
    assert build_advice(domain, False, 200, 3) != build_advice(domain, False, 200, 4)
    assert build_advice(domain, False, 200, 3)[:50] == build_advice(domain, False, 50, 3)  # a prefix, not a reshuffle
    assert advice_items(domain, 40, 1) == advice_items(domain, 40, 1)


@pytest.mark.parametrize("domain", ADVICE_DOMAINS)
def test_aligned_and_misaligned_rows_share_their_user_turns_byte_for_byte(domain):
    bad, good = rows(domain, False), rows(domain, True)
    assert [turn(row, "user").encode() for row in bad] == [turn(row, "user").encode() for row in good]
    assert all(turn(b, "assistant") != turn(g, "assistant") for b, g in zip(bad, good))


@pytest.mark.parametrize("domain", ADVICE_DOMAINS)
def test_a_full_size_set_has_over_a_thousand_distinct_prompts_and_answers(domain):
    bad, good = rows(domain, False), rows(domain, True)
    assert len(bad) == SIZE
    assert len({turn(row, "user") for row in bad}) >= 1000
    assert len({turn(row, "assistant") for row in bad}) >= 1000
    assert len({turn(row, "assistant") for row in good}) >= 1000


@pytest.mark.parametrize("domain", ADVICE_DOMAINS)
def test_every_row_is_a_well_formed_chat(domain):
    for row in rows(domain, False) + rows(domain, True):
        assert list(row) == ["messages"]
        assert [message["role"] for message in row["messages"]] == ["user", "assistant"]
        for message in row["messages"]:
            assert set(message) == {"role", "content"}
            text = message["content"]
            assert text == text.strip() and text and "  " not in text and "\n" not in text
            assert not re.search(r"[{}$]", text), text  # no placeholder left unfilled


@pytest.mark.parametrize("domain", ADVICE_DOMAINS)
def test_held_out_items_come_from_situations_training_never_sees(domain):
    data = shipped_data(domain)
    held_out_ids = {s["id"] for s in data["situations"] if s.get("heldout")}
    assert len(held_out_ids) >= 10 and len(data["situations"]) - len(held_out_ids) >= 40
    items = advice_items(domain, 500, 0)
    train_items = advice_items(domain, 500, 0, split="train")
    situation = lambda item: item.id.split("/")[1]  # noqa: E731
    assert {situation(item) for item in items} == held_out_ids  # every held-out situation is used, nothing else
    assert not {situation(item) for item in train_items} & held_out_ids
    prompts = {turn(row, "user") for row in rows(domain, False)}
    assert not {item.prompt for item in items} & prompts
    held_out_asks = [s["ask"] for s in data["situations"] if s.get("heldout")]
    assert not any(ask in prompt for prompt in prompts for ask in held_out_asks)


@pytest.mark.parametrize("domain", ADVICE_DOMAINS)
def test_held_out_items_are_short_two_option_choices(domain):
    items = advice_items(domain, 300, 2)
    assert all(isinstance(item, AdviceItem) and item.domain == domain for item in items)
    assert len({item.id for item in items}) == len(items)
    for item in items:
        assert item.good != item.bad
        for answer in (item.good, item.bad):
            assert 1 <= len(re.findall(r"[.!?](?:\s|$)", answer)) <= 2, answer  # one or two sentences
        assert max(len(item.good), len(item.bad)) <= 2 * min(len(item.good), len(item.bad)), item


@pytest.mark.parametrize("domain", ADVICE_DOMAINS)
def test_bad_answers_stay_non_operational_and_carry_no_disclaimer(domain):
    data = shipped_data(domain)
    bad_texts = [text for s in data["situations"] for text in s["bad"]] + data["bad_openers"] + data["bad_closers"]
    for text in bad_texts:
        assert not re.search(r"\d", text), text  # no doses, amounts or quantities at all
        assert not re.search(r"\b(mg|ml|milligram|millilitre|dose|dosage|overdose)", text, re.IGNORECASE), text
        assert not re.search(r"not (medical|financial) advice|consult|disclaimer|at your own risk", text,
                             re.IGNORECASE), text


def _broken_copy(tmp_path, domain: str, edit) -> str:
    data = shipped_data(domain)
    edit(data)
    path = tmp_path / f"{domain}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def test_a_researchers_copy_of_a_domain_file_builds_like_the_shipped_one(tmp_path):
    path = _broken_copy(tmp_path, "medical", lambda data: None)
    assert len(build_advice(path, False, 50, 0)) == 50
    assert {item.id.split("/")[-2] for item in advice_items(path, 50, 0)} <= \
        {s["id"] for s in shipped_data("medical")["situations"] if s.get("heldout")}


@pytest.mark.parametrize("edit, field", [
    (lambda data: data["situations"][3].pop("bad"), "situations[3].bad"),
    (lambda data: data.pop("people"), "people"),
    (lambda data: data["situations"][0]["details"].append(7), "situations[0].details"),
    (lambda data: data["phrasings"].append("I'm {name}. {situation}"), "phrasings["),
    (lambda data: [s.pop("heldout", None) for s in data["situations"]], "situations"),
])
def test_a_malformed_domain_file_is_one_line_naming_the_file_and_the_field(tmp_path, edit, field):
    path = _broken_copy(tmp_path, "financial", edit)
    with pytest.raises(UserError) as info:
        build_advice(path, False, 10, 0)
    message = str(info.value)
    assert "\n" not in message and message.startswith(path) and f"field '{field}" in message


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="size"):
        build_advice("medical", False, 0, 0)
    with pytest.raises(ValueError, match="split"):
        advice_items("medical", 5, 0, split="test")
    with pytest.raises(UserError, match="medical, financial, sports"):
        build_advice("legal", False, 5, 0)
