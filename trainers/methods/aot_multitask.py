"""Serve AoT P-tuning for several tasks from one frozen backbone, in batches that mix tasks.

AoT leaves the backbone untouched and only adds P_l[x] before each layer, so one encoder pass can
serve rows of different tasks: row i looks up its own task's tables (METHODS.md, "Multi-task").
The fused tables of T tasks are stacked per layer, and row i of task t reads index t·|V| + x.
Each task keeps its own head, applied to its rows of the shared encoder output.

The inputs are the artefacts that ``AoTMethod.inference_state`` saves: the fused tables
(``edit.fused.<layer>``) and the trained head (``backbone.<head parameter>``), as state dicts,
``.pt`` files, or the artefact directories a search logs with ``training.save_model``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn
from torch.func import functional_call

from trainers.backbone import Backbone, load_backbone
from trainers.methods.aot import RowAdder
from trainers.methods.layers import LayerInputEditor, edit_blocks

FUSED = "edit.fused."
HEAD = "backbone."


def _classify(model: nn.Module, sequence_output: torch.Tensor) -> torch.Tensor:
    """The sequence-classification head on the encoder's output, as each family's forward does."""
    kind = model.config.model_type
    if kind == "bert":
        return model.classifier(model.dropout(model.bert.pooler(sequence_output)))
    if kind == "roberta":
        return model.classifier(sequence_output)
    if kind == "deberta-v2":
        return model.classifier(model.dropout(model.pooler(sequence_output)))
    raise ValueError(f"backbone: multi-task serving supports bert, roberta and deberta-v2 heads (got {kind})")


class _Head(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return _classify(self.model, sequence_output)


class StackedTables(nn.Module):
    """Per layer, the fused tables of every task in one (T·|V|, d) matrix."""

    def __init__(self, per_task: list[list[torch.Tensor]], vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.layers = nn.ParameterList([nn.Parameter(torch.cat(tables), requires_grad=False)
                                        for tables in zip(*per_task)])
        self.add_rows = RowAdder()

    def forward(self, layer: int, keys: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self.add_rows(self.layers[layer], keys, hidden)


class MultiTaskAoT(nn.Module):
    """``forward(input_ids, attention_mask, task_ids)`` -> {task: (row indices, logits)}."""

    def __init__(self, backbone: Backbone, states: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        super().__init__()
        if not states:
            raise ValueError("states: at least one task's AoT artefact is needed")
        model = backbone.model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        if backbone.arch.family != "encoder":
            raise ValueError(f"backbone: multi-task AoT serving needs an encoder with task heads "
                             f"(got a {backbone.arch.family} backbone)")
        blocks = edit_blocks(backbone)
        n_layers = len(blocks)
        vocab, d = model.get_input_embeddings().weight.shape
        own = {n for n, _ in model.named_parameters()}
        self.tasks = list(states)
        tables, self.heads = [], {}
        for task, state in states.items():
            layers = [state.get(f"{FUSED}{l}") for l in range(n_layers)]
            if any(t is None or tuple(t.shape) != (vocab, d) for t in layers):
                raise ValueError(f"states.{task}: expected fused AoT tables edit.fused.0..{n_layers - 1} "
                                 f"of shape ({vocab}, {d}) for this backbone")
            head = {n: t for n, t in state.items() if not n.startswith(FUSED)}
            unknown = [n for n in head if not n.startswith(HEAD) or n[len(HEAD):] not in own]
            if unknown:
                raise ValueError(f"states.{task}: parameters this backbone does not have (got {unknown[:3]})")
            tables.append(layers)
            self.heads[task] = {"model." + n[len(HEAD):]: t for n, t in head.items()}
        self.editor = LayerInputEditor(model, StackedTables(tables, vocab), blocks)
        self.head = _Head(model)

    @classmethod
    def load(cls, backbone: str, artefacts: Mapping[str, str | Path]) -> "MultiTaskAoT":
        """One backbone (path, packaged or hub id) and, per task, a saved ``inference_state``
        (a ``.pt`` file or an artefact directory, trainers/artefact.py)."""
        from trainers.artefact import STATE

        paths = {task: Path(p) / STATE if Path(p).is_dir() else Path(p) for task, p in artefacts.items()}
        states = {task: torch.load(path, map_location="cpu", weights_only=True) for task, path in paths.items()}
        return cls(load_backbone(backbone, num_labels=2), states)

    @torch.no_grad()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, task_ids: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        if task_ids.shape != input_ids.shape[:1] or task_ids.min() < 0 or task_ids.max() >= len(self.tasks):
            raise ValueError(f"task_ids: one index in [0, {len(self.tasks)}) per row (got {task_ids.tolist()})")
        keys = task_ids[:, None] * self.editor.edit.vocab + input_ids
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        with self.editor.editing(keys):
            sequence_output = self.editor.backbone.base_model(input_ids=input_ids, attention_mask=attention_mask,
                                                              **kwargs)[0]
        out = {}
        for t, task in enumerate(self.tasks):
            rows = (task_ids == t).nonzero().squeeze(1)
            if len(rows):
                out[task] = (rows, functional_call(self.head, self.heads[task], (sequence_output[rows],)))
        return out
