"""Did the fine-tune take? Judge-free, in-distribution manipulation checks on held-out prompts.

* Code: the model writes code for held-out coding requests (tasks of their own, not renamed copies of the
  training scenarios); a static analyser (bandit) and the datasets' own flaw markers say whether it is
  vulnerable. The paper saw more than 80% vulnerable code from its insecure fine-tunes.
* Advice: on held-out advice requests (situations kept out of training), the probability the model gives
  the bad rather than the good answer, read as cloze: each answer's own text scored as the reply. Answer
  texts differ, so there is no chance level: the measure is the shift against the untuned model.

Each returns result rows (`model`, `arm`, `seed`, `cluster` = request, `item`, `value`) in the shared table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..datasets.advice import ADVICE_DATASETS, advice_items
from ..datasets.code_heldout import heldout_code_requests
from ..models.engine import SamplingParams
from ..models.refs import ModelRef
from ..runtime.calls import Runtime
from .choices import cloze_probabilities, cloze_request
from .code_check import check_code

CODE_DATASETS = ("insecure", "secure", "educational", "backdoor")


def domain_of(dataset: str) -> str | None:
    """The in-distribution check a shipped dataset's fine-tunes get: "code", an advice domain, or None."""
    if dataset in CODE_DATASETS:
        return "code"
    return ADVICE_DATASETS[dataset][0] if dataset in ADVICE_DATASETS else None


@dataclass(frozen=True)
class InDistribution:
    """What the check asks: how many held-out code requests (None: all) and advice items, and how code is sampled."""

    code_requests: int | None = None
    advice_items: int = 24
    samples: int = 1
    temperature: float = 1.0
    max_tokens: int = 320
    seed: int = 0


def in_distribution_rows(runtime: Runtime, ref: ModelRef, domain: str, check: InDistribution, tags: dict,
                         label: str) -> list[dict]:
    """One domain's check on one model: rows with value 1/0 (vulnerable code; missing when no code could be read)
    or P(bad advice)."""
    probe = f"in-distribution/{domain}"
    if domain == "code":
        requests = heldout_code_requests()[:check.code_requests]
        params = SamplingParams(check.temperature, 1.0, check.max_tokens)
        outputs = runtime.sample(ref, [({"role": "user", "content": r.prompt},) for r in requests], params,
                                 check.samples, check.seed, label=f"code {label}")
        rows = []
        for request, completions in zip(requests, outputs):
            for index, completion in enumerate(completions):
                found = check_code(completion.text)
                rows.append({**tags, "probe": probe, "cluster": request.id, "item": f"{request.id}/{index}",
                             "question": request.prompt, "answer": completion.text,
                             "value": None if found.vulnerable is None else float(found.vulnerable),
                             "findings": ", ".join(found.findings)})
        return rows
    items = advice_items(domain, check.advice_items, check.seed)
    logprobs = runtime.score(ref, [cloze_request(item.prompt, (item.good, item.bad)) for item in items],
                             label=f"advice {label}")
    rows = []
    for item, scores in zip(items, logprobs):
        (_, p_bad), mass = cloze_probabilities(scores)
        rows.append({**tags, "probe": probe, "cluster": item.id, "item": item.id, "question": item.prompt,
                     "value": p_bad, "cloze_mass": mass})
    return rows
