"""DePT (seed 003): a shorter prompt P_s ∈ R^{m×d} plus a low-rank, position-indexed
update of the input word embeddings, e(x_i) + (alpha/sqrt(r)) · (A·B)[i] with A ∈ R^{s×r},
B ∈ R^{r×d}. The reference code only has T5, where the update is on the first s encoder input
embeddings; the same update serves BERT, RoBERTa, DeBERTa and decoders, added to the word
embeddings before the prompt is prepended (and before the position embeddings and LayerNorm, which
the backbone applies to the sum). Padding positions get the update too, as in the reference code;
they are masked out of attention anyway.

s is the input length (``training.max_length``, the reference code's padded length) unless set:
rows of A beyond max_length could never be used, so a larger ``max_positions`` is refused, not
trained.

Two learning rates: ``lr`` (α1) for the prompt and the task head, ``lr2`` (α2) for A and B.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.lm import mask_positions
from trainers.methods.base import freeze_all_but_head, register_method
from trainers.methods.layers import hidden_size
from trainers.methods.prompt_tuning import PromptedEncoder, PromptMethod, StaticPrompt, initial_prompt


DEFAULT_ROWS = 256  # s without a training config (bench, `peftsearch methods`): the paper's max length


@dataclass(frozen=True)
class DePTConfig:
    prompt_length: int = 60  # m
    rank: Optional[int] = None  # r; None = the largest r with m·d + (s+d)·r <= budget_length·d
    budget_length: int = 100  # l of the prompt tuning whose parameter count DePT matches
    max_positions: Optional[int] = None  # s, the rows of A (null: training.max_length); inputs may not be longer
    alpha: float = 8.0  # the update is scaled by alpha / sqrt(r)
    lr2: float = 1e-4  # α2, for A and B
    init: str = "vocab"

    def __post_init__(self) -> None:
        check(self.prompt_length >= 1, "prompt_length", "must be >= 1", self.prompt_length)
        check(self.rank is None or self.rank >= 1, "rank", "must be >= 1 or null", self.rank)
        check(self.budget_length > self.prompt_length, "budget_length", "must be > prompt_length", self.budget_length)
        check(self.max_positions is None or self.max_positions >= 8, "max_positions", "must be >= 8 or null",
              self.max_positions)
        check(self.alpha > 0, "alpha", "must be > 0", self.alpha)
        check(self.lr2 > 0, "lr2", "must be > 0", self.lr2)
        check(self.init in ("vocab", "uniform"), "init", "must be 'vocab' or 'uniform'", self.init)

    def rows(self) -> int:
        check(self.max_positions is not None, "max_positions", "must be resolved from training.max_length first", None)
        return self.max_positions

    def rank_for(self, d: int) -> int:
        if self.rank is not None:
            return self.rank
        r = (self.budget_length - self.prompt_length) * d // (self.rows() + d)
        check(r >= 1, "prompt_length", f"leaves no budget for a rank >= 1 at d={d}", self.prompt_length)
        return r


class PositionUpdate(nn.Module):
    def __init__(self, s: int, r: int, d: int, alpha: float) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(s, r))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.B = nn.Parameter(torch.zeros(r, d))  # A·B = 0 at the start
        self.scale = alpha / math.sqrt(r)

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Row i of A·B goes to the i-th real token of each row (left padding shifts nothing)."""
        positions = mask_positions(attention_mask)
        longest = int(positions.max()) + 1
        if longest > self.A.size(0):
            raise ValueError(f"dept.max_positions: inputs must not be longer (got length {longest} > {self.A.size(0)})")
        return embeds + self.scale * (self.A @ self.B)[positions]


@register_method
class DePT(PromptMethod):
    name = "dept"
    description = "shorter prompt + low-rank position-indexed update of input embeddings, two lrs"
    Config = DePTConfig
    search_space = {"lr": [3e-1, 4e-1, 5e-1], "lr2": [1e-4, 5e-4, 1e-3], "prompt_length": [20, 40, 60, 80],
                    "weight_decay": [0.01]}

    @classmethod
    def from_params(cls, params, *, training=None) -> "DePT":
        """s follows training.max_length when unset; a larger s is refused (its extra rows of A
        could never be used)."""
        config = cls.Config(**params)
        if training is not None:
            s = config.max_positions
            check(s is None or s <= training.max_length, "max_positions",
                  f"must be <= training.max_length ({training.max_length}): rows of A past the input length "
                  "are never used", s)
            config = dataclasses.replace(config, max_positions=s or training.max_length)
        elif config.max_positions is None:
            config = dataclasses.replace(config, max_positions=DEFAULT_ROWS)
        return cls(config)

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        from trainers.families import width

        d = width(model_config if isinstance(model_config, dict) else model_config.to_dict())
        check(config.rank is None or config.rank <= d, "rank", f"must be <= the backbone's width d={d} "
              "(B is r x d; a larger r adds parameters, not rank)", config.rank)
        config.rank_for(d)

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        c, d = self.config, hidden_size(backbone.model)
        prompt = initial_prompt(backbone, c.prompt_length, c.init)
        update = PositionUpdate(c.rows(), c.rank_for(d), d, c.alpha)
        return PromptedEncoder(backbone.model, StaticPrompt(prompt), update)

    def param_groups(self, model: nn.Module, *, lr: float, weight_decay: float) -> list[dict]:
        """A and B at lr2; the prompt and the task head at lr, as in prompt tuning, which DePT is
        while B = 0 (T5, the paper's backbone, has no head to place)."""
        update = list(model.update.parameters())
        ids = {id(p) for p in update}
        rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": rest, "lr": lr, "weight_decay": weight_decay},
                {"params": update, "lr": self.config.lr2, "weight_decay": weight_decay}]
