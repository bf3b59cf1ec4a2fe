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
from search.spec import DEFAULT_MAX_TRIALS, Spec, parse_spec
from search.uris import has_secret, mask
from trainers.config import TrialConfig
from trainers.machine import RAY_START_TIMEOUT_ENV, env_seconds
from trainers.memory import worker_env
from tracking import provenance, runs
from tracking.html_report import write_report
from tracking.report import write_evp, write_summary
from tracking.store import NoRunsError
from tracking.words import count

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
    unfinished: int = 0  # trials neither finished nor failed: the driver was stopped (resume them)


class DriverStopped(Exception):
    """The driver stopped before the search ended (Ctrl-C, SIGTERM, an error of ours); the runs it
    owned are KILLED and `peftsearch resume OUT` finishes the search. str() is one line."""

    def __init__(self, message: str, out_dir: Path, exit_code: int) -> None:
        super().__init__(f"{message}; resume with: peftsearch resume {out_dir}")
        self.exit_code = exit_code


_STOP_SIGNAL: list[int] = []
_STOP_AT: list[float] = []  # when the first stop signal came (epoch seconds)


def _on_sigterm(signum, frame):
    """SIGTERM stops the search as Ctrl-C does: Tune's SIGINT handler ends the run, saving its
    state with the running trials still running (so `resume` restarts them)."""
    import signal

    _STOP_SIGNAL.append(signum)
    _STOP_AT.append(time.time())
    os.kill(os.getpid(), signal.SIGINT)


def _on_sigint(signum, frame):
    """Ours while Tune's is not installed, and again once Tune's has fired (Tune restores the
    handler it found): so a second Ctrl-C interrupts at once."""
    _STOP_SIGNAL.append(signum)
    _STOP_AT.append(time.time())
    raise KeyboardInterrupt


def _install_stop_handlers() -> bool:
    import signal

    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, _on_sigint)
        return True
    except ValueError:  # not the main thread (an embedding program): leave its handlers alone
        return False


def _interrupted(handlers: bool) -> bool:
    """Did Tune's SIGINT handler end the run? It puts ours back when it fires."""
    import signal

    return bool(_STOP_SIGNAL) or (handlers and signal.getsignal(signal.SIGINT) is _on_sigint)


class TrialReporter:
    """trainers.loop.Reporter for a trial: every evaluation goes to MLflow (one batch) and to Ray
    Tune (``report``; `peftsearch bench scale` passes its own, to play trials without Tune)."""

    def __init__(self, run: runs.TrialRun, report=None) -> None:
        self.run = run
        self.report = report

    def on_start(self, info: dict[str, float | str]) -> None:
        # Strings (the task format the backbone's family resolved) are tags, comparable in the UI
        # and read back by the analysis; numbers are metrics at step 0.
        self.run.set_tags({runs.tag(k): v for k, v in info.items() if isinstance(v, str)})
        self.run.log_metrics({k: v for k, v in info.items() if not isinstance(v, str)}, step=0)

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


def result_metrics(result) -> dict[str, float]:
    """A finished training's summary metrics: the scores, its time and size, and its measured
    costs where they were measured (not NaN)."""
    costs = {k: getattr(result, k) for k in ("peak_rss_mb", "peak_gpu_mb", "inference_ms_per_example")}
    return ({"best_dev_score": result.best_dev_score, "train_seconds": result.train_seconds,
             "trainable_params": result.trainable_params} | result.reported_metrics
            | {k: v for k, v in costs.items() if v == v})  # v == v: not NaN


