"""`peftsearch bench width`: Ray Tune with many short trials at once, on a loopback cluster.

A Ray head (no CPUs: it runs the driver only) and worker nodes, each a separate `ray start`
process; PostgreSQL and an `mlflow server` for tracking, all on 127.0.0.1. The search is W
short real trials (a tiny config-built BERT on real RTE rows), each asking for a fraction of a
CPU so that all W run at once. The driver (`peftsearch run`, a separate process) is killed with
SIGKILL once half the search's Tune results are in; `peftsearch resume` finishes the search. Measured:

- the driver's CPU seconds per Tune result (psutil), before the kill and in the resume;
- the cost of Tune's experiment-state snapshots: every call of Tune's
  ``_ExperimentCheckpointManager.sync_up_experiment_state`` in the driver is timed (calls, total
  seconds), under TUNE_GLOBAL_CHECKPOINT_S (``auto`` by default). Tune calls it on every loop
  step; most calls return at once (the period has not elapsed), so the seconds are the cost;
- in PostgreSQL at the end: one FINISHED run per trial, no other.

Memory: every trial is a Ray worker process holding torch and transformers, about 450 MB of
private memory each: 64 at once need about 30 GB.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tracking.servers import MlflowServer, Postgres, free_port, stop_group, wait_for
from trainers.machine import load_average


def _timed_snapshots(stats: Path) -> None:
    """Time each experiment-state snapshot of this driver; the file survives a SIGKILL."""
    from ray.tune.execution import experiment_state

    cls = experiment_state._ExperimentCheckpointManager
    original = cls.sync_up_experiment_state
    seen = {"calls": 0, "seconds": 0.0}

    def timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            seen["calls"] += 1
            seen["seconds"] += time.perf_counter() - t0
            # Written beside and renamed over: a SIGKILL mid-write leaves the last whole snapshot, never an empty file.
            part = stats.with_suffix(".part")
            part.write_text(json.dumps(seen))
            os.replace(part, stats)

    cls.sync_up_experiment_state = timed


def _driver(argv: list[str]) -> None:
    """`python -m search.bench_width run|resume OUT STATS ADDRESS [SPEC]`: a search driver."""
    from search.runner import resume_search, run_search
    from search.spec import load_spec

    what, out, stats, address = argv[:4]
    _timed_snapshots(Path(stats))
    if what == "run":
        run_search(load_spec(argv[4]), out_dir=Path(out), address=address)
    else:
        resume_search(Path(out), address=address)


class _Nodes:
    """A Ray head with no CPUs and worker nodes, each in its own process group."""

    def __init__(self, workers: int, cpus: float) -> None:
        self.temp = tempfile.mkdtemp(prefix="rw", dir="/tmp")  # Ray's socket paths must stay short
        self.temps = [self.temp]
        self.gcs = free_port()
        self.procs = [self._start("--head", f"--port={self.gcs}", "--num-cpus=0", "--include-dashboard=false",
                                  f"--temp-dir={self.temp}")]
        time.sleep(5)
        for k in range(workers):
            self.temps.append(tempfile.mkdtemp(prefix=f"rw{k}-", dir="/tmp"))
            self.procs.append(self._start(f"--address=127.0.0.1:{self.gcs}", f"--num-cpus={cpus:g}",
                                          f"--temp-dir={self.temps[-1]}"))
        # Each check is a new Ray client: tens of seconds on a loaded machine.
        wait_for(lambda: self._cpus() >= workers * cpus, "the worker nodes joining", 900)

    def _start(self, *args: str) -> subprocess.Popen:
        bin_dir = Path(sys.executable).parent
        return subprocess.Popen([str(bin_dir / "ray"), "start", "--block", "--num-gpus=0", "--disable-usage-stats",
                                 "--object-store-memory=100000000", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True,
                                env=os.environ | {"PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"})

    def _cpus(self) -> float:
        out = subprocess.run([sys.executable, "-c", f"import ray; ray.init(address='127.0.0.1:{self.gcs}', "
                              "logging_level='ERROR'); print(ray.cluster_resources().get('CPU', 0))"],
                             capture_output=True, text=True, timeout=60)
        return float(out.stdout.strip().splitlines()[-1])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs}"

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_group(p)
        for d in self.temps:
            shutil.rmtree(d, ignore_errors=True)


STEPS, EVALS = 32, 8  # per trial: long enough that a kill at half the results finds trials running


def write_spec(path: Path, *, trials: int, cpu: float, data_dir: str, backbone: str, uri: str) -> Path:
    spec = {"name": "bench-width", "backbone": backbone, "data": {"source": "local", "dir": data_dir},
            "tasks": ["rte"], "methods": {"finetune": {"lr": [1e-5 * (i + 1) for i in range(trials // 2)]}},
            "seeds": [0, 1],
            "training": {"max_epochs": 1, "patience": 100, "batch_size": 4, "max_length": 32,
                         "max_train_examples": 4 * STEPS, "max_eval_examples": 8, "eval_every": STEPS // EVALS},
            "search": {"algorithm": "grid", "max_concurrent": trials}, "resources": {"cpu": cpu},
            "tracking": {"uri": uri}}
    path.write_text(yaml.safe_dump(spec))
    return path


def _counts(db_uri: str) -> dict:
    import sqlalchemy as sa

    sql = sa.text("""SELECT r.status, k.value AS key,
            (SELECT count(*) FROM metrics m WHERE m.run_uuid = r.run_uuid AND m.key = 'dev_score') AS results
        FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id AND e.name = 'bench-width'
        JOIN tags p ON p.run_uuid = r.run_uuid AND p.key = 'mlflow.parentRunId'
        LEFT JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'peftsearch.trial_key'
        WHERE r.lifecycle_stage = 'active'""")
    engine = sa.create_engine(db_uri)
    try:
        with engine.connect() as c:
            rows = c.execute(sql).fetchall()
    finally:
        engine.dispose()
    return {"runs": len(rows), "finished": sum(r.status == "FINISHED" for r in rows),
            "unique_keys": len({r.key for r in rows}), "results": sum(r.results for r in rows)}


def _drive(args: list[str], env: dict, until=None, timeout: float = 3600) -> tuple[float, float, int]:
    """Run a driver; (CPU seconds, wall seconds, exit status). ``until``: SIGKILL it once true."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "search.bench_width", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cpu = 0.0
    ps = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            t = ps.cpu_times()
            cpu = t.user + t.system
        except psutil.NoSuchProcess:
            break
        if until is not None and until():
            proc.send_signal(signal.SIGKILL)
            break
        if time.perf_counter() - t0 > timeout:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            raise RuntimeError(f"driver {args[0]} still running after {timeout:.0f}s")
        time.sleep(0.5)
    proc.wait()
    if until is None and proc.returncode != 0:
        raise RuntimeError(f"driver {args[0]} failed: {proc.stderr.read()[-3000:]}")
    return cpu, time.perf_counter() - t0, proc.returncode


