"""A task: where its data lives (hub or a local released layout), how to read it, its metric.

Local files are read as the benchmarks released them (GLUE TSVs, SuperGLUE JSONL); a malformed
row fails with the file, the line and the field, so a broken download is caught before any
training. How examples become model inputs is the task's ``format`` (trainers/tasks/formats.py).
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np

from trainers.registry import Registry
from trainers.tasks.formats import PAIR, InputFormat
from trainers.tasks.metrics import METRICS

# "train" and "dev" always exist; a task may add more dev sets (MNLI's "dev_mismatched").
Split = str


class DataError(ValueError):
    """A data file or data source that cannot be read."""


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float
    group: int | None = None  # examples scored together by the metric (MultiRC: one question)
    choices: tuple[str, ...] | None = None  # per-choice scoring (COPA): text_a is paired with each


class Layout(Protocol):
    """Where a task's files sit in the benchmark's released layout, and how to read one."""

    directory: str
    files: dict[str, tuple[str, ...]]  # split -> candidate file names, first found wins

    def read(self, path: Path, regression: bool) -> list[Example]: ...


@dataclass(frozen=True)
class TsvLayout:
    """A GLUE-style TSV directory: column indexes (negative counts from the end)."""

    directory: str
    files: dict[str, tuple[str, ...]]
    text_a: int
    text_b: int | None
    label: int
    header: bool = True
    labels: dict[str, int] | None = None  # None: the column holds the integer label itself

    def read(self, path: Path, regression: bool) -> list[Example]:
        return read_tsv(path, self, regression)


# A JSONL record -> its examples (MultiRC turns one passage into many); raises KeyError(field) /
# ValueError for a missing field or a bad value, which read_jsonl turns into file:line messages.
RecordParser = Callable[[dict], list[Example]]


@dataclass(frozen=True)
class JsonlLayout:
    """A SuperGLUE-style JSONL directory: one JSON record per line."""

    directory: str
    files: dict[str, tuple[str, ...]]
    parse: RecordParser

    def read(self, path: Path, regression: bool) -> list[Example]:
        return read_jsonl(path, self.parse)


@dataclass(frozen=True)
class Task:
    name: str
    benchmark: str
    metric: str
    num_labels: int  # classes (1 means regression); for per-choice scoring, the number of choices
    hub_path: str
    hub_name: str
    layout: Layout
    max_epochs: int
    patience: int
    hub_columns: tuple[str, str | None] = ("sentence1", "sentence2")
    # A hub record -> examples; None reads hub_columns and "label".
    hub_parse: Optional[RecordParser] = None
    description: str = ""
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation"})
    format: InputFormat = PAIR
    # Dev sets evaluated and logged besides "dev" (never used for selection).
    extra_eval_splits: tuple[str, ...] = ()

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def head_size(self) -> int:
        """Outputs of the classifier head the backbone gets."""
        return self.format.head_size(self.num_labels)

    @property
    def metric_label(self) -> str:
        return METRICS[self.metric][1]

    def compute_metrics(self, preds: Sequence, labels: Sequence, groups: Sequence | None = None) -> dict[str, float]:
        g = None if groups is None else np.asarray(groups)
        return METRICS[self.metric][0](np.asarray(preds), np.asarray(labels), g)

    # ---- loading -------------------------------------------------------------------------
    def local_file(self, data_dir: str | Path, split: Split) -> Path:
        root = Path(data_dir)
        for base in (root / self.benchmark / self.layout.directory, root / self.layout.directory):
            for name in self.layout.files[split]:
                if (base / name).is_file():
                    return base / name
        wanted = " or ".join(self.layout.files[split])
        raise DataError(
            f"{self.name}: no {split} file ({wanted}) under {root / self.benchmark / self.layout.directory}"
        )

    def load(self, split: Split, *, source: str, data_dir: str | Path | None = None) -> list[Example]:
        if source == "local":
            if data_dir is None:
                raise DataError(f"{self.name}: data.source is local but no data directory was given")
            path = self.local_file(data_dir, split)
            examples = self.layout.read(path, self.is_regression)
            where = str(path)
        else:
            examples = self._load_hub(split)
            where = f"{self.hub_path}/{self.hub_name}"
        if not examples:
            raise DataError(f"{self.name}: the {split} split is empty ({where})")
        return examples

    def _load_hub(self, split: Split) -> list[Example]:
        import datasets  # heavy; only hub users pay for it

        ds = datasets.load_dataset(self.hub_path, self.hub_name, split=self.hub_splits[split])
        if self.hub_parse is not None:
            return [e for r in ds for e in self.hub_parse(dict(r))]
        a, b = self.hub_columns
        cast = float if self.is_regression else int
        return [Example(r[a], r[b] if b else None, cast(r["label"])) for r in ds]


def read_tsv(path: Path, layout: TsvLayout, regression: bool) -> list[Example]:
    needed = max(abs(c) + (c < 0) for c in (layout.text_a, layout.text_b or 0, layout.label)) + 1
    out: list[Example] = []
    with open(path, encoding="utf-8-sig", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for lineno, row in enumerate(rows, start=1):
            if lineno == 1 and layout.header:
                continue
            if not row or row == [""]:
                continue
            if len(row) < needed:
                raise DataError(f"{path}:{lineno}: expected at least {needed} tab-separated columns, got {len(row)}")
            out.append(Example(row[layout.text_a], row[layout.text_b] if layout.text_b is not None else None,
                               _label(path, lineno, row[layout.label], layout, regression)))
    return out


def _label(path: Path, lineno: int, raw: str, layout: TsvLayout, regression: bool) -> int | float:
    raw = raw.strip()
    try:
        if regression:
            return float(raw)
        if layout.labels is not None:
            return layout.labels[raw]
        return int(raw)
    except (KeyError, ValueError):
        valid = f" (valid: {', '.join(layout.labels)})" if layout.labels else ""
        raise DataError(f"{path}:{lineno}: label: not a valid label{valid} (got {raw!r})") from None


class FieldError(ValueError):
    """A record parser's complaint about one field; read_jsonl adds the file and line."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")