def log_result(run: runs.TrialRun, result) -> None:
    """A finished training's summary on its run."""
    # best_dev_score: the selection score; reported_score: the reported set's score at the best
    # selection evaluation (trainers/splits.py says which sets those are).
    run.log_metrics(result_metrics(result), step=result.steps)
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
    client = runs.client(ctx.tracking_uri)
    done = runs.retrying(runs.finished_attempt, client, ctx.experiment_id, ctx.parent_run_id, key,
                         what="finished_attempt")
    if done is not None:  # it finished after Tune's last snapshot: hand Tune its result again
        step = max((m.step for m in client.get_metric_history(done.info.run_id, "dev_score")), default=0)
        tune.report(dict(done.data.metrics) | {"step": step})
        return
    earlier = runs.retrying(runs.replace_earlier_attempts, client, ctx.experiment_id,
                            ctx.parent_run_id, key, what="replace_earlier_attempts")
    tags = trial_tags(cfg, trial, ctx, key=key, attempt=len(earlier) + 1)
    try:
        with runs.TrialRun(ctx.tracking_uri, experiment_id=ctx.experiment_id, parent_run_id=ctx.parent_run_id,
                           run_name=trial.name, tags=tags, params=trial.hyperparameters()) as run:
            if earlier:
                run.set_tags({"peftsearch.earlier_errors": " | ".join(earlier)[:4000]})
            provenance.log_trial_provenance(run.client, run.run_id, cfg)  # datasets, backbone hash, versions
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
        saved = str(save_artefact(tmp, state, cfg))
        run.log_artifacts(saved, "model")
        experiment_id = run.client.get_run(run.run_id).info.experiment_id
        provenance.log_logged_model(run.client, run.run_id, experiment_id, saved, cfg)  # an MLflow 3 logged model


def _free_accelerator_memory(torch) -> None:
    """reuse_actors keeps the worker process alive between trials (Ray issues 23971, 32698), so a
    trial's CUDA tensors must be released when it ends. Untested here: these machines have no GPU."""
    import gc

    from trainers.memory import release_freed

    gc.collect()
    release_freed()  # the next trial in this worker starts without this one's freed heap resident
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_search(spec: Spec, *, out_dir: Path, address: str | None = None, console=None) -> SearchOutcome:
    start = time.monotonic()
    # before the search's runs exist: a Ray that does not start leaves nothing RUNNING
    _init_ray(address, worker_env(spec.resources.malloc))
    check_fits(spec, local=not address)
    ctx, storage = open_search(spec, out_dir)
    return _finish(spec, build_tuner(spec, ctx, out_dir=out_dir, storage=storage, console=console), ctx, out_dir, start)


def open_search(spec: Spec, out_dir: Path) -> tuple[SearchContext, Path]:
    """The experiment and parent run in MLflow, and OUT/search.json, which `resume` reads."""
    search_id = f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    client = runs.client(spec.tracking.uri)
    exp_id = runs.ensure_experiment(client, spec.name, _artifact_location(spec.tracking.uri, spec.name))
    parent = runs.start_parent_run(client, exp_id, search_id=search_id, tags={
        "peftsearch.algorithm": spec.search.algorithm, "peftsearch.backbone": spec.backbone,
        "peftsearch.tasks": ",".join(spec.tasks), "peftsearch.methods": ",".join(spec.methods)})
    client.log_text(parent, yaml.safe_dump(stored_spec(spec), sort_keys=False), "spec.yaml")
    ctx = SearchContext(spec.tracking.uri, exp_id, parent, search_id, threads=max(1, int(spec.resources.cpu)),
                        cpus=spec.resources.cpu, gpus=spec.resources.gpu)
    storage = (out_dir / "ray").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {"spec": stored_spec(spec), "ctx": dataclasses.asdict(ctx) | {"tracking_uri": mask(ctx.tracking_uri)},
             "storage": str(storage), "max_trials": max(DEFAULT_MAX_TRIALS, spec.trial_count())}
    part = out_dir / f".{STATE_FILE}.part"  # renamed over: a driver killed mid-write leaves no half-written state
    part.write_text(json.dumps(state, indent=1))
    os.replace(part, out_dir / STATE_FILE)
    return ctx, storage


def stored_spec(spec: Spec) -> dict:
    """The spec as we store it (spec.yaml artifact, search.json, a job's package): its tracking
    URI's password masked. `resume` asks for the URI again (--tracking-uri, MLFLOW_TRACKING_URI)."""
    raw = spec.model_dump(mode="json")
    raw["tracking"]["uri"] = mask(spec.tracking.uri)
    return raw


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


