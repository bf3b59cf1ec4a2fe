"""Benchmarks that print tables (``peftsearch bench ...``): never timed asserts in tests.

``methods``: for each method on one backbone (any family), batch and sequence length, inference
time and peak memory and training-step time and peak memory, each also relative to ``finetune``
(the plain model). All methods live in one process and are timed round by round, interleaved, so
a change in the machine's load reaches every method alike; each ratio is the median of the
per-round ratios, with its interquartile range. Peak memory: the live tensors (weights, optimizer
state, inputs) plus the call's transient peak, from CUDA's allocator or the CPU profiler.

Needs only torch, transformers and peft (``python -m trainers.bench methods ...`` on a bare GPU
machine), besides the trainers package itself.

``convergence``: a short real training run per method (the one loop, real data): the first and
last training loss, the best dev score, and the dev set's majority-class score.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn as nn

from trainers.machine import load_average

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
# Rows beyond each method at its defaults: the papers' speed comparisons (AoT unfused vs fused
# vs long-prefix P-Tuning v2; DePT m=20 vs prompt tuning l=100 at equal trainable parameters).
PAPER_VARIANTS = ["aot_fc:fuse=false", "prefix_tuning:prefix_length=128", "prompt_tuning:prompt_length=100",
                  "dept:prompt_length=20"]


@dataclass(frozen=True)
class Variant:
    method: str
    params: dict[str, Any]
    fuse: bool = True  # measure inference after Method.fuse (AoT's tables, materialised prompts)

    @classmethod
    def parse(cls, text: str) -> "Variant":
        """``method`` or ``method:key=value,key=value`` (values parsed as JSON when they can be)."""
        method, _, rest = text.partition(":")
        params: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"--method: expected key=value after ':' (got {item!r})")
            try:
                params[key] = json.loads(value)
            except json.JSONDecodeError:
                params[key] = value
        fuse = params.pop("fuse", True)
        return cls(method, params, bool(fuse))

    @property
    def label(self) -> str:
        extra = [f"{k}={v}" for k, v in self.params.items()] + ([] if self.fuse else ["unfused"])
        return self.method + (f" ({', '.join(extra)})" if extra else "")


def live_bytes(*objects: Any) -> int:
    """Bytes of the distinct tensor storages reachable from modules, optimizers and dicts."""
    seen: dict[int, int] = {}

    def visit(o: Any) -> None:
        if isinstance(o, torch.Tensor):
            st = o.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        elif isinstance(o, nn.Module):
            for t in (*o.parameters(), *o.buffers()):
                visit(t)
        elif isinstance(o, torch.optim.Optimizer):
            for state in o.state.values():
                visit(state)
        elif isinstance(o, dict):
            for v in o.values():
                visit(v)
        elif isinstance(o, (list, tuple)):
            for v in o:
                visit(v)

    for o in objects:
        visit(o)
    return sum(seen.values())


def transient_peak_cpu(fn) -> int:
    """Peak bytes the CPU allocator holds during ``fn()`` above its level at entry: the running
    sum of the profiler's allocation events (what torch's own memory timeline is built from)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == DeviceType.CPU)
    level = peak = 0
    for _, nbytes in events:
        level += nbytes
        peak = max(peak, level)
    return peak


def _inputs(bb, batch: int, seq_len: int, device: str) -> dict[str, torch.Tensor]:
    """Random tokens framed by the tokenizer's own special tokens (PASTA needs them), with the
    labels the backbone's route scores: a class for a head; two target tokens for LM scoring."""
    vocab = bb.model.get_input_embeddings().weight.size(0)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 if vocab > 2000 else 10, vocab, (batch, seq_len), generator=g)
    enc = bb.tokenizer("a", "b") if bb.arch.family == "encoder" else bb.tokenizer("a")
    special = [i for i in enc["input_ids"] if i in set(bb.tokenizer.all_special_ids)]
    if special:
        ids[:, 0], ids[:, seq_len // 2], ids[:, -1] = special[0], special[-1], special[-1]
    if bb.route == "head":
        labels = torch.zeros(batch, dtype=torch.long)
    elif bb.arch.family == "seq2seq":
        labels = ids[:, 1:3].clone()  # a two-token target, as label words are
    else:
        labels = torch.full_like(ids, -100)
        labels[:, -2:] = ids[:, -2:]
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "labels": labels.to(device)}


