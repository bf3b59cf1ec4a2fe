"""Random/Optuna search with seed replication, pruning and retries, for real: `peftsearch run`
(a subprocess with an embedded Ray) trains a tiny config-built BERT on real RTE rows, and every
trial lands in MLflow (SQLite). The Optuna studies the search writes are checked against the
runs: each study trial's value is the seed-median of its assignment's runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.integration


def write_spec(tmp: Path, data_dir: Path, backbone: str, **over) -> Path:
    spec = {
        "name": "sampled", "backbone": backbone, "data": {"source": "local", "dir": str(data_dir)},
        "tasks": ["rte"], "methods": {"finetune": {"lr": {"low": 1e-5, "high": 1e-2, "log": True}}},
        "seeds": [0, 1],
        "training": {"max_epochs": 1, "patience": 3, "batch_size": 4, "max_length": 48,
                     "max_train_examples": 24, "max_eval_examples": 16, "eval_every": 2},
        "search": {"algorithm": "optuna", "num_samples": 3, "max_concurrent": 2},
        "resources": {"cpu": 1}, "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    } | over
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=os.environ | {"PYTHONUNBUFFERED": "1"})


def trial_runs(db: Path) -> pd.DataFrame:
    """One row per active child run: status, tags (wide) and its latest best_dev_score."""
    with sa.create_engine(f"sqlite:///{db}").connect() as c:
        q = lambda sql: pd.DataFrame(c.execute(sa.text(sql)).fetchall(), columns=sql.split(" FROM")[0]  # noqa: E731
                                     .removeprefix("SELECT ").replace("value AS ", "").split(", "))
        runs = q("SELECT run_uuid, status FROM runs WHERE lifecycle_stage = 'active'").set_index("run_uuid")
        tags = q("SELECT run_uuid, key, value FROM tags").pivot(index="run_uuid", columns="key", values="value")
        best = q("SELECT run_uuid, value AS best FROM latest_metrics WHERE key = 'best_dev_score'").set_index("run_uuid")
    wide = runs.join(tags).join(best)
    return wide[wide["mlflow.parentRunId"].notna()]


@pytest.mark.parametrize("algorithm, scheduler", [
    ("optuna", {"name": "median", "grace_period": 1, "min_samples_required": 1}),
    ("random", {"name": "asha", "grace_period": 1, "reduction_factor": 2}),
])
def test_sampled_search_with_seeds_reports_seed_medians_and_prunes(tmp_path, data_dir, tiny_bert, algorithm, scheduler):
    spec = write_spec(tmp_path, data_dir, tiny_bert, search={
        "algorithm": algorithm, "num_samples": 3, "max_concurrent": 2, "scheduler": scheduler})
    proc = run_cli("run", str(spec), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    runs = trial_runs(tmp_path / "mlflow.db")
    assert len(runs) == 6 and runs["peftsearch.trial_key"].is_unique  # 3 assignments x 2 seeds
    assert all(sorted(s) == ["0", "1"] for _, s in runs.groupby("peftsearch.config_id")["peftsearch.seed"])
    assert "RUNNING" not in set(runs.status) and "FAILED" not in set(runs.status)
    pruned = runs[runs.get("peftsearch.pruned", pd.Series(dtype=str)) == "true"]
    assert set(pruned.status) <= {"KILLED"} and set(runs[runs.status == "KILLED"].index) == set(pruned.index)

    # The study's values are what the searcher was told: each must be its assignment's seed-median.
    study = pd.read_csv(tmp_path / "out" / "study-rte-finetune.csv")
    assert len(study) == 3 and set(study.state) == {"COMPLETE"}
    with sa.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}").connect() as c:
        lr = dict(c.execute(sa.text("SELECT run_uuid, value FROM params WHERE key = 'lr'")).all())
    runs["lr"] = [float(lr[r]) for r in runs.index]
    medians = runs.groupby("lr")["best"].median()
    for _, row in study.iterrows():
        nearest = min(medians.index, key=lambda x: abs(x - row.params_lr))
        assert nearest == pytest.approx(row.params_lr) and row.value == pytest.approx(medians[nearest])
    assert sorted(study.value) == pytest.approx(sorted(medians))


def test_a_nan_loss_is_retried_then_recorded_failed_once(tmp_path, data_dir, tiny_bert):
    spec = write_spec(tmp_path, data_dir, tiny_bert, name="nan", seeds=[0],
                      methods={"finetune": {"lr": [1.0e+6]}}, search={"algorithm": "grid", "max_failures": 1})
    proc = run_cli("run", str(spec), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-4000:]  # every trial failed
    runs = trial_runs(tmp_path / "mlflow.db")
    assert len(runs) == 1  # the retry replaced the first attempt's run
    run = runs.iloc[0]
    assert run.status == "FAILED" and run["peftsearch.attempt"] == "2"
    assert "FloatingPointError: training loss is" in run["peftsearch.error"]
    assert "FloatingPointError" in run["peftsearch.earlier_errors"]
    with sa.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}").connect() as c:
        deleted = c.execute(sa.text("SELECT count(*) FROM runs WHERE lifecycle_stage = 'deleted'")).scalar()
    assert deleted == 1
