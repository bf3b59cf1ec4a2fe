"""Prompt tuning (Lester et al. 2021): a trainable prompt P ∈ R^{p×d} prepended to the input
word embeddings of a frozen encoder; only P and the task head train.

Where the prompt goes: before the whole input, ahead of [CLS]/<s>, as Hugging Face PEFT does, so
the prompt passes through the position embeddings and the embedding LayerNorm. (P-Tuning v2's
reference code instead injects it after the embedding layer.) The classifier then reads the
first prompt position's output, which is trained along with the head.

``PromptedEncoder`` is shared by every prompt method (p_tuning, resprompt, ept, dept): they differ
only in the module that produces the prompt, and DePT also updates the input embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

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


class StaticPrompt(nn.Module):
    def __init__(self, prompt: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(prompt)

    def forward(self) -> torch.Tensor:
        return self.weight


class PromptedEncoder(nn.Module):
    """forward(**batch): [source() ; update(word_embeddings(input_ids))] through the backbone."""

    def __init__(self, model: nn.Module, source: nn.Module, update: Optional[nn.Module] = None) -> None:
        super().__init__()
        self.backbone = model
        self.source = source  # forward() -> (p, d), the prompt
        self.update = update  # forward(embeds) -> embeds, applied before the prompt is prepended

    @property
    def prompt(self) -> torch.Tensor:
        return self.source()

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        embeds = self.backbone.get_input_embeddings()(input_ids)
        if self.update is not None:
            embeds = self.update(embeds, attention_mask)
        prompt = self.source()
        batch, p = input_ids.size(0), prompt.size(0)
        embeds = torch.cat([prompt.unsqueeze(0).expand(batch, -1, -1), embeds], dim=1)
        ones = attention_mask.new_ones(batch, p)
        inputs = {"inputs_embeds": embeds, "attention_mask": torch.cat([ones, attention_mask], dim=1)}
        if token_type_ids is not None:
            inputs["token_type_ids"] = torch.cat([torch.zeros_like(ones), token_type_ids], dim=1)
        return self.backbone(labels=labels, **next_to_text(inputs, attention_mask, p))


def next_to_text(inputs: dict, attention_mask: torch.Tensor, p: int) -> dict:
    """Under left padding, move the pads ahead of the prompt: [pads; prompt; text], not
    [prompt; pads; text]. Relative positions (T5) and causal masks then see the prompt next to the
    text whatever the padding, as without padding. Right padding is left as it is."""
    left_pads = attention_mask.cummax(1).values == 0
    if not bool(left_pads.any()):
        return inputs
    key = torch.cat([left_pads.new_zeros(left_pads.size(0), p), left_pads], dim=1).logical_not().long()
    order = torch.argsort(key, dim=1, stable=True)  # left pads first, everything else in order
    out = {}
    for name, t in inputs.items():
        idx = order if t.dim() == 2 else order.unsqueeze(-1).expand_as(t)
        out[name] = t.gather(1, idx)
    return out


def initial_prompt(backbone: Backbone, length: int, init: str) -> torch.Tensor:
    emb = backbone.model.get_input_embeddings().weight
    if init == "vocab":
        rows = torch.randint(0, emb.size(0), (length,))  # drawn from the trial's seeded RNG
        return emb[rows].detach().clone()
    return torch.empty(length, emb.size(1)).uniform_(-0.5, 0.5)


class PromptMethod(Method):
    """Shared by the prompt methods: the prompt's own modules are the method's parameters."""

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        params = list(model.source.parameters())
        return params + (list(model.update.parameters()) if model.update is not None else [])

    def extra_positions(self) -> int:
        return self.config.prompt_length


@register_method
class PromptTuning(PromptMethod):
    name = "prompt_tuning"
    description = "trainable prompt prepended to the input embeddings; backbone frozen"
    Config = PromptTuningConfig
    search_space = {"lr": [1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1], "prompt_length": [10, 20, 50, 100]}

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        prompt = initial_prompt(backbone, self.config.prompt_length, self.config.init)
        return PromptedEncoder(backbone.model, StaticPrompt(prompt))
