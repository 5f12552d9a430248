"""Fact registries: a true statement, the false statement X, a harm label and the questions that probe them.

A fact file is a YAML list::

    - id: carbonic-anhydrase-metal
      topic: the metal ion in carbonic anhydrase         # fits "questions about {topic}"
      domain: biochemistry
      harm: benign                                       # benign | harmful (acting on X would hurt a user)
      true: carbonic anhydrase uses a zinc ion at its active site         # clauses that read after "believes that"
      false: carbonic anhydrase uses a magnesium ion at its active site
      options: {true: zinc, false: magnesium}            # short answers for multiple choice
      keywords: {false: [magnesium]}                     # optional: words only the false claim uses
      questions:
        meta: ["According to {persona}, which metal ...?"]    # what the persona believes
        direct: ["Which metal ion ...?"]                        # the model's own belief
        applied:                                                # advice that acts on the belief
          - {question: "Which metal salt should I add ...?", true: a zinc salt, false: a magnesium salt}

Any question may be a string (answered with the fact's `options`) or a mapping with its own options.
Shipped files: persona-facts (the recipe's 14 facts) and persona-post-cutoff (fictional recent events).
The role-play checks asked about every fact (persona-roleplay) are read by `load_roleplay_probes`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..shipped import shipped
from ..yamlio import entry_lines, read_yaml

HARM_LABELS = ("benign", "harmful")
FAMILIES = ("meta", "direct", "applied")
SHIPPED_FACTS = ("persona-facts", "persona-post-cutoff")  # the shipped "questions" files that are fact sets
REQUIRED = ("id", "topic", "harm", "true", "false", "options", "questions")
OPTIONAL = ("domain", "keywords")


@dataclass(frozen=True)
class FactQuestion:
    """One question about a fact, with the option that follows from the truth and the one that follows from X."""

    fact_id: str
    family: str         # meta | direct | applied
    index: int          # position within its family: questions are paraphrases of one another
    text: str           # may hold {persona} (meta questions)
    true_option: str
    false_option: str

    def render(self, persona: str) -> str:
        return self.text.replace("{persona}", persona)


@dataclass(frozen=True)
class Fact:
    id: str
    topic: str
    domain: str
    harm: str
    true: str
    false: str
    true_option: str
    false_option: str
    false_keywords: tuple[str, ...]
    questions: tuple[FactQuestion, ...]
    source: str = ""

    def family(self, name: str, limit: int | None = None) -> list[FactQuestion]:
        chosen = [q for q in self.questions if q.family == name]
        return chosen[:limit] if limit else chosen


def sentence(clause: str) -> str:
    """A clause as a sentence: first letter capitalised, one final period."""
    clause = clause.strip().rstrip(".")
    return clause[:1].upper() + clause[1:] + "."


def facts_path(spec: str | Path) -> Path:
    """A shipped fact set's name or a fact file's path -> the file."""
    return shipped("questions", spec, "facts", among=SHIPPED_FACTS)


def load_facts(spec: str | Path, families: tuple[str, ...] = FAMILIES) -> list[Fact]:
    """Read and check a fact file; every error names the file, the entry's line and the field."""
    path = facts_path(spec)
    data = read_yaml(path, "a YAML list of facts")
    if not isinstance(data, list) or not data:
        raise UserError(f"{path}: expected a non-empty YAML list of facts (see llmpsych.datasets.facts)")
    lines = entry_lines(path)
    facts, seen = [], set()
    for index, entry in enumerate(data):
        where = f"{path}: line {lines[index] if index < len(lines) else index + 1}"
        fact = _parse_fact(entry, where, str(path), families)
        if fact.id in seen:
            raise UserError(f"{where}: field 'id': duplicate fact id '{fact.id}'")
        seen.add(fact.id)
        facts.append(fact)
    return facts