def _time(fn, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def _peak(fn, *, device: str, resident: tuple) -> int:
    """Peak bytes of live tensors during one call: what stays resident (weights, optimizer state,
    inputs) plus the call's own allocations at their peak."""
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return live_bytes(*resident) + torch.cuda.max_memory_allocated() - base
    return live_bytes(*resident) + transient_peak_cpu(fn)


@dataclass
class _Setup:
    variant: Variant
    method: Any
    model: nn.Module
    optimizer: torch.optim.Optimizer
    inputs: dict
    trainable_params: int

    def step(self) -> None:
        self.model(**self.inputs).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def infer(self) -> None:
        with torch.no_grad():  # LM routes score their labels: that is their inference
            scored = self.inputs["labels"].dim() == 2
            self.model(**(self.inputs if scored else {k: v for k, v in self.inputs.items() if k != "labels"}))


def _build(v: Variant, *, backbone: str, route: str, batch: int, seq_len: int, device: str) -> _Setup:
    from trainers.backbone import load_backbone
    from trainers.methods import METHODS

    torch.manual_seed(0)
    bb = load_backbone(backbone, num_labels=2, route=route)
    method = METHODS[v.method].from_params(v.params)
    model = method.apply(bb).to(device)
    return _Setup(v, method, model, torch.optim.AdamW(method.param_groups(model, lr=1e-5, weight_decay=0.0)),
                  _inputs(bb, batch, seq_len, device), sum(p.numel() for p in method.method_parameters(model)))


def _rounds(setups: list[_Setup], fn_name: str, *, warmup: int, repeats: int, device: str, progress) -> list[list[float]]:
    """Seconds per call, round by round: every variant once per round, the order rotated each
    round, so drift of the machine (load, clocks, caches) reaches every variant alike."""
    times: list[list[float]] = [[] for _ in setups]
    n = len(setups)
    for r in range(warmup + repeats):
        for j in range(n):
            i = (j + r) % n
            t = _time(getattr(setups[i], fn_name), device)
            if r >= warmup:
                times[i].append(t)
        progress(f"{fn_name} round {r + 1}/{warmup + repeats}")
    return times


def _ratio(times: list[float], ref: list[float]) -> tuple[float, float, float]:
    """Median and interquartile range of the per-round ratio to the reference."""
    ratios = sorted(t / r for t, r in zip(times, ref))
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return statistics.median(ratios), q[0], q[2]


def bench_methods(variants: list[Variant], *, backbone: str, batch: int, seq_len: int, warmup: int,
                  repeats: int, device: str, route: str = "auto", train_rounds: bool = True,
                  progress=lambda s: None) -> list[dict[str, Any]]:
    """All variants in one process, measured round by round (training steps, then, after
    ``fuse``, inference). The first variant is the reference (finetune). Peak memory is profiled
    apart from the timed calls, one variant at a time. ``train_rounds=False`` measures inference
    only (training columns NaN): at the AoT paper's batch of 256 a CPU training step is minutes."""
    setups = [_build(v, backbone=backbone, route=route, batch=batch, seq_len=seq_len, device=device) for v in variants]
    for s in setups:
        s.model.train()
    if train_rounds:
        train_peak = [_peak(s.step, device=device, resident=(s.model, s.optimizer, s.inputs)) for s in setups]
        train = _rounds(setups, "step", warmup=warmup, repeats=repeats, device=device, progress=progress)
    else:
        train_peak, train = [math.nan] * len(setups), [[math.nan] * repeats for _ in setups]
    for s in setups:
        s.model.eval()
        if s.variant.fuse:
            s.method.fuse(s.model)
        s.optimizer.state.clear()  # inference holds no optimizer state
    infer_peak = [_peak(s.infer, device=device, resident=(s.model, s.inputs)) for s in setups]
    infer = _rounds(setups, "infer", warmup=warmup, repeats=repeats, device=device, progress=progress)
    return [{"method": s.variant.label, "trainable_params": s.trainable_params,
             "infer_s": statistics.median(infer[i]), "infer_ratio": _ratio(infer[i], infer[0]),
             "infer_peak": infer_peak[i], "train_s": statistics.median(train[i]),
             "train_ratio": _ratio(train[i], train[0]), "train_peak": train_peak[i]} for i, s in enumerate(setups)]


METHODS_HEADER = ("| method | trainable params | inference ms | vs finetune (median [IQR] of rounds) "
                  "| inference peak MiB | vs finetune | train step ms | vs finetune (median [IQR] of rounds) "
                  "| train peak MiB | vs finetune |\n" + "|" + " --- |" * 10)


def format_methods_row(r: dict[str, Any], ref: dict[str, Any]) -> str:
    """One row; ``ref`` is finetune's row (the plain model)."""
    mb = lambda b: f"{b / 2**20:.0f}" if b == b else "n/a"  # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f}x" if b > 0 and a == a else "n/a"  # noqa: E731
    ms = lambda t: f"{t * 1e3:.1f}" if t == t else "n/a"  # noqa: E731
    spread = lambda q: f"{q[0]:.3f}x [{q[1]:.3f}, {q[2]:.3f}]" if q[0] == q[0] else "n/a"  # noqa: E731
    return (f"| {r['method']} | {r['trainable_params']} | {r['infer_s'] * 1e3:.1f} | {spread(r['infer_ratio'])} "
            f"| {mb(r['infer_peak'])} | {ratio(r['infer_peak'], ref['infer_peak'])} | {ms(r['train_s'])} "
            f"| {spread(r['train_ratio'])} | {mb(r['train_peak'])} | {ratio(r['train_peak'], ref['train_peak'])} |")


def load_line() -> str:
    return "load average " + load_average()


# ---- convergence ---------------------------------------------------------------------------------
# A learning rate per method for a short budget (640 SST-2 examples, 3 epochs), from each paper's
# grid (METHODS.md). DePT's grid {3e-1, 4e-1, 5e-1} is for T5, whose embeddings are far larger than
# BERT's: at 3e-1 its prompt does not learn on MiniLM in this budget, so DePT runs at 3e-2.
CONVERGENCE_LR = {"finetune": 5e-5, "prompt_tuning": 3e-1, "p_tuning": 1e-2, "prefix_tuning": 1e-2,
                  "resprompt": 1e-2, "lora": 1e-3, "bitfit": 4e-3, "adapter": 1e-3, "aot_fc": 1e-3,
                  "aot_kron": 1e-3, "ept": 3e-2, "ept_star": 3e-2, "dept": 3e-2, "pasta": 3e-3}
CONVERGENCE_PARAMS = {"dept": {"lr2": 1e-3}}


def convergence(variants: list[Variant], *, task: str, backbone: str, data_dir: str, train_examples: int,
                eval_examples: int, epochs: int, eval_every: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Train each method with the one loop; yields a row per method as soon as it finishes.

    A variant's ``lr`` is the optimizer's; its other keys are method hyperparameters."""
    import numpy as np

    from trainers.config import DataConfig, OptimConfig, TrainingConfig, TrialConfig
    from trainers.data import subsample
    from trainers.loop import train
    from trainers.tasks import TASKS

    dev = subsample(TASKS[task].load("dev", source="local", data_dir=data_dir), eval_examples, 0)
    labels = np.array([e.label for e in dev])
    values, counts = np.unique(labels, return_counts=True)
    majority = TASKS[task].compute_metrics(np.full(len(labels), values[counts.argmax()], dtype=float), labels)["score"]
    for v in variants:
        params = CONVERGENCE_PARAMS.get(v.method, {}) | v.params
        lr = params.pop("lr", CONVERGENCE_LR.get(v.method, 1e-3))
        cfg = TrialConfig(task=task, method=v.method, backbone=backbone, seed=seed, optim=OptimConfig(lr=lr),
                          method_params=params,
                          training=TrainingConfig(max_epochs=epochs, patience=100, batch_size=16, max_length=64,
                                                  eval_every=eval_every, max_train_examples=train_examples,
                                                  max_eval_examples=eval_examples),
                          data=DataConfig(source="local", dir=data_dir))
        r = train(cfg)
        losses = [h["train_loss"] for h in r.history]
        label = v.method + (f" ({', '.join(f'{k}={x}' for k, x in params.items())})" if params else "")
        yield {"method": label, "lr": lr, "trainable_params": r.trainable_params, "first_loss": losses[0],
               "last_loss": losses[-1], "best_dev": r.best_dev_score, "majority": majority, "seconds": r.train_seconds}


CONVERGENCE_HEADER = ("| method | lr | trainable params | train loss (first window) | train loss (last window) "
                      "| loss falls | best dev | majority class | beats majority | seconds |\n" + "|" + " --- |" * 10)


def format_convergence_row(r: dict[str, Any]) -> str:
    return (f"| {r['method']} | {r['lr']:g} | {r['trainable_params']} | {r['first_loss']:.4f} | {r['last_loss']:.4f} "
            f"| {'yes' if r['last_loss'] < r['first_loss'] else 'NO'} | {r['best_dev']:.4f} | {r['majority']:.4f} "
            f"| {'yes' if r['best_dev'] > r['majority'] else 'NO'} | {r['seconds']:.0f} |")


# ---- AoT's fused tables in lower precision ----------------------------------------------------------
def fused_precision(*, method: str, task: str, backbone: str, data_dir: str, train_examples: int, epochs: int,
                    lr: float, dtypes=("float32", "float16", "bfloat16"), seed: int = 0) -> list[dict[str, Any]]:
    """Train AoT once with the one loop (training.save_model keeps the fused float32 tables at the
    best evaluation), reload the artefact, and score the task's whole dev set with the tables
    stored in each dtype: the score, the largest change of a logit against float32, the size."""
    import tempfile

    from trainers.artefact import load_artefact, save_artefact
    from trainers.config import DataConfig, OptimConfig, TrainingConfig, TrialConfig
    from trainers.data import make_loader
    from trainers.loop import evaluate, train
    from trainers.tasks import TASKS

    t = TrainingConfig(max_epochs=epochs, patience=100, batch_size=16, max_length=128,
                       max_train_examples=train_examples, save_model=True)
    cfg = TrialConfig(task=task, method=method, backbone=backbone, seed=seed, optim=OptimConfig(lr=lr), training=t,
                      data=DataConfig(source="local", dir=data_dir))
    result = train(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        trained = load_artefact(save_artefact(tmp, result.artefact, cfg))
    task_obj = TASKS[task]
    dev = task_obj.load("dev", source="local", data_dir=data_dir)
    loader = make_loader(dev, trained.tokenizer, max_length=t.max_length, batch_size=64, fmt=trained.fmt,
                         regression=task_obj.is_regression, shuffle=False, seed=0)
    model, table32, rows, ref = trained.model.eval(), trained.model.edit.fused.float(), [], None
    for name in dtypes:
        model.edit.set_fused(table32.to(getattr(torch, name)))
        with torch.no_grad():
            logits = torch.cat([trained.fmt.forward(model, {k: v for k, v in b.items() if k != "labels"})[1]
                                for b in loader]).float()
        ref = logits if ref is None else ref
        rows.append({"dtype": name, "dev_score": evaluate(model, loader, task_obj, "cpu", trained.fmt)["score"],
                     "max_logit_change": float((logits - ref).abs().max()), "table_mib": model.edit.fused.nbytes / 2**20,
                     "dev_examples": len(dev), "best_dev_in_training": result.best_dev_score})
    return rows


def methods_variants(only) -> list[Variant]:
    from trainers.methods import METHODS
    from trainers.registry import unknown_name_message

    names = list(only) or ["finetune", *[m for m in METHODS if m != "finetune"], *PAPER_VARIANTS]
    variants = [Variant.parse(n) for n in names]
    for v in variants:  # bad input fails here, before any measuring
        if v.method not in METHODS:
            raise ValueError(f"--method: {unknown_name_message('method', v.method, METHODS.names())}")
        METHODS[v.method].from_params(v.params)
    if variants[0].method != "finetune":
        variants.insert(0, Variant("finetune", {}))
    return variants


def print_methods_table(only, *, backbone: str, route: str, batch: int, seq_len: int, repeats: int, warmup: int,
                        device: str, echo, train_rounds: bool = True) -> list[dict[str, Any]]:
    import sys

    variants = methods_variants(only)
    echo(f"backbone {backbone} (route {route}), batch {batch}, sequence length {seq_len}, device {device}, "
         f"{repeats} interleaved rounds after {warmup} warm-up; {load_line()} before")
    rows = bench_methods(variants, backbone=backbone, route=route, batch=batch, seq_len=seq_len, warmup=warmup,
                         repeats=repeats, device=device, train_rounds=train_rounds, progress=lambda s: print(s, file=sys.stderr, flush=True))
    echo(METHODS_HEADER)
    for row in rows:
        echo(format_methods_row(row, rows[0]))
    echo(f"{load_line()} after")
    return rows


def main(argv: list[str] | None = None) -> None:
    """``python -m trainers.bench methods|make-backbone``: the methods bench on a machine with only
    torch, transformers and peft (no Ray, MLflow or the CLI's other dependencies)."""
    p = argparse.ArgumentParser(prog="python -m trainers.bench")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("methods")
    m.add_argument("--backbone", default=DEFAULT_BACKBONE)
    m.add_argument("--route", default="auto", choices=["auto", "head", "lm"])
    m.add_argument("--batch", type=int, default=8)
    m.add_argument("--seq-len", type=int, default=128)
    m.add_argument("--repeats", type=int, default=5)
    m.add_argument("--warmup", type=int, default=1)
    m.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    m.add_argument("--method", action="append", default=[])
    m.add_argument("--no-train", action="store_true", help="time inference only")
    mk = sub.add_parser("make-backbone")
    mk.add_argument("--preset", required=True)
    mk.add_argument("--out", required=True)
    mk.add_argument("--data-dir", default=None)
    a = p.parse_args(argv)
    if a.cmd == "make-backbone":
        from trainers.testing import build_preset

        print(build_preset(a.preset, a.out, data_dir=a.data_dir))
        return
    print_methods_table(a.method, backbone=a.backbone, route=a.route, batch=a.batch, seq_len=a.seq_len,
                        repeats=a.repeats, warmup=a.warmup, device=a.device, echo=print, train_rounds=not a.no_train)


if __name__ == "__main__":
    main()