def load_state(out_dir: Path, tracking_uri: str | None = None) -> tuple[Spec, SearchContext, dict]:
    """OUT/search.json, validated by the same edge as a spec; the tracking URI given again when
    the stored one had its password masked."""
    state_file = out_dir / STATE_FILE
    if not state_file.is_file():
        raise ValueError(f"out: no {STATE_FILE} here; is this a search's output directory? (got {str(out_dir)!r})")
    try:
        state = json.loads(state_file.read_text())
        raw, stored_ctx = dict(state["spec"]), dict(state["ctx"])
    except (ValueError, KeyError, TypeError, RecursionError) as e:  # RecursionError: JSON nested too deep
        raise ValueError(f"out: {STATE_FILE} is not a search's state ({type(e).__name__}: {e})") from None
    tracking = raw.get("tracking")
    uri = tracking_uri or (tracking.get("uri", "") if isinstance(tracking, dict) else "")
    if not isinstance(uri, str):
        raise ValueError(f"out: {STATE_FILE} is not a search's state (tracking.uri is not text, got {uri!r})")
    if "***" in uri:
        raise ValueError("tracking.uri: search.json keeps the URI without its password; give it again with "
                         f"--tracking-uri or MLFLOW_TRACKING_URI (got {uri!r})")
    raw["tracking"] = {"uri": uri}
    spec = parse_spec(raw, source=str(state_file), max_trials=state.get("max_trials", DEFAULT_MAX_TRIALS))
    try:
        ctx = SearchContext(**(stored_ctx | {"tracking_uri": spec.tracking.uri}))
    except TypeError as e:
        raise ValueError(f"out: {STATE_FILE} is not a search's state ({e})") from None
    return spec, ctx, state


def resume_search(out_dir: Path, *, address: str | None = None, console=None,
                  tracking_uri: str | None = None) -> SearchOutcome:
    """Finish a search whose driver died, from the Tune state under OUT/ray and OUT/search.json."""
    spec, ctx, state = load_state(out_dir, tracking_uri)
    from ray import tune

    pruning.remember_uri(spec.tracking.uri)  # the restored callbacks hold it masked

    path = str(Path(state["storage"]) / ctx.search_id)
    _init_ray(address, worker_env(spec.resources.malloc))
    check_fits(spec, local=not address)
    if not tune.Tuner.can_restore(path):
        raise ValueError(f"out: the search has no Ray Tune state to restore at {path}")
    start = time.monotonic()
    # Trials that were running when the driver died restart (their partial runs are replaced);
    # trials that had failed stay failed, as they would have without the crash.
    tuner = tune.Tuner.restore(path, trainable=_trainable(spec, ctx), resume_unfinished=True, resume_errored=False)
    _continue_progress(tuner, client=runs.client(spec.tracking.uri), ctx=ctx, console=console)
    runs.mark_resumed(runs.client(spec.tracking.uri), ctx.parent_run_id)
    return _finish(spec, tuner, ctx, out_dir, start)


