"""Provenance in MLflow from a real search (`peftsearch run`, embedded Ray, real RTE files, a tiny
config-built BERT, training.save_model): each trial's datasets with the digests of the files read,
the backbone hash, package versions, device and allocator settings; the saved artefact as an MLflow 3 logged model
linked to its run; the experiment kind; and MLflow's own UI in headless Chromium showing the
trial's Dataset column and the logged model."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

from tracking import browser
from tracking.provenance import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def search(tmp_path_factory, data_dir, tiny_bert):
    tmp = tmp_path_factory.mktemp("provenance")
    spec = {"name": "prov", "backbone": tiny_bert, "data": {"source": "local", "dir": str(data_dir)},
            "tasks": ["rte"], "methods": {"bitfit": {"lr": [1e-3]}}, "seeds": [0],
            "training": {"max_epochs": 1, "patience": 1, "batch_size": 8, "max_length": 64, "max_train_examples": 16,
                         "max_eval_examples": 16, "save_model": True},
            "resources": {"cpu": 1, "malloc": "lean"}, "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"}}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "search.cli", "run", str(tmp / "spec.yaml"), "--out", str(tmp / "out")],
                          cwd=tmp, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    c = MlflowClient(spec["tracking"]["uri"])
    exp = c.get_experiment_by_name("prov")
    (trial,) = [r for r in c.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags]
    return spec["tracking"]["uri"], exp, trial, tmp


def test_trial_logs_its_datasets_with_file_digests(search, data_dir):
    _, _, trial, _ = search
    inputs = {i.tags[0].value: i.dataset for i in trial.inputs.dataset_inputs}
    assert set(inputs) == {"train", "dev"}
    for split, name in (("train", "train.tsv"), ("dev", "dev.tsv")):
        path = Path(data_dir) / "glue" / "RTE" / name
        assert inputs[split].name == "glue/rte" and inputs[split].source_type == "local"
        assert inputs[split].digest == hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def test_trial_logs_backbone_hash_versions_and_device(search, tiny_bert):
    _, _, trial, _ = search
    tags = trial.data.tags
    h = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json", "vocab.txt"):
        if (Path(tiny_bert) / name).is_file():
            h.update(f"{name}:{hashlib.sha256((Path(tiny_bert) / name).read_bytes()).hexdigest()}".encode())
    assert tags["peftsearch.backbone_hash"] == "sha256:" + h.hexdigest()[:16]
    import torch

    assert tags["peftsearch.version.torch"] == torch.__version__
    assert {"transformers", "peft", "ray", "mlflow", "peftsearch"} <= {k.split(".")[-1] for k in tags if ".version." in k}
    assert tags["peftsearch.device"].startswith("cpu")
    # resources.malloc: lean reached the trial's worker through Ray's runtime_env, at its start
    assert "MALLOC_MMAP_THRESHOLD_=2097152" in tags["peftsearch.malloc"], tags["peftsearch.malloc"]
    assert "GLIBC_TUNABLES=glibc.malloc.hugetlb=1" in tags["peftsearch.malloc"], tags["peftsearch.malloc"]


def test_saved_artefact_is_a_logged_model_of_its_run_and_kind_is_set(search):
    uri, exp, trial, _ = search
    c = MlflowClient(uri)
    models = c.search_logged_models(experiment_ids=[exp.experiment_id])
    assert [m.source_run_id for m in models] == [trial.info.run_id]
    assert models[0].status.name == "READY" if hasattr(models[0].status, "name") else str(models[0].status) == "READY"
    assert [o.model_id for o in c.get_run(trial.info.run_id).outputs.model_outputs] == [models[0].model_id]
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


@pytest.fixture(scope="module")
def ui(search):
    uri, exp, trial, tmp = search
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within 300s")
        yield base, exp, trial, tmp
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for(d, text: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.find_element("tag name", "body").text:
            return True
        time.sleep(1)
    return False


@pytest.mark.skipif(not browser.available(), reason="needs Debian's chromium and chromium-driver (apt)")
def test_mlflow_ui_shows_the_dataset_and_the_logged_model(ui):
    """MLflow 3.17's web app picks its view from the workflowType URL parameter (or the browser's
    saved choice), so the link opens the training view explicitly; the experiment's kind tag is
    what the app reads where its GenAI/training switch is off."""
    base, exp, trial, tmp = ui
    view = "workflowType=machine_learning"
    d = browser.driver()
    try:
        d.get(f"{base}/#/experiments/{exp.experiment_id}/runs?{view}")
        assert _wait_for(d, "Run Name"), d.find_element("tag name", "body").text[:2000]
        assert "Dataset" in d.find_element("tag name", "body").text  # the runs table's Dataset column
        d.save_screenshot(str(tmp / "mlflow-runs.png"))
        digest = {i.tags[0].value: i.dataset.digest for i in trial.inputs.dataset_inputs}["train"]
        d.get(f"{base}/#/experiments/{exp.experiment_id}/runs/{trial.info.run_id}?{view}")
        assert _wait_for(d, f"glue/rte ({digest})"), d.find_element("tag name", "body").text[:2000]
        d.save_screenshot(str(tmp / "mlflow-trial.png"))
        d.get(f"{base}/#/experiments/{exp.experiment_id}/models?{view}")
        assert _wait_for(d, "rte-bitfit"), d.find_element("tag name", "body").text[:2000]
        body = d.find_element("tag name", "body").text
        assert "Ready" in body and trial.info.run_name in body  # the model, logged from the trial
        d.save_screenshot(str(tmp / "mlflow-models.png"))
    finally:
        d.quit()
