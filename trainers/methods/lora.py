"""LoRA (Hu et al. 2022) through Hugging Face PEFT, whose LoraLayer is the paper's
W + (alpha/r)·B·A with A random and B = 0, so the model starts exactly as the backbone.

Injected with ``peft.inject_adapter_in_model`` so the model stays a plain HF model with its own
head; the attention query and value projections are the targets, as in the paper, named per
model type in the family table (HF PEFT's defaults: GPT-2's fused ``c_attn``, T5's ``q``/``v`` in
every attention of encoder and decoder).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import Method, freeze_all_but_head, register_method

def check_rank(rank: int, name: str, model_config) -> None:
    """A low-rank update B·A of a d-wide projection has rank <= d: a larger r adds parameters only."""
    from trainers.families import width

    d = width(model_config if isinstance(model_config, dict) else model_config.to_dict())
    check(d is None or rank <= d, name, f"must be <= the backbone's width d={d} (B·A of a d-wide projection "
          "has rank at most d)", rank)


@dataclass(frozen=True)
class LoRAConfig:
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.rank >= 1, "rank", "must be >= 1", self.rank)
        check(self.alpha > 0, "alpha", "must be > 0", self.alpha)
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)


@register_method
class LoRA(Method):
    name = "lora"
    description = "low-rank updates B·A on the attention query and value projections (via peft)"
    Config = LoRAConfig
    search_space = {"lr": [1e-4, 3e-4, 5e-4, 1e-3], "rank": [8], "alpha": [16.0]}

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        check_rank(config.rank, "rank", model_config)

    def apply(self, backbone: Backbone) -> nn.Module:
        from peft import LoraConfig, inject_adapter_in_model

        c = self.config
        config = LoraConfig(r=c.rank, lora_alpha=c.alpha, lora_dropout=c.dropout,
                            target_modules=list(backbone.arch.lora_targets),
                            fan_in_fan_out=backbone.arch.lora_fan_in_fan_out)
        model = inject_adapter_in_model(config, backbone.model)
        freeze_all_but_head(backbone)
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.requires_grad_(True)
        return model

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for n, p in model.named_parameters() if "lora_" in n]
