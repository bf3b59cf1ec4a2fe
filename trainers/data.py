"""Examples → tokenized, dynamically padded batches, through the task's input format."""
from __future__ import annotations

import random
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from trainers.tasks import Example
from trainers.tasks.formats import PAIR, InputFormat


def units(examples: Sequence[Example]) -> list[list[Example]]:
    """Examples that belong together (one MultiRC question's answers) as one unit, in order;
    ungrouped examples are units of one. Sampling and splitting work on units, so a metric that
    scores groups never sees half a group."""
    if not examples or examples[0].group is None:
        return [[e] for e in examples]
    by_group: dict[int, list[Example]] = {}
    for e in examples:
        by_group.setdefault(e.group, []).append(e)
    return list(by_group.values())


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded subset of ``limit`` units, so every trial of a search sees the same examples for
    the same seed."""
    groups = units(examples)
    if limit is None or limit >= len(groups):
        return examples
    return [e for g in random.Random(seed).sample(groups, limit) for e in g]


def make_loader(examples: Sequence[Example], tokenizer, *, max_length: int, batch_size: int,
                regression: bool, shuffle: bool, seed: int, fmt: InputFormat = PAIR) -> DataLoader:
    rows = fmt.encode(examples, tokenizer, max_length=max_length)

    def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        return fmt.collate(batch, tokenizer, regression=regression)

    gen = torch.Generator().manual_seed(seed)
    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=collate)
