"""BitFit (Ben Zaken et al. 2022): only the backbone's bias terms (and the head) train."""
from __future__ import annotations

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.methods.base import Method, freeze_all_but_head, register_method


@register_method
class BitFit(Method):
    name = "bitfit"
    description = "only the bias terms of the backbone train"
    search_space = {"lr": [1e-4, 4e-4, 1e-3, 2e-3, 4e-3]}

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        self._head = backbone.head_names
        for name, p in backbone.model.named_parameters():
            if name.endswith(".bias"):
                p.requires_grad_(True)
        return backbone.model

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for n, p in model.named_parameters() if n.endswith(".bias") and n not in self._head]
