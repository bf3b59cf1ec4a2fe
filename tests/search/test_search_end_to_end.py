"""The whole path, for real: `peftsearch run` (a subprocess, with an embedded Ray) trains the
real MiniLM checkpoint on real RTE rows, records nested MLflow runs in SQLite, and writes EVP and
summary files; `mlflow server` then serves those runs over HTTP."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import sqlalchemy as sa
import yaml


pytestmark = pytest.mark.integration
PEFTSEARCH = [sys.executable, "-m", "search.cli"]


def small_spec(tmp: Path, data_dir: Path, backbone: str, *, tasks=("rte",), name="e2e") -> Path:
    spec = {
        "name": name,
        "backbone": backbone,
        "data": {"source": "local", "dir": str(data_dir)},
        "tasks": list(tasks),
        "methods": {"finetune": {"lr": [5e-5, 2e-4]}, "prompt_tuning": {"lr": [3e-2], "prompt_length": [4, 8]}},
        "seeds": [0, 1],
        "training": {"max_epochs": 2, "patience": 2, "batch_size": 8, "max_length": 64,
                     "max_train_examples": 16, "max_eval_examples": 32},
        "resources": {"cpu": 1},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    }
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*PEFTSEARCH, *args], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env=os.environ | {"PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def search(tmp_path_factory, data_dir, minilm_path):
    tmp = tmp_path_factory.mktemp("search")
    proc = run_cli("run", str(small_spec(tmp, data_dir, minilm_path)), "--out", str(tmp / "out"), cwd=tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return tmp, proc


def query(db: Path, sql: str, **params) -> pd.DataFrame:
    with sa.create_engine(f"sqlite:///{db}").connect() as c:
        return pd.DataFrame(c.execute(sa.text(sql), params).mappings().all())


def test_every_trial_is_a_nested_finished_run_with_the_contract_tags(search, minilm_path):
    tmp, proc = search
    db = tmp / "mlflow.db"
    runs = query(db, "SELECT r.run_uuid, r.status, r.name FROM runs r JOIN experiments e "
                     "ON e.experiment_id = r.experiment_id WHERE e.name = 'e2e'")
    tags = query(db, "SELECT run_uuid, key, value FROM tags").pivot(index="run_uuid", columns="key", values="value")
    parents = tags[tags["peftsearch.role"] == "search"]
    assert len(parents) == 1 and len(runs) == 9
    parent_id = parents.index[0]
    children = tags[tags["mlflow.parentRunId"] == parent_id]
    assert len(children) == 8  # (2 + 2 assignments) x 2 seeds
    assert set(runs.set_index("run_uuid").loc[children.index, "status"]) == {"FINISHED"}
    assert set(children["peftsearch.method"]) == {"finetune", "prompt_tuning"}
    assert set(children["peftsearch.task"]) == {"rte"} and set(children["peftsearch.seed"]) == {"0", "1"}
    assert set(children["peftsearch.backbone"]) == {minilm_path}
    assert children.groupby("peftsearch.config_id")["peftsearch.seed"].nunique().eq(2).all()
    assert children["peftsearch.config_id"].nunique() == 4
    assert children["peftsearch.search_id"].nunique() == 1
    assert set(children["peftsearch.gpus"]) == {"0.0"} and set(children["peftsearch.cpus"]) == {"1.0"}

    metrics = query(db, "SELECT run_uuid, key, value, step FROM metrics")
    one = metrics[metrics.run_uuid == children.index[0]]
    assert sorted(one[one.key == "dev_score"].step) == [2, 4]  # every evaluation, with its step
    assert {"best_dev_score", "trainable_params", "train_seconds", "train_loss", "dev_accuracy"} <= set(one.key)
    params = query(db, "SELECT run_uuid, key, value FROM params")
    pt = children[children["peftsearch.method"] == "prompt_tuning"].index[0]
    p = params[params.run_uuid == pt].set_index("key")["value"]
    assert p["prompt_length"] in ("4", "8") and p["lr"] == "0.03" and p["init"] == "vocab"
    best = metrics[(metrics.run_uuid == pt) & (metrics.key == "trainable_params")]["value"].iloc[-1]
    assert best == int(p["prompt_length"]) * 384  # p * d on MiniLM
    assert "✓ [8/8]" in proc.stderr and "eval " in proc.stderr  # progress was shown


def test_evp_and_summary_files(search):
    tmp, _ = search
    out = tmp / "out"
    evp = pd.read_csv(out / "evp.csv")
    assert {"task", "method", "backbone", "k", "evp", "evp_std"} <= set(evp.columns)
    for method, g in evp.groupby("method"):
        assert list(g.k) == [1, 2, 3, 4] and g.evp.is_monotonic_increasing
    summary = pd.read_csv(out / "summary.csv")
    assert {"task", "method", "backbone", "config_id", "median", "std", "n_seeds"} <= set(summary.columns)
    assert len(summary) == 2 and set(summary.n_seeds) == {2}
    md = (out / "summary.md").read_text()
    assert "RTE (acc)" in md and "Macro" in md and "prompt_tuning" in md
    assert (out / "evp.png").stat().st_size > 10_000


def test_cli_analysis_commands_agree_with_the_search_outputs(search):
    tmp, _ = search
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    again = tmp / "again"
    for cmd in ("evp", "summary"):
        proc = run_cli(cmd, "--tracking-uri", uri, "--experiment", "e2e", "--out", str(again), cwd=tmp)
        assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_csv(again / "evp.csv"), pd.read_csv(tmp / "out" / "evp.csv"))
    proc = run_cli("evp", "--tracking-uri", uri, "--experiment", "nope", "--out", str(again), cwd=tmp)
    assert proc.returncode == 2 and "no experiment named 'nope'" in proc.stderr


def test_mlflow_server_serves_the_nested_runs(search, free_port):
    tmp, _ = search
    port = free_port
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    server = subprocess.Popen([mlflow, "server", "--backend-store-uri", f"sqlite:///{tmp / 'mlflow.db'}",
                               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if requests.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except (requests.ConnectionError, requests.Timeout):  # a loaded machine answers slowly
                time.sleep(0.5)
        exp = requests.get(f"{base}/api/2.0/mlflow/experiments/get-by-name",
                           params={"experiment_name": "e2e"}, timeout=10).json()["experiment"]
        parent = requests.post(f"{base}/api/2.0/mlflow/runs/search", timeout=10, json={
            "experiment_ids": [exp["experiment_id"]], "filter": "tags.`peftsearch.role` = 'search'"}).json()["runs"]
        assert len(parent) == 1
        children = requests.post(f"{base}/api/2.0/mlflow/runs/search", timeout=10, json={
            "experiment_ids": [exp["experiment_id"]],
            "filter": f"tags.mlflow.parentRunId = '{parent[0]['info']['run_id']}' and tags.`peftsearch.method` = 'finetune'",
        }).json()["runs"]
        assert len(children) == 4 and all(r["info"]["status"] == "FINISHED" for r in children)
        artifacts = requests.get(f"{base}/api/2.0/mlflow/artifacts/list", timeout=10, params={
            "run_id": parent[0]["info"]["run_id"], "path": "analysis"}).json()
        assert {"analysis/evp.png", "analysis/summary.md"} <= {f["path"] for f in artifacts["files"]}
        assert "<html" in requests.get(base, timeout=10).text.lower()  # the UI itself
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path, data_dir, tiny_bert):
    """One task's data file is broken: its trials end FAILED with the reason; the rest finish."""
    data = tmp_path / "data" / "glue"
    shutil.copytree(data_dir / "glue" / "RTE", data / "RTE")
    (data / "MRPC").mkdir(parents=True)
    (data / "MRPC" / "train.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tonly four\n")
    (data / "MRPC" / "dev.tsv").write_text("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\ta\tb\n")
    spec = small_spec(tmp_path, tmp_path / "data", tiny_bert, tasks=("rte", "mrpc"), name="partial")
    proc = run_cli("run", str(spec), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr[-3000:]  # completed, with failed trials
    assert "8 finished, 8 failed" in proc.stderr
    tags = query(tmp_path / "mlflow.db", "SELECT t.run_uuid, t.key, t.value, r.status FROM tags t "
                 "JOIN runs r ON r.run_uuid = t.run_uuid")
    wide = tags.pivot(index="run_uuid", columns="key", values="value").join(
        tags.groupby("run_uuid")["status"].first())
    trials = wide[wide["mlflow.parentRunId"].notna()]
    failed = trials[trials.status == "FAILED"]
    assert set(failed["peftsearch.task"]) == {"mrpc"} and len(failed) == 8
    assert failed["peftsearch.error"].str.contains("train.tsv:2: expected at least 5 tab-separated columns").all()
    assert set(trials[trials.status == "FINISHED"]["peftsearch.task"]) == {"rte"}
    assert (tmp_path / "out" / "summary.csv").exists()  # the analysis still ran on what finished
