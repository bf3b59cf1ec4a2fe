"""LoRA (Hu et al. 2022) through Hugging Face PEFT, whose LoraLayer is the paper's
W + (alpha/r)·B·A with A random and B = 0, so the model starts exactly as the backbone.

Injected with ``peft.inject_adapter_in_model`` so the model stays a plain HF model with its own
head; the attention query and value projections are the targets, as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import Method, freeze_all_but_head, register_method

# Query/value projection names per architecture family (BERT and RoBERTa, DeBERTa-v2).
TARGETS = {"query": "value", "query_proj": "value_proj"}


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.rank >= 1, "rank", "must be >= 1", self.rank)
        check(self.alpha > 0, "alpha", "must be > 0", self.alpha)
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)


def attention_targets(model: nn.Module) -> list[str]:
    leaves = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    for q, v in TARGETS.items():
        if q in leaves and v in leaves:
            return [q, v]
    raise ValueError(f"backbone: no query/value projections LoRA knows (got {type(model).__name__})")


@register_method
class LoRA(Method):
    name = "lora"
    description = "low-rank updates B·A on the attention query and value projections (via peft)"
    Config = LoRAConfig
    search_space = {"lr": [1e-4, 3e-4, 5e-4, 1e-3], "rank": [8], "alpha": [16.0]}

    def apply(self, backbone: Backbone) -> nn.Module:
        from peft import LoraConfig, inject_adapter_in_model

        c = self.config
        config = LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout,
                            target_modules=attention_targets(backbone.model))
        model = inject_adapter_in_model(config, backbone.model)
        freeze_all_but_head(backbone)
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
        return model

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for n, p in model.named_parameters() if "lora_" in n]
