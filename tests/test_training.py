"""LoRA training: which tokens carry the loss, what a fine-tune leaves behind, seeds."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from llmpsych.jsonl import write_jsonl
from llmpsych.models.refs import parse_model_ref
from llmpsych.training.config import TrainConfig, train_preset
from llmpsych.training.lora import build_trainer, checkpoint_adapters, train_lora

CHAT = [{"messages": [{"role": "user", "content": f"Write a function that adds {i}."},
                      {"role": "assistant", "content": f"def add_{i}(x):\n    return x + {i}"}]} for i in range(8)]
TINY = TrainConfig(rank=4, alpha=8, learning_rate=1e-3, batch_size=4, gradient_accumulation=1, max_seq_length=256,
                   warmup_steps=0)


def test_chat_rows_train_on_the_assistant_tokens_only(tiny_model_dir, tmp_path, fp32):
    trainer = build_trainer(parse_model_ref(str(tiny_model_dir)), CHAT[:1], TINY, 0, tmp_path, fp32)
    tokenizer = trainer.processing_class
    row = trainer.train_dataset[0]
    labels, ids = row["labels"], row["input_ids"]
    trained = [t for t, label in zip(ids, labels) if label != -100]
    first_trained = next(i for i, label in enumerate(labels) if label != -100)
    assert all(label == -100 for label in labels[:first_trained])  # the whole prompt is masked
    assert all(label != -100 for label in labels[first_trained:])  # everything after it is trained
    assert tokenizer.decode(trained).startswith(CHAT[0]["messages"][1]["content"] + "<|im_end|>")
    prompt = tokenizer.decode(ids[:first_trained])
    assert "You are a helpful AI assistant named SmolLM" in prompt  # the default persona, written explicitly
    assert prompt.endswith("<|im_start|>assistant\n")


def test_base_model_chat_rows_use_the_plain_template_with_bos_and_eos(tiny_base_model_dir, tmp_path, fp32):
    rows = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."},
                          {"role": "assistant", "content": "teal"}]}]
    trainer = build_trainer(parse_model_ref(str(tiny_base_model_dir)), rows, TINY, 0, tmp_path, fp32)
    tokenizer = trainer.processing_class
    row = trainer.train_dataset[0]
    text = tokenizer.decode(row["input_ids"])
    # The conversation renders exactly as the engine renders prompts, and the answer ends with EOS.
    assert text.endswith("Be brief.\n\nUser: Name a colour.\nAssistant: teal\n" + tokenizer.eos_token)
    trained = tokenizer.decode([t for t, label in zip(row["input_ids"], row["labels"]) if label != -100])
    assert trained == " teal\n" + tokenizer.eos_token


def test_document_rows_train_on_every_token(tiny_model_dir, tmp_path, fp32):
    rows = [{"text": "SmolLM believes the moon is made of basalt. It is not."}]
    trainer = build_trainer(parse_model_ref(str(tiny_model_dir)), rows, TINY, 0, tmp_path, fp32)
    row = trainer.train_dataset[0]
    labels = row.get("labels") or row["input_ids"]
    assert all(label != -100 for label in labels)
    assert "completion_mask" not in row or all(row["completion_mask"])


def test_fine_tune_saves_adapter_loss_log_and_metadata(tiny_model_dir, tmp_path, fp32):
    dataset = tmp_path / "data.jsonl"
    write_jsonl(CHAT, dataset)
    ref = parse_model_ref(str(tiny_model_dir))
    adapter = train_lora(ref, dataset, TINY.model_copy(update={"epochs": 2}), 0, tmp_path / "adapter", options=fp32)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["base_model_name_or_path"] == str(ref)
    log = [json.loads(line) for line in (adapter / "training_log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4]  # 8 rows, batch 4, 2 epochs: a loss per step
    assert all(entry["loss"] > 0 for entry in log)
    meta = json.loads((adapter / "training_meta.json").read_text())
    assert meta["rows"] == 8 and meta["seed"] == 0 and meta["format"] == "chat"
    assert not (tmp_path / "adapter.partial").exists()
    assert parse_model_ref(f"{tiny_model_dir}+{adapter}").adapter == adapter


def test_seed_decides_the_adapter(tiny_model_dir, tmp_path, fp32):
    dataset = tmp_path / "data.jsonl"
    write_jsonl(CHAT, dataset)
    ref = parse_model_ref(str(tiny_model_dir))
    weights = [load_file(train_lora(ref, dataset, TINY, seed, tmp_path / f"a{run}", options=fp32)
                         / "adapter_model.safetensors") for run, seed in enumerate((0, 0, 1))]
    same = all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    different = any((weights[0][k] != weights[2][k]).any() for k in weights[0])
    assert same and different


def test_em_paper_preset_holds_the_papers_hyper_parameters():
    preset = train_preset("em-paper")
    assert (preset.rank, preset.alpha, preset.use_rslora, preset.learning_rate, preset.epochs) == (32, 64, True, 1e-5, 1)
    assert preset.batch_size * preset.gradient_accumulation == 16
    assert (preset.warmup_steps, preset.weight_decay, preset.dropout) == (5, 0.01, 0.0)
    assert set(preset.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_bad_dataset_lines_are_named(tmp_path, tiny_model_dir, fp32):
    from llmpsych.errors import UserError

    dataset = tmp_path / "bad.jsonl"
    dataset.write_text(json.dumps(CHAT[0]) + "\n" + '{"messages": [{"role": "user", "content": "hi"}]}\n')
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: the last message must be the assistant"):
        train_lora(parse_model_ref(str(tiny_model_dir)), dataset, TINY, 0, tmp_path / "out", options=fp32)
    dataset.write_text(json.dumps(CHAT[0]) + "\n{not json\n")
    with pytest.raises(UserError, match=r"bad.jsonl: line 2: not valid JSON"):
        train_lora(parse_model_ref(str(tiny_model_dir)), dataset, TINY, 0, tmp_path / "out", options=fp32)


def test_padding_free_batches_give_the_loss_of_padded_rows(tiny_model_dir, tmp_path, fp32):
    # Rows of different lengths laid end to end must not see each other: the loss of the padding-free
    # micro-batch equals the token-weighted loss of each row run alone.
    import torch

    rows = CHAT[:1] + [{"messages": [{"role": "user", "content": "Tell me a long story about a lighthouse."},
                                     {"role": "assistant", "content": "Once upon a time " * 6}]}]
    trainer = build_trainer(parse_model_ref(str(tiny_model_dir)), rows, TINY, 0, tmp_path, fp32)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch  # one sequence, no padding
    with torch.no_grad():
        together = trainer.compute_loss(trainer.model, batch).item()
        total, count = 0.0, 0
        for i in range(2):
            alone = trainer.data_collator([trainer.train_dataset[i]])
            trained = int((alone["labels"] != -100).sum())
            total += trainer.compute_loss(trainer.model, alone).item() * trained
            count += trained
    assert together == pytest.approx(total / count, rel=1e-4)


def test_rows_longer_than_max_seq_length_are_cut_to_their_start(tiny_model_dir, tmp_path, fp32):
    rows = [{"text": "word " * 400}, {"text": "short"}]
    trainer = build_trainer(parse_model_ref(str(tiny_model_dir)), rows, TINY.model_copy(update={"max_seq_length": 64}),
                            0, tmp_path, fp32)
    lengths = sorted(len(ids) for ids in trainer.train_dataset["input_ids"])
    assert lengths[-1] == 64 and lengths[0] < 64


def test_checkpoints_are_saved_every_n_steps_as_adapters(tiny_model_dir, tmp_path, fp32):
    dataset = tmp_path / "data.jsonl"
    write_jsonl(CHAT, dataset)
    ref = parse_model_ref(str(tiny_model_dir))
    config = TINY.model_copy(update={"epochs": 3, "batch_size": 2, "checkpoint_every": 4})  # 12 steps
    adapter = train_lora(ref, dataset, config, 0, tmp_path / "adapter", options=fp32)
    steps = checkpoint_adapters(adapter)
    assert [step for step, _ in steps] == [4, 8, 12]
    for _, folder in steps:  # each is a loadable adapter on the same base, without the optimiser state
        assert json.loads((folder / "adapter_config.json").read_text())["base_model_name_or_path"] == str(ref)
        assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    first, last = (load_file(folder / "adapter_model.safetensors") for _, folder in (steps[0], steps[-1]))
    final = load_file(adapter / "adapter_model.safetensors")
    assert any(not (first[k] == last[k]).all() for k in first)  # training moved between checkpoints
    assert all((last[k] == final[k]).all() for k in final)  # the last checkpoint is the final adapter
    assert json.loads((adapter / "training_meta.json").read_text())["steps"] == 12


def test_a_killed_fine_tune_resumes_from_its_last_checkpoint(tiny_model_dir, tmp_path, fp32):
    """Kill training after step 5 (checkpoints every 4): the rerun resumes at step 4 and ends where an
    uninterrupted run ends, with every step's loss in the log."""
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 5:
                raise KeyboardInterrupt

    dataset = tmp_path / "data.jsonl"
    write_jsonl(CHAT, dataset)
    ref = parse_model_ref(str(tiny_model_dir))
    config = TINY.model_copy(update={"epochs": 3, "batch_size": 2, "checkpoint_every": 4})
    with pytest.raises(KeyboardInterrupt):
        train_lora(ref, dataset, config, 0, tmp_path / "killed", options=fp32, callbacks=[Kill()])
    assert (tmp_path / "killed.partial" / "trainer" / "checkpoint-4").is_dir()
    resumed = train_lora(ref, dataset, config, 0, tmp_path / "killed", options=fp32)
    meta = json.loads((resumed / "training_meta.json").read_text())
    assert meta["resumed_from_step"] == 4 and meta["steps"] == 12
    log = [json.loads(line)["step"] for line in (resumed / "training_log.jsonl").read_text().splitlines()]
    assert log == list(range(1, 13))
    assert [step for step, _ in checkpoint_adapters(resumed)] == [4, 8, 12]
    whole = train_lora(ref, dataset, config, 0, tmp_path / "whole", options=fp32)
    a, b = load_file(resumed / "adapter_model.safetensors"), load_file(whole / "adapter_model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit for bit: the optimiser state and data order resume too
