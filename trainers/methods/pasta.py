"""PASTA (seed 004): before every encoder block l, add a trainable vector e(v^l_p) ∈ R^d to the
hidden state of each special-token occurrence p, indexed by the occurrence's rank among the
special tokens of the input ([CLS] A [SEP] B [SEP] -> 0, 1, 2). Trainable: L·k·d, with k the
special tokens the tokenizer adds to a sentence pair (3 for BERT, 4 for RoBERTa).

The special-token ids come from the tokenizer (the reference code hard-codes BERT's 101/102), so
a tokenizer that adds no special tokens (GPT-2's) is rejected. Encoders read a sentence pair; T5
and decoders read one templated text (trainers/tasks/text.py), so k counts the special tokens
the tokenizer adds to one text there (T5's </s>, Llama's <s>): no vector is trained that no input
can reach.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.families import arch_for
from trainers.methods.base import Method, freeze_all_but_head, register_method
from trainers.methods.layers import LayerInputEditor, edit_blocks, hidden_size


@dataclass(frozen=True)
class PASTAConfig:
    dropout: float = 0.0
    init_std: float = 0.02

    def __post_init__(self) -> None:
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)
        check(self.init_std > 0, "init_std", "must be > 0", self.init_std)


def special_token_ids(tokenizer, *, pair: bool = True) -> list[int]:
    """The ids the tokenizer adds around a sentence pair (or one text), in order ([CLS], [SEP], [SEP])."""
    special = set(tokenizer.all_special_ids)
    ids = tokenizer("a", "b", add_special_tokens=True) if pair else tokenizer("a", add_special_tokens=True)
    return [i for i in ids["input_ids"] if i in special]


def reads_pairs(model_config) -> bool:
    """Encoders read sentence pairs; T5 and decoders one templated text."""
    d = model_config if isinstance(model_config, dict) else model_config.to_dict()
    return arch_for(d).family == "encoder"


class SpecialTokenVectors(nn.Module):
    def __init__(self, n_layers: int, ids: list[int], d: int, c: PASTAConfig) -> None:
        super().__init__()
        self.vectors = nn.Parameter(torch.randn(n_layers, len(ids), d) * c.init_std)
        self.register_buffer("ids", torch.tensor(sorted(set(ids))), persistent=False)
        self.dropout = nn.Dropout(c.dropout)

    def forward(self, layer: int, ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        special = torch.isin(ids, self.ids)
        rank = (special.cumsum(1) - 1).clamp(0, self.vectors.size(1) - 1)  # occurrence index
        added = self.dropout(self.vectors[layer][rank]) * special.unsqueeze(-1)
        return hidden + added.to(hidden.dtype)


@register_method
class PASTA(Method):
    name = "pasta"
    description = "trainable per-layer vectors added to the special tokens' hidden states (L·k·d)"
    Config = PASTAConfig
    needs_tokenizer = True
    search_space = {"lr": [5e-4, 1e-3, 2e-3, 2.5e-3, 3e-3, 4.5e-3, 5e-3, 7e-3]}

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        ids = special_token_ids(tokenizer, pair=reads_pairs(model_config))
        check(len(ids) > 0, "tokenizer", "must add special tokens, where PASTA adds its vectors",
              f"{type(tokenizer).__name__} adding none")

    def apply(self, backbone: Backbone) -> nn.Module:
        self.check_backbone(self.config, model_config=backbone.model.config, tokenizer=backbone.tokenizer)
        freeze_all_but_head(backbone)
        layers = edit_blocks(backbone)
        ids = special_token_ids(backbone.tokenizer, pair=backbone.arch.family == "encoder")
        vectors = SpecialTokenVectors(len(layers), ids, hidden_size(backbone.model), self.config)
        return LayerInputEditor(backbone.model, vectors, layers)

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.edit.vectors]
