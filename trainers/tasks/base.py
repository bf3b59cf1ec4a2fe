"""A task: where its data lives (hub or a local released layout), how to read it, its metric.

Local files are read as the benchmarks released them; a malformed row fails with the file, the
line and the field, so a broken download is caught before any training.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np

from trainers.registry import Registry
from trainers.tasks.metrics import METRICS

Split = Literal["train", "dev"]


class DataError(ValueError):
    """A data file or data source that cannot be read."""


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None
    label: int | float


@dataclass(frozen=True)
class TsvLayout:
    """A GLUE-style TSV directory: column indexes (negative counts from the end)."""

    directory: str
    files: dict[str, tuple[str, ...]]  # split -> candidate file names, first found wins
    text_a: int
    text_b: int | None
    label: int
    header: bool = True
    labels: dict[str, int] | None = None  # None: the column holds the integer label itself


@dataclass(frozen=True)
class Task:
    name: str
    benchmark: str
    metric: str
    num_labels: int  # 1 means regression
    hub_path: str
    hub_name: str
    hub_columns: tuple[str, str | None]
    layout: TsvLayout
    max_epochs: int
    patience: int
    description: str = ""
    hub_splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "validation"})

    @property
    def is_regression(self) -> bool:
        return self.num_labels == 1

    @property
    def metric_label(self) -> str:
        return METRICS[self.metric][1]

    def compute_metrics(self, preds: Sequence, labels: Sequence) -> dict[str, float]:
        return METRICS[self.metric][0](np.asarray(preds), np.asarray(labels))

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
            examples = read_tsv(self.local_file(data_dir, split), self.layout, self.is_regression)
        else:
            examples = self._load_hub(split)
        if not examples:
            raise DataError(f"{self.name}: the {split} split is empty")
        return examples

    def _load_hub(self, split: Split) -> list[Example]:
        import datasets  # heavy; only hub users pay for it

        ds = datasets.load_dataset(self.hub_path, self.hub_name, split=self.hub_splits[split])
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


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    return TASKS.register(task.name, task)