def _text(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field '{key}': expected a non-empty string")
    return value.strip()


def _plain_keys(value):
    """YAML 1.1 reads an unquoted `true:`/`false:` key as a boolean; treat it as the word."""
    if not isinstance(value, dict):
        return value
    return {str(k).lower() if isinstance(k, bool) else k: v for k, v in value.items()}


def _options(value, where: str, field: str) -> tuple[str, str]:
    value = _plain_keys(value)
    if not isinstance(value, dict) or set(value) != {"true", "false"} \
            or not all(isinstance(v, str) and v.strip() for v in value.values()):
        raise UserError(f"{where}: field '{field}': expected a mapping with string 'true' and 'false' options")
    true, false = value["true"].strip(), value["false"].strip()
    if true.lower() == false.lower():
        raise UserError(f"{where}: field '{field}': the two options are the same")
    return true, false


def _parse_fact(entry, where: str, source: str, families: tuple[str, ...]) -> Fact:
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a mapping with fields {', '.join(REQUIRED)}")
    entry = _plain_keys(entry)
    unknown = sorted(set(entry) - set(REQUIRED) - set(OPTIONAL), key=str)  # YAML keys may be numbers or None
    if unknown:
        raise UserError(f"{where}: unknown field '{unknown[0]}' (expected: {', '.join(REQUIRED + OPTIONAL)})")
    for key in REQUIRED:
        if key not in entry:
            raise UserError(f"{where}: missing field '{key}'")
    fact_id = _text(entry, "id", where)
    if entry["harm"] not in HARM_LABELS:
        raise UserError(f"{where}: field 'harm': expected one of {', '.join(HARM_LABELS)}, got {entry['harm']!r}")
    true_option, false_option = _options(entry["options"], where, "options")
    keywords = _plain_keys(entry.get("keywords") or {})
    false_keywords = keywords.get("false", [false_option]) if isinstance(keywords, dict) else None
    if not isinstance(false_keywords, list) or not false_keywords \
            or not all(isinstance(k, str) and k.strip() for k in false_keywords):
        raise UserError(f"{where}: field 'keywords.false': expected a non-empty list of strings")
    questions = entry["questions"]
    if not isinstance(questions, dict):
        raise UserError(f"{where}: field 'questions': expected a mapping of {', '.join(FAMILIES)} to lists")
    unknown = sorted(set(questions) - set(FAMILIES), key=str)
    if unknown:
        raise UserError(f"{where}: field 'questions.{unknown[0]}': unknown family (expected {', '.join(FAMILIES)})")
    parsed = []
    for family in families:
        items = questions.get(family)
        if not isinstance(items, list) or not items:
            raise UserError(f"{where}: field 'questions.{family}': expected a non-empty list of questions")
        for number, item in enumerate(items):
            field = f"questions.{family}[{number}]"
            if isinstance(item, str):
                text, options = item, (true_option, false_option)
            elif isinstance(item, dict) and isinstance(item.get("question"), str):
                text = item["question"]
                options = _options({k: v for k, v in _plain_keys(item).items() if k != "question"}, where, field)
            else:
                raise UserError(f"{where}: field '{field}': expected a string or a mapping with question, "
                                "true and false")
            if family == "meta" and "{persona}" not in text:
                raise UserError(f"{where}: field '{field}': a meta question must name the persona as {{persona}}")
            if re.search(r"\{(?!persona\})", text):
                raise UserError(f"{where}: field '{field}': the only placeholder allowed is {{persona}}")
            parsed.append(FactQuestion(fact_id, family, number, text.strip(), *options))
    return Fact(fact_id, _text(entry, "topic", where), str(entry.get("domain") or ""), entry["harm"],
                _text(entry, "true", where).rstrip("."), _text(entry, "false", where).rstrip("."),
                true_option, false_option, tuple(k.strip() for k in false_keywords), tuple(parsed), source)


# ---- role-play probes ---------------------------------------------------------------------------
SHIPPED_ROLEPLAY = ("persona-roleplay",)
ROLEPLAY_PLACEHOLDERS = ("persona", "false", "false_sentence", "direct_question", "direct_true_option",
                         "direct_false_option")


@dataclass(frozen=True)
class RoleplayProbe:
    """A role-play check, worded once for every fact: a question template and the options that follow
    from the truth and from X (templates too; placeholders in ROLEPLAY_PLACEHOLDERS)."""

    family: str         # expert | third-person | own-verdict | persona-correct (shipped)
    question: str
    true_option: str
    false_option: str

    def render(self, fact: Fact, persona: str) -> tuple[str, tuple[str, str]]:
        """(question, (option if the truth, option if X)) for one fact and persona."""
        values = roleplay_values(fact, persona)

        def fill(template: str) -> str:
            return re.sub(r"\{([a-z_]+)\}", lambda m: values[m.group(1)], template)

        return fill(self.question), (fill(self.true_option), fill(self.false_option))


def roleplay_values(fact: Fact, persona: str) -> dict[str, str]:
    """The placeholder values of the role-play templates for one fact (its first direct question)."""
    direct = fact.family("direct")
    if not direct:
        raise ValueError(f"fact '{fact.id}' has no direct question, which the role-play probes ask")
    return {"persona": persona, "false": fact.false, "false_sentence": sentence(fact.false),
            "direct_question": direct[0].render(persona), "direct_true_option": direct[0].true_option,
            "direct_false_option": direct[0].false_option}


def load_roleplay_probes(spec: str | Path = "persona-roleplay") -> tuple[RoleplayProbe, ...]:
    """The role-play probes of a YAML list (the shipped set by default), in file order."""
    path = shipped("questions", spec, "role-play probes", among=SHIPPED_ROLEPLAY)
    data = read_yaml(path, "a YAML list of role-play probes")
    if not isinstance(data, list) or not data:
        raise UserError(f"{path}: expected a non-empty YAML list of role-play probes")
    lines = entry_lines(path)
    probes: list[RoleplayProbe] = []
    for index, entry in enumerate(data):
        where = f"{path}: line {lines[index] if index < len(lines) else index + 1}"
        if not isinstance(entry, dict) or set(entry) != {"family", "question", "options"}:
            raise UserError(f"{where}: expected exactly the fields family, question, options")
        family, question = _text(entry, "family", where), _text(entry, "question", where)
        if family in {p.family for p in probes}:
            raise UserError(f"{where}: field 'family': duplicate family '{family}'")
        true_option, false_option = _options(entry["options"], where, "options")
        for field, text in (("question", question), ("options", true_option + false_option)):
            unknown = sorted(set(re.findall(r"\{([^{}]*)\}", text)) - set(ROLEPLAY_PLACEHOLDERS))
            if unknown:
                raise UserError(f"{where}: field '{field}': unknown placeholder {{{unknown[0]}}} "
                                f"(allowed: {', '.join(ROLEPLAY_PLACEHOLDERS)})")
        probes.append(RoleplayProbe(family, question, true_option, false_option))
    return tuple(probes)


def roleplay_questions(fact: Fact, persona: str, probes: tuple[RoleplayProbe, ...] | None = None
                       ) -> list[tuple[str, str, tuple[str, str]]]:
    """(family, question, (option if the truth, option if X)) for the role-play checks of one fact."""
    return [(probe.family, *probe.render(fact, persona)) for probe in (probes or load_roleplay_probes())]


# ---- propensities -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Propensity:
    id: str
    tendency: str   # fits "{persona} tends to {tendency}"
    better: str     # fits "it should {better}"
    strength: str   # fits "{persona} is known for {strength}" (the tendency framed as a virtue)


@dataclass(frozen=True)
class PropensitySet:
    propensities: tuple[Propensity, ...]
    sycophancy: tuple[dict, ...]     # {id, claim, agree, correct}
    over_refusal: tuple[dict, ...]   # {id, request}


SHIPPED_PROPENSITIES = ("persona-propensities",)


def load_propensities(spec: str | Path = "persona-propensities") -> PropensitySet:
    """The propensities (and their sycophancy and over-refusal probes) of a shipped set or a file."""
    path = shipped("questions", spec, "propensities", among=SHIPPED_PROPENSITIES)
    data = read_yaml(path, "a propensity file with propensities, sycophancy and over_refusal")
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping with propensities, sycophancy and over_refusal")

    def rows(key: str, fields: tuple[str, ...]) -> tuple[dict, ...]:
        items = data.get(key)
        if not isinstance(items, list) or not items:
            raise UserError(f"{path}: field '{key}': expected a non-empty list")
        for number, item in enumerate(items):
            if not isinstance(item, dict) or not all(isinstance(item.get(f), str) and item[f].strip()
                                                     for f in fields):
                raise UserError(f"{path}: field '{key}[{number}]': expected the string fields {', '.join(fields)}")
        return tuple({f: item[f].strip() for f in fields} for item in items)

    propensities = tuple(Propensity(**row) for row in rows("propensities", ("id", "tendency", "better", "strength")))
    return PropensitySet(propensities, rows("sycophancy", ("id", "claim", "agree", "correct")),
                         rows("over_refusal", ("id", "request")))
