"""Spec → trials → Ray Tune param space. The grid is tasks × methods × assignments × seeds."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from search.spec import Spec
from trainers.config import TrialConfig
from tracking.words import count, noun


@dataclass(frozen=True)
class Trial:
    config: TrialConfig
    config_id: str  # shared by the seeds of one hyperparameter assignment

    @property
    def name(self) -> str:
        c = self.config
        return f"{c.task}-{c.method}-{self.config_id}-s{c.seed}"

    def hyperparameters(self) -> dict[str, Any]:
        """The resolved hyperparameters, as logged to MLflow's params."""
        c = self.config
        return ({"task": c.task, "method": c.method, "backbone": c.backbone, "seed": c.seed}
                | dataclasses.asdict(c.optim) | c.method_params
                | {f"training.{k}": v for k, v in dataclasses.asdict(c.training).items()}
                | {"task_format.requested": c.task_format})


def config_id(task: str, method: str, backbone: str, optim: dict, params: dict) -> str:
    key = json.dumps([task, method, backbone, optim, params], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:10]


def expand(spec: Spec) -> list[Trial]:
    trials = []
    for task in spec.tasks:
        for method in spec.methods:
            for optim, params in spec.assignments(method):
                cid = config_id(task, method, spec.backbone, dataclasses.asdict(optim), params)
                for seed in spec.seeds:
                    trials.append(Trial(TrialConfig(
                        task=task, method=method, backbone=spec.backbone, seed=seed, optim=optim,
                        method_params=params, training=spec.training, data=spec.data,
                        task_format=spec.task_format), cid))
    return trials


def trial_count(spec: Spec) -> int:
    return spec.trial_count()


def describe(spec: Spec) -> list[str]:
    """What `validate` lists: every trial of a grid; for random/optuna, what each (task, method)
    samples from (the points themselves are drawn at run time)."""
    if spec.search.algorithm == "grid":
        return [t.name for t in expand(spec)]
    lines = []
    for task in spec.tasks:
        for method, grid in spec.methods.items():
            space = ", ".join(f"{k}: {v.model_dump() if hasattr(v, 'model_dump') else v}" for k, v in sorted(grid.items()))
            lines.append(f"{task}-{method}: {spec.search.num_samples} {spec.search.algorithm} "
                         f"{noun('assignment', spec.search.num_samples)} × {count(len(spec.seeds), 'seed')} from {{{space}}}")
    return lines


def param_space(trials: list[Trial]) -> dict[str, Any]:
    from ray import tune

    return {"trial": tune.grid_search([{"config": t.config.to_dict(), "config_id": t.config_id} for t in trials])}
