from __future__ import annotations

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.methods.base import Method, register_method


@register_method
class Finetune(Method):
    name = "finetune"
    description = "full fine-tuning: every backbone parameter and the head are trained"
    trains_backbone = True
    search_space = {"lr": [1e-5, 2e-5, 3e-5, 5e-5]}

    def apply(self, backbone: Backbone) -> nn.Module:
        self._head = backbone.head_names
        for p in backbone.model.parameters():
            p.requires_grad_(True)
        return backbone.model

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for n, p in model.named_parameters() if n not in self._head]
