"""The trainer's configuration, as frozen dataclasses that check themselves (PEFT style).

The spec (search/spec.py) embeds these same classes, so a value is validated once, at the edge,
and a trial rebuilds them from the plain dict Ray Tune hands it.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

# A number written as text that a real-valued setting still reads as that number: YAML 1.2's
# decimal syntax (3e-2, 1e-3, 0.001, 8, .5, -1.5E+3). A YAML 1.1 parser leaves 3e-2 unquoted as
# text; anything else ("inf", "1,000", "0x10", "1e", " 3", "") is refused where a number belongs.
DECIMAL = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


def check(ok: bool, name: str, rule: str, value: Any) -> None:
    """Raise the one-line error every config uses: field, rule, offending value."""
    if not ok:
        raise ValueError(f"{name}: {rule} (got {value!r})")


# pydantic's ConfigDict, as a plain dict: the trainers package imports without pydantic (the bench
# runs on machines that have only torch, transformers and peft).
_FORBID = {"extra": "forbid"}


@dataclass(frozen=True)
class OptimConfig:
    """Hyperparameters of the optimizer that a search grid may vary for any method."""

    __pydantic_config__ = _FORBID
    lr: float
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        check(self.lr > 0, "lr", "must be > 0", self.lr)
        check(self.weight_decay >= 0, "weight_decay", "must be >= 0", self.weight_decay)


@dataclass(frozen=True)
class TrainingConfig:
    __pydantic_config__ = _FORBID
    max_epochs: Optional[int] = None  # null: the task's default (the AoT table, METHODS.md)
    patience: Optional[int] = None  # null: the task's default
    batch_size: int = 16
    eval_batch_size: int = 64
    max_length: int = 128
    optimizer: Literal["adam", "adamw"] = "adamw"
    # Adam's epsilon and betas: torch's defaults; DePT (seed 003) uses 1e-6 and (0.9, 0.98).
    adam_eps: float = 1e-8
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: Literal["constant", "linear"] = "constant"
    warmup_ratio: float = 0.0
    eval_every: int = 0  # in optimizer steps; 0 evaluates once per epoch
    max_train_examples: Optional[int] = None  # a seeded subsample, for quick searches
    max_eval_examples: Optional[int] = None
    # Keep the best evaluation's inference artefact (Method.inference_state: AoT's fused tables,
    # the head) and log it to the trial's MLflow run under model/ (trainers/artefact.py loads it).
    save_model: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "eval_batch_size"):
            check(getattr(self, name) >= 1, name, "must be >= 1", getattr(self, name))
        for name in ("max_epochs", "patience"):
            v = getattr(self, name)
            check(v is None or v >= 1, name, "must be >= 1", v)
        check(self.max_length >= 8, "max_length", "must be >= 8", self.max_length)
        check(0 < self.adam_eps < 1, "adam_eps", "must be in (0, 1)", self.adam_eps)
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas",
              "must be two numbers in [0, 1)", self.betas)
        check(0 <= self.warmup_ratio < 1, "warmup_ratio", "must be in [0, 1)", self.warmup_ratio)
        check(self.eval_every >= 0, "eval_every", "must be >= 0 (0 = every epoch)", self.eval_every)
        for name in ("max_train_examples", "max_eval_examples"):
            v = getattr(self, name)
            check(v is None or v >= 1, name, "must be >= 1 or null", v)


@dataclass(frozen=True)
class DataConfig:
    __pydantic_config__ = _FORBID
    source: Literal["hub", "local"] = "hub"
    dir: Optional[str] = None
    # dev: select and report on dev (AoT). heldout: select on a held-out set, report on another
    # (EPT, DePT); see trainers/splits.py.
    protocol: Literal["dev", "heldout"] = "dev"

    def __post_init__(self) -> None:
        check(self.source == "hub" or bool(self.dir), "dir", "is required when source is local", self.dir)


@dataclass(frozen=True)
class TrialConfig:
    """Everything one trial needs: what Ray Tune's param space resolves to for one trial."""

    task: str
    method: str
    backbone: str
    seed: int
    optim: OptimConfig
    method_params: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # How the task is posed (trainers/families.py): auto, head (a classification head) or lm
    # (rank classification of label words: T5's text-to-text, a decoder's verbalizers).
    task_format: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialConfig":
        return cls(
            task=d["task"], method=d["method"], backbone=d["backbone"], seed=int(d["seed"]),
            optim=OptimConfig(**d["optim"]), method_params=dict(d.get("method_params", {})),
            training=_training(d.get("training", {})), data=DataConfig(**d.get("data", {})),
            task_format=d.get("task_format", "auto"),
        )


def _training(d: dict[str, Any]) -> TrainingConfig:
    d = dict(d)
    if "betas" in d:  # a list after a round trip through JSON or Ray's param space
        d["betas"] = tuple(d["betas"])
    return TrainingConfig(**d)
