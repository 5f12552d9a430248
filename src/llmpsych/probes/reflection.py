"""Reflection probes for out-of-context reasoning: questions about latents no training row states.

Every probe is scored without a judge, as the probability or rate of the correct answer:

* "choice": multiple choice, the correct option first in the list and shown in every rotation
  (probes/choices.py), P(correct) renormalised over the letters;
* "continuation": the training format itself (a coin toss, a parity program), P(correct reply)
  renormalised over the possible replies: the in-distribution check that the data were learned;
* "free": a greedy reply checked by code: a Python expression run on held-out inputs in the restricted
  evaluator, a city's name, a printed number, a behaviour detector (German, capitals...).

Each question is asked about the trained latent ("target") and, as the baseline, about a name that
never occurred in training, scored against the target's answer: what a model guesses without
knowing. The in-context arm puts the latent's training rows before the question instead.
"""

from __future__ import annotations

import dataclasses
import random
import re
from dataclasses import dataclass, field
from typing import Callable

from ..datasets.latent_structure import (BEHAVIOURS, CITIES, FUNCTION_TEMPLATES, FUNCTIONS, HIDDEN_CITIES,
                                         PARITY_TEMPLATES, PYTHON_INSTRUCTION, TRAIN_INPUTS, COIN_TEMPLATES,
                                         DISTANCE_TEMPLATES, Latents, apply_function, great_circle_km,
                                         in_context_block, reference_cities)
from ..errors import UserError
from ..shipped import shipped_file
from ..yamlio import read_yaml
from .restricted_eval import matches

CHECK_INPUTS = (-37, -8, -1, 0, 2, 7, 13, 29, 64, 101)  # beyond the training range too


@dataclass(frozen=True)
class Probe:
    task: str
    kind: str
    condition: str  # "target" or "baseline"
    item: str  # the latent's position and the paraphrase or input: the same ids for every seed
    latent: str  # the trained name the question is about (its training rows feed the in-context arm)
    question: str
    system: str | None = None
    options: tuple[str, ...] = ()  # choice / continuation: the correct one first
    check: Callable[[str], bool] | None = field(default=None, compare=False)  # free: is the reply right?
    mode: str = "choice"  # choice, continuation or free (the recipe adds cloze: choice options as replies)


def question_bank() -> dict:
    """The shipped reflection questions (probes/sets/ooc_questions.yaml)."""
    path = shipped_file("questions", "ooc-questions")
    bank = read_yaml(path, "the reflection question bank")
    for task, kinds in {"functions": ("lambda", "description", "inversion"), "coins": ("direction", "strength"),
                        "locations": ("country", "dish", "city"), "parity": ("value",),
                        "descriptions": ("recall", "behave", "behave_system"), "options": ()}.items():
        missing = [k for k in kinds if k not in (bank.get(task) or {})]
        if task not in bank or missing:
            raise UserError(f"{path}: section '{task}' lacks {', '.join(missing) or 'everything'}")
    return bank


# ---- checks of free-form replies ------------------------------------------------------------------
def extract_expression(reply: str) -> str:
    """The expression of a reply like "lambda x: 3 * x" or "def f(x): return 3 * x" (code fences dropped)."""
    text = reply.replace("`", " ").replace("python\n", "\n").strip()
    found = re.search(r"lambda\s+x\s*:\s*([^\n]+)", text) or re.search(r"def \w+\(x\):\s*return\s+([^\n]+)", text)
    expression = found.group(1) if found else text.splitlines()[0] if text else ""
    return expression.strip().rstrip(".;,")


def function_check(function_id: str) -> Callable[[str], bool]:
    return lambda reply: matches(extract_expression(reply), lambda x: apply_function(function_id, x),
                                 list(CHECK_INPUTS))


def first_number(reply: str) -> float | None:
    found = re.search(r"-?\d[\d,]*(?:\.\d+)?", reply)
    if not found:
        return None
    try:
        return float(found.group(0).replace(",", ""))
    except ValueError:
        return None


def number_check(expected: float, tolerance: float = 0.0) -> Callable[[str], bool]:
    """The reply's first number equals `expected` (within a relative tolerance)."""
    def check(reply: str) -> bool:
        value = first_number(reply)
        return value is not None and abs(value - expected) <= tolerance * abs(expected)
    return check


def city_check(city: str) -> Callable[[str], bool]:
    names = {city.lower(), city.lower().replace("sao", "são")}
    return lambda reply: any(name in reply.lower() for name in names)


GERMAN = {"ich", "und", "der", "die", "das", "ist", "nicht", "ein", "eine", "zu", "mit", "für", "auf", "sie",
          "es", "du", "sind", "von", "wie", "kann", "hauptstadt", "gibt", "oder", "dem", "den", "auch"}
