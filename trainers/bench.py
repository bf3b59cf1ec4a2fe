"""Benchmarks that print tables (``peftsearch bench ...``): never timed asserts in tests.

``methods``: for each method on one backbone, batch and sequence length, inference time and peak
memory and training-step time and peak memory, each also relative to ``finetune`` (the plain
model). Every row runs in its own subprocess, so one method's allocations cannot inflate
another's peak. On CUDA the peak is ``torch.cuda.max_memory_allocated``; on CPU it is the
resident set size sampled every millisecond, above its level just before the measured loop.

``convergence``: a short real training run per method (the one loop, real data): the first and
last training loss, the best dev score, and the dev set's majority-class score.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn as nn

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


def _inputs(tokenizer, vocab: int, batch: int, seq_len: int, device: str) -> dict[str, torch.Tensor]:
    """Random tokens framed by the tokenizer's own special tokens (PASTA needs them)."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000 if vocab > 2000 else 10, vocab, (batch, seq_len), generator=g)
    special = [i for i in tokenizer("a", "b")["input_ids"] if i in set(tokenizer.all_special_ids)]
    if special:
        ids[:, 0], ids[:, seq_len // 2], ids[:, -1] = special[0], special[-1], special[-1]
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "labels": torch.zeros(batch, dtype=torch.long, device=device)}


def _measure(fn, *, device: str, warmup: int, repeats: int, resident: tuple) -> tuple[float, int]:
    """Median seconds per call, and the peak bytes of live tensors during a call: what stays
    resident (weights, optimizer state, inputs) plus the call's own allocations at their peak."""
    for _ in range(warmup):
        fn()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:  # profiled apart from the timed calls, whose times the profiler would inflate
        peak = live_bytes(*resident) + transient_peak_cpu(fn)
    return statistics.median(times), peak


def measure_variant(variant: Variant, *, backbone: str, batch: int, seq_len: int, warmup: int, repeats: int,
                    device: str) -> dict[str, Any]:
    from trainers.backbone import load_backbone
    from trainers.methods import METHODS

    torch.manual_seed(0)
    bb = load_backbone(backbone, num_labels=2)
    method = METHODS[variant.method].from_params(variant.params)
    model = method.apply(bb).to(device)
    n_params = sum(p.numel() for p in method.method_parameters(model))
    inputs = _inputs(bb.tokenizer, bb.model.get_input_embeddings().weight.size(0), batch, seq_len, device)
    optimizer = torch.optim.AdamW(method.param_groups(model, lr=1e-5, weight_decay=0.0))

    def step() -> None:
        model(**inputs).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    train_s, train_peak = _measure(step, device=device, warmup=warmup, repeats=repeats,
                                   resident=(model, optimizer, inputs))
    model.eval()
    if variant.fuse:
        method.fuse(model)
    no_labels = {k: v for k, v in inputs.items() if k != "labels"}

    def infer() -> None:
        with torch.no_grad():
            model(**no_labels)

    infer_s, infer_peak = _measure(infer, device=device, warmup=warmup, repeats=repeats, resident=(model, no_labels))
    return {"method": variant.label, "trainable_params": n_params, "infer_s": infer_s, "infer_peak": infer_peak,
            "train_s": train_s, "train_peak": train_peak}


def bench_methods(variants: list[Variant], *, backbone: str, batch: int, seq_len: int, warmup: int,
                  repeats: int, device: str) -> Iterator[dict[str, Any]]:
    """One subprocess per variant (clean peak memory), yielding each row as it is measured."""
    for v in variants:
        payload = json.dumps({"variant": [v.method, v.params, v.fuse], "backbone": backbone, "batch": batch,
                              "seq_len": seq_len, "warmup": warmup, "repeats": repeats, "device": device})
        out = subprocess.run([sys.executable, "-m", "trainers.bench", payload], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"bench {v.label} failed: {out.stderr.strip().splitlines()[-1]}")
        yield json.loads(out.stdout.strip().splitlines()[-1])


METHODS_HEADER = ("| method | trainable params | inference ms | vs finetune | inference peak MiB | vs finetune "
                  "| train step ms | vs finetune | train peak MiB | vs finetune |\n" + "|" + " --- |" * 10)


def format_methods_row(r: dict[str, Any], ref: dict[str, Any]) -> str:
    """One row; ``ref`` is finetune's row (the plain model)."""
    mb = lambda b: f"{b / 2**20:.0f}"  # noqa: E731
    ratio = lambda a, b: f"{a / b:.2f}x" if b > 0 else "n/a"  # noqa: E731
    return (f"| {r['method']} | {r['trainable_params']} | {r['infer_s'] * 1e3:.1f} | {ratio(r['infer_s'], ref['infer_s'])} "
            f"| {mb(r['infer_peak'])} | {ratio(r['infer_peak'], ref['infer_peak'])} | {r['train_s'] * 1e3:.1f} "
            f"| {ratio(r['train_s'], ref['train_s'])} | {mb(r['train_peak'])} | {ratio(r['train_peak'], ref['train_peak'])} |")


if __name__ == "__main__":  # the per-variant worker of bench_methods
    cfg = json.loads(sys.argv[1])
    method, params, fuse = cfg.pop("variant")
    torch.set_num_threads(int(os.environ.get("PEFTSEARCH_BENCH_THREADS", torch.get_num_threads())))
    print(json.dumps(measure_variant(Variant(method, params, fuse), **cfg)))


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
