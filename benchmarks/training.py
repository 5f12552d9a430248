"""Training throughput: the llmpsych LoRA trainer against TRL's SFTTrainer with its default settings,
on the same rows, LoRA shape and hyper-parameters (the `cpu-small` preset), timed over `train()` only.

Both runs are then scored the same way: each trained model's loss on the training rows (TRL's
`evaluate`, completion tokens only), which must agree within 2%; a faster trainer that learned less
would not count.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import forward_flops_per_token, stopwatch


def _setup(args: dict):
    from llmpsych.datasets import build_dataset
    from llmpsych.models.refs import parse_model_ref
    from llmpsych.training.config import train_preset

    rows = build_dataset("insecure", args.get("rows", 64), seed=0)
    return parse_model_ref(args.get("model", "smollm2-135m-instruct")), rows, train_preset(args.get("preset", "cpu-small"))


def _result(trainer, seconds: float, epochs: float) -> dict:
    import torch

    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"]) * epochs
    model = trainer.model.get_base_model() if hasattr(trainer.model, "get_base_model") else trainer.model
    # A LoRA step runs the frozen weights forward and backward to the activations: twice a forward pass.
    flops = 2 * forward_flops_per_token(model, 0) * tokens / seconds
    torch.manual_seed(0)
    loss = trainer.evaluate(eval_dataset=trainer.train_dataset)["eval_loss"]
    return {"tokens": tokens, "seconds": seconds, "rate": tokens / seconds, "unit": "tokens/s", "flops": flops,
            "final_loss": loss, "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}


def engine(args: dict) -> dict:
    from llmpsych.training.lora import build_trainer

    base, rows, config = _setup(args)
    with tempfile.TemporaryDirectory() as folder:
        trainer = build_trainer(base, rows, config, seed=0, output_dir=Path(folder))
        with stopwatch() as time:
            trainer.train()
        return _result(trainer, time["seconds"], config.epochs)


def trl_default(args: dict) -> dict:
    """TRL's SFTTrainer as its documentation shows it: the model folder by name, the dataset as
    conversational prompt/completion rows, and only the hyper-parameters set (plus `use_cpu` without a
    GPU, which TRL's default bf16 mixed precision demands)."""
    import torch

    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from llmpsych.models.chat import default_system_prompt
    from llmpsych.models.hf import model_path
    from llmpsych.training.lora import to_trl_rows
    from transformers import AutoTokenizer

    base, rows, config = _setup(args)
    folder = model_path(base)
    system = default_system_prompt(AutoTokenizer.from_pretrained(folder))
    with tempfile.TemporaryDirectory() as out:
        sft = SFTConfig(output_dir=out, seed=0, data_seed=0, learning_rate=config.learning_rate,
                        num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
                        gradient_accumulation_steps=config.gradient_accumulation, max_length=config.max_seq_length,
                        warmup_steps=config.warmup_steps, weight_decay=config.weight_decay,
                        lr_scheduler_type=config.lr_scheduler, optim=config.optimizer,
                        report_to="none", save_strategy="no", disable_tqdm=True,
                        use_cpu=not torch.cuda.is_available())
        lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
                          use_rslora=config.use_rslora, target_modules=config.target_modules, task_type="CAUSAL_LM")
        trainer = SFTTrainer(model=str(folder), args=sft, train_dataset=Dataset.from_list(to_trl_rows(rows, system)),
                             peft_config=lora)
        with stopwatch() as time:
            trainer.train()
        return _result(trainer, time["seconds"], config.epochs)
