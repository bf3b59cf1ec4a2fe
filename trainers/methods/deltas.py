"""Train a frozen backbone tensor through a separate additive delta, W' = W + Δ with Δ = 0 at
the start (torch.nn.utils.parametrize). The backbone's own tensors stay bit-identical, and the
deltas (with the head) are the whole trained artefact. Used by BitFit (biases) and by the
Houlsby adapters' LayerNorms."""
from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.utils import parametrize


class AddDelta(nn.Module):
    def __init__(self, like: torch.Tensor) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros_like(like))

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        return original + self.delta


def add_delta(module: nn.Module, name: str) -> nn.Parameter:
    """Make ``module.<name>`` trainable through a delta; returns the delta."""
    original = getattr(module, name)
    original.requires_grad_(False)
    parametrize.register_parametrization(module, name, AddDelta(original.detach()))
    return module.parametrizations[name][0].delta


def deltas(model: nn.Module) -> list[nn.Parameter]:
    return [m.delta for m in model.modules() if isinstance(m, AddDelta)]
