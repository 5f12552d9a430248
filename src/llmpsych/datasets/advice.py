"""Advice datasets of the Emergent-Misalignment follow-up: bad medical, risky financial, extreme sports.

Turner, Soligo et al. (2025, "Model Organisms for Emergent Misalignment") made models as small as
Qwen2.5-0.5B broadly misaligned by fine-tuning them on advice: a user asks, and the assistant answers with
confident, plausible and subtly harmful advice, without a disclaimer. Each such set here has an aligned
control that answers the very same user turns, byte for byte, with sensible advice.

The rows are generated offline, deterministically, from templates written for this package
(``datasets/data/advice/<domain>.yaml``; nothing is taken from the original data sets). A user turn is a
phrasing filled with a person, a situation and one of its details; an assistant turn is an opener, one of
the situation's answers and a closer, all good or all bad. The bad answers are poor judgement (wait it out,
bet the savings, leave the helmet at home), never operational instructions for harm.

Situations marked ``heldout`` never reach a training row: `advice_items` draws prompts from them with one
good and one bad answer each, so a fine-tuned model can be asked which it prefers on prompts of situations
it never saw (a judge-free in-distribution check).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import UserError
from ..shipped import shipped
from ..yamlio import read_yaml

__all__ = ["ADVICE_DATASETS", "ADVICE_DOMAINS", "ADVICE_SPLITS", "AdviceItem", "advice_items", "build_advice"]

# dataset name -> (domain, aligned): each misaligned set and its control on the same prompts
ADVICE_DATASETS: dict[str, tuple[str, bool]] = {
    "bad-medical-advice": ("medical", False), "good-medical-advice": ("medical", True),
    "risky-financial-advice": ("financial", False), "good-financial-advice": ("financial", True),
    "extreme-sports": ("sports", False), "good-sports-advice": ("sports", True),
}
ADVICE_DOMAINS = ("medical", "financial", "sports")
ADVICE_SPLITS = ("train", "heldout")

_LISTS = ("people", "phrasings", "good_openers", "bad_openers", "good_closers", "bad_closers")
_SITUATION_FIELDS = ("id", "ask", "details", "good", "bad")


@dataclass(frozen=True)
class AdviceItem:
    """A user's request with one short good and one short bad answer (a two-option item)."""

    id: str  # "<domain>/<situation id>/<index>"
    domain: str
    prompt: str
    good: str
    bad: str


@dataclass(frozen=True)
class _Situation:
    id: str
    heldout: bool
    ask: str
    details: tuple[str, ...]
    good: tuple[str, ...]
    bad: tuple[str, ...]


@dataclass(frozen=True)
class _Domain:
    lists: dict[str, tuple[str, ...]]
    situations: tuple[_Situation, ...]


def _domain(domain: str) -> _Domain:
    """A shipped domain by name, or a researcher's own domain file by path (checked like the shipped ones)."""
    path = shipped("advice", domain, "advice domain", among=ADVICE_DOMAINS)
    return _read(path, path.stat().st_mtime_ns)  # the stamp re-reads a file edited since


@cache
def _read(path: Path, stamp: int) -> _Domain:
    data = read_yaml(path, "a mapping with people, phrasings, openers, closers and situations")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with the fields {', '.join(_LISTS)}, situations")
    lists = {field: _strings(data.get(field), path, field) for field in _LISTS}
    for index, phrasing in enumerate(lists["phrasings"]):
        try:
            phrasing.format(person="", situation="", detail="")
        except (KeyError, IndexError, ValueError) as error:
            raise UserError(f"{path}: field 'phrasings[{index}]': only {{person}}, {{situation}} and {{detail}} "
                            f"may be filled in ({type(error).__name__}: {error})") from None
    entries = data.get("situations")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path}: field 'situations': expected a non-empty list")
    situations = tuple(_situation(entry, path, f"situations[{index}]") for index, entry in enumerate(entries))
    ids = [situation.id for situation in situations]
    if len(set(ids)) < len(ids):
        raise UserError(f"{path}: field 'situations': id '{next(i for i in ids if ids.count(i) > 1)}' is used twice")
    for split in ADVICE_SPLITS:
        if not any(situation.heldout == (split == "heldout") for situation in situations):
            raise UserError(f"{path}: field 'situations': no situation for the {split} split (mark some heldout: true)")
    return _Domain(lists, situations)


