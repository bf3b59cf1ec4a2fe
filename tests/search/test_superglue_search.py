"""A short real search on CB, COPA and WSC: `peftsearch run` (a subprocess with an embedded Ray)
trains the real MiniLM checkpoint under the heldout protocol, and the summary shows every task
with its metric; MLflow holds both the selection and the reported score."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from search.spec import SpecError, parse_spec

PEFTSEARCH = [sys.executable, "-m", "search.cli"]


def spec_dict(tmp: Path, data_dir: Path, backbone: str) -> dict:
    return {
        "name": "sg",
        "backbone": backbone,
        "data": {"source": "local", "dir": str(data_dir), "protocol": "heldout"},
        "tasks": ["cb", "copa", "wsc"],
        "methods": {"finetune": {"lr": [1e-4]}},
        "seeds": [0],
        "training": {"max_epochs": 1, "patience": 1, "batch_size": 8, "max_length": 64,
                     "max_train_examples": 8, "max_eval_examples": 16},
        "resources": {"cpu": 1},
        "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"},
    }


def test_protocol_and_default_epochs_in_the_spec(tmp_path, data_dir, minilm_path):
    raw = spec_dict(tmp_path, data_dir, minilm_path)
    raw["training"] |= {"max_epochs": None, "patience": None}
    spec = parse_spec(raw)
    assert spec.data.protocol == "heldout" and spec.training.max_epochs is None
    raw["data"]["protocol"] = "test"
    with pytest.raises(SpecError, match=r"data.protocol: Input should be 'dev' or 'heldout'"):
        parse_spec(raw)


@pytest.mark.integration
def test_cb_copa_wsc_search_summary_names_each_metric(tmp_path, data_dir, minilm_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_dict(tmp_path, data_dir, minilm_path)))
    proc = subprocess.run([*PEFTSEARCH, "run", str(spec), "--out", str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=900, env=os.environ | {"PYTHONUNBUFFERED": "1"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    md = (tmp_path / "out" / "summary.md").read_text()
    for column in ("CB (acc/macro-F1)", "COPA (acc)", "WSC (acc)"):
        assert column in md
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert sorted(summary.task) == ["cb", "copa", "wsc"]

    with sa.create_engine(f"sqlite:///{tmp_path / 'mlflow.db'}").connect() as c:
        tags = pd.DataFrame(c.execute(sa.text("SELECT run_uuid, key, value FROM tags")).mappings().all())
        metrics = pd.DataFrame(c.execute(sa.text("SELECT run_uuid, key, value FROM latest_metrics")).mappings().all())
    wide = tags.pivot(index="run_uuid", columns="key", values="value")
    trials = wide[wide["mlflow.parentRunId"].notna()]
    assert len(trials) == 3 and set(trials["peftsearch.protocol"]) == {"heldout"}
    m = metrics.pivot(index="run_uuid", columns="key", values="value").loc[trials.index]
    assert m["best_dev_score"].notna().all() and m["reported_score"].notna().all()
    # One epoch, one evaluation: the reported score is that evaluation's reported-half score.
    assert (m["reported_score"] == m["report_score"]).all() and (m["best_dev_score"] == m["dev_score"]).all()
    by_task = m.join(trials["peftsearch.task"]).set_index("peftsearch.task")
    assert by_task.loc["cb", "dev_examples"] == 16 and "dev_f1_macro" in by_task.columns
