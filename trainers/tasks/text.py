"""Tasks posed as text, for T5 and decoder-only LMs (T5's GLUE/SuperGLUE formats, seed 002).

The input is ``"rte sentence1: … sentence2: …"`` (the task name, then each field by name, as
t5/data/preprocessors.py's ``glue`` writes it) and the target is a label word. Predictions are
made by **rank classification**: every label word is scored by its log-likelihood given the input
and the best one wins, so every metric stays well defined (no free-form generation to parse).
STS-B's targets are T5's number strings in 0.2 steps ("0.0" … "5.0"). COPA shows both choices and
answers "choice1"/"choice2"; MultiRC keeps one input per answer, grouped by question.

Two formats use these templates:
- ``TextFormat``: rank classification on a seq2seq model (T5) or a causal LM (the verbalizer route),
  trained with the teacher-forced loss on the gold label word;
- ``TemplateHeadFormat``: a decoder with a classification head on its last real token, reading
  the same template.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence

import torch

from trainers.tasks.formats import _labels_and_groups

if TYPE_CHECKING:
    from trainers.tasks.base import Example, Task

STSB_STEPS = 26  # 0.0, 0.2, ..., 5.0
ANSWER = " answer:"  # the causal route's cue before the label word


@dataclass(frozen=True)
class Template:
    prefix: str  # T5's task name
    fields: tuple[str, Optional[str]]  # names of text_a and text_b
    words: Optional[tuple[str, ...]]  # label id -> word; None: STS-B's number strings
    choices: bool = False  # COPA: the choices are shown as choice1, choice2

    def render(self, e: "Example") -> str:
        a, b = self.fields
        parts = [self.prefix, f"{a}: {e.text_a}"]
        if b is not None and e.text_b is not None:
            parts.append(f"{b}: {e.text_b}")
        if self.choices:
            parts += [f"choice{i + 1}: {c}" for i, c in enumerate(e.choices or ())]
        return " ".join(parts)

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.words if self.words is not None else tuple(f"{i / 5:.1f}" for i in range(STSB_STEPS))

    def gold(self, label: float) -> int:
        """The candidate index of a label: its class, or STS-B's score rounded to 0.2."""
        return int(label) if self.words is not None else min(STSB_STEPS - 1, max(0, round(float(label) * 5)))


_NLI = ("entailment", "not_entailment")
_BOOL = ("False", "True")
TEMPLATES: dict[str, Template] = {
    "rte": Template("rte", ("sentence1", "sentence2"), _NLI),
    "mrpc": Template("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent")),
    "cola": Template("cola", ("sentence", None), ("unacceptable", "acceptable")),
    "stsb": Template("stsb", ("sentence1", "sentence2"), None),
    "sst2": Template("sst2", ("sentence", None), ("negative", "positive")),
    "qqp": Template("qqp", ("question1", "question2"), ("not_duplicate", "duplicate")),
    "mnli": Template("mnli", ("premise", "hypothesis"), ("entailment", "neutral", "contradiction")),
    "qnli": Template("qnli", ("question", "sentence"), _NLI),
    "boolq": Template("boolq", ("question", "passage"), _BOOL),
    "cb": Template("cb", ("premise", "hypothesis"), ("entailment", "contradiction", "neutral")),
    "copa": Template("copa", ("premise", None), ("choice1", "choice2"), choices=True),
    "multirc": Template("multirc", ("paragraph", "answer"), _BOOL),
    "wic": Template("wic", ("sentence1", "sentence2"), _BOOL),
    "wsc": Template("wsc", ("text", "question"), _BOOL),
    "superglue_rte": Template("rte", ("premise", "hypothesis"), _NLI),
}


def template(task: "Task") -> Template:
    if task.name not in TEMPLATES:
        raise ValueError(f"task: {task.name} has no text-to-text template (valid: {', '.join(sorted(TEMPLATES))})")
    return TEMPLATES[task.name]


def pad(seqs: Sequence[Sequence[int]], value: int, side: str) -> torch.Tensor:
    n = max(len(s) for s in seqs)
    rows = [([value] * (n - len(s)) + list(s)) if side == "left" else (list(s) + [value] * (n - len(s))) for s in seqs]
    return torch.tensor(rows, dtype=torch.long)


def _mask(seqs: Sequence[Sequence[int]], side: str) -> torch.Tensor:
    return pad([[1] * len(s) for s in seqs], 0, side)


