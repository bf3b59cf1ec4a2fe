"""Prompt methods whose prompt is produced by a small trainable network (a reparametrization):
P-tuning (Liu et al. 2021b), Residual Prompt Tuning (Razdaibiedina et al. 2023), and EPT/EPT*
(seed 002). At inference only the produced prompt is needed: ``fuse`` replaces the network by it.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import freeze_all_but_head, register_method
from trainers.methods.layers import hidden_size
from trainers.methods.prompt_tuning import PromptedEncoder, PromptMethod, StaticPrompt, initial_prompt


class ReparamPromptMethod(PromptMethod):
    @abstractmethod
    def build_source(self, backbone: Backbone, d: int) -> nn.Module:
        """The module that produces the prompt (an MLP, a residual MLP, EPT's linear network)."""

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        return PromptedEncoder(backbone.model, self.build_source(backbone, hidden_size(backbone.model)))

    def fuse(self, model: nn.Module) -> None:
        if not isinstance(model.source, StaticPrompt):
            with torch.no_grad():
                model.source = StaticPrompt(model.source().detach().clone())


# ---- P-tuning ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PTuningConfig:
    prompt_length: int = 20
    encoder_hidden_size: Optional[int] = None  # h; None = the backbone's d (PEFT's default)
    init: Literal["vocab", "uniform"] = "vocab"

    def __post_init__(self) -> None:
        check(self.prompt_length >= 1, "prompt_length", "must be >= 1", self.prompt_length)
        h = self.encoder_hidden_size
        check(h is None or h >= 1, "encoder_hidden_size", "must be >= 1 or null", h)
        check(self.init in ("vocab", "uniform"), "init", "must be 'vocab' or 'uniform'", self.init)


class MLPPrompt(nn.Module):
    """PEFT's P-tuning MLP encoder: d -> h -> h -> d with ReLU, over the prompt embeddings."""

    def __init__(self, prompt: torch.Tensor, h: int) -> None:
        super().__init__()
        d = prompt.size(1)
        self.embedding = nn.Parameter(prompt)
        self.mlp = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(), nn.Linear(h, d))

    def forward(self) -> torch.Tensor:
        return self.mlp(self.embedding)


@register_method
class PTuning(ReparamPromptMethod):
    name = "p_tuning"
    description = "prompt produced by an MLP (d->h->h->d, ReLU) from trainable embeddings (P-tuning)"
    Config = PTuningConfig
    search_space = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2], "prompt_length": [10, 20, 50, 100]}

    def build_source(self, backbone: Backbone, d: int) -> nn.Module:
        prompt = initial_prompt(backbone, self.config.prompt_length, self.config.init)
        return MLPPrompt(prompt, self.config.encoder_hidden_size or d)


# ---- Residual prompt tuning --------------------------------------------------------------------
@dataclass(frozen=True)
class ResPromptConfig:
    prompt_length: int = 10
    hidden_size: int = 400  # h; the EPT paper's value (the ResPrompt reference code uses 800)
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check(self.prompt_length >= 1, "prompt_length", "must be >= 1", self.prompt_length)
        check(self.hidden_size >= 1, "hidden_size", "must be >= 1", self.hidden_size)
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)


class ResidualPrompt(nn.Module):
    """P' = LayerNorm(MLP(P)) + P, the MLP Linear(d,h) -> ReLU -> Linear(h,d) shared over tokens."""

    def __init__(self, prompt: torch.Tensor, h: int, dropout: float) -> None:
        super().__init__()
        d = prompt.size(1)
        self.embedding = nn.Parameter(prompt)
        self.mlp = nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout), nn.Linear(h, d))
        self.norm = nn.LayerNorm(d)

    def forward(self) -> torch.Tensor:
        return self.norm(self.mlp(self.embedding)) + self.embedding


@register_method
class ResPrompt(ReparamPromptMethod):
    name = "resprompt"
    description = "prompt P' = LayerNorm(MLP(P)) + P with a shared residual MLP (Razdaibiedina et al.)"
    Config = ResPromptConfig
    search_space = {"lr": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "prompt_length": [10],
                    "hidden_size": [400]}

    def build_source(self, backbone: Backbone, d: int) -> nn.Module:
        prompt = initial_prompt(backbone, self.config.prompt_length, "vocab")
        return ResidualPrompt(prompt, self.config.hidden_size, self.config.dropout)


# ---- EPT and EPT* ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EPTConfig:
    # EPT prepends its one reparametrized prompt once; EPT* broadcasts it to prompt_length copies.
    prompt_length: int = 1
    hidden_size: int = 1  # h of the linear bottleneck d -> h -> d (no bias, activation or norm)

    def __post_init__(self) -> None:
        check(self.prompt_length >= 1, "prompt_length", "must be >= 1", self.prompt_length)
        check(self.hidden_size >= 1, "hidden_size", "must be >= 1", self.hidden_size)


@dataclass(frozen=True)
class EPTStarConfig(EPTConfig):
    prompt_length: int = 10


class ExplosivePrompt(nn.Module):
    def __init__(self, d: int, h: int, copies: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, d).uniform_(-0.5, 0.5))
        self.down = nn.Linear(d, h, bias=False)
        self.up = nn.Linear(h, d, bias=False)
        self.copies = copies

    def forward(self) -> torch.Tensor:
        return self.up(self.down(self.embedding)).expand(self.copies, -1)


EPT_SPACE = {"lr": [3e-3, 1e-2, 3e-2, 1e-1, 3e-1], "weight_decay": [0.01]}


@register_method
class EPT(ReparamPromptMethod):
    name = "ept"
    description = "one prompt vector through a linear d->1->d bottleneck, prepended once (3d params)"
    Config = EPTConfig
    search_space = EPT_SPACE

    def build_source(self, backbone: Backbone, d: int) -> nn.Module:
        return ExplosivePrompt(d, self.config.hidden_size, self.config.prompt_length)


@register_method
class EPTStar(EPT):
    name = "ept_star"
    description = "EPT with its one reparametrized prompt broadcast to 10 positions (3d params)"
    Config = EPTStarConfig
