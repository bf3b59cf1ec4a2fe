"""`training.save_model`: a real search (`peftsearch run`, embedded Ray, real RTE and CB) logs each
trial's inference artefact to MLflow. Downloaded back, the artefact alone rebuilds a model that
scores exactly the trial's logged best dev score, and AoT artefacts of two tasks serve one batch
that mixes both tasks."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from trainers.artefact import load_artefact
from trainers.config import DataConfig
from trainers.data import make_loader, subsample
from trainers.loop import evaluate
from trainers.methods.aot_multitask import MultiTaskAoT
from trainers.splits import load_sets
from trainers.tasks import TASKS

pytestmark = pytest.mark.integration
EVAL = 32


@pytest.fixture(scope="module")
def search(tmp_path_factory, data_dir, tiny_bert):
    tmp = tmp_path_factory.mktemp("saved")
    spec = {
        "name": "saved", "backbone": tiny_bert,
        "data": {"source": "local", "dir": str(data_dir)},
        "tasks": ["rte", "cb"],
        "methods": {"aot_fc": {"lr": [1e-2], "rank": [8], "dropout": [0.0]}},
        "seeds": [0],
        "training": {"max_epochs": 2, "patience": 2, "batch_size": 8, "max_length": 64, "max_train_examples": 16,
                     "max_eval_examples": EVAL, "save_model": True},
        "resources": {"cpu": 1},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    }
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "search.cli", "run", str(tmp / "spec.yaml"), "--out", str(tmp / "out")],
                          cwd=tmp, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    c = MlflowClient(spec["tracking"]["uri"])
    exp = c.get_experiment_by_name("saved").experiment_id
    trials = {r.data.tags["peftsearch.task"]: r for r in c.search_runs([exp])
              if "mlflow.parentRunId" in r.data.tags}
    dirs = {task: c.download_artifacts(r.info.run_id, "model", str(tmp / task)) for task, r in trials.items()}
    return trials, dirs


def test_each_trial_logs_an_artefact_that_reproduces_its_best_dev_score(search, data_dir):
    trials, dirs = search
    assert sorted(trials) == ["cb", "rte"]
    for task_name, run in trials.items():
        assert run.info.status == "FINISHED"
        trained = load_artefact(dirs[task_name])
        assert trained.meta["method"] == "aot_fc" and trained.meta["task"] == task_name
        assert trained.model.edit.fused is not None  # saved in inference form: the fused tables
        task = TASKS[task_name]
        dev = subsample(load_sets(task, DataConfig(source="local", dir=str(data_dir))).select, EVAL, 0)
        loader = make_loader(dev, trained.tokenizer, max_length=64, batch_size=EVAL, fmt=task.format,
                             regression=task.is_regression, shuffle=False, seed=0)
        assert evaluate(trained.model, loader, task, "cpu")["score"] == run.data.metrics["best_dev_score"]


def test_two_tasks_artefacts_serve_one_mixed_batch(search, data_dir, tiny_bert):
    _, dirs = search
    multi = MultiTaskAoT.load(tiny_bert, {"rte": dirs["rte"], "cb": dirs["cb"]})
    rows = [*TASKS["rte"].load("dev", source="local", data_dir=str(data_dir))[:3],
            *TASKS["cb"].load("dev", source="local", data_dir=str(data_dir))[:3]]
    task_ids = torch.tensor([0, 0, 0, 1, 1, 1])
    trained = {t: load_artefact(d) for t, d in dirs.items()}
    inputs = dict(trained["rte"].tokenizer([r.text_a for r in rows], [r.text_b for r in rows], return_tensors="pt",
                                           padding=True, truncation=True, max_length=64))
    out = multi(**inputs, task_ids=task_ids)
    with torch.no_grad():
        for task, (idx, logits) in out.items():
            alone = trained[task].model(**{k: v[idx] for k, v in inputs.items()}).logits
            assert logits.shape == (3, TASKS[task].head_size)
            torch.testing.assert_close(logits, alone, atol=1e-5, rtol=1e-4)
