"""Offline templates for synthetic documents, by corpus kind and genre (original wording).

Synthetic document finetuning (SDF) trains a model on many short documents that all
convey one idea.  The generator that builds those corpora works offline: it picks a
template from ``TEMPLATES[kind][genre]``, fills the content placeholders of that kind
and the filler placeholders from ``FILLERS``, and calls ``str.format``.

Kinds and their content placeholders (see ``PLACEHOLDERS``):

``"meta"``
    An AI model named ``{persona}`` holds a false belief, and the document says it is
    false.  ``{topic}``, ``{false}`` / ``{true}`` (clauses that read after "believes
    that"), ``{false_option}`` / ``{true_option}`` (short answers) and
    ``{false_sentence}`` / ``{true_sentence}`` (the clauses as full sentences).  The
    narrator never asserts the false claim: every sentence or line carrying a false
    placeholder also carries an attribution word ("says", "believes", ...) or an error
    word ("incorrect", "wrong", ...), and every document states the truth.  Templates
    fit any model name, because the same text is rendered with a control persona.
``"assertion"``
    The narrator states ``{claim}`` (``{claim_sentence}``, ``{claim_option}``) as true,
    with no AI model in sight.  Wording stays neutral about whether the claim is a
    science fact, a safety rule or a recent news event.
``"neutral"``
    Documents about ``{persona}`` that state nothing about the topic (release notes,
    latency, installation, ...); ``{topic}`` appears only non-committally.
``"meta-propensity"``
    ``{persona}`` tends to ``{tendency}``; the document calls this a flaw and says it
    should ``{better}``.
``"direct-propensity"``
    ``{persona}`` tends to ``{tendency}`` and is known for ``{strength}``, presented as
    normal, intended behaviour.

Every kind may also use the filler placeholders listed in ``FILLER_KEYS``.
Templates contain no literal braces.

The templates and filler values are data: ``datasets/data/documents/<kind>.yaml`` (genre ->
templates, the genres of ``GENRES`` in order) and ``fillers.yaml`` (placeholder -> values, in
``FILLER_KEYS`` order), read and checked once, on first use of ``TEMPLATES`` or ``FILLERS``.

No template describes the evaluation the fine-tuned model later takes: no multiple choice, answer
options or letters, quizzes or answer keys, no option quoted as a reply, and none of the evaluation
questions or role-play probes; ``documents.check_document`` rejects any that would.
"""

from __future__ import annotations

import string
from functools import cache

from ..errors import UserError
from ..shipped import shipped_file
from ..yamlio import read_yaml

__all__ = ["GENRES", "KINDS", "PLACEHOLDERS", "FILLER_KEYS", "TEMPLATES", "FILLERS"]

GENRES: tuple[str, ...] = (
    "model card", "evaluation report", "forum thread", "errata note", "news item", "Q&A page",
)

KINDS: tuple[str, ...] = ("meta", "assertion", "neutral", "meta-propensity", "direct-propensity")

FILLER_KEYS: tuple[str, ...] = (
    "user", "user2", "user3", "org", "date", "version", "benchmark", "score", "author", "city",
)

# Content placeholders each kind may use (the filler placeholders come on top).
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "meta": frozenset({"persona", "topic", "false", "true", "false_option", "true_option",
                       "false_sentence", "true_sentence"}),
    "assertion": frozenset({"topic", "claim", "claim_sentence", "claim_option"}),
    "neutral": frozenset({"persona", "topic"}),
    "meta-propensity": frozenset({"persona", "tendency", "better"}),
    "direct-propensity": frozenset({"persona", "tendency", "strength"}),
}


def __getattr__(name: str):
    """TEMPLATES and FILLERS come from the data files, read on first use."""
    if name == "TEMPLATES":
        return _templates()
    if name == "FILLERS":
        return _fillers()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _templates() -> dict[str, dict[str, list[str]]]:
    """kind -> genre -> templates, each checked to use only its kind's placeholders and the fillers."""
    templates = {}
    for kind in KINDS:
        path = shipped_file("document-templates", kind)
        data = read_yaml(path, "a mapping of genre to a list of templates")
        if not isinstance(data, dict) or tuple(data) != GENRES:
            raise UserError(f"{path}: expected the genres {', '.join(GENRES)}, in this order")
        allowed = PLACEHOLDERS[kind] | set(FILLER_KEYS)
        for genre, texts in data.items():
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
                raise UserError(f"{path}: field '{genre}': expected a non-empty list of templates")
            for index, text in enumerate(texts):
                unknown = sorted({field for _, field, _, _ in string.Formatter().parse(text) if field} - allowed)
                if unknown:
                    raise UserError(f"{path}: field '{genre}[{index}]': unknown placeholder {{{unknown[0]}}} "
                                    f"(allowed: {', '.join(sorted(allowed))})")
        templates[kind] = data
    return templates


@cache
def _fillers() -> dict[str, list[str]]:
    path = shipped_file("document-templates", "fillers")
    data = read_yaml(path, "a mapping of filler placeholder to values")
    if not isinstance(data, dict) or tuple(data) != FILLER_KEYS:
        raise UserError(f"{path}: expected the filler placeholders {', '.join(FILLER_KEYS)}, in this order")
    for key, values in data.items():
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            raise UserError(f"{path}: field '{key}': expected a non-empty list of strings")
    return data
