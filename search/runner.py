"""Run a validated spec as one Ray Tune search, with every trial recorded in MLflow."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from search.space import Trial, expand, param_space
from search import pruning
from search.progress import Progress
from search.spec import Spec, parse_spec
from trainers.config import TrialConfig
from tracking import runs
from tracking.report import write_evp, write_summary
from tracking.store import NoRunsError

log = logging.getLogger(__name__)
STATE_FILE = "search.json"  # what `peftsearch resume OUT` needs: the spec and the MLflow ids


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
    """trainers.loop.Reporter for a trial: every evaluation goes to MLflow (one batch) and to Ray
    Tune (``report``; `peftsearch bench scale` passes its own, to play trials without Tune)."""

    def __init__(self, run: runs.TrialRun, report=None) -> None:
        self.run = run
        self.report = report

    def on_start(self, info: dict[str, float]) -> None:
        self.run.log_metrics(info, step=0)

    def on_eval(self, *, step: int, metrics: dict[str, float]) -> None:
        self.run.log_metrics(metrics, step=step)
        if self.report is None:
            from ray import tune

            self.report = tune.report
        self.report(metrics | {"step": step})


def trial_tags(cfg: TrialConfig, trial: Trial, ctx: SearchContext, *, key: str, attempt: int) -> dict:
    from trainers.tasks import TASKS

    return {"method": cfg.method, "task": cfg.task, "backbone": cfg.backbone, "seed": cfg.seed,
            "config_id": trial.config_id, "search_id": ctx.search_id, "metric": TASKS[cfg.task].metric_label,
            "protocol": cfg.data.protocol, "cpus": ctx.cpus, "gpus": ctx.gpus, "trial_key": key, "attempt": attempt}


def log_result(run: runs.TrialRun, result) -> None:
    """A finished training's summary on its run."""
    # best_dev_score: the selection score; reported_score: the reported set's score at the best
    # selection evaluation (trainers/splits.py says which sets those are).
    run.log_metrics({"best_dev_score": result.best_dev_score, "train_seconds": result.train_seconds,
                     "trainable_params": result.trainable_params} | result.reported_metrics, step=result.steps)
    run.set_tags({"peftsearch.stopped_early": result.stopped_early, "peftsearch.best_step": result.best_step})


def run_trial(config: dict, ctx: SearchContext) -> None:
    """The Ray Tune function trainable: one trial = one MLflow child run.

    The run is tagged with the Tune trial id (``peftsearch.trial_key``); a retried or resumed trial
    deletes its earlier, unfinished attempt first, so every trial ends with exactly one run."""
    import torch
    from ray import tune

    from trainers.loop import train

    torch.set_num_threads(ctx.threads)
    cfg = TrialConfig.from_dict(config["trial"]["config"])
    trial = Trial(cfg, config["trial"]["config_id"])
    key = tune.get_context().get_trial_id()
    earlier = runs.retrying(runs.replace_earlier_attempts, runs.client(ctx.tracking_uri), ctx.experiment_id,
                            ctx.parent_run_id, key, what="replace_earlier_attempts")
    tags = trial_tags(cfg, trial, ctx, key=key, attempt=len(earlier) + 1)
    try:
        with runs.TrialRun(ctx.tracking_uri, experiment_id=ctx.experiment_id, parent_run_id=ctx.parent_run_id,
                           run_name=trial.name, tags=tags, params=trial.hyperparameters()) as run:
            if earlier:
                run.set_tags({"peftsearch.earlier_errors": " | ".join(earlier)[:4000]})
            result = train(cfg, reporter=TrialReporter(run))
            log_result(run, result)
            if result.artefact is not None:  # training.save_model
                _log_artefact(run, result.artefact, cfg)
    finally:
        _free_accelerator_memory(torch)


def _log_artefact(run, state, cfg: TrialConfig) -> None:
    import tempfile

    from trainers.artefact import save_artefact

    with tempfile.TemporaryDirectory() as tmp:
        run.log_artifacts(str(save_artefact(tmp, state, cfg)), "model")


def _free_accelerator_memory(torch) -> None:
    """reuse_actors keeps the worker process alive between trials (Ray issues 23971, 32698), so a
    trial's CUDA tensors must be released when it ends. Untested here: these machines have no GPU."""
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_search(spec: Spec, *, out_dir: Path, address: str | None = None, console=None) -> SearchOutcome:
    start = time.monotonic()
    ctx, storage = open_search(spec, out_dir)
    _init_ray(address)
    return _finish(spec, build_tuner(spec, ctx, out_dir=out_dir, storage=storage, console=console), ctx, out_dir, start)


def open_search(spec: Spec, out_dir: Path) -> tuple[SearchContext, Path]:
    """The experiment and parent run in MLflow, and OUT/search.json, which `resume` reads."""
    search_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    client = runs.client(spec.tracking.uri)
    exp_id = runs.ensure_experiment(client, spec.name, _artifact_location(spec.tracking.uri, spec.name))
    parent = runs.start_parent_run(client, exp_id, search_id=search_id, tags={
        "peftsearch.algorithm": spec.search.algorithm, "peftsearch.backbone": spec.backbone,
        "peftsearch.tasks": ",".join(spec.tasks), "peftsearch.methods": ",".join(spec.methods)})
    client.log_text(parent, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), "spec.yaml")
    ctx = SearchContext(spec.tracking.uri, exp_id, parent, search_id, threads=max(1, int(spec.resources.cpu)),
                        cpus=spec.resources.cpu, gpus=spec.resources.gpu)
    storage = (out_dir / "ray").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / STATE_FILE).write_text(json.dumps({"spec": spec.model_dump(mode="json"), "ctx": dataclasses.asdict(ctx),
                                                  "storage": str(storage)}, indent=1))
    return ctx, storage


