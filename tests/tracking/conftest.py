"""A small tracking database written through MLflow itself (MlflowClient: experiments, a parent
run per search, nested trial runs with the peftsearch tags and metrics), with known scores, wall
times and GPU counts, so the analysis can be checked by hand. No Ray, no training."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
from mlflow.tracking import MlflowClient

from tracking.runs import PARENT_TAG, tag

T0 = 1_700_000_000_000
BASE = {"rte": 0.60, "mrpc": 0.80}
METHOD = {"finetune": 0.05, "prompt_tuning": 0.0, "lora": 0.02}
CONFIG = {"c0": 0.0, "c1": 0.03}
WALL = {"finetune": 60.0, "prompt_tuning": 30.0, "lora": 40.0}      # seconds per trial
GPUS = {"finetune": 1.0, "prompt_tuning": 0.0, "lora": 2.0}
PARAMS = {"finetune": 22_700_000, "prompt_tuning": 3072, "lora": 150_000}


def score(task: str, method: str, config: str, seed: int) -> float:
    return round(BASE[task] + METHOD[method] + CONFIG[config] + 0.01 * seed, 4)


@dataclass(frozen=True)
class TrackingDb:
    uri: str
    parents: dict[str, str]  # experiment -> parent run id


def _search(c: MlflowClient, experiment: str, algorithm: str, grid: list[tuple[str, str]], seeds, *,
            artifacts) -> str:
    exp = c.create_experiment(experiment, artifact_location=str(artifacts / experiment))
    sid = f"{experiment}-s1"
    parent = c.create_run(exp, run_name=sid, start_time=T0, tags={
        tag("search_id"): sid, tag("role"): "search", tag("algorithm"): algorithm}).info.run_id
    for task, method in grid:
        for config in CONFIG:
            for seed in seeds:
                _trial(c, exp, parent, sid, task=task, method=method, config=config, seed=seed)
    c.set_terminated(parent, "FINISHED", end_time=T0 + 10_000_000)
    return parent


def _trial(c, exp, parent, sid, *, task, method, config, seed, status="FINISHED") -> str:
    tags = {PARENT_TAG: parent, tag("method"): method, tag("task"): task, tag("backbone"): "tiny/bert",
            tag("seed"): str(seed), tag("config_id"): f"{method}-{config}", tag("search_id"): sid,
            tag("metric"): "acc" if task == "rte" else "f1", tag("gpus"): str(GPUS[method]), tag("cpus"): "1.0"}
    if task == "rte":  # only RTE trials ran under a held-out protocol and have a reported score
        tags[tag("protocol")] = "heldout"
    run = c.create_run(exp, start_time=T0, tags=tags).info.run_id
    s = score(task, method, config, seed)
    for k, v in {"best_dev_score": s, "train_seconds": WALL[method] - 5, "trainable_params": PARAMS[method]}.items():
        c.log_metric(run, k, v, step=10)
    if task == "rte":
        c.log_metric(run, "reported_score", s - 0.1, step=10)
    c.set_terminated(run, status, end_time=T0 + int(WALL[method] * 1000))
    return run


@pytest.fixture(scope="session")
def tracking_db(tmp_path_factory) -> TrackingDb:
    tmp = tmp_path_factory.mktemp("tracking")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri)
    grid = [(t, m) for t in ("rte", "mrpc") for m in ("finetune", "prompt_tuning")]
    a = _search(c, "exp-a", "grid", grid, seeds=(0, 1, 2), artifacts=tmp / "artifacts")
    exp_a = c.get_experiment_by_name("exp-a").experiment_id
    _trial(c, exp_a, a, "exp-a-s1", task="rte", method="finetune", config="c1", seed=9, status="FAILED")
    deleted = _trial(c, exp_a, a, "exp-a-s1", task="rte", method="finetune", config="c1", seed=8)
    c.delete_run(deleted)
    b = _search(c, "exp-b", "tpe", [("rte", "lora")], seeds=(0, 1), artifacts=tmp / "artifacts")
    return TrackingDb(uri, {"exp-a": a, "exp-b": b})


@pytest.fixture(scope="session")
def postgres_uri(postgres_server) -> str:
    return postgres_server("tracking")