def run_width(*, trials: int, workers: int, data_dir: str, backbone: str | None, checkpoint_s: str = "auto",
              echo=print) -> dict:
    from search.bench_search import tiny_backbone

    cpus = 1.0
    cpu = workers * cpus / trials  # fractional: all trials fit at once
    with tempfile.TemporaryDirectory(prefix="bench-width-") as tmp:
        tmp = Path(tmp)
        backbone = backbone or tiny_backbone(tmp / "tiny")
        pg, server, nodes = Postgres(), None, None
        try:
            server = MlflowServer(pg.uri, workers=2)
            nodes = _Nodes(workers, cpus)
            spec = write_spec(tmp / "spec.yaml", trials=trials, cpu=cpu, data_dir=data_dir, backbone=backbone,
                              uri=server.url)
            env = os.environ | {"TUNE_GLOBAL_CHECKPOINT_S": checkpoint_s, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
            out, stats = tmp / "out", [tmp / "snapshots-run.json", tmp / "snapshots-resume.json"]
            echo(f"{trials} trials at {cpu:g} CPU each on {workers} worker nodes; the driver dies at half the results ...")
            half = lambda: _counts(pg.uri)["results"] >= trials * EVALS // 2  # noqa: E731
            cpu1, wall1, _ = _drive(["run", str(out), str(stats[0]), nodes.address, str(spec)], env, until=half)
            killed = _counts(pg.uri)
            echo(f"killed with {killed['finished']} finished runs of {trials}; resuming ...")
            cpu2, wall2, _ = _drive(["resume", str(out), str(stats[1]), nodes.address], env)
            final = _counts(pg.uri)
            snaps = [json.loads(s.read_text()) if s.exists() else {"calls": 0, "seconds": 0.0} for s in stats]
        finally:
            if nodes:
                nodes.stop()
            if server:
                server.close()
            pg.stop()
    return {"trials": trials, "workers": workers, "cpu_per_trial": cpu, "checkpoint_s": checkpoint_s,
            "run": {"driver_cpu_s": cpu1, "wall_s": wall1, "results": killed["results"], "snapshots": snaps[0]},
            "resume": {"driver_cpu_s": cpu2, "wall_s": wall2, "results": final["results"] - killed["results"],
                       "snapshots": snaps[1]},
            "killed_at": killed, "final": final, "loadavg": load_average()}


def table(r: dict) -> str:
    lines = [f"{r['trials']} trials at once ({r['cpu_per_trial']:g} CPU each, {r['workers']} worker nodes), "
             f"TUNE_GLOBAL_CHECKPOINT_S={r['checkpoint_s']}, load average {' '.join(r['loadavg'].split()[:3])}",
             "| driver | wall s | results | driver CPU s | CPU ms per result | snapshot calls | snapshot s |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in ("run", "resume"):
        p = r[name]
        per = 1e3 * p["driver_cpu_s"] / p["results"] if p["results"] > 0 else float("nan")
        lines.append(f"| {name} | {p['wall_s']:.0f} | {p['results']} | {p['driver_cpu_s']:.1f} | {per:.1f} "
                     f"| {p['snapshots']['calls']} | {p['snapshots']['seconds']:.2f} |")
    k, f = r["killed_at"], r["final"]
    lines.append(f"killed at {k['finished']} finished runs; after resume: {f['runs']} runs, {f['finished']} FINISHED, "
                 f"{f['unique_keys']} distinct trial keys (want {r['trials']} of each)")
    return "\n".join(lines)


if __name__ == "__main__":
    _driver(sys.argv[1:])
