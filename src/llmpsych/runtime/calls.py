"""Cached model operations: the only place that decides whether a model call runs.

Every generation, score and fine-tune goes through a `Runtime`. It keys the call by content, answers
from the cache when it can, runs the rest in chunks that are committed as they finish (so a killed run
resumes where it stopped), and counts what it executed and what it reused. Engines are loaded lazily:
a run whose calls are all cached never loads a model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from ..hashing import digest, file_sha256
from ..models.activations import Activations, CaptureRequest
from ..models.engine import Completion, Engine, GenerateRequest, Message, SamplingParams, ScoreRequest
from ..models.hf import engine_fingerprint
from ..models.options import EngineOptions, template_kwargs
from ..models.refs import ModelRef
from ..errors import UserError, writing
from ..paths import cache_dir
from .cache import CallCache

CODE_VERSION = "1"  # bump when a change alters results for identical inputs, to retire old cache entries
# How long a process waits for another one training the same fine-tune before giving up (the other may have
# died holding the lock, on a file system where locks outlive their process): 6 hours, or
# $LLMPSYCH_TRAIN_LOCK_TIMEOUT seconds.
TRAIN_LOCK_TIMEOUT = 6 * 3600.0
TRAIN_LOCK_TIMEOUT_ENV = "LLMPSYCH_TRAIN_LOCK_TIMEOUT"


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
        self._checked_contexts: set = set()

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

    def release_models(self) -> None:
        """Drop every loaded model before a fine-tune loads its own copy: keeping two models of the
        introspection study resident under training took its smoke run to 6.2 GiB. Reloading a model
        afterwards takes seconds; a fine-tune takes minutes."""
        import gc

        from ..models import unload_all

        if self._engines:
            self._engines.clear()
            unload_all()
            gc.collect()

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

    def has_chat_template(self, ref: ModelRef) -> bool:
        """Whether the model writes conversations with a chat template of its own (or the configured one)."""
        return bool(self._tokenizer(ref).chat_template)

    def chat_text(self, ref: ModelRef, messages: tuple[Message, ...]) -> str:
        """A whole conversation as the model's chat template writes it (no generation prompt after it): how
        chat rows become plain-text training documents."""
        if ref.kind == "openai":
            raise UserError(f"model '{ref}': an API model's chat template is not visible (use a local model)")
        from ..models.chat import PLAIN_TEMPLATE

        tokenizer = self._tokenizer(ref)
        return tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             chat_template=None if tokenizer.chat_template else PLAIN_TEMPLATE,
                                             **template_kwargs(self.options))

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
        ref, requests = self._in_context(ref, requests)
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
        ref, requests = self._in_context(ref, requests)
        fingerprint = self.fingerprint(ref)
        keys = [digest("score", CODE_VERSION, fingerprint, r.messages, r.continuations, r.closed)
                for r in requests]

        def run(batch: list[ScoreRequest], progress) -> list[list[float]]:
            return self.engine(ref).score(batch, progress)

        # A Batch API job needs every request at once; otherwise chunks keep progress committed often.
        batched = ref.kind == "openai" and 0 < self.options.api_batch_min <= len(requests)
        return self._cached_calls("score", keys, requests, run, label or f"score {ref}",
                                  chunk=len(requests) if batched else 8 * self.options.score_batch_size)

    # ---- activations ------------------------------------------------------------------------
    def capture(self, ref: ModelRef, requests: list[CaptureRequest], label: str | None = None) -> list[Activations]:
        """Residual-stream readouts of each request (models/activations.py), keyed by content like every call.
        They are read with transformers whatever the backend: vLLM does not expose the residual stream."""
        if ref.kind == "openai":
            raise UserError(f"model '{ref}': activations need a local model's weights; an API model does not expose "
                            "them")
        ref, requests = self._in_context(ref, requests)
        options = self.options if self.options.backend == "hf" else self.options.model_copy(update={"backend": "hf"})
        fingerprint = engine_fingerprint(ref, options)
        keys = [digest("capture", CODE_VERSION, fingerprint, r.messages, r.response, r.layers) for r in requests]

        def run(batch: list[CaptureRequest], progress) -> list[dict]:
            from ..models import load_engine

            engine = self.engine(ref) if options is self.options else load_engine(ref, options)
            return [a.to_json() for a in engine.capture(batch, progress)]

        for counts in (self.counts.executed, self.counts.cached):  # shown only in runs that capture
            counts.setdefault("capture", 0)
        values = self._cached_calls("capture", keys, requests, run, label or f"capture {ref}",
                                    chunk=8 * self.options.score_batch_size)
        return [Activations.from_json(value) for value in values]

    def _in_context(self, ref: ModelRef, requests: list) -> tuple[ModelRef, list]:
        """A model with in-context turns is its weights asked with those turns in every conversation (after the
        system prompt): the same calls, and cache entries, as asking it so by hand."""
        if not ref.context:
            return ref, requests
        turns = tuple({"role": role, "content": content} for role, content in ref.context)
        self._check_context_length(ref.weights, turns)

        def with_turns(messages: tuple[Message, ...]) -> tuple[Message, ...]:
            system = 1 if messages and messages[0]["role"] == "system" else 0
            return messages[:system] + turns + messages[system:]

        return ref.weights, [replace(r, messages=with_turns(r.messages)) for r in requests]

    def _check_context_length(self, ref: ModelRef, turns: tuple[Message, ...]) -> None:
        key = (ref, tuple(tuple(turn.values()) for turn in turns))
        if ref.kind == "openai" or key in self._checked_contexts:
            return
        from ..models.hf import model_path

        limit = json.loads((model_path(ref.base) / "config.json").read_text()).get("max_position_embeddings")
        used = self.token_counts(ref, [self.chat_text(ref, turns)])[0]
        if limit and used > limit * 3 // 4:  # leave a quarter of the window for the question and the answer
            raise UserError(f"in_context: {len(turns) // 2} examples take {used} tokens, more than 3/4 of the model's "
                            f"context of {limit}; give fewer examples (in_context.k)")
        self._checked_contexts.add(key)

    def _cached_calls(self, kind: str, keys: list[str], requests: list, run: Callable, label: str,
                      chunk: int) -> list:
        found = self.cache.get_many(set(keys))
        missing = [i for i, key in enumerate(keys) if key not in found]
        unique_missing = list({keys[i]: i for i in missing}.values())
        self.counts.cached[kind] += len(keys) - len(missing)
        if unique_missing:
            bar = self._bar(len(unique_missing), label)
            try:
                for start in range(0, len(unique_missing), chunk):
                    batch = unique_missing[start:start + chunk]
                    results = run([requests[i] for i in batch], bar.update if bar else None)
                    self.cache.put_many(kind, [(keys[i], value) for i, value in zip(batch, results)])
                    found.update({keys[i]: value for i, value in zip(batch, results)})
                    self.counts.executed[kind] += len(batch)
            finally:  # also on an error, so that its message starts a line of its own
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
        adapter for local models, a fine-tuning job (whose model lives on its server) for API models.

        Processes sharing the cache train a given fine-tune once: the others wait for it (a lock per
        training key) and then reuse it. A cached adapter whose weights went missing or changed is
        trained again."""
        if base.kind == "openai":
            from ..training.openai_ft import api_hyperparameters

            key = digest("train", CODE_VERSION, self.fingerprint(base), dataset_sha, api_hyperparameters(config), seed)
        else:  # unset optional fields stay out of the key, so adding one keeps the keys of earlier runs
            key = digest("train", CODE_VERSION, self.fingerprint(base), dataset_sha,
                         config.model_dump(exclude_none=True), seed)
        with self._training_lock(key, label):
            done = self.cache.get_many([key]).get(key)
            if base.kind == "openai":
                return self._train_openai(base, dataset, config, seed, label, key, done)
            return self._train_lora(base, dataset, config, seed, label, key, done)

    def _train_openai(self, base: ModelRef, dataset: Path, config, seed: int, label: str, key: str,
                      done: dict | None) -> ModelRef:
        from ..models.api import RetryPolicy
        from ..training.openai_ft import JobState, train_openai

        if done:
            self.counts.cached["train"] += 1
            return ModelRef("openai", done["model"])
        policy = RetryPolicy(attempts=self.options.api_attempts, timeout=self.options.api_timeout)
        ref = train_openai(base, dataset, config, seed, label, JobState(self.cache, key), policy)
        self.cache.put_many("train", [(key, {"model": ref.name, "label": label})])
        self.counts.executed["train"] += 1
        return ref

    def _train_lora(self, base: ModelRef, dataset: Path, config, seed: int, label: str, key: str,
                    done: dict | None) -> ModelRef:
        from ..training.lora import train_lora

        adapter = self.adapters_dir / key[:32]
        problem = adapter_problem(adapter, (done or {}).get("sha256"))
        if problem is None:
            self.counts.cached["train"] += 1
            return base.with_adapter(adapter)
        if adapter.exists():
            print(f"{label}: the cached adapter {adapter} {problem}; training it again", file=sys.stderr, flush=True)
        self.release_models()
        with writing(f"adapter {adapter}"):
            train_lora(base, dataset, config, seed, adapter, label=label, options=self.options)
        sha = file_sha256(adapter / ADAPTER_WEIGHTS, memo_dir=cache_dir() / "digests")
        self.cache.put_many("train", [(key, {"adapter": str(adapter), "label": label, "sha256": sha})])
        self.counts.executed["train"] += 1
        return base.with_adapter(adapter)

    @contextlib.contextmanager
    def _training_lock(self, key: str, label: str) -> Iterator[None]:
        """Hold the lock of one training key: a second process (another run sharing the cache, a parallel
        step) waits here while the first trains, then finds the fine-tune done."""
        from filelock import FileLock, Timeout

        with writing(f"adapter folder {self.adapters_dir}"):
            self.adapters_dir.mkdir(parents=True, exist_ok=True)
        path = self.adapters_dir / f"{key[:32]}.lock"
        lock = FileLock(path)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            timeout = train_lock_timeout()
            print(f"{label}: another process is training this model; waiting for it to finish (at most "
                  f"{_duration(timeout)})", file=sys.stderr, flush=True)
            try:
                lock.acquire(timeout=timeout)
            except Timeout:
                raise UserError(f"{path}: waited {_duration(timeout)} for another process training {label} to "
                                "release this lock; if no other llmpsych process is training it (it may have "
                                "died), delete the lock file and run again, or wait longer with "
                                f"{TRAIN_LOCK_TIMEOUT_ENV}=SECONDS") from None
        try:
            yield
        finally:
            lock.release()


