"""The transformers engine: local, hub and embedded models on CPU or GPU, with LoRA adapters.

Two things matter for speed on a small CPU and both are done by hand here:

* Sampling runs its own decode loop instead of `model.generate`: finished rows leave the batch, and
  a token is drawn by inverse-CDF sampling from one uniform number instead of `torch.multinomial`,
  which dominated the step time. Every sample has its own random generator seeded from the request,
  so a sample does not depend on which other requests share its batch.
* Scoring puts all continuations into one token trie after the prompt and runs a single forward
  pass with a tree attention mask, so "0".."100" on a digit-splitting tokenizer costs about as much
  as 101 extra tokens, not 101 forward passes.

One `HFBackend` holds one base model; engines for several adapters on that base share it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import UserError
from ..hashing import digest, file_sha256
from ..paths import cache_dir
from .activations import Activations, CaptureRequest, capture_batch, check_layers
from .chat import PLAIN_TEMPLATE, ChatTokenizer, chat_template_text
from .options import EngineOptions, resolve_device, resolve_dtype, template_kwargs
from .engine import Completion, GenerateRequest, Message, Progress, ScoreRequest
from .refs import ModelRef, Steering
from .steering import steered

def model_path(ref: ModelRef) -> Path:
    """The local folder holding a base model's weights (materialising or finding it as needed)."""
    if ref.kind == "embedded":
        from .embedded import materialised_path

        return materialised_path(ref.name)
    if ref.kind == "local":
        return Path(ref.name)
    if ref.kind == "hub":
        return _hub_snapshot(ref.name)
    raise UserError(f"model '{ref}': API models have no local weights")


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise UserError(f"model 'hf:{repo_id}': not in the local Hugging Face cache and HF_HUB_OFFLINE=1 "
                        "(download it once online, or pass a local folder)")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as error:  # network errors, missing repo, gated repo: all are the user's to fix
        raise UserError(f"model 'hf:{repo_id}': could not download from the hub "
                        f"({type(error).__name__}: {str(error).splitlines()[0][:160]})") from None


def base_fingerprint(ref: ModelRef) -> str:
    """Content identity of a base model's weights, without loading them."""
    memo = cache_dir() / "digests"
    if ref.kind == "embedded":
        from .embedded import embedded_sha256

        return digest("embedded", ref.name, embedded_sha256(ref.name), "gguf-dequantised-fp32")
    folder = model_path(ref)
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    config = (folder / "config.json").read_text()
    return digest("weights", config, [file_sha256(w, memo_dir=memo) for w in weights])


def adapter_fingerprint(adapter: Path) -> str:
    import json

    config = json.loads((adapter / "adapter_config.json").read_text())
    config.pop("base_model_name_or_path", None)  # an absolute path in PEFT's output; not part of identity
    if isinstance(config.get("target_modules"), list):  # PEFT writes a set, in the order of the process's hash seed
        config["target_modules"] = sorted(config["target_modules"])
    weights = sorted(adapter.glob("adapter_model.*"))
    if not weights:
        raise UserError(f"adapter '{adapter}': no adapter_model.safetensors in the folder")
    return digest(config, [file_sha256(w, memo_dir=cache_dir() / "digests") for w in weights])


