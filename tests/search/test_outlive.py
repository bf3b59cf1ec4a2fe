"""A search outlives its trials, and a stopped driver leaves nothing RUNNING.

Real searches (`peftsearch run` in a subprocess, embedded Ray, MLflow on SQLite, a tiny BERT on
real RTE rows). One trial's Ray worker is killed by SIGKILL mid-training, standing in for Ray's
memory monitor; the driver itself gets SIGTERM in the second test, and `resume` finishes it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest
import sqlalchemy as sa
import yaml

pytestmark = pytest.mark.integration


def spec_file(tmp: Path, data_dir: Path, backbone: str, name: str) -> Path:
    spec = {"name": name, "backbone": backbone, "data": {"source": "local", "dir": str(data_dir)},
            "tasks": ["rte"], "methods": {"finetune": {"lr": [1e-4, 3e-4]}}, "seeds": [0, 1],
            "training": {"max_epochs": 40, "patience": 40, "batch_size": 8, "max_length": 32,
                         "max_train_examples": 48, "max_eval_examples": 16},
            "search": {"max_failures": 0}, "resources": {"cpu": 1}, "tracking": {"uri": f"sqlite:///{tmp / 'mlflow.db'}"}}
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


class Search:
    """`peftsearch ARGS` in a subprocess, its stderr collected line by line as it comes."""

    def __init__(self, *args: str, cwd: Path, mark: str) -> None:
        env = os.environ | {"PYTHONUNBUFFERED": "1", "PEFTSEARCH_TEST_MARK": mark}
        self.proc = subprocess.Popen([sys.executable, "-m", "search.cli", *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)  # its own process group, as a terminal's job is
        self.lines: list[str] = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stderr.readline, "")), daemon=True)
        self._reader.start()

    def wait_for(self, text: str, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)[-3000:]
            assert time.monotonic() < deadline, f"no {text!r} in time:\n" + "".join(self.lines)[-3000:]
            time.sleep(0.2)

    def finish(self, timeout: float = 900) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        return rc

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def trial_workers(mark: str) -> list[psutil.Process]:
    """Ray workers running a trial of this test's search (they inherit its marker variable)."""
    found = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            title = " ".join(p.info["cmdline"] or []) + (p.info["name"] or "")
            if "ImplicitFunc" in title and p.environ().get("PEFTSEARCH_TEST_MARK") == mark:
                found.append(p)
        except psutil.Error:
            continue
    return found


def runs_of(db: Path, experiment: str) -> pd.DataFrame:
    with sa.create_engine(f"sqlite:///{db}").connect() as c:
        rows = c.execute(sa.text(
            "SELECT r.run_uuid, r.status, r.lifecycle_stage, t.key, t.value FROM runs r "
            "JOIN experiments e ON e.experiment_id = r.experiment_id LEFT JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE e.name = :n"), {"n": experiment}).mappings().all()
    df = pd.DataFrame(rows)
    wide = df.pivot_table(index="run_uuid", columns="key", values="value", aggfunc="first")
    return wide.join(df.groupby("run_uuid")[["status", "lifecycle_stage"]].first())


def test_a_trial_killed_by_signal_fails_with_its_reason_and_the_search_completes(tmp_path, data_dir, tiny_bert):
    mark = uuid.uuid4().hex
    search = Search("run", str(spec_file(tmp_path, data_dir, tiny_bert, "killed")), "--out", "out", cwd=tmp_path, mark=mark)
    search.wait_for("  eval ")  # a trial is mid-training
    workers = trial_workers(mark)
    assert workers, "no trial worker found"
    workers[0].send_signal(signal.SIGKILL)  # what Ray's memory monitor does to a worker
    rc = search.finish()
    assert rc == 3, search.stderr[-3000:]  # the search completed; some trial failed
    assert "3 finished, 1 failed" in search.stderr and "Traceback" not in search.stderr
    assert (tmp_path / "out" / "summary.csv").exists()
    runs = runs_of(tmp_path / "mlflow.db", "killed")
    trials = runs[runs["mlflow.parentRunId"].notna() & (runs.lifecycle_stage == "active")]
    assert sorted(trials.status) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    reason = trials[trials.status == "FAILED"]["peftsearch.error"].iloc[0]
    assert reason.startswith("the trial failed in Ray:") and ("died" in reason.lower() or "exit" in reason.lower()), reason
    parent = runs[runs["peftsearch.role"] == "search"].iloc[0]
    assert parent.status == "FINISHED" and parent["peftsearch.incomplete"] == "1 of 4 trials failed"


