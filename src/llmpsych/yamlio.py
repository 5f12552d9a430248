"""Reading YAML files with errors a user can act on: the file, the line and what was expected."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from .errors import UserError


def read_yaml(path: Path, what: str = "a YAML file") -> Any:
    """Parse a YAML file; a missing file or a syntax error becomes a one-line UserError."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: file not found (expected {what})")
    text = read_text(path)
    try:
        loader = _loader()(text)  # the reader refuses control characters here already
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        if isinstance(error, _loader().DuplicateKey):
            raise UserError(f"{path}: line {error.problem_mark.line + 1}: {error.problem}") from None
        mark = getattr(error, "problem_mark", None)
        line = ""
        if mark is not None:
            line = f"line {mark.line + 1}: "
        elif isinstance(error, yaml.reader.ReaderError):  # a character YAML does not allow, at a position
            line = f"line {text.count(chr(10), 0, error.position) + 1}: "
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise UserError(f"{path}: {line}invalid YAML ({problem})") from None
    except RecursionError:  # the reader's position is where the nesting got too deep
        raise UserError(f"{path}: line {loader.line + 1}: invalid YAML (nested too deeply; expected {what})") from None


def read_text(path: Path) -> str:
    """A file's text as UTF-8; other bytes are an error naming the line they are on."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise UserError(f"{path}: line {line}: not UTF-8 text (byte {data[error.start]:#04x}; "
                        "save the file as UTF-8)") from None


@cache
def _loader():
    """PyYAML's safe loader, except that a scalar it cannot convert (`2024-13-01`, `!!int x`) is a YAML error
    at that scalar's line rather than a bare ValueError, and that a key written twice in one mapping is an
    error at the second (PyYAML keeps the last value silently)."""
    import yaml

    class DuplicateKey(yaml.constructor.ConstructorError):
        """A mapping names the same key twice."""

    class Loader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                _refuse_duplicate_keys(self, node)
            return super().construct_mapping(node, deep)

        def construct_object(self, node, deep=False):
            try:
                return super().construct_object(node, deep)
            except (ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as error:
                value = f"{node.value!r} " if isinstance(node, yaml.ScalarNode) else ""
                raise yaml.constructor.ConstructorError(
                    None, None, f"cannot read {value}as {node.tag.rsplit(':', 1)[-1]}: {error}",
                    node.start_mark) from None

    def _refuse_duplicate_keys(loader, node) -> None:
        """Before merge keys (`<<: *base`) are flattened in, so a key may still override a merged one."""
        first: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = loader.construct_object(key_node, deep=True)
            try:
                if key in first:
                    raise DuplicateKey(None, None, f"duplicate key {key!r} (first on line {first[key]}; "
                                       "YAML keeps only one of them)", key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the base constructor says so
                continue

    Loader.DuplicateKey = DuplicateKey
    return Loader


def entry_lines(path: Path) -> list[int]:
    """The 1-based line where each entry of a top-level YAML list starts (for error messages).

    Read from parser events rather than the composed tree, so an entry written as an alias
    (`- *name`) reports its own line, not the anchor's.
    """
    import yaml

    lines, depth = [], 0
    try:
        for event in yaml.parse(read_text(path)):
            starts = isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent))
            ends = isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent))
            if depth == 1 and (starts or isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent))):
                lines.append(event.start_mark.line + 1)
            depth += starts - ends
    except (yaml.YAMLError, UserError):
        return []
    return lines