def build_tuner(spec: Spec, ctx: SearchContext, *, out_dir: Path, storage: Path, console=None, fn=None):
    """``fn``: the trainable function, run_trial unless a benchmark times another (same signature)."""
    from ray import tune

    space, search_alg, total = _space(spec, out_dir)
    return tune.Tuner(
        _trainable(spec, ctx, fn or run_trial),
        param_space=space,
        tune_config=tune.TuneConfig(
            metric="dev_score", mode="max", max_concurrent_trials=spec.search.max_concurrent,
            # A pruned trial's thread runs on until its next report, so its actor cannot be reused
            # in time; Ray then errors the next trial. Pruning searches start fresh actors.
            reuse_actors=spec.search.scheduler.name == "none",
            search_alg=search_alg, num_samples=total if search_alg else 1, scheduler=pruning.scheduler(spec.search.scheduler),
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=tune.RunConfig(name=ctx.search_id, storage_path=str(storage), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
                                  callbacks=[Progress(total, console),
                                             pruning.PrunedRuns(spec.tracking.uri, ctx.experiment_id, ctx.parent_run_id)]),
    )


def resume_search(out_dir: Path, *, address: str | None = None, console=None) -> SearchOutcome:
    """Finish a search whose driver died, from the Tune state under OUT/ray and OUT/search.json."""
    from ray import tune

    state_file = out_dir / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"out: no {STATE_FILE} here; is this a search's output directory? (got {str(out_dir)!r})")
    state = json.loads(state_file.read_text())
    spec, ctx = parse_spec(state["spec"], source=str(state_file)), SearchContext(**state["ctx"])
    path = str(Path(state["storage"]) / ctx.search_id)
    _init_ray(address)
    if not tune.Tuner.can_restore(path):
        raise ValueError(f"out: the search has no Ray Tune state to restore at {path}")
    start = time.monotonic()
    # Trials that were running when the driver died restart (their partial runs are replaced);
    # trials that had failed stay failed, as they would have without the crash.
    tuner = tune.Tuner.restore(path, trainable=_trainable(spec, ctx), resume_unfinished=True, resume_errored=False)
    return _finish(spec, tuner, ctx, out_dir, start)


def _space(spec: Spec, out_dir: Path):
    """(param_space, search_alg, trial count): a grid is a param space; random/optuna a searcher."""
    if spec.search.algorithm == "grid":
        trials = expand(spec)
        return param_space(trials), None, len(trials)
    from search.sampling import SeedSearcher

    searcher = SeedSearcher(spec, studies_dir=out_dir.resolve())
    return {}, searcher, searcher.total_trials


def _trainable(spec: Spec, ctx: SearchContext, fn=None):
    from ray import tune

    return tune.with_resources(tune.with_parameters(fn or run_trial, ctx=ctx),
                               {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def _finish(spec: Spec, tuner, ctx: SearchContext, out_dir: Path, start: float) -> SearchOutcome:
    results = tuner.fit()
    client = runs.client(spec.tracking.uri)
    # The trials Tune knows are the search; runs of any other trial (one started after Tune's last
    # saved state, before a crash) would be duplicates. Tune offers no public list of trial ids.
    keys = {t.trial_id for t in results._experiment_analysis.trials}
    runs.delete_runs_not_in(client, ctx.experiment_id, ctx.parent_run_id, keys)
    for t in results._experiment_analysis.trials:
        if t.status == "TERMINATED":  # ended by Tune, not by an error, with its run still open: pruned
            runs.mark_pruned(client, ctx.experiment_id, ctx.parent_run_id, t.trial_id)
    runs.fail_orphaned_children(client, ctx.experiment_id, ctx.parent_run_id)
    outputs = _analyse(spec, out_dir, client, ctx.parent_run_id)
    runs.finish_parent_run(client, ctx.parent_run_id, failed_trials=results.num_errors, total_trials=len(keys))
    return SearchOutcome(ctx.search_id, ctx.experiment_id, ctx.parent_run_id, len(keys), results.num_errors,
                         time.monotonic() - start, outputs)


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


def _trial_dirname(trial) -> str:
    return f"{_trial_name(trial)}-{trial.trial_id}"  # sampled assignments may repeat


def _artifact_location(uri: str, name: str) -> str | None:
    """Artifacts of a SQLite store sit beside the database file, in mlartifacts/NAME."""
    if uri.startswith("sqlite:///"):
        return str(Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts" / name)
    return None


def _init_ray(address: str | None) -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Metrics live in MLflow, so Tune's per-trial result files are off (less overhead per trial);
    # its result grid then warns, once per trial, that it found no result.json. Expected: hide it.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    if not ray.is_initialized():
        # "local": without --address, start our own instance; ray.init(None) would join any cluster
        # it finds running on this machine.
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING, configure_logging=True)
