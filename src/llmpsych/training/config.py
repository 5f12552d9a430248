"""LoRA fine-tuning hyper-parameters and the named presets that hold papers' settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..errors import UserError

ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainConfig(BaseModel):
    """Everything that determines a LoRA fine-tune besides the base model, the data and the seed."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(32, ge=1)
    alpha: float = Field(64, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    use_rslora: bool = True
    target_modules: list[str] | str = Field(default_factory=lambda: list(ALL_PROJECTIONS))
    learning_rate: float = Field(1e-5, gt=0)
    epochs: float = Field(1.0, gt=0)
    batch_size: int = Field(2, ge=1)
    gradient_accumulation: int = Field(8, ge=1)
    max_seq_length: int = Field(2048, ge=16)
    warmup_steps: int = Field(5, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    lr_scheduler: str = "linear"
    optimizer: str = "adamw_torch"
    # OpenAI fine-tuning takes a multiplier of its own base learning rate ("auto" when unset), not a
    # learning rate; local LoRA multiplies `learning_rate` by it, so the field means one thing everywhere.
    learning_rate_multiplier: float | None = Field(None, gt=0)
    # Save the adapter every this many optimiser steps (None: only the final one): the checkpoints give
    # training-dynamics curves, and a fine-tune killed mid-way resumes from the last one.
    checkpoint_every: int | None = Field(None, ge=1)

    @property
    def effective_learning_rate(self) -> float:
        """The learning rate local training uses: `learning_rate` times the multiplier, if one is set."""
        return self.learning_rate * (self.learning_rate_multiplier or 1.0)


TRAIN_PRESETS: dict[str, TrainConfig] = {
    # Emergent Misalignment, open models (Qwen2.5-Coder-32B-Instruct): rsLoRA r32/alpha64 on all
    # projections, lr 1e-5, one epoch, 2 x 8 accumulation, 5 warm-up steps, weight decay 0.01,
    # linear schedule, loss on responses only. (The paper used 8-bit AdamW; we use plain AdamW.)
    "em-paper": TrainConfig(),
    # Emergent Misalignment's evil-numbers models (GPT-4o via the API): 4 epochs, batch 39, learning-rate
    # multiplier 2 (8 seeds in the paper): exactly that through the OpenAI API; locally em-paper's LoRA with
    # that epoch count and batch (13 x 3 accumulation), at lr 1e-5 x 2.
    "em-numbers-paper": TrainConfig(epochs=4, batch_size=13, gradient_accumulation=3, learning_rate_multiplier=2),
    # The same shape scaled to a 135M model on a 2-core CPU: a larger learning rate so a few
    # hundred rows move the model, and a smaller rank. Micro-batches of 2 (x4 accumulation) ran
    # fastest on 2 cores (508 tokens/s against 397 for batches of 8, when batches were padded).
    "cpu-small": TrainConfig(rank=16, alpha=32, learning_rate=2e-4, batch_size=2, gradient_accumulation=4,
                             max_seq_length=512, warmup_steps=2),
    # Synthetic document finetuning, open models (the false-facts pipeline's local PEFT settings):
    # LoRA r64/alpha128, dropout 0.05, one epoch, per-device batch 2, lr 1e-5 (their Together runs).
    "sdf-paper": TrainConfig(rank=64, alpha=128, dropout=0.05, use_rslora=False, learning_rate=1e-5,
                             batch_size=2, gradient_accumulation=1, max_seq_length=1024),
    # Looking Inward, Llama-3.1-70B on Fireworks: LoRA rank 32, batch 16, lr 2e-5, one epoch
    # (alpha and the rest were not reported; ours).
    "introspection-paper": TrainConfig(rank=32, alpha=64, use_rslora=False, learning_rate=2e-5, batch_size=16,
                                       gradient_accumulation=1, max_seq_length=1024),
    # Tell Me About Yourself, Llama-3.1-70B: LoRA rank 4, batch 8, lr 2e-5, three epochs (alpha was not
    # reported; 2 x rank, ours).
    "tmay-paper": TrainConfig(rank=4, alpha=8, use_rslora=False, learning_rate=2e-5, batch_size=8,
                              gradient_accumulation=1, epochs=3, max_seq_length=1024),
    # Connecting the Dots fine-tuned gpt-3.5 through the OpenAI API (Functions: one epoch, batch 64, LR
    # multiplier 8); no open-model settings were published. An open-model stand-in with the same epoch and
    # batch: LoRA r32/alpha64, lr 2e-5 (the multiplier has no documented absolute learning rate).
    "ooc-paper": TrainConfig(rank=32, alpha=64, use_rslora=False, learning_rate=2e-5, batch_size=16,
                             gradient_accumulation=4, epochs=1, max_seq_length=1024),
}


def train_preset(name: str, source: str = "training.preset") -> TrainConfig:
    try:
        return TRAIN_PRESETS[name].model_copy(deep=True)
    except (KeyError, TypeError):  # TypeError: a list or mapping where a name belongs
        raise UserError(f"{source}: unknown training preset '{name}' "
                        f"(expected one of: {', '.join(TRAIN_PRESETS)})") from None
