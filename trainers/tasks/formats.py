"""How a task's examples become model inputs, and how the model's logits become predictions.

The training loop and the data pipeline only call these hooks, so a new input shape is a new
format, not a branch in the loop. Every format drives the same model interface,
``model(input_ids, attention_mask, token_type_ids=None, labels=None) -> .loss, .logits``, so PEFT
methods that wrap the model work unchanged.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

if TYPE_CHECKING:  # torch is imported where a batch is built, so listing tasks stays fast
    import torch

    from trainers.tasks.base import Example

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Encoders pool position 0 ([CLS], <s>) and BERT's absolute positions count from it, so their
# batches are padded on the right whatever the tokenizer's padding_side says (left padding would
# pool a pad). Decoders and T5 pad on either side (trainers/tasks/text.py, trainers/lm.py).
ENCODER_PADDING = "right"


class InputFormat(Protocol):
    def head_size(self, num_labels: int) -> int: ...

    def encode(self, examples: Sequence["Example"], tokenizer, *, max_length: int) -> list[dict]: ...

    def collate(self, rows: list[dict], tokenizer, *, regression: bool) -> dict[str, torch.Tensor]: ...

    def forward(self, model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor]: ...

    def predict(self, logits: torch.Tensor, *, regression: bool) -> torch.Tensor: ...


def _model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in MODEL_INPUTS if k in batch}


def _labels_and_groups(rows: list[dict], batch: dict, regression: bool) -> dict:
    import torch

    batch["labels"] = torch.tensor([r["labels"] for r in rows], dtype=torch.float32 if regression else torch.long)
    if rows[0].get("group") is not None:
        batch["group"] = torch.tensor([r["group"] for r in rows], dtype=torch.long)
    return batch


class PairFormat:
    """One input per example: text_a, or the pair (text_a, text_b); the model's own head and loss."""

    def head_size(self, num_labels: int) -> int:
        return num_labels

    def encode(self, examples: Sequence["Example"], tokenizer, *, max_length: int) -> list[dict]:
        if not examples:
            return []
        texts_b = [e.text_b for e in examples] if examples[0].text_b is not None else None
        enc = tokenizer([e.text_a for e in examples], texts_b, truncation=True, max_length=max_length)
        return [{"features": {k: enc[k][i] for k in enc.keys()}, "labels": e.label, "group": e.group}
                for i, e in enumerate(examples)]

    def collate(self, rows: list[dict], tokenizer, *, regression: bool) -> dict[str, torch.Tensor]:
        batch = dict(tokenizer.pad([r["features"] for r in rows], return_tensors="pt", padding_side=ENCODER_PADDING))
        return _labels_and_groups(rows, batch, regression)

    def forward(self, model, batch):
        out = model(**_model_inputs(batch), labels=batch.get("labels"))
        return out.loss, out.logits

    def predict(self, logits: torch.Tensor, *, regression: bool) -> torch.Tensor:
        return logits.squeeze(-1) if regression else logits.argmax(-1)


class ChoiceFormat:
    """Per-choice scoring (COPA): each (text_a, choice) pair gets one logit from a 1-output head,
    and a cross-entropy over an example's choices is the loss, so no new head class is needed."""

    def head_size(self, num_labels: int) -> int:
        return 1

    def encode(self, examples: Sequence["Example"], tokenizer, *, max_length: int) -> list[dict]:
        rows = []
        for e in examples:
            choices = list(e.choices or ())
            enc = tokenizer([e.text_a] * len(choices), choices, truncation=True, max_length=max_length)
            per_choice = [{k: enc[k][i] for k in enc.keys()} for i in range(len(choices))]
            rows.append({"features": per_choice, "labels": e.label, "group": e.group})
        return rows

    def collate(self, rows: list[dict], tokenizer, *, regression: bool) -> dict[str, torch.Tensor]:
        n = len(rows[0]["features"])
        if any(len(r["features"]) != n for r in rows):
            raise ValueError("every example of a per-choice task must have the same number of choices")
        import torch

        flat = [f for r in rows for f in r["features"]]  # example-major: row i*n + j is choice j of i
        batch = dict(tokenizer.pad(flat, return_tensors="pt", padding_side=ENCODER_PADDING))
        batch["num_choices"] = torch.tensor(n)
        return _labels_and_groups(rows, batch, regression=False)

    def forward(self, model, batch):
        import torch.nn.functional as F

        scores = model(**_model_inputs(batch)).logits.view(-1, int(batch["num_choices"]))
        labels = batch.get("labels")
        return (F.cross_entropy(scores, labels) if labels is not None else None), scores

    def predict(self, logits: torch.Tensor, *, regression: bool) -> torch.Tensor:
        return logits.argmax(-1)


PAIR = PairFormat()
CHOICE = ChoiceFormat()
