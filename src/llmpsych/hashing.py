"""Stable content hashes: the keys of the cache and the provenance of every artefact."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any


def stable_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal values always hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(*parts: Any) -> str:
    """SHA-256 hex digest of any JSON-serialisable values."""
    return hashlib.sha256(stable_json(parts).encode()).hexdigest()


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """SHA-256 of a file's bytes, memoised on (path, size, mtime) because weight files are large."""
    path = Path(path).resolve()
    stat = path.stat()
    memo_key = digest(str(path), stat.st_size, stat.st_mtime_ns)
    memo = (memo_dir / f"{memo_key}.sha256") if memo_dir else None
    if memo is not None and memo.exists():
        return memo.read_text().strip()
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            sha.update(block)
    value = sha.hexdigest()
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(value)
        tmp.replace(memo)
    return value