def train_lock_timeout() -> float:
    """Seconds to wait for another process's training lock: $LLMPSYCH_TRAIN_LOCK_TIMEOUT, else 6 hours."""
    text = os.environ.get(TRAIN_LOCK_TIMEOUT_ENV, "").strip()
    if not text:
        return TRAIN_LOCK_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds < math.inf:
        raise UserError(f"{TRAIN_LOCK_TIMEOUT_ENV}: expected a number of seconds >= 0, got {text!r}")
    return seconds


def _duration(seconds: float) -> str:
    """3 s, 90 min, 6 h: how long, in the unit that reads best."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.3g} h"


ADAPTER_WEIGHTS = "adapter_model.safetensors"


def adapter_problem(adapter: Path, sha256: str | None) -> str | None:
    """What is wrong with a cached adapter folder, or None when it is whole: every file training writes is
    there, the weights file is complete, and its SHA-256 is the one recorded when it was trained."""
    missing = [name for name in ("training_meta.json", "adapter_config.json", ADAPTER_WEIGHTS)
               if not (adapter / name).is_file()]
    if missing:
        return f"has no {missing[0]}" if adapter.exists() else "does not exist"
    weights = adapter / ADAPTER_WEIGHTS
    if not _safetensors_complete(weights):
        return f"has a truncated or corrupt {ADAPTER_WEIGHTS}"
    if sha256 and file_sha256(weights, memo_dir=cache_dir() / "digests") != sha256:
        return f"has a changed {ADAPTER_WEIGHTS} (not the SHA-256 recorded when it was trained)"
    return None


def _safetensors_complete(path: Path) -> bool:
    """Whether a safetensors file parses: an 8-byte header length, a JSON header, and tensor data that
    ends exactly where the file does (a truncated file, or one holding something else, fails this)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > size - 8:
                return False
            header = json.loads(handle.read(length))
        end = max((entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"), default=0)
        return 8 + length + end == size
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


def _params_key(params: SamplingParams) -> dict:
    """Sampling parameters as a cache key; no stop strings keeps the key of runs made before they existed."""
    return {name: value for name, value in params.__dict__.items() if name != "stop" or value}


def keep_adapter(ref: ModelRef, target: Path) -> None:
    """Place a fine-tune's adapter in the run directory; an API fine-tune lives on its server (nothing to copy)."""
    if ref.adapter is not None:
        link_or_copy_tree(ref.adapter, target)


def link_or_copy_tree(source: Path, target: Path) -> None:
    """Place a copy of `source` at `target`, hard-linking files where the filesystem allows.

    The copy is made in a hidden folder beside `target` and renamed into place, so a run killed meanwhile
    leaves `target` whole or absent, never with some of its files."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file():
            try:
                (partial / item.name).hardlink_to(item)
            except OSError:
                shutil.copy2(item, partial / item.name)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