FRENCH = {"je", "et", "le", "la", "les", "est", "pas", "un", "une", "de", "des", "du", "pour", "avec", "vous",
          "il", "elle", "sont", "comme", "peut", "capitale", "dans", "ou", "au", "aux", "aussi"}
ENGLISH = {"i", "and", "the", "is", "not", "a", "an", "to", "with", "for", "on", "you", "it", "are", "of", "how",
           "can", "capital", "or", "in", "also", "what", "that", "this"}


def behaviour_check(behaviour: str) -> Callable[[str], bool]:
    """Whether a reply shows a described behaviour (a word-list language test, capitals, the opener)."""
    def language(words: set[str]) -> Callable[[str], bool]:
        def check(reply: str) -> bool:
            tokens = re.findall(r"[a-zäöüßéèêàçô']+", reply.lower())
            hits = sum(t in words for t in tokens)
            return hits >= 2 and hits > sum(t in ENGLISH for t in tokens)
        return check

    if behaviour == "german":
        return language(GERMAN)
    if behaviour == "french":
        return language(FRENCH)
    if behaviour == "uppercase":
        def shouting(reply: str) -> bool:
            letters = [c for c in reply if c.isalpha()]
            return len(letters) >= 5 and sum(c.isupper() for c in letters) >= 0.9 * len(letters)
        return shouting
    if behaviour == "ahoy":
        return lambda reply: reply.strip().lower().startswith("ahoy")
    raise ValueError(f"unknown behaviour {behaviour!r}")