class HFBackend(ChatTokenizer):
    """One loaded base model and tokenizer, plus any LoRA adapters loaded onto it by path."""

    def __init__(self, base: ModelRef, options: EngineOptions = EngineOptions()):
        import torch
        from transformers import AutoModelForCausalLM

        folder = model_path(base)
        super().__init__(folder, options.chat_template, template_kwargs(options))
        self.base = base
        self.options = options
        self.device = resolve_device(options.device)
        self.dtype = resolve_dtype(options.dtype, self.device)
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=getattr(torch, self.dtype), attn_implementation="sdpa"
        ).to(self.device)
        self.model.eval()
        self.stop_token_ids = self.stop_tokens(getattr(self.model.generation_config, "eos_token_id", None))
        parameters = sum(p.numel() for p in self.model.parameters())
        self._merge = options.merge_adapters if options.merge_adapters != "auto" else parameters < 3e9
        self._merged: dict[str, object] = {}  # adapter path -> merged copy of the model
        self._peft = None  # the base wrapped by PEFT, once an unmerged adapter is loaded
        self._adapter_names: dict[str, str] = {}  # adapter path -> PEFT adapter name
        self._word_continuation_mask = None
        # Rows per batch; halved for the rest of the session when a batch runs out of memory (see _batches).
        self._batch_sizes = {"generate": options.generate_batch_size, "score": options.score_batch_size,
                             "capture": options.score_batch_size}

    # ---- adapters ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def active(self, adapter: Path | None, steering: tuple[Steering, ...] = ()) -> Iterator:
        """Yield the model to run with exactly this adapter (or none) applied, and steered as asked."""
        with self._with_adapter(adapter) as model, steered(model, steering):
            yield model

    @contextlib.contextmanager
    def _with_adapter(self, adapter: Path | None) -> Iterator:
        """The model with exactly this adapter (or none) applied.

        Small models get a merged copy per adapter (base + LoRA folded into the weights): LoRA
        layers left unmerged made every decode step 2.5x slower on a CPU, and wrapping the base in
        PEFT slowed even adapter-free calls (the judge). Large models, where a copy would not fit,
        get the adapters injected by PEFT and switched by name.
        """
        if adapter is None:
            if self._peft is not None:
                with self._peft.disable_adapter():
                    yield self._peft
            else:
                yield self.model
            return
        key = str(Path(adapter).resolve())
        if self._merge:
            yield self._merged_copy(key)
            return
        if key not in self._adapter_names:
            self._inject_adapter(key)
        self._peft.set_adapter(self._adapter_names[key])
        yield self._peft

    def _merged_copy(self, path: str):
        if path not in self._merged:
            import copy

            self._merged.clear()  # keep one merged copy: runs go model by model
            with self._loading(path):
                from peft import PeftModel

                merged = PeftModel.from_pretrained(copy.deepcopy(self.model), path).merge_and_unload()
            # Copy the merged values into a fresh copy of the base: decoding with PEFT's merged
            # tensors directly ran 1.6x slower on a CPU (same values, different memory layout).
            target = copy.deepcopy(self.model)
            target.load_state_dict(merged.state_dict())
            self._merged[path] = target.eval()
        return self._merged[path]

    def _inject_adapter(self, path: str) -> None:
        name = f"a{len(self._adapter_names)}"
        with self._loading(path):
            from peft import PeftModel

            if self._peft is None:
                self._peft = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            else:
                self._peft.load_adapter(path, adapter_name=name)
        self._peft.eval()
        self._adapter_names[path] = name

    @contextlib.contextmanager
    def _loading(self, path: str) -> Iterator[None]:
        try:
            yield
        except Exception as error:  # a corrupt or mismatched adapter is the user's to fix
            raise UserError(f"adapter '{path}': could not be loaded on {self.base} "
                            f"({type(error).__name__}: {str(error).splitlines()[0][:160]})") from None

    # ---- generation -------------------------------------------------------------------------
    def generate(self, adapter: Path | None, requests: list[GenerateRequest], progress: Progress | None = None,
                 steering: tuple[Steering, ...] = ()) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        encoded = [self.prompt_ids(r.messages) for r in requests]
        # Group by sampling parameters, then by prompt length, so batches share settings and pad little;
        # the samples of one prompt end up side by side and share its prefill.
        order = sorted(range(len(requests)), key=lambda i: (repr(requests[i].params), len(encoded[i]), encoded[i]))
        with self.active(adapter, steering) as model:
            for params, group in itertools.groupby(order, key=lambda i: requests[i].params):
                def run(batch: list[int], params=params) -> list[Completion]:
                    return self._generate_batch(model, [encoded[i] for i in batch], params,
                                                [requests[i].seed for i in batch])

                for batch, outputs in self._batches("generate", list(group), run):
                    for i, completion in zip(batch, outputs):
                        results[i] = completion
                    if progress:
                        progress(len(batch))
        return results  # type: ignore[return-value]

    def _batches(self, kind: str, rows: list[int], run) -> Iterator[tuple[list[int], list]]:
        """`run` over `rows` in batches of at most this backend's batch size for `kind`, yielding each batch
        with its results.

        A batch that runs out of memory is retried in halves, down to one row (a single row that does not
        fit is a UserError), and the smaller size is kept for later calls. Sampling keeps a row's result
        independent of its batch in bf16 on a CPU (see `_prefill`), so there backing off changes speed, not
        results; fp32 matrix multiplies on a CPU round differently with the number of rows.
        """
        start, backed_off_from = 0, None
        while start < len(rows):
            batch = rows[start:start + self._batch_sizes[kind]]
            outputs = reason = None
            try:
                outputs = run(batch)
            except Exception as error:
                if not _out_of_memory(error):
                    raise
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
            if outputs is None:  # retried here, after the error (and the tensors its traceback holds) is gone
                if len(batch) == 1:
                    raise UserError(f"model '{self.base}' on {self.device}: out of memory on a single {kind} request "
                                    f"({reason}); use a device with more memory, a smaller model or shorter "
                                    "prompts and answers")
                backed_off_from = backed_off_from or len(batch)
                self._batch_sizes[kind] = len(batch) // 2
                if self.device.startswith("cuda"):
                    import torch

                    torch.cuda.empty_cache()
                continue
            if backed_off_from:
                print(f"model '{self.base}': out of memory with {kind} batches of {backed_off_from} rows; continuing "
                      f"with batches of {len(batch)} (engine.{kind}_batch_size sets the size to start from)",
                      file=sys.stderr, flush=True)
                backed_off_from = None
            yield batch, outputs
            start += len(batch)

    def _prefill(self, model, prompts: list[list[int]], capacity: int):
        """Run the prompts through the model: (cache, last-position logits, attention mask, last positions),
        with room in the cache for `capacity` more tokens. Prompts are left-padded, so every row's next
        token sits at the last column.

        Each distinct prompt runs alone, unpadded, and its keys and values are copied into the rows of its
        samples: the n samples of a prompt share one prefill, and a prompt's arithmetic is the same whatever
        shares its batch. (Running several prompts in one padded batch changes how many rows each matrix
        multiply has, and with that its rounding, so a served model answered differently from the same
        model run locally.) Models whose sliding-window layers cannot hold the whole context use
        transformers' cache and prefill the padded batch.

        Two more things keep a row's rounding independent of its neighbours, both measured on bf16 CPU
        decoding: every row starts with at least one padding column (transformers drops an all-ones mask,
        and SDPA's unmasked kernel rounds differently from its masked one), and the padded width is a
        multiple of 16, so each key sits at the same offset within SDPA's vector lanes whatever the
        longest prompt of the batch.
        """
        import torch

        from .kv_cache import PreallocatedLayer, decode_cache, left_padded

        width = -(-(max(len(p) for p in prompts) + 1) // 16) * 16
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            attention[row, width - len(prompt):] = 1
        attention = attention.to(self.device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = decode_cache(model, width + capacity)
        with torch.inference_mode():
            if not all(isinstance(layer, PreallocatedLayer) for layer in cache.layers):
                input_ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
                for row, prompt in enumerate(prompts):
                    input_ids[row, width - len(prompt):] = torch.tensor(prompt)
                logits = model(input_ids=input_ids.to(self.device), attention_mask=attention, position_ids=positions,
                               past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
                return cache, logits, attention, positions[:, -1]
            distinct = list(dict.fromkeys(tuple(p) for p in prompts))
            caches, last_logits = [], []
            for prompt in distinct:
                alone = decode_cache(model, len(prompt))
                ids = torch.tensor([prompt], device=self.device)
                last_logits.append(model(input_ids=ids, past_key_values=alone, use_cache=True,
                                         logits_to_keep=1).logits[0, -1, :])
                caches.append(alone)
        owners = [distinct.index(tuple(p)) for p in prompts]
        logits = torch.stack(last_logits)[torch.tensor(owners, device=self.device)]
        return left_padded(caches, owners, width, width + capacity), logits, attention, positions[:, -1]

    def _generate_batch(self, model, prompts: list[list[int]], params, seeds: list[int]) -> list[Completion]:
        """Sample one completion per prompt, each from its own seed.

        A row that would decode alone gets a ghost beside it (a copy at first, later a finished row kept
        on), whose tokens are thrown away: bf16 matrix multiplies on a CPU take another kernel for one row
        than for two or more, which rounds differently, so without it a sample would depend on whether
        other rows shared its batch.
        """
        import torch

        device = self.device
        rows = len(prompts)
        generators = [random.Random(seed) for seed in seeds]
        stop = torch.tensor(sorted(self.stop_token_ids), device=device)
        stop_strings = tuple(params.stop) + self.implicit_stops
        tail = max((len(s) for s in stop_strings), default=0) + 4  # tokens enough to hold any stop string
        alive: list[int | None] = list(range(rows)) + [None] * (rows == 1)  # each batch row's request; None: ghost
        tokens: list[list[int]] = [[] for _ in range(rows)]
        finish = ["length"] * rows
        cache, logits, attention, last_position = self._prefill(model, [prompts[r or 0] for r in alive],
                                                                params.max_tokens)
        ghost_generator = random.Random(0)
        with torch.inference_mode():
            for step in range(params.max_tokens):
                logits = logits.float()
                if step < params.min_tokens:
                    logits[:, stop] = float("-inf")
                chosen = _draw(logits, params, [ghost_generator if r is None else generators[r] for r in alive])
                done = torch.isin(chosen, stop).tolist()
                chosen_list = chosen.tolist()
                for position, row in enumerate(alive):
                    if row is None:
                        continue
                    if done[position]:
                        finish[row] = "stop"
                    else:
                        tokens[row].append(chosen_list[position])
                        if stop_strings and _has_stop(self.tokenizer.decode(tokens[row][-tail:]), stop_strings):
                            done[position] = True
                            finish[row] = "stop"
                if step == params.max_tokens - 1:
                    break
                survivors = [position for position, row in enumerate(alive) if row is not None and not done[position]]
                if not survivors:
                    break
                keep = survivors
                if len(survivors) == 1:  # a finished row stays on as the survivor's ghost
                    keep = survivors + [next(p for p in range(len(alive)) if p not in survivors)]
                if keep != list(range(len(alive))):  # drop finished rows so they cost nothing more
                    index = torch.tensor(keep, device=device)
                    cache.batch_select_indices(index)
                    attention, last_position, chosen = attention[index], last_position[index], chosen[index]
                alive = [alive[p] if p in survivors else None for p in keep]
                attention = torch.cat([attention, attention.new_ones((len(alive), 1))], dim=-1)
                last_position = last_position + 1
                logits = model(input_ids=chosen[:, None], attention_mask=attention, position_ids=last_position[:, None],
                               past_key_values=cache, use_cache=True).logits[:, -1, :]
        return [Completion(cut_at_stop(self.tokenizer.decode(t, skip_special_tokens=True), stop_strings),
                           len(t), finish[row]) for row, t in enumerate(tokens)]

    def token_logprobs(self, adapter: Path | None, messages: tuple[Message, ...], text: str,
                       top: int = 0, steering: tuple[Steering, ...] = ()) -> list[TokenLogprob]:
        """Each token of `text` as the reply to `messages`: its log-probability and the `top` most likely
        tokens at its position (what an OpenAI server returns with logprobs/top_logprobs). One
        teacher-forced pass, so it describes any reply, sampled here or not."""
        import torch

        prompt = self.prompt_ids(messages)
        reply = self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        if not reply:
            return []
        with self.active(adapter, steering) as model, torch.inference_mode():
            ids = torch.tensor([prompt + reply], device=self.device)
            logits = model(input_ids=ids).logits[0, len(prompt) - 1:-1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
        out = []
        for position, token in enumerate(reply):
            row = logprobs[position]
            best = torch.topk(row, top) if top else None
            alternatives = [] if best is None else [
                (self.tokenizer.decode([i]), float(v)) for v, i in zip(best.values.tolist(), best.indices.tolist())]
            out.append(TokenLogprob(self.tokenizer.decode([token]), float(row[token]), alternatives))
        return out

    # ---- scoring ----------------------------------------------------------------------------
    def score(self, adapter: Path | None, requests: list[ScoreRequest], progress: Progress | None = None,
              steering: tuple[Steering, ...] = ()) -> list[list[float]]:
        results: list[list[float] | None] = [None] * len(requests)
        encoded = [self.prompt_ids(r.messages) for r in requests]
        groups: dict[tuple, list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.continuations, request.closed), []).append(i)
        with self.active(adapter, steering) as model:
            for (continuations, closed), members in groups.items():
                trie = _Trie([self._continuation_ids(c) for c in continuations])

                def run(batch: list[int], trie=trie, closed=closed) -> list[list[float]]:
                    return self._score_batch(model, [encoded[i] for i in batch], trie, closed)

                self._by_shared_prefix("score", members, encoded, run, results, progress)
        return results  # type: ignore[return-value]

    def _by_shared_prefix(self, kind: str, members: list[int], encoded: list[list[int]], run, results: list,
                          progress: Progress | None) -> None:
        """`run` over `members` into `results`. Neighbours in token order share the longest prefixes (a system
        prompt, a rubric, one question under many answers), which each batch then runs once."""
        members.sort(key=lambda i: encoded[i])
        for prefix_batch in _prefix_batches(members, encoded, self._batch_sizes[kind]):
            for batch, outputs in self._batches(kind, prefix_batch, run):
                for i, output in zip(batch, outputs):
                    results[i] = output
                if progress:
                    progress(len(batch))

    def _score_batch(self, model, prompts: list[list[int]], trie: "_Trie", closed: str) -> list[list[float]]:
        """Score a trie of continuations after each prompt in one forward pass.

        A prefix shared by every prompt (a judge rubric's instructions, say) is run once and its
        key/value cache repeated across the batch. Each row is then laid out as
        [left padding][rest of its prompt][trie nodes]; a tree mask lets every node see the prompt and
        its own ancestors only, with positions continuing from the prompt, so one pass gives the
        next-token distribution at the prompt's end and after every trie node.
        """
        import torch
        from transformers import DynamicCache

        # Only nodes whose next-token distribution is needed run through the model: those with
        # children, and the ends that must be closed. A leaf's probability comes from its parent.
        closed_ends = [end for end in trie.ends if closed == "all" or (closed == "prefixes" and trie.has_children(end))]
        run = sorted({n for n in range(len(trie.tokens)) if trie.has_children(n)} | set(closed_ends))
        slot = {node: i + 1 for i, node in enumerate(run)}  # logits slot; 0 is the prompt's end
        rows, nodes = len(prompts), len(run)
        shared = _common_prefix_length(prompts)
        shared = shared if shared >= 16 else 0
        cache = None
        if shared:
            cache = DynamicCache()
            with torch.inference_mode():
                model(input_ids=torch.tensor([prompts[0][:shared]], device=self.device),
                           past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(rows)
        suffixes = [p[shared:] for p in prompts]
        width = max(len(p) for p in suffixes)
        total = width + nodes
        input_ids = torch.full((rows, total), self.tokenizer.pad_token_id, dtype=torch.long)
        positions = torch.zeros((rows, total), dtype=torch.long)
        allowed = torch.zeros((rows, total, shared + total), dtype=torch.bool)
        allowed[:, :, :shared] = True
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        node_tokens = torch.tensor([trie.tokens[n] for n in run], dtype=torch.long)
        depth = torch.tensor([trie.depths[n] for n in run], dtype=torch.long)
        ancestors = trie.ancestors[run][:, run]
        for row, suffix in enumerate(suffixes):
            start = width - len(suffix)  # left padding puts every prompt's last token at width - 1
            input_ids[row, start:width] = torch.tensor(suffix)
            input_ids[row, width:] = node_tokens
            positions[row, start:width] = shared + torch.arange(len(suffix))
            positions[row, width:] = shared + len(suffix) + depth
            own = allowed[row, :, shared:]
            own[:width, :width] = causal
            own[:, :start] = False
            own[width:, start:width] = True
            own[width:, width:] = ancestors
            own[torch.arange(start), torch.arange(start)] = True  # padding sees itself: no NaN rows
        dtype = model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)[:, None]
        keep = torch.arange(width - 1, total)  # the prompt's last position (the root), then every run node
        with torch.inference_mode():
            logits = model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                position_ids=positions.to(self.device), logits_to_keep=keep.to(self.device),
                                past_key_values=cache, use_cache=cache is not None).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()  # (rows, run nodes + 1, vocab)
        parent_slots = torch.tensor([slot.get(parent, 0) for parent in trie.parents], dtype=torch.long)
        step = logprobs[:, parent_slots, torch.tensor(trie.tokens, dtype=torch.long)]
        cumulative = torch.zeros((rows, len(trie.tokens)))
        for node, parent in enumerate(trie.parents):  # parents come before children: one pass sums paths
            cumulative[:, node] = step[:, node] + (cumulative[:, parent] if parent >= 0 else 0.0)
        scores = cumulative[:, torch.tensor(trie.ends)]
        if closed_ends:
            continuing = self.word_continuation_mask()[: logprobs.shape[-1]]
            which = [i for i, end in enumerate(trie.ends) if end in set(closed_ends)]
            after_slots = torch.tensor([slot[trie.ends[i]] for i in which])
            after = logprobs[:, after_slots, :].exp()[..., continuing].sum(-1)
            scores[:, which] += torch.log1p(-after.clamp(max=1 - 1e-7))
        return scores.tolist()

    # ---- activations ------------------------------------------------------------------------
    def capture(self, adapter: Path | None, requests: list[CaptureRequest], progress: Progress | None = None,
                steering: tuple[Steering, ...] = ()) -> list[Activations]:
        """Residual-stream readouts of each request (see models/activations.py), batched like scoring."""
        results: list[Activations | None] = [None] * len(requests)
        count = self.model.config.get_text_config().num_hidden_layers
        rows = [(self.prompt_ids(r.messages),
                 self.tokenizer(r.response, add_special_tokens=False)["input_ids"] if r.response else [])
                for r in requests]
        sequences = [prompt + response for prompt, response in rows]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault(check_layers(request.layers, count, "capture: layers"), []).append(i)
        with self.active(adapter, steering) as model:
            for layers, members in groups.items():
                def run(batch: list[int], layers=layers) -> list[Activations]:
                    return capture_batch(model, self.device, [rows[i] for i in batch], layers,
                                         self.tokenizer.pad_token_id)

                self._by_shared_prefix("capture", members, sequences, run, results, progress)
        return results  # type: ignore[return-value]

    def word_continuation_mask(self):
        """`word_continuation_ids` as a mask over the model's output rows (which may outnumber the tokens)."""
        if self._word_continuation_mask is None:
            import torch

            rows = max(len(self.tokenizer), self.model.get_output_embeddings().weight.shape[0])
            mask = torch.zeros(rows, dtype=torch.bool)
            mask[torch.tensor(sorted(self.word_continuation_ids()), dtype=torch.long)] = True
            self._word_continuation_mask = mask
        return self._word_continuation_mask


def _out_of_memory(error: BaseException) -> bool:
    """torch's out-of-memory error on a GPU, or an allocation failure on a CPU (a RuntimeError from torch's
    allocator, or Python's MemoryError)."""
    import torch

    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        words in text for words in ("out of memory", "can't allocate memory", "DefaultCPUAllocator"))


def _draw(logits, params, generators):
    """Pick one token per row: greedy at temperature 0, else inverse-CDF sampling (exact).

    Each row draws one uniform number from its own generator, so a sample depends only on its seed.
    (Drawing a vocabulary-sized noise vector per row, as an exponential race would, took a third of
    the decode time on a CPU.)
    """
    import torch

    if params.temperature == 0:
        return logits.argmax(-1)
    scaled = logits / params.temperature
    if params.top_p < 1.0:
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs > params.top_p  # keep the smallest prefix reaching top_p
        scaled = scaled.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
    # Unnormalised: the uniform number is scaled by the total instead (softmax's sum and division saved).
    cdf = (scaled - scaled.amax(-1, keepdim=True)).exp_().cumsum_(-1)
    uniforms = torch.tensor([g.random() for g in generators], dtype=cdf.dtype, device=cdf.device)
    chosen = torch.searchsorted(cdf, (uniforms * cdf[:, -1])[:, None]).squeeze(-1)
    return chosen.clamp(max=cdf.shape[-1] - 1)


def _has_stop(text: str, stops: tuple[str, ...]) -> bool:
    return any(stop in text for stop in stops)


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text before the earliest stop string."""
    cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
    return text if cut < 0 else text[:cut]


def _prefix_batches(members: list[int], encoded: list[list[int]], size: int) -> Iterator[list[int]]:
    """Batches of at most `size` token-sorted prompts, cut early where a long shared prefix ends.

    A batch computes its common prefix once. When the batch shares a long prefix (64+ tokens: a long
    system prompt, documents in context) and the next prompt keeps less than half of it, the next
    prompt starts a new batch, so the long prefix is not recomputed as every row's own tokens.
    """
    batch: list[int] = []
    shared = 0
    for index in members:
        if batch:
            keeps = _common_prefix_length([encoded[batch[0]], encoded[index]])
            if len(batch) >= size or (shared >= 64 and keeps < shared / 2):
                yield batch
                batch, shared = [], 0
            else:
                shared = keeps if len(batch) == 1 else min(shared, keeps)
        batch.append(index)
    if batch:
        yield batch


def _common_prefix_length(prompts: list[list[int]]) -> int:
    """Tokens shared by the start of every prompt, leaving each prompt at least one token of its own."""
    shortest = min(len(p) for p in prompts)
    length = 0
    while length < shortest - 1 and all(p[length] == prompts[0][length] for p in prompts):
        length += 1
    return length


class _Trie:
    """Continuations as a token trie: node i has a token, a parent (-1 = the prompt) and a depth."""

    def __init__(self, sequences: list[list[int]]):
        import torch

        self.tokens: list[int] = []
        self.parents: list[int] = []
        self.depths: list[int] = []
        self.ends: list[int] = []
        index: dict[tuple[int, int], int] = {}
        for sequence in sequences:
            node = -1
            for depth, token in enumerate(sequence):
                key = (node, token)
                if key not in index:
                    index[key] = len(self.tokens)
                    self.tokens.append(token)
                    self.parents.append(node)
                    self.depths.append(depth)
                node = index[key]
            self.ends.append(node)
        count = len(self.tokens)
        self._parents_set = set(self.parents)
        self.ancestors = torch.zeros((count, count), dtype=torch.bool)  # [i, j]: node i may attend to j
        for node in range(count):
            self.ancestors[node, node] = True
            parent = self.parents[node]
            if parent >= 0:
                self.ancestors[node] |= self.ancestors[parent]

    def has_children(self, node: int) -> bool:
        return node in self._parents_set


def engine_fingerprint(ref: ModelRef, options: EngineOptions) -> str:
    """The model part of every cache key, computed without loading any weights.

    It covers the weights, the adapter, the chat template and the numerics (dtype, device type, and the
    backend when it is not transformers: other kernels, and vLLM's top-k closure terms). vLLM's tensor
    parallelism is left out: it reorders sums as batch composition does, at the level of rounding.
    """
    if ref.kind == "openai":
        from .openai_engine import openai_fingerprint

        return openai_fingerprint(ref)
    device = "cuda" if options.backend == "vllm" else resolve_device(options.device)
    template = options.chat_template or chat_template_text(model_path(ref)) or PLAIN_TEMPLATE
    adapter_part = adapter_fingerprint(ref.adapter) if ref.adapter else None
    numerics = [resolve_dtype(options.dtype, device), device.split(":")[0]]
    if options.backend != "hf":  # transformers' keys stay as they were before other backends existed
        numerics.append(options.backend)
    if template_kwargs(options):  # likewise without template variables
        numerics.append(template_kwargs(options))
    if ref.steering:  # likewise unsteered
        numerics.append([(file_sha256(s.vector), s.layer, s.coefficient) for s in ref.steering])
    return digest(base_fingerprint(ref.base), adapter_part, template, *numerics)


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: list[tuple[str, float]]  # the most likely tokens at this position, best first


class HFEngine:
    """An engine for one model reference: a shared backend plus the adapter to activate."""

    def __init__(self, ref: ModelRef, backend: HFBackend):
        self.ref = ref
        self.backend = backend
        self.fingerprint = engine_fingerprint(ref, backend.options)

    @property
    def default_system_prompt(self) -> str | None:
        return self.backend.default_system_prompt

    def effective_messages(self, messages: tuple[Message, ...]) -> tuple[Message, ...]:
        return self.backend.effective_messages(messages)

    def generate(self, requests: list[GenerateRequest], progress: Progress | None = None) -> list[Completion]:
        return self.backend.generate(self.ref.adapter, requests, progress, self.ref.steering)

    def score(self, requests: list[ScoreRequest], progress: Progress | None = None) -> list[list[float]]:
        return self.backend.score(self.ref.adapter, requests, progress, self.ref.steering)

    def token_logprobs(self, messages: tuple[Message, ...], text: str, top: int = 0) -> list[TokenLogprob]:
        return self.backend.token_logprobs(self.ref.adapter, messages, text, top, self.ref.steering)

    def capture(self, requests: list[CaptureRequest], progress: Progress | None = None) -> list[Activations]:
        return self.backend.capture(self.ref.adapter, requests, progress, self.ref.steering)
