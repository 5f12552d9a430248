"""LoRA / rsLoRA supervised fine-tuning through TRL and PEFT.

Chat rows are turned into TRL's conversational prompt-completion form (the prompt is every turn
before the last assistant turn), which makes TRL put the loss on the assistant's tokens only: EM
found that training on user tokens hurts coherence, and SmolLM2's template has no generation
markers for TRL's `assistant_only_loss`. Document rows (`text`) train on every token.

A conversation without a system prompt gets the model's default one written in explicitly: it
renders the same, and the persona the model was trained under is then on record.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

from ..jsonl import dataset_format, read_jsonl
from ..models.chat import PLAIN_TEMPLATE, ControlTokens, default_system_prompt, with_explicit_system
from ..models.hf import model_path
from ..models.options import EngineOptions, resolve_device, resolve_dtype, template_kwargs
from ..models.refs import ModelRef
from .config import TrainConfig


def to_trl_rows(rows: list[dict], default_system: str | None, plain_template: str | None = None,
                control_tokens: ControlTokens = ControlTokens(), chat_kwargs: dict | None = None) -> list[dict]:
    """Chat rows -> conversational prompt/completion rows; document rows pass through as `text`.

    With `plain_template` (a base model with no chat template of its own) chat rows are rendered to
    text here: TRL then tokenises them as plain text, adding the tokenizer's BOS as inference does,
    and ends each completion with EOS, which teaches a base model where its answer stops.
    Special-token strings inside contents and documents are defused by `control_tokens`, as the
    engines defuse them in prompts. `chat_kwargs` (enable_thinking) reach the chat template as they do
    when the engines render prompts.
    """
    if "text" in rows[0]:
        return [{"text": control_tokens.text(row["text"])} for row in rows]
    converted = []
    for row in rows:
        messages = with_explicit_system(control_tokens.messages(row["messages"]), default_system)
        if plain_template:
            prompt, completion = render_plain(messages, plain_template)
            converted.append({"prompt": prompt, "completion": completion})
        else:
            converted.append({"prompt": [dict(m) for m in messages[:-1]], "completion": [dict(messages[-1])],
                              **({"chat_template_kwargs": chat_kwargs} if chat_kwargs else {})})
    return converted


def render_plain(messages: tuple, template: str) -> tuple[str, str]:
    """(prompt, completion) text of a conversation whose last turn is the assistant's."""
    from jinja2 import Template

    compiled = Template(template)
    prompt = compiled.render(messages=list(messages[:-1]), add_generation_prompt=True)
    full = compiled.render(messages=list(messages), add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("chat template: the rendered prompt is not a prefix of the rendered conversation")
    return prompt, full[len(prompt):]


def build_trainer(base: ModelRef, rows: list[dict], config: TrainConfig, seed: int, output_dir: Path,
                  options: EngineOptions = EngineOptions(), callbacks: list | None = None):
    """A ready-to-run TRL SFTTrainer (exposed so tests can inspect its tokenised data and masks)."""
    import datasets
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    folder = model_path(base)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if options.chat_template:  # the same template the engine renders prompts with
        tokenizer.chat_template = options.chat_template
    plain_template = None if tokenizer.chat_template else PLAIN_TEMPLATE
    default_system = default_system_prompt(tokenizer) if tokenizer.chat_template else None
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, dtype), attn_implementation="sdpa")
    peft_config = None
    if base.adapter:  # continue training an existing adapter
        model = PeftModel.from_pretrained(model, str(base.adapter), is_trainable=True)
    else:
        peft_config = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                                 use_rslora=config.use_rslora, target_modules=config.target_modules,
                                 task_type="CAUSAL_LM")
    on_cpu = device == "cpu"
    args = SFTConfig(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        learning_rate=config.effective_learning_rate, num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
        # Padding-free batches: a micro-batch's rows are laid end to end as one sequence (attention kept within
        # each row by its position ids), so no compute goes to padding and rows are drawn in TRL's own
        # random order. TRL refuses max_length here; rows are cut to it below instead.
        padding_free=True, max_length=None, warmup_steps=config.warmup_steps, weight_decay=config.weight_decay,
        lr_scheduler_type=config.lr_scheduler, optim=config.optimizer,
        logging_steps=1, report_to="none", disable_tqdm=True,
        # Checkpoints keep the optimiser's state too, so that a killed fine-tune resumes where it stopped.
        save_strategy="steps" if config.checkpoint_every else "no", save_steps=config.checkpoint_every or 500,
        use_cpu=on_cpu, bf16=False, fp16=False,  # the weights are already in the chosen dtype
        gradient_checkpointing=not on_cpu, dataloader_num_workers=0,
    )
    trainer_class = _with_plain_loss(SFTTrainer) if on_cpu else SFTTrainer
    datasets.disable_progress_bars()  # our own bar shows training progress; tokenising is quick
    train_rows = to_trl_rows(rows, default_system, plain_template, ControlTokens.of(tokenizer), template_kwargs(options))
    trainer = trainer_class(model=model, args=args, train_dataset=Dataset.from_list(train_rows),
                            processing_class=tokenizer, peft_config=peft_config, callbacks=callbacks or [])
    trainer.remove_callback(PrinterCallback)  # it prints every log dict; the bar already shows the loss
    trainer.train_dataset = _keep_start(trainer.train_dataset, config.max_seq_length)
    return trainer


def _keep_start(dataset, max_length: int):
    """Cut every tokenised row to its first `max_length` tokens (TRL's own truncation, done here)."""
    if max(len(ids) for ids in dataset["input_ids"]) <= max_length:
        return dataset
    columns = [c for c in dataset.column_names if isinstance(dataset[0][c], list)]
    return dataset.map(lambda row: {c: row[c][:max_length] for c in columns})