class TemplateHeadFormat:
    """A decoder's classification head over the task's text template (one input per example)."""

    def __init__(self, task: "Task") -> None:
        self.template = template(task)

    def head_size(self, num_labels: int) -> int:
        return num_labels

    def encode(self, examples: Sequence["Example"], tokenizer, *, max_length: int) -> list[dict]:
        enc = tokenizer([self.template.render(e) for e in examples], truncation=True, max_length=max_length)
        return [{"features": {"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i]},
                 "labels": e.label, "group": e.group} for i, e in enumerate(examples)]

    def collate(self, rows: list[dict], tokenizer, *, regression: bool) -> dict[str, torch.Tensor]:
        batch = dict(tokenizer.pad([r["features"] for r in rows], return_tensors="pt"))
        return _labels_and_groups(rows, batch, regression)

    def forward(self, model, batch):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch.get("labels"))
        return out.loss, out.logits

    def predict(self, logits: torch.Tensor, *, regression: bool) -> torch.Tensor:
        return logits.squeeze(-1) if regression else logits.argmax(-1)


class TextFormat:
    """Rank classification over the label words, on a seq2seq model or a causal LM.

    A batch holds the gold target for training (``input_ids``/``target``) and every candidate
    for evaluation (``choice_*``, example-major: row i·C + j is candidate j of example i). A causal
    LM reads input and target as one sequence, the target's positions labelled; T5 reads the input
    in its encoder and the target in its decoder."""

    def __init__(self, task: "Task", *, causal: bool) -> None:
        self.template, self.causal = template(task), causal

    def head_size(self, num_labels: int) -> int:
        return 0  # no head: the LM's own vocabulary scores the label words

    def _targets(self, tokenizer) -> list[list[int]]:
        words = self.template.candidates
        if self.causal:  # the continuation after "answer:", without special tokens
            return [tokenizer(" " + w, add_special_tokens=False)["input_ids"] for w in words]
        return [tokenizer(w)["input_ids"] for w in words]  # T5 targets end with </s>

    def encode(self, examples: Sequence["Example"], tokenizer, *, max_length: int) -> list[dict]:
        targets = self._targets(tokenizer)
        texts = [self.template.render(e) for e in examples]
        if self.causal:  # input + cue + the longest target fit in max_length; the cue is never cut
            cue = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
            room = max_length - len(cue) - max(len(t) for t in targets)
            if room < 8:
                raise ValueError(f"max_length: too short for the label words of {self.template.prefix} (got {max_length})")
            sources = [ids + cue for ids in tokenizer(texts, truncation=True, max_length=room)["input_ids"]]
        else:
            sources = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
        return [{"source": s, "targets": targets, "gold": self.template.gold(e.label), "labels": e.label,
                 "group": e.group} for s, e in zip(sources, examples)]

    def _pair(self, sources, targets, side: str, pad_id: int) -> dict[str, torch.Tensor]:
        if not self.causal:
            return {"input_ids": pad(sources, pad_id, side), "attention_mask": _mask(sources, side),
                    "target": pad(targets, -100, "right")}
        seqs = [s + t for s, t in zip(sources, targets)]
        labels = [[-100] * len(s) + t for s, t in zip(sources, targets)]
        return {"input_ids": pad(seqs, pad_id, side), "attention_mask": _mask(seqs, side), "target": pad(labels, -100, side)}

    def collate(self, rows: list[dict], tokenizer, *, regression: bool) -> dict[str, torch.Tensor]:
        side, pad_id = tokenizer.padding_side, tokenizer.pad_token_id
        sources = [r["source"] for r in rows]
        batch = self._pair(sources, [r["targets"][r["gold"]] for r in rows], side, pad_id)
        n = len(rows[0]["targets"])
        every = self._pair([s for s in sources for _ in range(n)], [t for r in rows for t in r["targets"]], side, pad_id)
        batch |= {f"choice_{k}": v for k, v in every.items()} | {"num_choices": torch.tensor(n)}
        return _labels_and_groups(rows, batch, regression)

    def forward(self, model, batch):
        if "labels" in batch:  # training: the teacher-forced loss of the gold label word
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["target"])
            return out.loss, None
        out = model(input_ids=batch["choice_input_ids"], attention_mask=batch["choice_attention_mask"],
                    labels=batch["choice_target"])
        return None, out.logits.view(-1, int(batch["num_choices"]))

    def predict(self, logits: torch.Tensor, *, regression: bool) -> torch.Tensor:
        best = logits.argmax(-1)
        return best.float() / 5 if regression else best


def format_for(task: "Task", *, family: str, route: str):
    """How ``task`` is posed on a backbone family and route (trainers/families.py)."""
    if family == "encoder":
        return task.format
    if route == "head":
        return TemplateHeadFormat(task)
    return TextFormat(task, causal=family == "decoder")
