"""Examples → tokenized, dynamically padded batches."""
from __future__ import annotations

import random
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from trainers.tasks import Example


def subsample(examples: list[Example], limit: int | None, seed: int) -> list[Example]:
    """A seeded subset, so every trial of a search sees the same examples for the same seed."""
    if limit is None or limit >= len(examples):
        return examples
    return random.Random(seed).sample(examples, limit)


def make_loader(examples: Sequence[Example], tokenizer, *, max_length: int, batch_size: int,
                regression: bool, shuffle: bool, seed: int) -> DataLoader:
    texts_a = [e.text_a for e in examples]
    texts_b = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
    enc = tokenizer(texts_a, texts_b, truncation=True, max_length=max_length)
    rows = [{k: enc[k][i] for k in enc.keys()} | {"labels": examples[i].label} for i in range(len(examples))]
    label_dtype = torch.float32 if regression else torch.long

    def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
        labels = torch.tensor([r["labels"] for r in batch], dtype=label_dtype)
        padded = tokenizer.pad([{k: v for k, v in r.items() if k != "labels"} for r in batch],
                               return_tensors="pt")
        return dict(padded) | {"labels": labels}

    gen = torch.Generator().manual_seed(seed)
    return DataLoader(rows, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=collate)
