"""The method plugin interface. A method is a config dataclass plus a way to wrap a backbone.

The training loop only ever calls ``apply``, ``param_groups`` and ``method_parameters``; anything
method-specific (a second learning rate, fusing, special-token ids, applicability to a backbone)
lives behind the hooks below, never in the loop.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn

from trainers.backbone import Backbone
from trainers.registry import Registry


@dataclass(frozen=True)
class NoConfig:
    """For methods without hyperparameters of their own."""


class Method(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type] = NoConfig
    trains_backbone: ClassVar[bool] = False
    needs_tokenizer: ClassVar[bool] = False  # check_backbone reads the tokenizer (validation loads it)
    # The paper's search space (METHODS.md): hyperparameter -> values, usable in a spec by name
    # (`methods: {dept: paper}`). Optimizer keys (lr, weight_decay) may appear here too.
    search_space: ClassVar[dict[str, list[Any]]] = {}

    def __init__(self, config: Any) -> None:
        self.config = config

    @classmethod
    def from_params(cls, params: dict[str, Any], *, training: Any = None) -> "Method":
        """``training``: the trial's TrainingConfig, for methods sized by it (DePT's rows of A)."""
        return cls(cls.Config(**params))

    @classmethod
    def hyperparameter_names(cls, grid: dict[str, Any]) -> tuple[str, ...]:
        """The keys a spec may set for this method (besides lr and weight_decay)."""
        return tuple(getattr(cls.Config, "__dataclass_fields__", {}))

    # A method whose keys are not a fixed dataclass (the peft plugin) validates its own points:
    # ``validate_params(values) -> params`` raising ValueError("key: rule (got value)").
    validate_params: ClassVar[Any] = None

    @classmethod
    def check_backbone(cls, config: Any, *, model_config: Any, tokenizer: Any) -> None:
        """Raise ValueError ("field: rule (got value)") if the method cannot apply to a backbone.

        Called at spec validation when the backbone can be inspected locally, and by ``apply``."""

    @classmethod
    def has_backbone_check(cls) -> bool:
        return cls.check_backbone.__func__ is not Method.check_backbone.__func__

    @abstractmethod
    def apply(self, backbone: Backbone) -> nn.Module:
        """Return a module whose forward(**batch) gives HF outputs with .loss and .logits."""

    @abstractmethod
    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """The method's own trainable parameters (the task head excluded)."""

    def extra_positions(self) -> int:
        """Positions the method adds to every input (a prepended prompt), for length checks."""
        return 0

    def extra_keys(self) -> int:
        """Key/value entries the method puts before every input's own in attention (a prefix), for
        sliding-window checks."""
        return 0

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step, before the gradients are cleared (AdaLoRA's rank
        allocation reads them)."""

    def param_groups(self, model: nn.Module, *, lr: float, weight_decay: float) -> list[dict]:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "lr": lr, "weight_decay": weight_decay}]

    def fuse(self, model: nn.Module) -> None:
        """Turn a trained model into its inference form (AoT materialises its tables)."""

    def inference_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """What must be saved to run inference: the trained parameters (head included)."""
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def load_inference_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Load ``inference_state`` into a model that ``apply`` built from the same backbone."""
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected:
            raise KeyError(f"state: keys the model does not have (got {unexpected[:3]})")


def freeze_all_but_head(backbone: Backbone) -> None:
    for name, p in backbone.model.named_parameters():
        p.requires_grad_(name in backbone.head_names)


def own_parameters(model: nn.Module, backbone_model: nn.Module) -> list[nn.Parameter]:
    """Parameters of ``model`` that are not the backbone's (the method's added modules)."""
    base = {id(p) for p in backbone_model.parameters()}
    return [p for p in model.parameters() if id(p) not in base]


METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    METHODS.register(cls.name, cls)
    return cls
