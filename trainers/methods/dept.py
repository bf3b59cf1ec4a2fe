"""DePT (seed 003) for encoders: a shorter prompt P_s ∈ R^{m×d} plus a low-rank, position-indexed
update of the input word embeddings, e(x_i) + (alpha/sqrt(r)) · (A·B)[i] with A ∈ R^{s×r},
B ∈ R^{r×d}. The reference code only has T5; this is the same update for BERT, RoBERTa and
DeBERTa, added to the word embeddings before the prompt is prepended (and before the position
embeddings and LayerNorm, which the backbone applies to the sum). Padding positions get the update
too, as in the reference code; they are masked out of attention anyway.

Two learning rates: ``lr`` (α1) for the prompt and the task head, ``lr2`` (α2) for A and B.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import freeze_all_but_head, register_method
from trainers.methods.layers import hidden_size
from trainers.methods.prompt_tuning import PromptedEncoder, PromptMethod, StaticPrompt, initial_prompt


@dataclass(frozen=True)
class DePTConfig:
    prompt_length: int = 60  # m
    rank: Optional[int] = None  # r; None = the largest r with m·d + (s+d)·r <= budget_length·d
    budget_length: int = 100  # l of the prompt tuning whose parameter count DePT matches
    max_positions: int = 256  # s, the rows of A: inputs may not be longer
    alpha: float = 8.0  # the update is scaled by alpha / sqrt(r)
    lr2: float = 1e-4  # α2, for A and B
    init: str = "vocab"

    def __post_init__(self) -> None:
        check(self.prompt_length >= 1, "prompt_length", "must be >= 1", self.prompt_length)
        check(self.rank is None or self.rank >= 1, "rank", "must be >= 1 or null", self.rank)
        check(self.budget_length > self.prompt_length, "budget_length", "must be > prompt_length", self.budget_length)
        check(self.max_positions >= 8, "max_positions", "must be >= 8", self.max_positions)
        check(self.alpha > 0, "alpha", "must be > 0", self.alpha)
        check(self.lr2 > 0, "lr2", "must be > 0", self.lr2)
        check(self.init in ("vocab", "uniform"), "init", "must be 'vocab' or 'uniform'", self.init)

    def rank_for(self, d: int) -> int:
        if self.rank is not None:
            return self.rank
        r = (self.budget_length - self.prompt_length) * d // (self.max_positions + d)
        check(r >= 1, "prompt_length", f"leaves no budget for a rank >= 1 at d={d}", self.prompt_length)
        return r


class PositionUpdate(nn.Module):
    def __init__(self, s: int, r: int, d: int, alpha: float) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(s, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(r, d))  # A·B = 0 at the start
        self.scale = alpha / math.sqrt(r)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        n = embeds.size(1)
        if n > self.A.size(0):
            raise ValueError(f"dept.max_positions: inputs must not be longer (got length {n} > {self.A.size(0)})")
        return embeds + self.scale * (self.A[:n] @ self.B)


@register_method
class DePT(PromptMethod):
    name = "dept"
    description = "shorter prompt + low-rank position-indexed update of input embeddings, two lrs"
    Config = DePTConfig
    search_space = {"lr": [3e-1, 4e-1, 5e-1], "lr2": [1e-4, 5e-4, 1e-3], "prompt_length": [20, 40, 60, 80],
                    "weight_decay": [0.01]}

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        config.rank_for(model_config.hidden_size)

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        c, d = self.config, hidden_size(backbone.model)
        prompt = initial_prompt(backbone, c.prompt_length, c.init)
        update = PositionUpdate(c.max_positions, c.rank_for(d), d, c.alpha)
        return PromptedEncoder(backbone.model, StaticPrompt(prompt), update)

    def param_groups(self, model: nn.Module, *, lr: float, weight_decay: float) -> list[dict]:
        """A and B at lr2; the prompt and the task head at lr, as in prompt tuning, which DePT is
        while B = 0 (T5, the paper's backbone, has no head to place)."""
        update = list(model.update.parameters())
        ids = {id(p) for p in update}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": update, "lr": self.config.lr2, "weight_decay": weight_decay}]
