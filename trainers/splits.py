"""Split protocols: which examples train, which select (early stopping, the best assignment), and
which give the reported score.

- ``dev`` (the AoT paper): select and report on the dev set.
- ``heldout`` (the EPT and DePT papers): a task with under 10k training examples splits its dev
  set in half, one half to select and one to report; a larger task holds out 1k training
  examples (10k above 100k) to select, trains on the rest, and reports on dev.

Splits are drawn with a fixed seed, so every trial of a search, whatever its training seed,
selects and reports on the same examples. Examples are counted and split by unit (a MultiRC
question with all its answer options), so a group is never cut in two.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from trainers.config import DataConfig
from trainers.data import units
from trainers.tasks import Example, Task

SPLIT_SEED = 0
SMALL_TRAIN = 10_000  # under this many training units, dev is split in half
LARGE_TRAIN = 100_000  # over this many, 10k (not 1k) training units are held out
HELDOUT_SMALL, HELDOUT_LARGE = 1_000, 10_000


@dataclass(frozen=True)
class EvalSets:
    train: list[Example]
    select: list[Example]
    report: list[Example] | None  # None: the reported score is the selection set's (protocol dev)
    extra: dict[str, list[Example]] = field(default_factory=dict)  # other dev sets, always reported


def _flat(groups: list[list[Example]]) -> list[Example]:
    return [e for g in groups for e in g]


def split_sets(protocol: str, train: list[Example], dev: list[Example]) -> tuple[list, list, list | None]:
    """(train, selection, reported) for one protocol."""
    if protocol == "dev":
        return train, dev, None
    train_units, rng = units(train), random.Random(SPLIT_SEED)
    if len(train_units) < SMALL_TRAIN:
        dev_units = units(dev)
        rng.shuffle(dev_units)
        half = len(dev_units) // 2
        return train, _flat(dev_units[:half]), _flat(dev_units[half:])
    k = HELDOUT_LARGE if len(train_units) > LARGE_TRAIN else HELDOUT_SMALL
    held = set(rng.sample(range(len(train_units)), k))
    kept = [u for i, u in enumerate(train_units) if i not in held]
    return _flat(kept), _flat([train_units[i] for i in sorted(held)]), dev


def load_sets(task: Task, data: DataConfig) -> EvalSets:
    load = lambda split: task.load(split, source=data.source, data_dir=data.dir)  # noqa: E731
    train, select, report = split_sets(data.protocol, load("train"), load("dev"))
    return EvalSets(train, select, report, {s: load(s) for s in task.extra_eval_splits})
