"""Prompt tuning (Lester et al. 2021): a trainable prompt P ∈ R^{p×d} prepended to the input
word embeddings of a frozen encoder; only P and the task head train.

Where the prompt goes: before the whole input, ahead of [CLS]/<s>, as Hugging Face PEFT does, so
the prompt passes through the position embeddings and the embedding LayerNorm. (P-Tuning v2's
reference code instead injects it after the embedding layer.) The classifier then reads the
first prompt position's output, which is trained along with the head.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import Method, freeze_all_but_head, register_method


@dataclass(frozen=True)
class PromptTuningConfig:
    prompt_length: int = 20
    # "vocab": rows of the embedding matrix for random vocabulary tokens (Lester et al.);
    # "uniform": U(-0.5, 0.5).
    init: Literal["vocab", "uniform"] = "vocab"

    def __post_init__(self) -> None:
        check(self.prompt_length >= 1, "prompt_length", "must be >= 1", self.prompt_length)
        check(self.init in ("vocab", "uniform"), "init", "must be 'vocab' or 'uniform'", self.init)


class PromptedEncoder(nn.Module):
    def __init__(self, model: nn.Module, prompt: torch.Tensor) -> None:
        super().__init__()
        self.backbone = model
        self.prompt = nn.Parameter(prompt)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        batch, p = input_ids.size(0), self.prompt.size(0)
        embeds = self.backbone.get_input_embeddings()(input_ids)
        embeds = torch.cat([self.prompt.unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
        ones = attention_mask.new_ones(batch, p)
        kwargs = {"attention_mask": torch.cat([ones, attention_mask], dim=1)}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = torch.cat([torch.zeros_like(ones), token_type_ids], dim=1)
        return self.backbone(inputs_embeds=embeds, labels=labels, **kwargs)


@register_method
class PromptTuning(Method):
    name = "prompt_tuning"
    description = "trainable prompt prepended to the input embeddings; backbone frozen"
    Config = PromptTuningConfig

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        emb = backbone.model.get_input_embeddings().weight
        p = self.config.prompt_length
        if self.config.init == "vocab":
            rows = torch.randint(0, emb.size(0), (p,))  # drawn from the trial's seeded RNG
            prompt = emb[rows].detach().clone()
        else:
            prompt = torch.empty(p, emb.size(1)).uniform_(-0.5, 0.5)
        return PromptedEncoder(backbone.model, prompt)

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [model.prompt]

    def extra_positions(self) -> int:
        return self.config.prompt_length
