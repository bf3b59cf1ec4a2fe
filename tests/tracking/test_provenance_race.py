"""Trials of one task that start together all log the same MLflow datasets (experiment, name,
digest). MLflow's ``log_inputs`` looks the dataset up and inserts it when missing, so the losers
of that race get a unique-constraint violation; CI saw a trial fail on it, on SQLite and on
PostgreSQL. Here real threads race on a real store, each with its own client."""
from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from tracking import provenance, runs
from trainers.config import DataConfig, OptimConfig, TrainingConfig, TrialConfig

RACERS = 8


@pytest.fixture(params=["sqlite", "postgresql"])
def uri(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'mlflow.db'}"
    return request.getfixturevalue("postgres_server")("provenance_race")


def test_trials_starting_together_each_record_every_dataset_once(uri, tiny_bert, data_dir):
    cfg = TrialConfig(task="rte", method="finetune", backbone=tiny_bert, seed=0, optim=OptimConfig(lr=1e-3),
                      training=TrainingConfig(max_train_examples=8, max_eval_examples=8),
                      data=DataConfig(source="local", dir=str(data_dir)))
    c = runs.client(uri)
    exp = runs.ensure_experiment(c, "race")
    run_ids = [c.create_run(exp, run_name=f"t{i}").info.run_id for i in range(RACERS)]
    start, errors = threading.Barrier(RACERS), []

    def trial(run_id: str) -> None:
        client = runs.client(uri)  # a trial's own client, as in a Ray worker
        start.wait()
        try:
            provenance.log_trial_provenance(client, run_id, cfg)
        except Exception as e:  # noqa: BLE001 - collected, asserted below
            errors.append(e)

    threads = [threading.Thread(target=trial, args=(r,)) for r in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    for run_id in run_ids:
        inputs = c.get_run(run_id).inputs.dataset_inputs
        assert sorted(i.tags[0].value for i in inputs) == ["dev", "train"]
        assert c.get_run(run_id).data.tags["peftsearch.backbone_hash"]
    with sa.create_engine(uri).connect() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM datasets WHERE experiment_id = :e"), {"e": int(exp)}).scalar()
    assert n == 2  # train and dev, each inserted once for the experiment
