"""BitFit (Ben Zaken et al. 2022): only the backbone's bias terms (and the head) train. Each bias
b is trained as b + Δb (deltas.py), which is the same function but leaves the backbone's tensors
untouched, so one frozen backbone can serve many BitFit tasks. A backbone without biases (T5,
Llama, Mistral) would train nothing but the head: it is refused, at validation already."""
from __future__ import annotations

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.families import arch_for
from trainers.methods.base import Method, freeze_all_but_head, register_method
from trainers.methods.deltas import add_delta, deltas


@register_method
class BitFit(Method):
    name = "bitfit"
    description = "only the bias terms of the backbone train (as deltas on the frozen biases)"
    search_space = {"lr": [1e-4, 4e-4, 1e-3, 2e-3, 4e-3]}

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        d = model_config if isinstance(model_config, dict) else model_config.to_dict()
        check(arch_for(d).has_biases(d), "backbone", "must have bias terms for BitFit to train (it would train "
              "0 parameters)", f"{d.get('model_type')} without biases")

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        head_modules = {n.rsplit(".", 1)[0] for n in backbone.head_names}
        targets = [m for n, m in backbone.model.named_modules()
                   if n not in head_modules and isinstance(getattr(m, "bias", None), nn.Parameter)]
        check(bool(targets), "backbone", "must have bias terms for BitFit to train (it would train 0 parameters)",
              f"{backbone.arch.family} backbone without biases")
        for module in targets:
            add_delta(module, "bias")
        return backbone.model

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return deltas(model)