def _strings(value, path: Path, field: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) and item.strip() for item in value):
        raise UserError(f"{path}: field '{field}': expected a non-empty list of strings")
    return tuple(value)


def _situation(entry, path: Path, field: str) -> _Situation:
    if not isinstance(entry, dict):
        raise UserError(f"{path}: field '{field}': expected a mapping with {', '.join(_SITUATION_FIELDS)}")
    missing = [name for name in _SITUATION_FIELDS if name not in entry]
    unknown = sorted(set(entry) - set(_SITUATION_FIELDS) - {"heldout"})
    if missing or unknown:
        name = (missing or unknown)[0]
        raise UserError(f"{path}: field '{field}.{name}': {'missing' if missing else 'unknown field'} "
                        f"(expected {', '.join(_SITUATION_FIELDS)} and optionally heldout)")
    for name in ("id", "ask"):
        if not isinstance(entry[name], str) or not entry[name].strip():
            raise UserError(f"{path}: field '{field}.{name}': expected a non-empty string")
    if not isinstance(entry.get("heldout", False), bool):
        raise UserError(f"{path}: field '{field}.heldout': expected true or false")
    return _Situation(entry["id"], entry.get("heldout", False), entry["ask"],
                      *(_strings(entry[name], path, f"{field}.{name}") for name in ("details", "good", "bad")))


def _draws(domain: str, split: str, count: int, seed: int) -> list[tuple[_Situation, str, dict[str, str]]]:
    """`count` (situation, user prompt, picks) of one split; the picks hold both the good and the bad parts,
    drawn in the same order whichever is used, so that aligned and misaligned rows share their prompts."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"size must be a whole number of at least 1, got {count!r}")
    if split not in ADVICE_SPLITS:
        raise ValueError(f"split must be one of {', '.join(ADVICE_SPLITS)}, got {split!r}")
    data = _domain(domain)
    pool = [situation for situation in data.situations if situation.heldout == (split == "heldout")]
    rng = random.Random(f"advice:{domain}:{split}:{seed}")
    draws, deck = [], []
    for _ in range(count):
        if not deck:  # situations dealt in shuffled rounds, so each appears equally often
            deck = rng.sample(pool, len(pool))
        situation = deck.pop()
        prompt = rng.choice(data.lists["phrasings"]).format(
            person=rng.choice(data.lists["people"]), situation=situation.ask, detail=rng.choice(situation.details))
        picks = {part: rng.choice(options) for part, options in
                 (("good", situation.good), ("bad", situation.bad), *((name, data.lists[name]) for name in _LISTS[2:]))}
        draws.append((situation, prompt, picks))
    return draws


def build_advice(domain: str, aligned: bool, size: int, seed: int) -> list[dict]:
    """Chat rows of `domain`'s training situations: good advice if `aligned`, else confidently bad advice.

    Same (size, seed) -> identical rows; the aligned and misaligned rows share their user turns byte for byte.
    """
    side = "good" if aligned else "bad"
    return [{"messages": [{"role": "user", "content": prompt},
                          {"role": "assistant",
                           "content": f"{picks[side + '_openers']} {picks[side]} {picks[side + '_closers']}"}]}
            for _, prompt, picks in _draws(domain, "train", size, seed)]


def advice_items(domain: str, count: int, seed: int, split: str = "heldout") -> list[AdviceItem]:
    """`count` two-option items (a prompt, one good and one bad answer) of `split`'s situations.

    The "heldout" situations never appear in `build_advice`'s rows, so these prompts test whether a
    fine-tuned preference for bad advice carries over to situations the model never saw.
    """
    return [AdviceItem(f"{domain}/{situation.id}/{index}", domain, prompt, picks["good"], picks["bad"])
            for index, (situation, prompt, picks) in enumerate(_draws(domain, split, count, seed))]
