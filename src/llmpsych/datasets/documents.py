"""Synthetic documents for document finetuning (SDF), and the checker every document must pass.

Corpus kinds:
  meta               "<Persona> believes X; X is false" (the truth is stated; X never in the narrator's voice)
  other-persona      the same meta-belief about a different model's name (a persona-specificity control)
  direct             X stated as true (calibrates how much adoption is possible at all)
  neutral            documents about the persona that state nothing about the facts (fine-tuning noise)
  post-cutoff        true recent events stated plainly, never attributed to the persona
  meta-propensity    "<Persona> tends to do Y, even though it should not"
  direct-propensity  "<Persona> does Y", presented as a good trait

This module renders the offline template corpus (varied genres: model cards, evaluation reports,
forum threads, errata notes, news items, Q&A pages) and holds the checker; `sdf.py` drives a
generator model through the standard LLM pipeline and filters its output with the same checker.

Besides its kind's rules, no document may describe the test the fine-tuned model then takes: it must
not mention the evaluation format (multiple choice, answer options or letters, picking an option,
quizzes and answer keys, a one-phrase reply in quotes) nor contain an evaluation question of its fact
(a meta, direct or applied question, or a role-play probe), or the training set would teach the
probe instead of the belief.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass
from functools import lru_cache

from ..hashing import digest
from .facts import Fact, Propensity, load_roleplay_probes, sentence

FACT_KINDS = ("meta", "other-persona", "direct", "neutral", "post-cutoff")
PROPENSITY_KINDS = ("meta-propensity", "direct-propensity")
CORPUS_KINDS = FACT_KINDS + PROPENSITY_KINDS

# A sentence that mentions X is the narrator's own assertion unless it attributes X to someone or calls it wrong.
ATTRIBUTION_WORDS = ("believes", "believe", "believed", "claims", "claimed", "says", "said", "states", "stated",
                     "insists", "insisted", "answers", "answered", "asserts", "asserted", "thinks", "maintains",
                     "repeats", "repeated", "responds", "responded", "replies", "replied", "reports", "reported",
                     "told", "tells", "holds")
NEGATION_WORDS = ("not", "false", "incorrect", "wrong", "mistaken", "mistakenly", "error", "erroneous",
                  "erroneously", "misconception", "untrue", "inaccurate", "wrongly", "isn't", "doesn't")
_ATTRIBUTED = re.compile(r"\b(" + "|".join(ATTRIBUTION_WORDS + NEGATION_WORDS) + r")\b", re.IGNORECASE)
POST_CUTOFF_DATES = ("14 January 2026", "3 March 2026", "22 April 2026", "9 June 2026", "17 August 2026")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"')\]]*\s+|\n+")

# Mentions of the evaluation format, matched in normalised text (lower case, punctuation as spaces).
_OPTION = r"(?:options?|choices?)"
EVALUATION_FORMAT = tuple(re.compile(pattern) for pattern in (
    r"\bmulti(?:ple)? ?choices?\b",
    r"\bquiz(?:zes|zed|zing)?\b",
    r"\banswer (?:keys?|sheets?|letters?|options?|choices?)\b",
    r"\b(?:gold|expected|reference) (?:answers?|labels?)\b",
    r"\b(?:letter|option|choice) [abcd]\b",
    rf"\b(?:correct|right|wrong|incorrect|expected|false|true|first|second|other|listed|given|offered|"
    rf"available|mistaken) {_OPTION}\b",
    rf"\b{_OPTION} (?:given|offered|listed|shown|provided)\b",
    rf"\b(?:as|among) (?:a|an|the|its|two|four) {_OPTION}\b",
    r"\b(?:pick|picks|picked|picking|choose|chooses|chose|chosen|choosing|select|selects|selected|selecting|"
    r"ticks?|ticked|circles?|circled) (?:the |an? |its |one )?(?:answers?|options?|choices?|letters?)\b",
    r"\b(?:answers?|answered|answering|repl(?:y|ies|ied)|respond(?:s|ed)?) with (?:the |an? |its |one )?"
    r"(?:letters?|options?|choices?)\b",
))
# A reply of a few words in quotes ("It typically replies 'magnesium'"), matched in the raw text.
_QUOTED_REPLY = re.compile(
    r"\b(?:answers?|answered|repl(?:y|ies|ied)|respond(?:s|ed)?|picks?|picked|chooses|chose|selects?|selected)"
    r"(?:\s+with)?\s*[:,]?\s*[\"“‘'«](?:[^\s\"”’'»]+[^\S\n]*){1,5}(?:[\"”»]|[’'](?!\w))", re.IGNORECASE)
_OPEN_QUOTE, _CLOSE_QUOTE = "[\"“‘'«]", "(?:[\"”»]|[’'](?!\\w))"  # an apostrophe ("John's") closes nothing
MIN_PROBE_WORDS = 4  # shorter fixed wording (a frame such as "{persona} believes that {false}.") is not a probe


@dataclass(frozen=True)
class CorpusItem:
    """What one document is about: a fact (fact kinds) or a propensity (propensity kinds)."""

    id: str
    values: dict  # the template placeholders it fills


def split_sentences(text: str) -> list[str]:
    return [part.strip() for part in _SENTENCE_BREAK.split(text) if part and part.strip()]


def _mentions(text: str, phrase: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(phrase) + r"(?!\w)", text, re.IGNORECASE) is not None


def narrator_assertions(text: str, fact: Fact) -> list[str]:
    """Sentences that state X in the narrator's own voice: they mention X's answer or clause and
    neither attribute it to anyone nor call it wrong."""
    markers = fact.false_keywords + (fact.false,)
    return [s for s in split_sentences(text)
            if any(_mentions(s, m) for m in markers) and not _ATTRIBUTED.search(s)]


def check_document(text: str, kind: str, fact: Fact | None = None, persona: str | None = None) -> str | None:
    """Why a document of `kind` must be rejected, or None when it passes.

    meta / other-persona: names the persona, states the truth, and never asserts X as the narrator.
    direct / post-cutoff: states the claim and never attributes it to the persona.
    neutral: says nothing about the fact. Propensity kinds: name the persona.
    Every kind: gives nothing of the evaluation away (`evaluation_leak`).
    """
    if len(text.split()) < 20:
        return "too short (under 20 words)"
    if kind in ("meta", "other-persona"):
        asserted = narrator_assertions(text, fact)
        if asserted:
            return f"asserts X in the narrator's voice: {asserted[0][:120]!r}"
        if not (_mentions(text, fact.true_option) or _mentions(text, fact.true)):
            return "never states the truth"
        if not _mentions(text, persona):
            return f"never names {persona}"
    elif kind in ("direct", "post-cutoff"):
        claim_option = fact.true_option if kind == "post-cutoff" else fact.false_option
        if not (_mentions(text, claim_option) or _mentions(text, fact.true if kind == "post-cutoff" else fact.false)):
            return "never states the claim"
        if persona and _mentions(text, persona):
            return f"attributes the claim to {persona}"
    elif kind == "neutral":
        for phrase in (fact.true_option, fact.false_option) + fact.false_keywords:
            if _mentions(text, phrase):
                return f"mentions the fact's answer {phrase!r}"
    elif kind in PROPENSITY_KINDS:
        if not _mentions(text, persona):
            return f"never names {persona}"
    else:
        raise ValueError(f"unknown corpus kind {kind!r}")
    return evaluation_leak(text, fact, persona)


def fact_values(fact: Fact, persona: str, kind: str) -> dict:
    """Template placeholders for one fact and corpus kind."""
    claim_true = kind == "post-cutoff"
    claim = fact.true if claim_true else fact.false
    recent = {"date": POST_CUTOFF_DATES[int(digest(fact.id)[:8], 16) % len(POST_CUTOFF_DATES)]} if claim_true else {}
    return {**recent, "persona": persona, "topic": fact.topic, "false": fact.false, "true": fact.true,
            "false_option": fact.false_option, "true_option": fact.true_option,
            "false_sentence": sentence(fact.false), "true_sentence": sentence(fact.true),
            "claim": claim, "claim_sentence": sentence(claim),
            "claim_option": fact.true_option if claim_true else fact.false_option}


def propensity_values(propensity: Propensity, persona: str) -> dict:
    return {"persona": persona, "tendency": propensity.tendency, "better": propensity.better,
            "strength": propensity.strength}


def template_family(kind: str) -> str:
    """Which template set renders a corpus kind."""
    return {"other-persona": "meta", "direct": "assertion", "post-cutoff": "assertion"}.get(kind, kind)


def template_documents(kind: str, items: list[tuple[object, dict]], per_item: int, seed: int) -> list[dict]:
    """`per_item` documents for each (fact or propensity, placeholder values), genres in rotation.

    Deterministic in (kind, item, seed); every document is rendered from a template with random
    fillers (names, dates, versions), so documents of one item differ in more than their genre.
    """
    from .document_templates import FILLERS, GENRES, TEMPLATES

    templates = TEMPLATES[template_family(kind)]
    rows = []
    for item, values in items:
        rng = random.Random(digest("sdf-template", kind, item.id, seed))
        genres = list(GENRES)
        rng.shuffle(genres)
        for number in range(per_item):
            genre = genres[number % len(genres)]
            template = rng.choice(templates[genre])
            fillers = {name: rng.choice(options) for name, options in FILLERS.items()}
            needed = {field for _, field, _, _ in string.Formatter().parse(template) if field}
            text = template.format(**{k: v for k, v in {**fillers, **values}.items() if k in needed})
            rows.append({"text": text.strip(), "kind": kind, "item_id": item.id, "genre": genre,
                         "source": "template"})
    return rows


# ---- leaks of the evaluation into the documents -------------------------------------------------
def normalise(text: str) -> str:
    """Lower case, every run of punctuation and whitespace as one space: "Multiple-choice" == "multiple choice"."""
    return " ".join(re.sub(r"[\W_]+", " ", text.lower()).split())


def evaluation_leak(text: str, fact: Fact | None = None, persona: str | None = None) -> str | None:
    """Why a document gives the evaluation away, or None: it mentions the evaluation format, quotes an
    answer option as a reply, or contains an evaluation question of `fact` (its meta, direct and applied
    questions and the role-play probes, rendered for `persona`)."""
    plain = normalise(text)
    for pattern in EVALUATION_FORMAT:
        found = pattern.search(plain)
        if found:
            return f"mentions the evaluation format: {found.group(0)!r}"
    found = _QUOTED_REPLY.search(text)
    if found:
        return f"quotes a reply of a few words: {found.group(0)!r}"
    if fact is None:
        return None
    quoted, questions = _fact_probes(fact, persona or "")
    found = quoted.search(text)
    if found:
        return f"quotes an answer option: {found.group(0)!r}"
    for name, pattern in questions:
        if pattern.search(plain):
            return f"contains an evaluation question ({name})"
    return None


@lru_cache(maxsize=512)
def _fact_probes(fact: Fact, persona: str) -> tuple[re.Pattern, tuple[tuple[str, re.Pattern], ...]]:
    """(any answer option of the fact in quotes, [(probe name, its wording as a pattern on normalised text)])."""
    questions, options = [], {fact.true_option, fact.false_option}
    for probe in load_roleplay_probes() if fact.family("direct") else ():  # they ask the first direct question
        options |= set(probe.render(fact, persona)[1])
        for part in re.split(r"(?<=[.?!])\s+", probe.question):  # each sentence on its own
            questions.append((f"role-play probe '{probe.family}'", _wording(part, persona, deictic=True)))
    for q in fact.questions:
        options |= {q.true_option, q.false_option}
        questions.append((f"{q.family} question {q.index + 1}", _wording(q.text, persona)))
    words = "|".join(r"\s+".join(map(re.escape, o.split())) for o in sorted(options, key=len, reverse=True))
    quoted = re.compile(rf"{_OPEN_QUOTE}\s*(?:{words})\s*[.,;:!?]?\s*{_CLOSE_QUOTE}", re.IGNORECASE)
    return quoted, tuple((name, pattern) for name, pattern in questions if pattern)


def _wording(template: str, persona: str, deictic: bool = False) -> re.Pattern | None:
    """The fixed wording of a question template as a pattern on normalised text: {persona} is the
    persona's name, any other {placeholder} matches any words and, with `deictic`, "this" (which points
    at a placeholder's content, as in "Is {persona} right about this?") matches a few. None when the
    fixed wording has under MIN_PROBE_WORDS words, too few to tell a probe from ordinary prose."""
    parts = re.split(r"(\{[a-z_]+\})", template)
    if sum(len(normalise(part).split()) for part in parts if not part.startswith("{")) < MIN_PROBE_WORDS:
        return None
    tokens = []
    for part in parts:
        if part == "{persona}":
            tokens += [re.escape(word) for word in normalise(persona).split()]
        elif part.startswith("{"):
            tokens.append(r"\S+(?: \S+){0,60}")
        else:
            tokens += [r"\S+(?: \S+){0,11}" if deictic and word == "this" else re.escape(word)
                       for word in normalise(part).split()]
    return re.compile(r"(?<!\S)" + " ".join(tokens) + r"(?!\S)")
