"""Real searches on the papers' other families: `peftsearch run` (a subprocess with an embedded
Ray, MLflow on SQLite) on real RTE and CB, with prompt tuning, EPT, DePT and LoRA on a tiny T5
(text-to-text, rank classification) and a tiny GPT-2 on both decoder routes (a head on the last
real token; LM scoring of label words). Each run records its task format, and the summary and
EVP outputs name it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from trainers.testing import build_tiny_backbone, glue_texts

PEFTSEARCH = [sys.executable, "-m", "search.cli"]
METHODS = {"prompt_tuning": {"lr": [0.3], "prompt_length": 4}, "ept": {"lr": [0.3]},
           "dept": {"lr": [0.3], "lr2": 1e-3, "prompt_length": 2, "rank": 2},
           "lora": {"lr": [1e-3]}}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir):
    root, texts = tmp_path_factory.mktemp("gen-search"), glue_texts(data_dir, limit=400)
    return {a: build_tiny_backbone(a, root / a, texts, vocab=400) for a in ("t5", "gpt2")}


def run_search(tmp: Path, data_dir: Path, backbone: str, task_format: str) -> subprocess.CompletedProcess:
    spec = {"name": f"gen-{task_format}", "backbone": backbone, "task_format": task_format,
            "data": {"source": "local", "dir": str(data_dir)}, "tasks": ["rte", "cb"], "methods": METHODS,
            "seeds": [0],
            "training": {"max_epochs": 1, "patience": 1, "batch_size": 8, "max_length": 96,
                         "max_train_examples": 16, "max_eval_examples": 16, "adam_eps": 1e-6, "betas": [0.9, 0.98]},
            "resources": {"cpu": 1}, "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"}}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    return subprocess.run([*PEFTSEARCH, "run", str(tmp / "spec.yaml"), "--out", str(tmp / "out")], cwd=tmp,
                          capture_output=True, text=True, timeout=900, env=os.environ | {"PYTHONUNBUFFERED": "1"})


@pytest.mark.integration
@pytest.mark.parametrize("arch, task_format, expected", [
    ("t5", "auto", "seq2seq-lm"), ("gpt2", "head", "decoder-head"), ("gpt2", "lm", "decoder-lm")])
def test_a_search_on_t5_and_gpt2_records_and_names_its_task_format(tmp_path, data_dir, tiny, arch, task_format,
                                                                   expected):
    proc = run_search(tmp_path, data_dir, tiny[arch], task_format)
    assert proc.returncode == 0, proc.stderr[-4000:]
    with sa.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}").connect() as c:
        tags = pd.DataFrame(c.execute(sa.text("SELECT run_uuid, key, value FROM tags")).mappings().all())
        status = dict(c.execute(sa.text("SELECT run_uuid, status FROM runs")).all())
        metrics = pd.DataFrame(c.execute(sa.text("SELECT run_uuid, key, value FROM latest_metrics")).mappings().all())
    wide = tags.pivot(index="run_uuid", columns="key", values="value")
    trials = wide[wide["mlflow.parentRunId"].notna()]
    assert len(trials) == 8 and {status[r] for r in trials.index} == {"FINISHED"}
    assert set(trials["peftsearch.task_format"]) == {expected}
    m = metrics.pivot(index="run_uuid", columns="key", values="value").loc[trials.index]
    assert m["best_dev_score"].between(0, 1).all() and (m["trainable_params"] > 0).all()

    out = tmp_path / "out"
    summary = pd.read_csv(out / "summary.csv")
    assert summary["backbone"].str.endswith(f"[{expected}]").all() and len(summary) == 8
    assert f"[{expected}]" in (out / "summary.md").read_text()
    assert pd.read_csv(out / "evp.csv", comment="#")["backbone"].str.endswith(f"[{expected}]").all()