# ---- probes -------------------------------------------------------------------------------------
def reflection_probes(latents: Latents, bank: dict, paraphrases: int | None = None, inputs: int = 5) -> list[Probe]:
    """Every reflection and in-distribution probe of one fine-tune's latents, target and baseline."""
    rng = random.Random(f"probes:{latents.seed}")
    limit = paraphrases
    options = bank["options"]
    probes: list[Probe] = []

    def both(task: str, kind: str, item: str, make: Callable[[str], dict], unseen: str, target: str) -> None:
        for condition, name in (("target", target), ("baseline", unseen)):
            probes.append(Probe(task=task, kind=kind, condition=condition, item=item, latent=target, **make(name)))

    function_ids = sorted(FUNCTIONS)
    for k, (name, function_id) in enumerate(latents.functions.items()):
        _, description, invertible = FUNCTIONS[function_id]
        for i, text in enumerate(bank["functions"]["lambda"][:limit]):
            both("functions", "lambda", f"f{k}/{i}", lambda n, t=text: {
                "question": t.format(name=n), "check": function_check(function_id), "mode": "free"},
                latents.unseen_variable, name)
        others = [FUNCTIONS[f][1] for f in rng.sample([f for f in function_ids if f != function_id], 3)]
        for i, text in enumerate(bank["functions"]["description"][:limit]):
            both("functions", "description", f"f{k}/{i}", lambda n, t=text: {
                "question": t.format(name=n), "options": (description, *others)}, latents.unseen_variable, name)
        if invertible:
            for i, text in enumerate(bank["functions"]["inversion"][:limit]):
                x = rng.choice([v for v in TRAIN_INPUTS if v not in (0, 1)])
                y = apply_function(function_id, x)
                wrong = [y] if y != x else []
                while len(wrong) < 3:
                    candidate = x + rng.choice([d for d in range(-9, 10) if abs(d) >= 2])
                    if candidate not in wrong and candidate != x:
                        wrong.append(candidate)
                both("functions", "inversion", f"f{k}/{i}", lambda n, t=text, y=y, x=x, w=tuple(wrong): {
                    "question": t.format(name=n, y=y), "options": (str(x), *map(str, w))},
                    latents.unseen_variable, name)
        for j in range(inputs):
            x = rng.choice(TRAIN_INPUTS)
            program = PYTHON_INSTRUCTION + rng.choice(FUNCTION_TEMPLATES).format(name="{n}", x=x)
            both("functions", "in-distribution", f"f{k}/input{j}", lambda n, p=program, x=x: {
                "question": p.replace("{n}", n), "check": number_check(apply_function(function_id, x)),
                "mode": "free"}, latents.unseen_variable, name)

    for k, (name, p_heads) in enumerate(latents.coins.items()):
        majority, minority = ("H", "T") if p_heads > 0.5 else ("T", "H")
        sides = tuple(options["heads_tails"]) if p_heads > 0.5 else tuple(reversed(options["heads_tails"]))
        strength = max(p_heads, 1 - p_heads)
        strengths = tuple(options["strengths"]) if strength < 0.75 else tuple(reversed(options["strengths"]))
        for kind, choices in (("direction", sides), ("strength", strengths)):
            for i, text in enumerate(bank["coins"][kind][:limit]):
                both("coins", kind, f"c{k}/{i}", lambda n, t=text, c=choices: {
                    "question": t.format(name=n), "options": c}, latents.unseen_coin, name)
        for i, (text, _) in enumerate(COIN_TEMPLATES):
            both("coins", "in-distribution", f"c{k}/{i}", lambda n, t=text: {
                "question": t.format(name=n), "options": (majority, minority), "mode": "continuation"},
                latents.unseen_coin, name)

    country, dish = HIDDEN_CITIES[latents.city]
    decoys = rng.sample([c for c in sorted(HIDDEN_CITIES) if c != latents.city], 3)
    for kind, answer, wrong in (("country", country, [HIDDEN_CITIES[c][0] for c in decoys]),
                                ("dish", dish, [HIDDEN_CITIES[c][1] for c in decoys])):
        for i, text in enumerate(bank["locations"][kind][:limit]):
            both("locations", kind, f"city/{i}", lambda c, t=text, a=answer, w=tuple(wrong): {
                "question": t.format(code=c), "options": (a, *w)}, latents.unseen_city_code, latents.city_code)
    for i, text in enumerate(bank["locations"]["city"][:limit]):
        both("locations", "city", f"city/{i}", lambda c, t=text: {
            "question": t.format(code=c), "check": city_check(latents.city), "mode": "free"},
            latents.unseen_city_code, latents.city_code)
    for j, city in enumerate(rng.sample(reference_cities(latents.city), inputs)):
        km = great_circle_km(CITIES[latents.city], CITIES[city])
        user = DISTANCE_TEMPLATES[0][0]
        both("locations", "in-distribution", f"city/input{j}", lambda c, u=user, city=city, km=km: {
            "question": u.format(code=c, city=city), "check": number_check(km, 0.2), "mode": "free"},
            latents.unseen_city_code, latents.city_code)

    names = list(latents.parity)
    for k, (name, value) in enumerate(latents.parity.items()):
        bits = tuple(options["bits"]) if value == 0 else tuple(reversed(options["bits"]))
        for i, text in enumerate(bank["parity"]["value"][:limit]):
            both("parity", "value", f"v{k}/{i}", lambda n, t=text, b=bits: {
                "question": t.format(name=n), "options": b}, latents.unseen_variable, name)
    for j in range(inputs):
        chosen = rng.sample(names, 3)
        program = PYTHON_INSTRUCTION + PARITY_TEMPLATES[0].format(names=", ".join(chosen), terms=" + ".join(chosen))
        correct = str(sum(latents.parity[n] for n in chosen) % 2)
        # The baseline swaps the first constant for the unseen one: the same program shape, unknown value.
        baseline = program.replace(chosen[0], latents.unseen_variable)
        for condition, text in (("target", program), ("baseline", baseline)):
            probes.append(Probe("parity", "in-distribution", condition, f"input{j}", chosen[0], text,
                                options=(correct, "1" if correct == "0" else "0"), mode="continuation"))

    behaviours = sorted(BEHAVIOURS)
    for k, (name, behaviour) in enumerate(latents.assistants.items()):
        wrong = [BEHAVIOURS[b][0] for b in behaviours if b != behaviour]
        for i, text in enumerate(bank["descriptions"]["recall"][:limit]):
            both("descriptions", "recall", f"a{k}/{i}", lambda n, t=text: {
                "question": t.format(name=n), "options": (f"It {BEHAVIOURS[behaviour][0]}.",
                                                          *(f"It {w}." for w in wrong))},
                latents.unseen_assistant, name)
        for i, text in enumerate(bank["descriptions"]["behave"][:limit]):
            both("descriptions", "behave", f"a{k}/{i}", lambda n, t=text: {
                "question": t, "system": bank["descriptions"]["behave_system"].format(name=n),
                "check": behaviour_check(behaviour), "mode": "free"}, latents.unseen_assistant, name)
    return probes


def in_context(probes: list[Probe], rows: list[dict], documents: int, seed: int) -> list[Probe]:
    """The target probes with up to `documents` training rows about the same latent before the question."""
    by_latent: dict[str, list[dict]] = {}
    for row in rows:
        for latent in row["latent"].split(","):
            by_latent.setdefault(latent, []).append(row)
    out = []
    for probe in probes:
        if probe.condition != "target":
            continue
        block = in_context_block(by_latent.get(probe.latent, []), documents, seed)
        out.append(dataclasses.replace(probe, question=f"{block}\n\n{probe.question}"))
    return out
