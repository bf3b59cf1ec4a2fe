"""The one training loop. Every method runs through it; methods change the model and the
parameter groups through their hooks, never the loop."""
from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from trainers import memory
from trainers.backbone import load_posed
from trainers.families import format_name
from trainers.config import TrainingConfig, TrialConfig
from trainers.data import make_loader, subsample
from trainers.splits import load_sets
from trainers.early_stopping import EarlyStopping
from trainers.methods import METHODS
from trainers.tasks import TASKS, Task


class Reporter(Protocol):
    """Where a trial's numbers go (MLflow and Ray Tune, in a search)."""

    def on_start(self, info: dict[str, float]) -> None: ...

    def on_eval(self, *, step: int, metrics: dict[str, float]) -> None: ...


@dataclass
class TrainResult:
    best_dev_score: float  # the best value of the selection metric (the selection set's score)
    best_step: int
    steps: int
    evaluations: int
    stopped_early: bool
    train_seconds: float
    trainable_params: int
    history: list[dict[str, float]] = field(default_factory=list)
    # The reported set's score at the best selection evaluation (protocol dev: the dev score).
    reported_score: float = math.nan
    # Every reported-side metric at that evaluation, e.g. reported_score, reported_dev_mismatched_score.
    reported_metrics: dict[str, float] = field(default_factory=dict)
    protocol: str = "dev"
    # training.save_model: the inference artefact at the best evaluation (Method.inference_state)
    artefact: dict[str, torch.Tensor] | None = None
    # The trial's peak memory: its process's resident set (trainers/memory.py), and on CUDA
    # torch's peak allocated bytes; NaN where not measured.
    peak_rss_mb: float = math.nan
    peak_gpu_mb: float = math.nan
    # One pass over the selection set in the method's inference form (Method.fuse), after training:
    # milliseconds per example. The Pareto view divides it by finetune's.
    inference_ms_per_example: float = math.nan


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Prepared:
    """Everything a trial's loop needs, built from its config."""
    task: Task
    max_epochs: int
    patience: int
    train_examples: int
    evals: dict  # name -> examples: "dev" selects; the others are reported
    fmt: object  # the task's input format on this backbone (trainers/tasks/text.py)
    task_format: str  # its name, logged with the run: encoder-head, seq2seq-lm, decoder-lm, ...
    method: object
    model: torch.nn.Module
    train_loader: object
    eval_loaders: dict
    optimizer: torch.optim.Optimizer
    scheduler: object
    trainable_params: int


def prepare(cfg: TrialConfig, device: str) -> Prepared:
    task, t = TASKS[cfg.task], cfg.training
    max_epochs = t.max_epochs or task.max_epochs
    sets = load_sets(task, cfg.data)
    train_ex = subsample(sets.train, t.max_train_examples, cfg.seed)
    evals = {"dev": sets.select} | ({"report": sets.report} if sets.report is not None else {}) | sets.extra
    evals = {k: subsample(v, t.max_eval_examples, 0) for k, v in evals.items()}

    backbone, fmt = load_posed(cfg.backbone, task, route=cfg.task_format)
    method = METHODS[cfg.method].from_params(cfg.method_params, training=t)
    model = method.apply(backbone).to(device)
    _check_length(backbone.arch.positions(backbone.model.config.to_dict()),
                  t.max_length + method.extra_positions(), cfg.method)

    loader = lambda ex, bs, shuffle: make_loader(  # noqa: E731
        ex, backbone.tokenizer, max_length=t.max_length, batch_size=bs, fmt=fmt,
        regression=task.is_regression, shuffle=shuffle, seed=cfg.seed)
    train_loader = loader(train_ex, t.batch_size, True)
    optimizer = _optimizer(t, method.param_groups(model, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay))
    return Prepared(
        task=task, max_epochs=max_epochs, patience=t.patience or task.patience, train_examples=len(train_ex),
        evals=evals, fmt=fmt, task_format=format_name(backbone.arch, backbone.route),
        method=method, model=model, train_loader=train_loader,
        eval_loaders={k: loader(v, t.eval_batch_size, False) for k, v in evals.items()}, optimizer=optimizer,
        scheduler=_schedule(optimizer, t, max_epochs * len(train_loader)),
        trainable_params=sum(p.numel() for p in method.method_parameters(model)))


