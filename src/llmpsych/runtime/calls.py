"""Cached model operations: the only place that decides whether a model call runs.

Every generation, score and fine-tune goes through a `Runtime`. It keys the call by content, answers
from the cache when it can, runs the rest in chunks that are committed as they finish (so a killed run
resumes where it stopped), and counts what it executed and what it reused. Engines are loaded lazily:
a run whose calls are all cached never loads a model.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..hashing import digest
from ..models.engine import Completion, Engine, GenerateRequest, Message, SamplingParams, ScoreRequest
from ..models.hf import EngineOptions, engine_fingerprint
from ..models.refs import ModelRef
from ..errors import UserError
from ..paths import cache_dir
from .cache import CallCache

CODE_VERSION = "1"  # bump when a change alters results for identical inputs, to retire old cache entries


@dataclass
class CallCounts:
    """How many operations of each kind this invocation executed, and how many came from the cache."""

    executed: dict[str, int] = field(default_factory=lambda: {"generate": 0, "score": 0, "train": 0})
    cached: dict[str, int] = field(default_factory=lambda: {"generate": 0, "score": 0, "train": 0})

    def as_dict(self) -> dict:
        from ..models.api import RETRIES

        counts: dict = {kind: {"executed": self.executed[kind], "cached": self.cached[kind]} for kind in self.executed}
        if RETRIES.retried:  # API requests that failed transiently and were retried (429, 5xx, timeouts)
            counts["api_retries"] = dict(RETRIES.retried)
        return counts


def sample_seed(seed: int, messages: tuple[Message, ...], index: int) -> int:
    """The seed of one sample: fixed by the run seed, the conversation and the sample's index."""
    return int(digest("sample-seed", seed, messages, index)[:15], 16)


