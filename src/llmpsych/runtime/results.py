"""The result table: every reading of every probe of a run, in one long table with the same columns.

    model     the label of the model that answered (insecure-s0, base, self-smollm2-s1, ...)
    arm       its arm or condition (insecure, base, meta, self-smollm2, ...): what the statistics compare
    seed      the fine-tune's seed (missing for models that were not fine-tuned)
    probe     which measurement the row belongs to (free-form, choice, behaviour, hypothetical, ...)
    cluster   the statistical unit the item belongs to: a fact, a prompt, a question, a scenario
    item      the reading within its cluster (a paraphrase, an identity condition, a property)
    variant   a condition of the asking (plain, triggered, a system prompt, an identity prompt)
    sample    the index of a repeated answer to the same item (0 when there is one)
    question  the text asked, when there is one
    answer    the text answered, when there is one
    value     the probe's number for this reading (a probability, 0/1, a rate); NaN when it could not
              be measured, never 0
    ...       probe-specific extras (scores, masses, labels), missing where a probe has none

Each step of a plan writes its own part (`results/<part>.parquet`, written atomically); when the plan
has run, `combine_results` joins the parts into `results.parquet`, which the analysis, the reports,
the exports and `llmpsych.load_run` read.
"""

from __future__ import annotations

import io
import json
import numbers
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..errors import UserError
from .store import RunStore

COLUMNS = ("model", "arm", "seed", "probe", "cluster", "item", "variant", "sample", "question", "answer", "value")
REQUIRED = ("model", "arm", "probe", "cluster", "item")
TEXT = ("model", "arm", "probe", "cluster", "item", "variant")
TABLE = "results.parquet"
PARTS = "results"


def result_frame(rows: Iterable[dict]) -> pd.DataFrame:
    """Rows as the shared table: the columns in order, their types fixed, extras after them.

    A row must name model, arm, probe, cluster and item; variant defaults to "plain", sample to 0."""
    return _normalise(pd.DataFrame(list(rows), dtype=object))  # object: ints stay ints until typed


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        return pd.DataFrame({column: pd.Series(dtype=_EMPTY_TYPES.get(column, "object")) for column in COLUMNS})
    missing = [c for c in REQUIRED if c not in frame or frame[c].isna().any()]
    if missing:  # a bug in a recipe, not a user error
        raise ValueError(f"result rows without {missing[0]!r}")
    frame = frame.assign(**{c: None for c in COLUMNS if c not in frame})
    frame["variant"] = frame["variant"].fillna("plain")
    frame["sample"] = frame["sample"].fillna(0)
    for column in TEXT:
        frame[column] = frame[column].astype(str)
    frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce").astype("Int64")
    frame["sample"] = pd.to_numeric(frame["sample"]).astype("Int64")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    for column in ("question", "answer"):
        frame[column] = _text(frame[column])
    extras = [c for c in frame.columns if c not in COLUMNS]
    for column in extras:
        frame[column] = _uniform(frame[column])
    return frame[list(COLUMNS) + extras].reset_index(drop=True)


_EMPTY_TYPES = {"seed": "Int64", "sample": "Int64", "value": "float64"}


def _missing(value) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)


def _kind(value) -> type:
    if isinstance(value, (bool, np.bool_)):
        return bool
    if isinstance(value, numbers.Integral):
        return int
    if isinstance(value, numbers.Real):
        return float
    return type(value)


def _text(column: pd.Series) -> pd.Series:
    return column.map(lambda v: None if _missing(v) else str(v)).astype(object)


def _uniform(column: pd.Series) -> pd.Series:
    """One type per extra column, so that Parquet can hold it: numbers stay numbers (booleans and
    integers nullable), text stays text, and anything mixed or nested becomes JSON text."""
    kinds = {_kind(v) for v in column if not _missing(v)}
    if not kinds:
        return pd.Series([None] * len(column), index=column.index, dtype=object)
    if kinds == {bool}:
        return column.map(lambda v: pd.NA if _missing(v) else bool(v)).astype("boolean")
    if kinds == {int}:
        return column.map(lambda v: pd.NA if _missing(v) else int(v)).astype("Int64")
    if kinds <= {int, float}:
        return pd.to_numeric(column.map(lambda v: np.nan if _missing(v) else v)).astype(float)
    if kinds == {str}:
        return _text(column)
    return column.map(lambda v: None if _missing(v) else v if isinstance(v, str)
                      else json.dumps(v, default=str, sort_keys=True)).astype(object)


def write_results(store: RunStore, part: str, rows: Iterable[dict] | pd.DataFrame) -> Path:
    """One step's rows as `results/<part>.parquet` (atomic: a killed run leaves the old part or none)."""
    frame = _normalise(rows.copy()) if isinstance(rows, pd.DataFrame) else result_frame(rows)
    return store.write_bytes(f"{PARTS}/{part}.parquet", _parquet(frame))


def clear_results(store: RunStore) -> None:
    """Remove the parts of an earlier run in this directory: every step writes its part again (only model calls
    are cached), and a part no step writes any more (a seed or an arm dropped since) must not be joined in."""
    shutil.rmtree(store.path(PARTS), ignore_errors=True)


def combine_results(store: RunStore) -> pd.DataFrame:
    """Join every part into `results.parquet` (parts in name order) and return the table."""
    folder = store.path(PARTS)
    parts = [pd.read_parquet(path) for path in sorted(folder.glob("*.parquet"))] if folder.is_dir() else []
    parts = [part for part in parts if not part.empty]
    # A column some parts lack is added to them, empty, with the type it has where it exists, so that
    # joining keeps integers and booleans as they were.
    types: dict = {}
    for part in parts:
        for column, dtype in part.dtypes.items():
            types.setdefault(column, dtype)
    parts = [part.assign(**{c: pd.Series([None] * len(part), index=part.index, dtype=object).astype(t)
                            for c, t in types.items() if c not in part}) for part in parts]
    table = _normalise(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame())
    data = _parquet(table)
    store.write_bytes(TABLE, data)
    return pd.read_parquet(io.BytesIO(data))


def read_results(store: RunStore) -> pd.DataFrame:
    """The run's result table (joined from its parts if it has not been yet)."""
    path = store.path(TABLE)
    if not path.is_file():
        if not store.path(PARTS).is_dir():
            raise UserError(f"{store.root}: missing {TABLE} (is this a finished llmpsych run directory?)")
        return combine_results(store)
    try:
        return pd.read_parquet(path)
    except Exception as error:  # pyarrow's errors share no base class worth naming
        raise UserError(f"{path}: not a readable Parquet table ({type(error).__name__}); "
                        "rebuild it with `llmpsych report RUN_DIR`") from None


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()