def train(cfg: TrialConfig, *, reporter: Reporter | None = None, device: str | None = None) -> TrainResult:
    seed_everything(cfg.seed)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    memory.reset_peak()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    t, p = cfg.training, prepare(cfg, device)
    task, model, method, optimizer, scheduler, fmt = p.task, p.model, p.method, p.optimizer, p.scheduler, p.fmt
    train_loader, eval_loaders, evals, n_params = p.train_loader, p.eval_loaders, p.evals, p.trainable_params
    total_steps = p.max_epochs * len(train_loader)
    if reporter:
        reporter.on_start({"trainable_params": n_params, "train_examples": p.train_examples,
                           "max_epochs": p.max_epochs, "patience": p.patience, "task_format": p.task_format}
                          | {f"{k}_examples": len(v) for k, v in evals.items()})

    stopper, history, losses, step = EarlyStopping(p.patience), [], [], 0
    eval_every = t.eval_every or len(train_loader)
    start = time.perf_counter()
    best_step, at_best, best_state = 0, {}, None
    while step < total_steps and not stopper.should_stop:
        model.train()
        for batch in train_loader:
            loss, _ = fmt.forward(model, {k: v.to(device) for k, v in batch.items()})
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {loss.item()} at step {step}")
            loss.backward()
            optimizer.step()
            scheduler.step()
            method.after_step(model, step + 1)
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if step % eval_every == 0 or step == total_steps:
                metrics = evaluate_all(model, eval_loaders, task, device, fmt)
                if stopper.update(metrics["dev_score"]):
                    best_step, at_best = step, reported_at_best(metrics, evals)
                    best_state = trainable_state(model) if t.save_model else None
                metrics |= {"train_loss": float(np.mean(losses)), "epoch": step / len(train_loader),
                            "best_dev_score": stopper.best if stopper.best is not None else math.nan} | at_best
                losses = []
                history.append({"step": step, **metrics})
                if reporter:
                    reporter.on_eval(step=step, metrics=metrics)
                if stopper.should_stop or step == total_steps:
                    break
                model.train()
    train_seconds = time.perf_counter() - start
    peak_rss = memory.peak_resident_mb()  # before the inference pass: the training's peak
    peak_gpu = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else math.nan
    artefact = None if best_state is None else inference_artefact(method, model, best_state)  # fuses the model
    infer_ms = timed_inference(method, model, eval_loaders["dev"], fmt, device, fused=artefact is not None)
    return TrainResult(
        best_dev_score=stopper.best if stopper.best is not None else math.nan, best_step=best_step,
        steps=step, evaluations=stopper.seen, stopped_early=step < total_steps,
        train_seconds=train_seconds, trainable_params=n_params, history=history,
        reported_score=at_best.get("reported_score", math.nan), reported_metrics=at_best,
        protocol=cfg.data.protocol, artefact=artefact, peak_rss_mb=peak_rss, peak_gpu_mb=peak_gpu,
        inference_ms_per_example=infer_ms,
    )


def timed_inference(method, model: torch.nn.Module, loader, fmt, device: str, *, fused: bool) -> float:
    """``inference_ms`` in the method's inference form; NaN, with a warning, where fusing or the
    pass runs out of memory (AoT's tables are |V| x d per layer): the trial itself has succeeded."""
    import logging

    try:
        if not fused:
            model.eval()
            method.fuse(model)
        return inference_ms(model, loader, fmt, device)
    except (MemoryError, RuntimeError) as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if not isinstance(e, MemoryError) and "memory" not in str(e).lower():
            raise  # a bug in a method's fuse or forward, not a lack of memory
        logging.getLogger(__name__).warning("inference timing skipped: %s", str(e).splitlines()[0][:200])
        return math.nan


@torch.no_grad()
def inference_ms(model: torch.nn.Module, loader, fmt, device: str) -> float:
    """Milliseconds per example of one forward pass over ``loader`` (labels and scoring excluded)."""
    model.eval()
    n, seconds = 0, 0.0
    for batch in loader:
        inputs = {k: v.to(device) for k, v in batch.items() if k != "labels"}
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fmt.forward(model, inputs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        n += len(batch["labels"])
    return 1000 * seconds / n if n else math.nan


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}


def inference_artefact(method, model: torch.nn.Module, best: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model at its best evaluation, in inference form (fused), as its method saves it."""
    model.load_state_dict(best, strict=False)
    model.eval()
    method.fuse(model)
    return {k: v.detach().cpu() for k, v in method.inference_state(model).items()}


def reported_at_best(metrics: dict[str, float], evals: dict) -> dict[str, float]:
    """The reported side of one evaluation: ``reported_score`` is the reported set's score (the
    selection set's own under protocol dev), plus ``reported_<split>_score`` for extra dev sets."""
    main = "report" if "report" in evals else "dev"
    extra = {f"reported_{name}_score": metrics[f"{name}_score"] for name in evals if name not in ("dev", "report")}
    return {"reported_score": metrics[f"{main}_score"]} | extra


def evaluate_all(model: torch.nn.Module, loaders: dict, task: Task, device: str, fmt=None) -> dict[str, float]:
    """Every evaluation set's metrics, prefixed by the set's name (dev_score, report_score, ...)."""
    return {f"{name}_{k}": v for name, dl in loaders.items() for k, v in evaluate(model, dl, task, device, fmt).items()}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader, task: Task, device: str, fmt=None) -> dict[str, float]:
    """``fmt``: the task's format on this backbone (the encoder format, ``task.format``, by default)."""
    fmt = fmt or task.format
    model.eval()
    preds, labels, groups = [], [], []
    for batch in loader:
        _, logits = fmt.forward(model, {k: v.to(device) for k, v in batch.items() if k != "labels"})
        preds.append(fmt.predict(logits, regression=task.is_regression))
        labels.append(batch["labels"])
        groups.append(batch.get("group"))
    grouped = torch.cat(groups).numpy() if groups and groups[0] is not None else None
    return task.compute_metrics(torch.cat(preds).float().cpu().numpy(), torch.cat(labels).numpy(), grouped)


def _optimizer(t: TrainingConfig, groups: list[dict]) -> torch.optim.Optimizer:
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, eps=t.adam_eps, betas=tuple(t.betas))


def _schedule(optimizer, t: TrainingConfig, total_steps: int):
    warmup = int(t.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if t.schedule == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_length(limit: int | None, needed: int, method: str) -> None:
    """``limit``: the backbone's absolute positions (None where positions are relative, as T5's)."""
    if limit is not None and needed > limit:
        raise ValueError(
            f"max_length plus {method}'s added positions is {needed}, over the backbone's "
            f"position limit ({limit})"
        )
