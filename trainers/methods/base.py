"""The method plugin interface. A method is a config dataclass plus a way to wrap a backbone.

The training loop only ever calls ``apply`` and ``param_groups``; anything method-specific (a
second learning rate, fusing, special-token ids) lives behind these hooks, never in the loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.registry import Registry


@dataclass(frozen=True)
class NoConfig:
    """For methods without hyperparameters of their own."""


class Method:
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type] = NoConfig
    trains_backbone: ClassVar[bool] = False

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "Method":
        return cls(cls.Config(**params))

    def apply(self, backbone: Backbone) -> nn.Module:
        """Return a module whose forward(**batch) gives HF outputs with .loss and .logits."""
        raise NotImplementedError

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The method's own trainable parameters (the task head excluded)."""
        raise NotImplementedError

    def extra_positions(self) -> int:
        """Positions the method adds to every input (a prepended prompt), for length checks."""
        return 0

    def param_groups(self, model: nn.Module, *, lr: float, weight_decay: float) -> list[dict]:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]


def freeze_all_but_head(backbone: Backbone) -> None:
    for name, p in backbone.model.named_parameters():
        p.requires_grad_(name in backbone.head_names)


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    METHODS.register(cls.name, cls)
    return cls
