"""Shared plumbing for methods that act inside the encoder: find its layers, edit the hidden
states that enter each layer, and know the current batch's token ids while doing so.

BERT, RoBERTa and DeBERTa-v2 all keep their blocks at ``model.base_model.encoder.layer`` and
pass the hidden states as the first positional argument of each block.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn


def encoder_layers(model: nn.Module) -> nn.ModuleList:
    try:
        return model.base_model.encoder.layer
    except AttributeError as e:
        raise ValueError(f"backbone: has no encoder.layer blocks (got {type(model).__name__})") from e


def hidden_size(model: nn.Module) -> int:
    return model.get_input_embeddings().weight.size(1)


class LayerInputEditor(nn.Module):
    """Wraps a backbone; before encoder block ``l`` runs, ``edit(l, input_ids, hidden)`` may
    change its input hidden states (AoT adds P_l[x], PASTA adds vectors at special tokens)."""

    def __init__(self, model: nn.Module, edit: nn.Module) -> None:
        super().__init__()
        self.backbone = model
        self.edit = edit  # forward(layer_index, input_ids, hidden_states) -> hidden_states
        self._ids: torch.Tensor | None = None
        for i, layer in enumerate(encoder_layers(model)):
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