def _continue_progress(tuner, *, client, ctx: SearchContext, console) -> None:
    """The restored Progress callback counts on from the trials that already ended."""
    config = getattr(getattr(tuner, "_local_tuner", None), "_run_config", None)
    for cb in getattr(config, "callbacks", None) or []:
        if isinstance(cb, Progress):
            cb.ended = runs.ended_children(client, ctx.experiment_id, ctx.parent_run_id)
            cb._console = console


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
    """Run the search to its end. Whatever a trial does ends that trial only; if the driver itself
    is stopped, the runs it owned are marked KILLED and DriverStopped names the resume command."""
    import signal

    client = runs.client(spec.tracking.uri)
    handlers = _install_stop_handlers()
    # A Ctrl-C reaches Tune's handler, not ours, so its time is unknown: then count from the start
    # (a pruned trial of an interrupted search is then recorded KILLED, and resume leaves it be).
    fit_started = time.time()
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C / SIGTERM, while Tune was already stopping
        n = _kill_owned(client, ctx, "the driver was interrupted")
        raise DriverStopped(f"interrupted; {count(n, 'trial run')} ended KILLED", out_dir,
                            128 + (_STOP_SIGNAL or [signal.SIGINT])[-1]) from None
    except Exception as e:  # an error of ours or of Tune's, not of a trial
        _kill_owned(client, ctx, f"the driver stopped: {type(e).__name__}: {e}")
        log.debug("driver error", exc_info=True)
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise DriverStopped(f"the driver stopped: {type(e).__name__}: {first}", out_dir, 1) from None
    if _interrupted(handlers):  # Tune's SIGINT handler ended the run early and saved its state
        n = _kill_owned(client, ctx, "the driver was interrupted", since=_STOP_AT[0] if _STOP_AT else fit_started)
        raise DriverStopped(f"interrupted; {count(n, 'trial run')} ended KILLED", out_dir,
                            128 + (_STOP_SIGNAL or [signal.SIGINT])[-1])
    trials = results._experiment_analysis.trials  # Tune offers no public list of trial ids
    # The trials Tune knows are the search; runs of any other trial (one started after Tune's last
    # saved state, before a crash) would be duplicates.
    keys = {t.trial_id for t in trials}
    runs.delete_runs_not_in(client, ctx.experiment_id, ctx.parent_run_id, keys)
    for t in trials:
        if t.status == "TERMINATED":  # ended by Tune, not by an error, with its run still open: pruned
            runs.mark_pruned(client, ctx.experiment_id, ctx.parent_run_id, t.trial_id)
        elif t.status == "ERROR":  # e.g. its worker was killed (Ray's memory monitor): say why
            runs.fail_open_runs(client, ctx.experiment_id, ctx.parent_run_id, t.trial_id, _trial_error(t))
    runs.fail_orphaned_children(client, ctx.experiment_id, ctx.parent_run_id)
    outputs = _analyse(spec, out_dir, client, ctx.parent_run_id)
    runs.finish_parent_run(client, ctx.parent_run_id, failed_trials=results.num_errors, total_trials=len(keys))
    return SearchOutcome(ctx.search_id, ctx.experiment_id, ctx.parent_run_id, len(keys), results.num_errors,
                         time.monotonic() - start, outputs)


def _kill_owned(client, ctx: SearchContext, reason: str, since: float | None = None) -> int:
    """The driver stops: its open trial runs and its parent run end KILLED, tagged incomplete.
    Trials Tune stopped on the way out (after ``since``) look pruned; they are not."""
    try:
        n = runs.kill_open_children(client, ctx.experiment_id, ctx.parent_run_id, reason,
                                    stopped_since_ms=int(since * 1000) if since else None)
        runs.mark_incomplete(client, ctx.parent_run_id, reason)
        return n
    except Exception as e:  # the tracking store itself may be what failed: the resume line still prints
        log.warning("could not mark the search's runs KILLED: %s", e)
        return 0


def _trial_error(trial) -> str:
    """The last line of a trial's error (a killed worker: Ray's ActorDiedError, OutOfMemoryError)."""
    from search.progress import _last_error_line

    return f"the trial failed in Ray: {_last_error_line(trial)}"


def _analyse(spec: Spec, out_dir: Path, client, parent: str) -> list[Path]:
    try:
        files = write_evp(spec.tracking.uri, spec.name, out_dir) + write_summary(spec.tracking.uri, spec.name, out_dir)
        files += write_report(spec.tracking.uri, spec.name, out_dir)  # report.html, on the parent run too
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


class _NoTrialTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Trial task failed")


