"""Shared plumbing for methods that act inside the network: find its blocks (the family table,
trainers/families.py, says where), edit the hidden states that enter each block, and know the
current batch's token ids while doing so.

Every supported block (BERT-style layers, T5 blocks, GPT-2 and Llama decoder layers) takes the
hidden states as its first positional argument.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn

from trainers.families import blocks


def edit_blocks(backbone) -> list[nn.Module]:
    """The blocks a token-indexed edit goes before: the encoder's (T5: its encoder only), or a
    decoder's."""
    return blocks(backbone.model, backbone.arch, "edit")


def hidden_size(model: nn.Module) -> int:
    return model.get_input_embeddings().weight.size(1)


class LayerInputEditor(nn.Module):
    """Wraps a backbone; before encoder block ``l`` runs, ``edit(l, input_ids, hidden)`` may
    change its input hidden states (AoT adds P_l[x], PASTA adds vectors at special tokens)."""

    def __init__(self, model: nn.Module, edit: nn.Module, layers: list[nn.Module]) -> None:
        super().__init__()
        self.backbone = model
        self.edit = edit  # forward(layer_index, input_ids, hidden_states) -> hidden_states
        self._ids: torch.Tensor | None = None
        self.n_layers = len(layers)
        for i, layer in enumerate(layers):
            layer.register_forward_pre_hook(self._hook(i), with_kwargs=True)

    def _hook(self, index: int):
        def hook(module, args, kwargs):
            if self._ids is None:  # the backbone used without this wrapper: leave it alone
                return None
            if args:
                return (self.edit(index, self._ids, args[0]), *args[1:]), kwargs
            kwargs["hidden_states"] = self.edit(index, self._ids, kwargs["hidden_states"])
            return args, kwargs
        return hook

    @contextmanager
    def editing(self, ids: torch.Tensor):
        """Within the block, every backbone call edits its layers' inputs, keyed by ``ids``
        (the token ids, or any per-token index the edit understands)."""
        self._ids = ids
        try:
            yield
        finally:
            self._ids = None

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        with self.editing(input_ids):
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