def test_sigterm_kills_the_owned_runs_prints_the_resume_line_and_resume_finishes(tmp_path, data_dir, tiny_bert):
    mark = uuid.uuid4().hex
    search = Search("run", str(spec_file(tmp_path, data_dir, tiny_bert, "stopped")), "--out", "out", cwd=tmp_path, mark=mark)
    search.wait_for("✓ [1/4]")
    search.wait_for("  eval ", timeout=300)
    search.proc.send_signal(signal.SIGTERM)
    rc = search.finish(timeout=300)
    assert rc == 143, search.stderr[-3000:]
    last = search.stderr.strip().splitlines()[-1]
    assert last.startswith("peftsearch: interrupted; ") and last.endswith(f"resume with: peftsearch resume {tmp_path / 'out'}")
    assert "Traceback" not in search.stderr
    runs = runs_of(tmp_path / "mlflow.db", "stopped")
    active = runs[runs.lifecycle_stage == "active"]
    assert "RUNNING" not in set(active.status)
    parent = active[active["peftsearch.role"] == "search"].iloc[0]
    assert parent.status == "KILLED" and parent["peftsearch.incomplete"] == "the driver was interrupted"
    assert "KILLED" in set(active[active["mlflow.parentRunId"].notna()].status)
    evp = subprocess.run([sys.executable, "-m", "search.cli", "evp", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}",
                          "--experiment", "stopped", "--out", str(tmp_path / "partial")], capture_output=True, text=True,
                         timeout=300)
    assert evp.returncode == 0 and "is incomplete (the driver was interrupted)" in evp.stderr, evp.stderr

    resumed = Search("resume", "out", cwd=tmp_path, mark=mark)
    assert resumed.finish() == 0, resumed.stderr[-3000:]
    counts = [line.split("[", 1)[1].split("/", 1)[0] for line in resumed.lines if line.startswith("✓ [")]
    assert counts and int(counts[0]) >= 2 and counts[-1] == "4"  # the counter continues across the resume
    assert "wrote " in resumed.stderr and "MLflow UI: mlflow ui --backend-store-uri" in resumed.stderr
    runs = runs_of(tmp_path / "mlflow.db", "stopped")
    trials = runs[runs["mlflow.parentRunId"].notna() & (runs.lifecycle_stage == "active")]
    assert sorted(trials.status) == ["FINISHED"] * 4
    replaced = runs[runs.lifecycle_stage == "deleted"]
    assert len(replaced) >= 1 and set(replaced.status) == {"KILLED"}  # replaced attempts ended KILLED first
    parent = runs[runs["peftsearch.role"] == "search"].iloc[0]
    assert parent.status == "FINISHED" and parent["peftsearch.incomplete"] == "false"


def test_ctrl_c_to_the_whole_process_group_kills_the_owned_runs_and_prints_the_resume_line(tmp_path, data_dir,
                                                                                          tiny_bert):
    """Ctrl-C at a terminal sends SIGINT to every process of the foreground job: the driver and
    whatever it started in its group, Ray's local processes included."""
    mark = uuid.uuid4().hex
    search = Search("run", str(spec_file(tmp_path, data_dir, tiny_bert, "ctrl-c")), "--out", "out", cwd=tmp_path, mark=mark)
    search.wait_for("  eval ")
    os.killpg(search.proc.pid, signal.SIGINT)
    rc = search.finish(timeout=300)
    assert rc == 130, search.stderr[-3000:]
    last = search.stderr.strip().splitlines()[-1]
    assert last.startswith("peftsearch: interrupted; ") and last.endswith(f"resume with: peftsearch resume {tmp_path / 'out'}")
    assert "Traceback" not in search.stderr and "KeyboardInterrupt" not in search.stderr
    runs = runs_of(tmp_path / "mlflow.db", "ctrl-c")
    active = runs[runs.lifecycle_stage == "active"]
    assert "RUNNING" not in set(active.status)
    assert active[active["peftsearch.role"] == "search"].iloc[0].status == "KILLED"
