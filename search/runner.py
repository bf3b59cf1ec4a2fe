"""Run a validated spec as one Ray Tune search, with every trial recorded in MLflow."""
from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from search.space import Trial, expand, param_space
from search.spec import Spec
from trainers.config import TrialConfig
from tracking import runs
from tracking.report import write_evp, write_summary
from tracking.store import NoRunsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchContext:
    """What every trial of one search shares; handed to trials through tune.with_parameters."""

    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    search_id: str
    threads: int
    cpus: float = 1.0
    gpus: float = 0.0  # recorded on every trial run: GPU-hours budgets read it back


@dataclass
class SearchOutcome:
    search_id: str
    experiment_id: str
    parent_run_id: str
    trials: int
    errors: int
    seconds: float
    outputs: list[Path]


class TrialReporter:
    """trainers.loop.Reporter for a trial: every evaluation goes to MLflow and to Ray Tune."""

    def __init__(self, run: runs.TrialRun) -> None:
        self.run = run

    def on_start(self, info: dict[str, float]) -> None:
        self.run.log_metrics(info, step=0)

    def on_eval(self, *, step: int, metrics: dict[str, float]) -> None:
        from ray import tune

        self.run.log_metrics(metrics, step=step)
        tune.report(metrics | {"step": step})


def run_trial(config: dict, ctx: SearchContext) -> None:
    """The Ray Tune function trainable: one trial = one MLflow child run."""
    import torch

    from trainers.loop import train

    torch.set_num_threads(ctx.threads)
    cfg = TrialConfig.from_dict(config["trial"]["config"])
    trial = Trial(cfg, config["trial"]["config_id"])
    from trainers.tasks import TASKS

    tags = {"method": cfg.method, "task": cfg.task, "backbone": cfg.backbone, "seed": cfg.seed,
            "config_id": trial.config_id, "search_id": ctx.search_id, "metric": TASKS[cfg.task].metric_label,
            "protocol": cfg.data.protocol, "cpus": ctx.cpus, "gpus": ctx.gpus}
    with runs.TrialRun(ctx.tracking_uri, experiment_id=ctx.experiment_id, parent_run_id=ctx.parent_run_id,
                       run_name=trial.name, tags=tags, params=trial.hyperparameters()) as run:
        result = train(cfg, reporter=TrialReporter(run))
        # best_dev_score: the selection score; reported_score: the reported set's score at the
        # best selection evaluation (trainers/splits.py says which sets those are).
        run.log_metrics({"best_dev_score": result.best_dev_score, "train_seconds": result.train_seconds,
                         "trainable_params": result.trainable_params} | result.reported_metrics, step=result.steps)
        run.set_tags({"peftsearch.stopped_early": result.stopped_early, "peftsearch.best_step": result.best_step})


def run_search(spec: Spec, *, out_dir: Path, address: str | None = None, console=None) -> SearchOutcome:
    from ray import tune

    from search.progress import Progress

    trials = expand(spec)
    start = time.monotonic()
    search_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    client = runs.client(spec.tracking.uri)
    exp_id = runs.ensure_experiment(client, spec.name, _artifact_location(spec.tracking.uri, spec.name))
    parent = runs.start_parent_run(client, exp_id, search_id=search_id, tags={
        "peftsearch.algorithm": spec.search.algorithm, "peftsearch.backbone": spec.backbone,
        "peftsearch.tasks": ",".join(spec.tasks), "peftsearch.methods": ",".join(spec.methods)})
    client.log_text(parent, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "spec.yaml")

    _init_ray(address)
    ctx = SearchContext(spec.tracking.uri, exp_id, parent, search_id, threads=max(1, int(spec.resources.cpu)),
                        cpus=spec.resources.cpu, gpus=spec.resources.gpu)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(trials),
        tune_config=tune.TuneConfig(
            metric="dev_score", mode="max", max_concurrent_trials=spec.search.max_concurrent, reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=search_id, storage_path=str((out_dir / "ray").resolve()), verbose=0,
                                  callbacks=[Progress(len(trials), console)]),
    )
    results = tuner.fit()
    runs.fail_orphaned_children(client, exp_id, parent)
    outputs = _analyse(spec, out_dir, client, parent)
    runs.finish_parent_run(client, parent, failed_trials=results.num_errors, total_trials=len(trials))
    return SearchOutcome(search_id, exp_id, parent, len(trials), results.num_errors, time.monotonic() - start, outputs)


def _analyse(spec: Spec, out_dir: Path, client, parent: str) -> list[Path]:
    try:
        files = write_evp(spec.tracking.uri, spec.name, out_dir) + write_summary(spec.tracking.uri, spec.name, out_dir)
    except NoRunsError as e:
        log.warning("no analysis: %s", e)
        return []
    for f in files:
        client.log_artifact(parent, str(f), "analysis")
    return files


def _trial_name(trial) -> str:
    t = trial.config["trial"]
    c = t["config"]
    return f"{c['task']}-{c['method']}-{t['config_id']}-s{c['seed']}"


def _artifact_location(uri: str, name: str) -> str | None:
    """Artifacts of a SQLite store sit beside the database file, in mlartifacts/NAME."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name)
    return None


def _init_ray(address: str | None) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
