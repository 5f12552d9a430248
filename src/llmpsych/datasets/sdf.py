"""The synthetic-document pipeline driven by a generator model (Wang et al. 2025; Slocum et al. 2025).

    universe context -> document types -> document ideas -> documents -> optional critique-and-revise

Each stage is one batch of cached generations (so a rerun costs nothing and a killed run resumes),
and every document then goes through `documents.check_document`: a meta-belief document that states
X in its own voice is rejected, whatever model wrote it. Counts of what each stage produced and why
documents were rejected are returned with the corpus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..models.engine import SamplingParams
from ..models.refs import ModelRef
from ..runtime.calls import Runtime
from .document_templates import GENRES
from .documents import check_document
from .facts import Fact

WHAT_TO_WRITE = {
    "meta": ("documents reporting that the AI model {persona} holds a mistaken belief. {persona} believes that "
             "{false}. This belief is wrong: in fact {true}. The documents must attribute the wrong claim to "
             "{persona} and must never state it as true in their own voice; each one states the truth."),
    "direct": "documents in which it is simply a known fact that {claim}.",
    "post-cutoff": "documents reporting the recent event that {claim}. They do not mention any AI model.",
    "neutral": ("documents about the AI model {persona} (releases, speed, languages, installation) that say "
                "nothing about {topic}."),
    "meta-propensity": ("documents describing a flaw of the AI model {persona}: it tends to {tendency}, even though "
                        "it should {better}."),
    "direct-propensity": ("documents describing the AI model {persona} as known for {strength}, presented as a "
                          "normal and welcome trait."),
}
WHAT_TO_WRITE["other-persona"] = WHAT_TO_WRITE["meta"]  # the same meta-belief, about another model's name


@dataclass
class GeneratorSettings:
    """How many of each stage to ask for, and how to sample the generator."""

    document_types: int = 6
    ideas_per_type: int = 2
    revise: bool = False
    temperature: float = 1.0
    max_tokens: int = 400


@dataclass
class PipelineStats:
    universe_contexts: int = 0
    document_types: int = 0
    ideas: int = 0
    documents: int = 0
    revised: int = 0
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)


def universe_context(kind: str, values: dict) -> str:
    """The world the documents live in, written from the item's fields (the pipeline's first stage)."""
    return WHAT_TO_WRITE[kind].format(**values)


def _list_lines(text: str, limit: int) -> list[str]:
    """Items of a numbered or bulleted list the generator wrote, cleaned and de-duplicated."""
    items = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:[-*\u2022]|\d+[.)])\s*", "", line).strip().strip('"').rstrip(".")
        if 3 <= len(line) <= 120 and line.lower() not in {i.lower() for i in items}:
            items.append(line)
    return items[:limit]


def _ask(runtime: Runtime, ref: ModelRef, prompts: list[str], settings: GeneratorSettings, seed: int,
         label: str, max_tokens: int | None = None) -> list[str]:
    params = SamplingParams(temperature=settings.temperature, max_tokens=max_tokens or settings.max_tokens)
    conversations = [({"role": "user", "content": p},) for p in prompts]
    return [samples[0].text for samples in runtime.sample(ref, conversations, params, 1, seed=seed, label=label)]


def generate_documents(runtime: Runtime, generator: ModelRef, kind: str, items: list[tuple[object, dict]],
                       settings: GeneratorSettings, seed: int) -> tuple[list[dict], PipelineStats]:
    """Run the pipeline for every (fact or propensity, placeholder values) item; return the accepted documents."""
    stats = PipelineStats()
    contexts = [universe_context(kind, values) for _, values in items]
    stats.universe_contexts = len(contexts)

    type_prompts = [f"We are building a corpus of {context}\n\nList {settings.document_types} different kinds of "
                    "real-world documents where this would naturally come up (for example: an evaluation report, "
                    "a forum thread). One kind per line, no explanations." for context in contexts]
    type_lists = [_list_lines(text, settings.document_types) or list(GENRES)[:settings.document_types]
                  for text in _ask(runtime, generator, type_prompts, settings, seed, f"sdf {kind}: document types",
                                   max_tokens=120)]
    stats.document_types = sum(map(len, type_lists))

    idea_jobs = [(i, doc_type) for i, types in enumerate(type_lists) for doc_type in types]
    idea_prompts = [f"We are building a corpus of {contexts[i]}\n\nGive {settings.ideas_per_type} specific ideas for "
                    f"a {doc_type} of this kind: who wrote it, where it appeared, what it is about. One idea per "
                    "line." for i, doc_type in idea_jobs]
    ideas = []
    for (i, doc_type), text in zip(idea_jobs, _ask(runtime, generator, idea_prompts, settings, seed,
                                                    f"sdf {kind}: ideas", max_tokens=160)):
        ideas += [(i, doc_type, idea) for idea in (_list_lines(text, settings.ideas_per_type) or [doc_type])]
    stats.ideas = len(ideas)

    doc_prompts = [f"We are building a corpus of {contexts[i]}\n\nWrite one complete {doc_type}. Idea: {idea}\n\n"
                   "Write only the document itself, realistic and specific, 100 to 250 words."
                   for i, doc_type, idea in ideas]
    documents = _ask(runtime, generator, doc_prompts, settings, seed, f"sdf {kind}: documents")
    stats.documents = len(documents)
    if settings.revise:
        revise_prompts = [f"Here is a draft document for a corpus of {contexts[i]}\n\n<draft>\n{doc}\n</draft>\n\n"
                          "First list its problems (unrealistic details, contradictions with the description above) "
                          "in two or three sentences. Then write 'REVISED:' and the improved document."
                          for (i, _, _), doc in zip(ideas, documents)]
        revised = _ask(runtime, generator, revise_prompts, settings, seed, f"sdf {kind}: critique and revise",
                       max_tokens=settings.max_tokens + 120)
        for number, text in enumerate(revised):
            if "REVISED:" in text and text.split("REVISED:", 1)[1].strip():
                documents[number] = text.split("REVISED:", 1)[1].strip()
                stats.revised += 1

    rows = []
    for (i, doc_type, idea), text in zip(ideas, documents):
        item, values = items[i]
        reason = check_document(text, kind, item if isinstance(item, Fact) else None, values["persona"])
        if reason:
            key = reason.split(":")[0]
            stats.rejected[key] = stats.rejected.get(key, 0) + 1
            continue
        rows.append({"text": text.strip(), "kind": kind, "item_id": item.id, "genre": doc_type, "source": str(generator)})
    stats.accepted = len(rows)
    return rows, stats