def check_fits(spec: Spec, *, local: bool, have: dict | None = None) -> None:
    """A trial that asks for more CPUs or GPUs than the local Ray has would wait forever (Tune
    queues it and says nothing); refuse it in one line before anything is written. A cluster may
    scale up to fit (KubeRay's autoscaler), so there this applies to the local Ray only.

    ``have``: the machine's CPUs and GPUs as the embedded Ray will count them (``local_resources``,
    checked by the CLI before anything starts); by default the running Ray's own count."""
    import ray

    if not local:
        return
    started = have is None
    have = ray.cluster_resources() if started else have
    for field, key in (("cpu", "CPU"), ("gpu", "GPU")):
        asked, there = float(getattr(spec.resources, field)), float(have.get(key, 0))
        if asked > there:
            if started:
                ray.shutdown()  # the embedded Ray was ours; nothing of the search exists yet
            raise ValueError(f"resources.{field}: a trial asks for {count(f'{asked:g}', key)} and the local Ray "
                             f"has {there:g}; ask for at most {there:g} here, or run on a cluster with --address, "
                             f"got {asked:g}")


def local_resources(spec: Spec) -> dict:
    """What the embedded Ray will find on this machine: CPUs as Ray counts them (cgroup quota
    included), and GPUs where the spec asks for any (counting them needs torch)."""
    try:
        from ray._private.utils import get_num_cpus  # what ray.init(address="local") uses for num_cpus
        cpus = get_num_cpus()
    except (ImportError, AttributeError):  # a Ray without it: the running Ray's count still applies
        cpus = os.cpu_count() or 1
    have = {"CPU": float(cpus)}
    if spec.resources.gpu > 0:
        import torch

        have["GPU"] = float(torch.cuda.device_count())
    return have


class RayStartError(RuntimeError):
    """The embedded Ray did not come up. str() is one line."""


def _init_ray(address: str | None, worker_env: dict[str, str] | None = None) -> None:
    """Start (or join) Ray; trial workers get WORKER_ENV (trainers/memory.py: worker_env) through
    the driver's runtime_env. Where Ray is already up in this process, it is left as it is."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    # Metrics live in MLflow, so Tune's per-trial result files are off (less overhead per trial);
    # its result grid then warns, once per trial, that it found no result.json. Expected: hide it.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Tune's own interruption messages (a Tuner.restore hint, "Trials did not complete"): the CLI
    # prints one line naming `peftsearch resume` instead.
    logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)
    # A failed trial is one progress line (and its run's peftsearch.error), not Tune's traceback.
    controller = logging.getLogger("ray.tune.execution.tune_controller")
    if not any(isinstance(f, _NoTrialTracebacks) for f in controller.filters):
        controller.addFilter(_NoTrialTracebacks())
    if ray.is_initialized():
        return
    kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    if address:
        from search.jobs import driver_runtime_env  # joining a cluster: MLflow credentials for its nodes

        ray.init(address=address, runtime_env=driver_runtime_env(worker_env), **kwargs)
        return
    env = {"env_vars": worker_env} if worker_env else None
    # "local": start our own instance (ray.init(None) would join any cluster running here), bound
    # to loopback only. Ray turns a 127.0.0.1 node address into the machine's address unless it
    # runs single-node, which its RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 switch selects (on Linux too).
    _single_node_ray()
    _start_with_patience(lambda: ray.init(address="local", _node_ip_address="127.0.0.1", runtime_env=env, **kwargs))


def _single_node_ray() -> None:
    import ray._private.ray_constants as constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for Ray's own processes
    constants.ENABLE_RAY_CLUSTER = False  # read at import: this process imported Ray already


def _start_with_patience(start) -> None:
    """Ray waits a fixed 30 s for its raylet; under load that is not enough. Retry until
    PEFTSEARCH_RAY_START_TIMEOUT seconds (default 180) have passed, then say so in one line."""
    import ray

    budget = env_seconds(RAY_START_TIMEOUT_ENV)
    deadline = time.monotonic() + budget
    while True:
        try:
            start()
            return
        except Exception as e:  # Ray raises bare Exception / RuntimeError / ConnectionError here
            if ray.is_initialized():
                ray.shutdown()
            if time.monotonic() >= deadline:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                raise RayStartError(f"ray: the local Ray did not start within {budget:.0f} s ({first}); the machine "
                                    f"may be overloaded: set {RAY_START_TIMEOUT_ENV}=SECONDS to wait longer") from None
            log.warning("Ray did not start (%s); retrying", str(e).splitlines()[0] if str(e) else type(e).__name__)
