"""The Pareto view's cost axes, on a trials frame shaped as tracking.store.load_trials returns it."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tracking.pareto import COSTS, pareto_points, write_pareto


def trials(with_costs: bool = True) -> pd.DataFrame:
    rows = []
    # method: (score, trainable params, peak RSS MB, inference ms/example)
    plan = {"finetune": (0.70, 22_000_000, 1600.0, 2.0), "lora": (0.69, 150_000, 900.0, 3.0),
            "prompt_tuning": (0.60, 8_000, 1000.0, 2.5)}
    for method, (score, params, rss, ms) in plan.items():
        for seed in range(3):
            row = {"task": "rte", "method": method, "backbone": "minilm", "config_id": f"{method}-a", "seed": seed,
                   "best_dev_score": score + 0.01 * seed, "metric": "accuracy", "trainable_params": params,
                   "wall_seconds": 60.0 + seed, "gpus": 0.0}
            if with_costs:
                row |= {"peak_rss_mb": rss + seed, "peak_gpu_mb": math.nan, "inference_ms_per_example": ms}
            rows.append(row)
    return pd.DataFrame(rows)


def test_peak_memory_and_inference_relative_to_finetune_are_axes_with_their_frontier(tmp_path):
    p = pareto_points(trials()).set_index("method")
    assert p.loc["finetune", "peak_memory_mb"] == 1601.0  # the seed-median of the resident peaks
    assert p["inference_vs_finetune"].to_dict() == pytest.approx({"finetune": 1.0, "lora": 1.5, "prompt_tuning": 1.25})
    # memory: lora is cheapest and nearly as good, finetune the best; prompt tuning is dominated by lora
    assert p["frontier_peak_memory_mb"].to_dict() == {"finetune": True, "lora": True, "prompt_tuning": False}
    assert p["frontier_inference_vs_finetune"].to_dict() == {"finetune": True, "lora": False, "prompt_tuning": False}
    files = write_pareto(p.reset_index(), tmp_path)
    assert {f.name for f in files} == {"pareto.csv", "pareto.png", "pareto.svg"}
    svg = (tmp_path / "pareto.svg").read_text()
    assert COSTS["peak_memory_mb"] in svg and COSTS["inference_vs_finetune"] in svg


def test_a_gpu_peak_is_the_memory_axis_where_trials_had_one():
    t = trials().assign(peak_gpu_mb=lambda d: np.where(d["method"] == "lora", 300.0, np.nan))
    p = pareto_points(t).set_index("method")
    assert p.loc["lora", "peak_memory_mb"] == 300.0 and p.loc["finetune", "peak_memory_mb"] == 1601.0


def test_runs_from_before_the_costs_were_logged_leave_those_axes_empty(tmp_path):
    p = pareto_points(trials(with_costs=False))
    assert p["peak_memory_mb"].isna().all() and p["inference_vs_finetune"].isna().all()
    assert not p["frontier_peak_memory_mb"].any()
    svg = write_pareto(p, tmp_path, formats=("svg",))[0].read_text()
    assert COSTS["peak_memory_mb"] not in svg and COSTS["trainable_params"] in svg