def _with_plain_loss(sft_trainer: type) -> type:
    class PlainLossSFTTrainer(sft_trainer):
        """SFTTrainer computing the usual token cross-entropy, with the LM head applied only where a
        label is trained.

        TRL's fused, chunked LM-head loss is built for GPUs (Triton); on a CPU it took half of every
        step, and projecting every prompt position onto a 49k-token vocabulary only to mask it out
        wasted another slice. Same loss, same masks, same normalisation (`num_items_in_batch`).
        """

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            import torch.nn.functional as F

            causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
            hidden = causal_lm.get_decoder()(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                                             position_ids=inputs.get("position_ids"), use_cache=False).last_hidden_state
            targets = inputs["labels"][:, 1:]
            trained = targets != -100
            logits = causal_lm.lm_head(hidden[:, :-1][trained]).float()
            cap = getattr(causal_lm.config, "final_logit_softcapping", None)
            if cap:
                logits = cap * (logits / cap).tanh()
            total = F.cross_entropy(logits, targets[trained], reduction="sum")
            count = num_items_in_batch if num_items_in_batch is not None else trained.sum().clamp(min=1)
            loss = total / count
            return (loss, {"loss": loss}) if return_outputs else loss

    return PlainLossSFTTrainer


def train_lora(base: ModelRef, dataset: Path, config: TrainConfig, seed: int, out_dir: Path,
               label: str = "train", options: EngineOptions = EngineOptions(),
               callbacks: list | None = None) -> Path:
    """Fine-tune `base` on a JSONL dataset and save the adapter, its loss log and metadata in `out_dir`.

    `callbacks` are more transformers TrainerCallbacks (the server reports a job's steps through one).

    The adapter is written to a temporary folder and renamed at the end, so `out_dir` either holds a
    finished adapter or does not exist.
    """
    rows = read_jsonl(dataset)
    kind = dataset_format(rows, str(dataset))
    out_dir = Path(out_dir)
    # The folder is named by the fine-tune's cache key, so checkpoints left in it by a killed run of the same
    # fine-tune are safe to resume from; without checkpoints there is nothing to resume.
    work = out_dir.with_name(out_dir.name + ".partial")
    resume = last_checkpoint(work / "trainer") if config.checkpoint_every else None
    if resume is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"{label}: resuming from {resume.name}", file=sys.stderr, flush=True)
    progress = _progress_callback(label)
    trainer = build_trainer(base, rows, config, seed, work / "trainer", options, callbacks=[progress, *(callbacks or [])])
    started = time.time()
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.time() - started
    adapter = work / "adapter"
    trainer.model.save_pretrained(str(adapter))
    _point_at_base(adapter, base)
    # The trainer's history holds every step's loss, those before a resume included.
    log = [{"step": r["step"], "epoch": round(r.get("epoch") or 0, 4), "loss": r["loss"],
            "learning_rate": r.get("learning_rate")} for r in trainer.state.log_history if "loss" in r]
    (adapter / "training_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    if config.checkpoint_every:
        _keep_checkpoints(work / "trainer", adapter / "checkpoints", base)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    meta = {"base": str(base), "dataset": str(dataset), "format": kind, "rows": len(rows), "seed": seed,
            "config": config.model_dump(), "steps": trainer.state.global_step, "seconds": round(seconds, 1),
            "train_tokens": tokens, "tokens_per_second": round(tokens * config.epochs / max(seconds, 1e-9), 1),
            "final_loss": log[-1]["loss"] if log else None}
    if resume is not None:
        meta["resumed_from_step"] = int(resume.name.split("-")[1])
    (adapter / "training_meta.json").write_text(json.dumps(meta, indent=2))
    shutil.rmtree(work / "trainer", ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    adapter.rename(out_dir)
    shutil.rmtree(work, ignore_errors=True)
    return out_dir


def last_checkpoint(folder: Path) -> Path | None:
    """The trainer's latest complete checkpoint in `folder` (None when there is none)."""
    done = [path for path in folder.glob("checkpoint-*") if (path / "trainer_state.json").is_file()]
    return max(done, key=lambda path: int(path.name.split("-")[1]), default=None)


def _point_at_base(adapter: Path, base: ModelRef) -> None:
    config_path = adapter / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text())
    adapter_config["base_model_name_or_path"] = str(base)  # PEFT writes an absolute path here
    config_path.write_text(json.dumps(adapter_config, indent=2))


def _keep_checkpoints(trainer_dir: Path, target: Path, base: ModelRef) -> None:
    """Each trainer checkpoint's adapter (not its optimiser state) as `target/step-N`."""
    for checkpoint in sorted(trainer_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1])):
        step_dir = target / f"step-{checkpoint.name.split('-')[1]}"
        step_dir.mkdir(parents=True)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy2(checkpoint / name, step_dir / name)
        _point_at_base(step_dir, base)


def checkpoint_adapters(adapter: Path) -> list[tuple[int, Path]]:
    """(step, adapter folder) of the checkpoints a fine-tune saved, in step order."""
    found = [(int(path.name.split("-")[1]), path) for path in (Path(adapter) / "checkpoints").glob("step-*")]
    return sorted(found)


def _progress_callback(label: str):
    """A tqdm bar per fine-tune showing the loss."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc=label, unit="step",
                            file=sys.stderr)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and self.bar is not None and math.isfinite(logs["loss"]):
                self.bar.set_postfix(loss=f"{logs['loss']:.3f}")

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(1)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()

    return ProgressCallback()
