"""Houlsby et al. 2019 adapters: a bottleneck h + U·f(D·h) after the attention block's output
projection and after the FFN's output projection of every layer (T5: of its encoder and decoder;
the family table says where those projections are), before the residual and LayerNorm. The up-projection starts at zero, so the model starts as the backbone (the paper uses a
near-zero init). As in the paper, the layers' LayerNorms train too (``train_layer_norm``), as
deltas on the frozen LayerNorm tensors (deltas.py), so the backbone itself stays untouched.
Trainable per layer: 2·(2·d·m + m + d), plus the two norms' weights and biases (2·2·d; T5's and
Llama's RMS norms have a weight only: 2·d).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import Method, freeze_all_but_head, register_method
from trainers.methods.deltas import add_delta, deltas
from trainers.families import blocks, submodule
from trainers.methods.layers import hidden_size


@dataclass(frozen=True)
class AdapterConfig:
    bottleneck: int = 64  # m
    train_layer_norm: bool = True

    def __post_init__(self) -> None:
        check(self.bottleneck >= 1, "bottleneck", "must be >= 1", self.bottleneck)


class Bottleneck(nn.Module):
    def __init__(self, d: int, m: int) -> None:
        super().__init__()
        self.down, self.act, self.up = nn.Linear(d, m), nn.GELU(), nn.Linear(m, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        return h + self.up(self.act(self.down(h)))


class AdapterModel(nn.Module):
    def __init__(self, backbone: Backbone, m: int) -> None:
        super().__init__()
        model, arch = backbone.model, backbone.arch
        self.backbone = model
        d = hidden_size(model)
        self.adapters = nn.ModuleList()
        for layer in blocks(model, arch):
            for proj in (submodule(layer, arch.attn_out), submodule(layer, arch.ffn_out)):
                adapter = Bottleneck(d, m)
                self.adapters.append(adapter)
                proj.register_forward_hook(lambda mod, args, out, a=adapter: a(out))

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)


def layer_norms(backbone: Backbone) -> list[nn.Module]:
    arch = backbone.arch
    return [submodule(layer, path) for layer in blocks(backbone.model, arch) for path in arch.norms]


@register_method
class Adapter(Method):
    name = "adapter"
    description = "Houlsby bottleneck adapters after the attention and FFN blocks (+ LayerNorms)"
    Config = AdapterConfig
    search_space = {"lr": [3e-5, 1e-4, 3e-4, 1e-3], "bottleneck": [8, 64, 256]}

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        if self.config.train_layer_norm:
            for norm in layer_norms(backbone):
                for name in ("weight", "bias"):
                    if isinstance(getattr(norm, name, None), nn.Parameter):
                        add_delta(norm, name)
        return AdapterModel(backbone, self.config.bottleneck)

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.adapters.parameters()) + deltas(model.backbone)