class Runtime:
    """Cached access to models for one invocation (a run, a judge check, a notebook session)."""

    def __init__(self, cache: CallCache | None = None, options: EngineOptions = EngineOptions(),
                 adapters_dir: Path | None = None, show_progress: bool = True):
        self.cache = cache or CallCache(cache_dir() / "calls.sqlite")
        self.options = options
        self.adapters_dir = adapters_dir or cache_dir() / "adapters"
        self.counts = CallCounts()
        self.show_progress = show_progress
        self._fingerprints: dict[ModelRef, str] = {}
        self._engines: dict[ModelRef, Engine] = {}
        self._default_systems: dict[ModelRef, str | None] = {}
        self._tokenizers: dict[ModelRef, object] = {}

    # ---- engines ----------------------------------------------------------------------------
    def fingerprint(self, ref: ModelRef) -> str:
        if ref not in self._fingerprints:
            self._fingerprints[ref] = engine_fingerprint(ref, self.options)
        return self._fingerprints[ref]

    def engine(self, ref: ModelRef) -> Engine:
        """The loaded engine for `ref` (loads the model on first use)."""
        if ref not in self._engines:
            from ..models import load_engine

            self._engines[ref] = load_engine(ref, self.options)
        return self._engines[ref]

    def default_system_prompt(self, ref: ModelRef) -> str | None:
        """The model's default system prompt, read from its tokenizer without loading weights."""
        if ref.kind == "openai":
            return None  # an API model's hidden defaults are not visible
        if ref.base not in self._default_systems:
            from ..models.chat import default_system_prompt

            tokenizer = self._tokenizer(ref)
            self._default_systems[ref.base] = default_system_prompt(tokenizer) if tokenizer.chat_template else None
        return self._default_systems[ref.base]

    def token_counts(self, ref: ModelRef, texts: list[str]) -> list[int]:
        """How many tokens each text takes as a reply, from the model's tokenizer (no weights loaded)."""
        if ref.kind == "openai":
            raise UserError(f"model '{ref}': token counts need the model's tokenizer, which an API model does not "
                            "expose (use a local model for this measurement)")
        tokenizer = self._tokenizer(ref)
        return [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]

    def _tokenizer(self, ref: ModelRef):
        if ref.base not in self._tokenizers:
            from transformers import AutoTokenizer

            from ..models.hf import model_path

            tokenizer = AutoTokenizer.from_pretrained(model_path(ref.base))
            if self.options.chat_template:
                tokenizer.chat_template = self.options.chat_template
            self._tokenizers[ref.base] = tokenizer
        return self._tokenizers[ref.base]

    # ---- generation -------------------------------------------------------------------------
    def sample(self, ref: ModelRef, conversations: list[tuple[Message, ...]], params: SamplingParams,
               samples: int, seed: int = 0, label: str | None = None) -> list[list[Completion]]:
        """`samples` completions of each conversation; sample i of a conversation is the same every run."""
        requests = [GenerateRequest(messages, params, sample_seed(seed, messages, index))
                    for messages in conversations for index in range(samples)]
        flat = self.generate(ref, requests, label=label)
        return [flat[i * samples:(i + 1) * samples] for i in range(len(conversations))]

    def generate(self, ref: ModelRef, requests: list[GenerateRequest], label: str | None = None) -> list[Completion]:
        fingerprint = self.fingerprint(ref)
        keys = [digest("generate", CODE_VERSION, fingerprint, r.messages, _params_key(r.params), r.seed)
                for r in requests]

        def run(batch: list[GenerateRequest], progress) -> list[dict]:
            return [c.__dict__ for c in self.engine(ref).generate(batch, progress)]

        values = self._cached_calls("generate", keys, requests, run, label or f"sample {ref}",
                                    chunk=self.options.generate_batch_size)
        return [Completion(**value) for value in values]

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, ref: ModelRef, requests: list[ScoreRequest], label: str | None = None) -> list[list[float]]:
        fingerprint = self.fingerprint(ref)
        keys = [digest("score", CODE_VERSION, fingerprint, r.messages, r.continuations, r.closed)
                for r in requests]

        def run(batch: list[ScoreRequest], progress) -> list[list[float]]:
            return self.engine(ref).score(batch, progress)

        # A Batch API job needs every request at once; otherwise chunks keep progress committed often.
        batched = ref.kind == "openai" and 0 < self.options.api_batch_min <= len(requests)
        return self._cached_calls("score", keys, requests, run, label or f"score {ref}",
                                  chunk=len(requests) if batched else 8 * self.options.score_batch_size)

    def _cached_calls(self, kind: str, keys: list[str], requests: list, run: Callable, label: str,
                      chunk: int) -> list:
        found = self.cache.get_many(set(keys))
        missing = [i for i, key in enumerate(keys) if key not in found]
        unique_missing = list({keys[i]: i for i in missing}.values())
        self.counts.cached[kind] += len(keys) - len(missing)
        if unique_missing:
            bar = self._bar(len(unique_missing), label)
            for start in range(0, len(unique_missing), chunk):
                batch = unique_missing[start:start + chunk]
                results = run([requests[i] for i in batch], bar.update if bar else None)
                self.cache.put_many(kind, [(keys[i], value) for i, value in zip(batch, results)])
                found.update({keys[i]: value for i, value in zip(batch, results)})
                self.counts.executed[kind] += len(batch)
            if bar:
                bar.close()
        self.counts.cached[kind] += len(missing) - len(unique_missing)
        return [found[key] for key in keys]

    def _bar(self, total: int, label: str):
        if not self.show_progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=label, unit="call", file=sys.stderr, dynamic_ncols=True)

    # ---- training ---------------------------------------------------------------------------
    def train(self, base: ModelRef, dataset: Path, dataset_sha: str, config, seed: int,
              label: str = "train") -> ModelRef:
        """A fine-tune of `base` on `dataset`, trained once and reused whenever the inputs match: a LoRA
        adapter for local models, a fine-tuning job (whose model lives on its server) for API models."""
        if base.kind == "openai":
            from ..models.api import RetryPolicy
            from ..training.openai_ft import JobState, api_hyperparameters, train_openai

            key = digest("train", CODE_VERSION, self.fingerprint(base), dataset_sha, api_hyperparameters(config), seed)
            done = self.cache.get_many([key]).get(key)
            if done:
                self.counts.cached["train"] += 1
                return ModelRef("openai", done["model"])
            policy = RetryPolicy(attempts=self.options.api_attempts, timeout=self.options.api_timeout)
            ref = train_openai(base, dataset, config, seed, label, JobState(self.cache, key), policy)
            self.cache.put_many("train", [(key, {"model": ref.name, "label": label})])
            self.counts.executed["train"] += 1
            return ref
        from ..training.lora import train_lora

        # Unset optional fields stay out of the key, so adding one keeps the keys of earlier runs.
        key = digest("train", CODE_VERSION, self.fingerprint(base), dataset_sha, config.model_dump(exclude_none=True),
                     seed)
        adapter = self.adapters_dir / key[:32]
        if (adapter / "training_meta.json").is_file():
            self.counts.cached["train"] += 1
        else:
            train_lora(base, dataset, config, seed, adapter, label=label, options=self.options)
            self.cache.put_many("train", [(key, {"adapter": str(adapter), "label": label})])
            self.counts.executed["train"] += 1
        return base.with_adapter(adapter)


def _params_key(params: SamplingParams) -> dict:
    """Sampling parameters as a cache key; no stop strings keeps the key of runs made before they existed."""
    return {name: value for name, value in params.__dict__.items() if name != "stop" or value}


def keep_adapter(ref: ModelRef, target: Path) -> None:
    """Place a fine-tune's adapter in the run directory; an API fine-tune lives on its server (nothing to copy)."""
    if ref.adapter is not None:
        link_or_copy_tree(ref.adapter, target)


def link_or_copy_tree(source: Path, target: Path) -> None:
    """Place a copy of `source` at `target`, hard-linking files where the filesystem allows."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file():
            try:
                (target / item.name).hardlink_to(item)
            except OSError:
                shutil.copy2(item, target / item.name)