def read_jsonl(path: Path, parse: RecordParser) -> list[Example]:
    out: list[Example] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not a JSON record: {e.msg} at column {e.colno}") from None
            try:
                if not isinstance(record, dict):
                    raise FieldError("record", f"must be a JSON object (got {type(record).__name__})")
                out.extend(parse(record))
            except FieldError as e:
                raise DataError(f"{path}:{lineno}: {e}") from None
            except KeyError as e:
                raise DataError(f"{path}:{lineno}: {e.args[0]}: missing field") from None
    return out


def get(record: dict, key: str, kind: type | tuple[type, ...] = str, *, where: str = "") -> Any:
    """record[key], checked to be of ``kind``; the field is named as ``where.key`` in errors."""
    name = f"{where}.{key}" if where else key
    if key not in record:
        raise KeyError(name)
    value = record[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise FieldError(name, f"must be {want} (got {value!r})")
    return value


def label_of(record: dict, labels: dict[Any, int], key: str = "label", *, where: str = "") -> int:
    """A label looked up in ``labels`` (strings, booleans or 0/1, as each benchmark writes them)."""
    name = f"{where}.{key}" if where else key
    if key not in record:
        raise KeyError(name)
    raw = record[key]
    # JSON true/1 and false/0 compare equal in a dict; only accept the types the mapping uses.
    if any(type(raw) is type(k) for k in labels) and raw in labels:
        return labels[raw]
    valid = ", ".join(json.dumps(k) for k in labels)
    raise FieldError(name, f"not a valid label (valid: {valid}) (got {raw!r})")


def binary_label(record: dict, key: str = "label", *, where: str = "") -> int:
    """A yes/no label written as a JSON boolean or as 0/1."""
    name = f"{where}.{key}" if where else key
    if key not in record:
        raise KeyError(name)
    raw = record[key]
    if raw in (0, 1) and isinstance(raw, (bool, int)):
        return int(raw)
    raise FieldError(name, f"not a valid label (valid: true, false, 0, 1) (got {raw!r})")


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)
