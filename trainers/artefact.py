"""A trained model's inference artefact, and loading it back to run inference.

A directory with ``inference_state.pt`` (``Method.inference_state``: the trained parameters in
inference form, e.g. AoT's fused tables and the head) and ``method.json`` (the task, method,
method hyperparameters and backbone that rebuild the model around it). The frozen backbone is not
copied: it is loaded again from its path, package or hub id. A search with
``training.save_model: true`` logs this directory under each trial run's ``model/`` artifacts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

STATE, META = "inference_state.pt", "method.json"


def save_artefact(directory: str | Path, state: dict[str, torch.Tensor], cfg) -> Path:
    """Write ``state`` and what rebuilds its model (``cfg``: the trial's TrialConfig)."""
    from trainers.tasks import TASKS

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(state, out / STATE)
    meta = {"task": cfg.task, "method": cfg.method, "method_params": cfg.method_params, "backbone": cfg.backbone,
            "head_size": TASKS[cfg.task].head_size, "task_format": cfg.task_format,
            "max_length": cfg.training.max_length}
    (out / META).write_text(json.dumps(meta, indent=2) + "\n")
    return out


@dataclass
class Trained:
    model: nn.Module  # in eval mode and inference form: forward(**tokenized) -> outputs with .logits
    tokenizer: Any
    method: Any
    meta: dict[str, Any]
    fmt: Any = None  # the task's input format on this backbone: fmt.forward(model, batch) scores a batch


def load_artefact(directory: str | Path, *, backbone: str | None = None) -> Trained:
    """Rebuild the trained model; ``backbone`` overrides the saved one (e.g. a local copy)."""
    from trainers.backbone import load_posed
    from trainers.methods import METHODS

    d = Path(directory)
    for name in (STATE, META):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: not found; an artefact directory holds {STATE} and {META}")
    meta = json.loads((d / META).read_text())
    from trainers.config import TrainingConfig
    from trainers.tasks import TASKS

    bb, fmt = load_posed(backbone or meta["backbone"], TASKS[meta["task"]], route=meta.get("task_format", "auto"))
    training = TrainingConfig(max_length=meta["max_length"]) if "max_length" in meta else None
    method = METHODS[meta["method"]].from_params(meta["method_params"], training=training)
    model = method.apply(bb).eval()
    method.fuse(model)  # the saved state is in inference form
    method.load_inference_state(model, torch.load(d / STATE, map_location="cpu", weights_only=True))  # tensors only: no code
    return Trained(model, bb.tokenizer, method, meta, fmt)
