"""`peftsearch bench scale`: the tracking path under a cluster's load.

One real trial is trained first (a tiny config-built BERT on real RTE rows) and its metric set
recorded: the start metrics, every evaluation's metrics, the final summary, its params and tags.
Then N simulated trials play that record at once, each sending R evaluations ``interval`` seconds
apart, through the code trials use (``runs.TrialRun``, ``runner.TrialReporter``,
``runner.trial_tags``, ``runner.log_result``), to an ``mlflow server`` on PostgreSQL started here
on loopback. The trials run as threads in a few client processes, as many trials as there are
Ray workers would. At the end PostgreSQL is counted: one run per trial, FINISHED, with exactly the
metric rows and params that were sent; nothing lost, nothing duplicated.
"""
from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainers.machine import load_average


@dataclass
class Recording:
    """What one real trial sent to MLflow."""

    trial: object  # search.space.Trial
    start: dict[str, float]
    evals: list[tuple[int, dict[str, float]]]
    result: object  # trainers.loop.TrainResult (history and artefact dropped)

    def eval(self, r: int) -> tuple[int, dict[str, float]]:
        """The r-th evaluation of a longer trial: the recorded ones in turn, at increasing steps."""
        step, metrics = self.evals[r % len(self.evals)]
        return step + (r // len(self.evals)) * self.evals[-1][0], metrics

    def expected_metrics(self, evals: int) -> int:
        """Metric rows a run that plays ``evals`` evaluations must end with."""
        # strings (the task format) go to tags, not metrics (runner.TrialReporter.on_start)
        count = lambda m: sum(not isinstance(v, str) and not math.isnan(float(v)) for v in m.values())  # noqa: E731
        from search.runner import result_metrics

        final = result_metrics(self.result)  # what runner.log_result logs at the end
        return count(self.start) + sum(count(self.eval(r)[1]) for r in range(evals)) + count(final)


class _Recorder:
    def __init__(self) -> None:
        self.start: dict[str, float] = {}
        self.evals: list[tuple[int, dict[str, float]]] = []

    def on_start(self, info: dict[str, float]) -> None:
        self.start = dict(info)

    def on_eval(self, *, step: int, metrics: dict[str, float]) -> None:
        self.evals.append((step, dict(metrics)))


def record_trial(*, data_dir: str, backbone: str) -> Recording:
    """Train one short real trial and keep what it reported."""
    import torch

    from search.space import expand
    from search.spec import parse_spec
    from trainers.loop import train

    spec = parse_spec({
        "name": "bench-scale", "backbone": backbone, "data": {"source": "local", "dir": data_dir}, "tasks": ["rte"],
        "methods": {"finetune": {"lr": [1e-4]}}, "seeds": [0],
        "training": {"max_epochs": 1, "batch_size": 4, "max_length": 48, "max_train_examples": 32,
                     "max_eval_examples": 16, "eval_every": 2},
        "tracking": {"uri": "sqlite:///unused.db"}}, source="bench scale")
    trial = expand(spec)[0]
    torch.set_num_threads(1)
    rec = _Recorder()
    result = train(trial.config, reporter=rec)
    return Recording(trial, rec.start, rec.evals, dataclasses.replace(result, history=[], artefact=None))


@dataclass(frozen=True)
class Load:
    trials: int
    evals: int = 10  # R: evaluations per trial
    interval: float = 1.0  # seconds between one trial's evaluations
    procs: int = 4  # client processes the trials are spread over
    asynchronous: bool = True
    # Mutations, for the tests: (trial, evaluation) never sent, or sent twice. Still expected once.
    drop: tuple[int, int] | None = None
    duplicate: tuple[int, int] | None = None


@dataclass
class Played:
    latencies: list[float] = field(default_factory=list)  # seconds, one per evaluation report
    sent: list[float] = field(default_factory=list)  # wall-clock time each report was handed over
    acked: list[float] = field(default_factory=list)  # and acknowledged by the server
    errors: list[str] = field(default_factory=list)

    def merge(self, other: "Played") -> None:
        for f in dataclasses.fields(self):
            getattr(self, f.name).extend(getattr(other, f.name))


def _play_trial(i: int, rec: Recording, ctx, load: Load, t0: float, out: Played, lock: threading.Lock) -> None:
    from search.runner import TrialReporter, log_result, trial_tags
    from tracking import runs

    mine = Played()
    trial = rec.trial
    tags = trial_tags(trial.config, trial, ctx, key=f"sim-{i:05d}", attempt=1)
    with runs.TrialRun(ctx.tracking_uri, experiment_id=ctx.experiment_id, parent_run_id=ctx.parent_run_id,
                       run_name=f"sim-{i:05d}", tags=tags, params=trial.hyperparameters(),
                       asynchronous=load.asynchronous) as run:
        reporter = TrialReporter(run, report=lambda metrics: None)
        reporter.on_start(rec.start)
        start = max(time.time(), t0 + load.interval * (i % 97) / 97)  # spread the trials over an interval
        for r in range(load.evals):
            time.sleep(max(0.0, start + r * load.interval - time.time()))
            if (i, r) == load.drop:
                continue
            step, metrics = rec.eval(r)
            for _ in range(2 if (i, r) == load.duplicate else 1):
                _report(reporter, run, step, metrics, mine)
        log_result(run, dataclasses.replace(rec.result, steps=rec.eval(load.evals - 1)[0]))
    with lock:
        out.merge(mine)


def _report(reporter, run, step: int, metrics: dict, mine: Played) -> None:
    sent = time.time()
    reporter.on_eval(step=step, metrics=metrics)
    mine.sent.append(sent)
    if not run.asynchronous:
        mine.acked.append(time.time())
        mine.latencies.append(mine.acked[-1] - sent)
        return

    def done(_future) -> None:  # the queued batch acknowledged (or failed: then re-sent at the end)
        mine.acked.append(time.time())
        mine.latencies.append(mine.acked[-1] - sent)

    for future in run._pending[-1][1]._operation_futures:  # MLflow's RunOperations holds futures
        future.add_done_callback(done)
    time.sleep(0.002)  # a duplicate, if one is asked for, gets its own timestamp


def _play_group(first: int, count: int, rec: Recording, ctx, load: Load, t0: float) -> Played:
    out, lock = Played(), threading.Lock()

    def one(i: int) -> None:
        try:
            _play_trial(i, rec, ctx, load, t0, out, lock)
        except Exception as e:  # noqa: BLE001 - reported, and the count check shows what it lost
            with lock:
                out.errors.append(f"trial {i}: {type(e).__name__}: {str(e)[:300]}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(first, first + count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def _init_client_process(threads: int) -> None:
    # Every simulated trial of a process shares one HTTP connection pool; size it for them.
    os.environ["MLFLOW_HTTP_POOL_MAXSIZE"] = str(max(10, threads))
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # a "View run" line per trial otherwise


@dataclass
class Counted:
    runs: int
    lost: int  # evaluation-sized reports: metric rows, params and runs missing
    duplicated: int
    unfinished: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.unfinished)


def count_check(db_uri: str, parent_run_id: str, *, trials: int, metrics_per_run: int, params_per_run: int) -> Counted:
    """Count, in the tracking database itself, what every simulated trial's run holds."""
    import sqlalchemy as sa

    sql = sa.text("""SELECT r.run_uuid, r.status, k.value AS key,
            (SELECT count(*) FROM metrics m WHERE m.run_uuid = r.run_uuid) AS metrics,
            (SELECT count(*) FROM params p WHERE p.run_uuid = r.run_uuid) AS params
        FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'mlflow.parentRunId' AND t.value = :parent
        LEFT JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = 'peftsearch.trial_key'
        WHERE r.lifecycle_stage = 'active'""")
    engine = sa.create_engine(db_uri)
    try:
        with engine.connect() as c:
            rows = c.execute(sql, {"parent": parent_run_id}).fetchall()
    finally:
        engine.dispose()
    by_key: dict[str, list] = {}
    for row in rows:
        by_key.setdefault(row.key, []).append(row)
    expected = {f"sim-{i:05d}" for i in range(trials)}
    problems, lost, duplicated, unfinished = [], 0, 0, 0
    for key in sorted(expected - set(by_key)):
        problems.append(f"{key}: no run")
        lost += metrics_per_run + params_per_run
    for key, found in sorted(by_key.items()):
        if key not in expected or len(found) > 1:
            problems.append(f"{key}: {len(found)} runs")
            duplicated += sum(r.metrics for r in found[1:]) if key in expected else sum(r.metrics for r in found)
        row = found[0]
        for what, got, want in (("metric rows", row.metrics, metrics_per_run), ("params", row.params, params_per_run)):
            if got != want:
                problems.append(f"{key}: {got} {what}, sent {want}")
                lost, duplicated = lost + max(0, want - got), duplicated + max(0, got - want)
        if row.status != "FINISHED":
            problems.append(f"{key}: {row.status}")
            unfinished += 1
    return Counted(len(rows), lost, duplicated, unfinished, problems)


def _cpu_seconds(pid: int) -> float:
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:  # live processes, and the children they reaped (PostgreSQL backends that ended)
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


@dataclass
class ScaleResult:
    load: Load
    reports: int
    per_second: float
    p50_s: float
    p99_s: float
    server_cores: float
    postgres_cores: float
    wall_s: float
    counted: Counted
    errors: list[str]
    loadavg: str
    outage: tuple[float, float] | None = None
    reports_in_outage: int = 0


def play(load: Load, rec: Recording, *, server, pg, name: str, outage_s: float = 0.0) -> ScaleResult:
    """Play ``load`` against a running server (``tracking.servers.MlflowServer``) on ``pg``."""
    from search.runner import SearchContext
    from tracking import runs

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    c = runs.client(server.url)
    exp = runs.ensure_experiment(c, name)
    parent = runs.start_parent_run(c, exp, search_id=name, tags={"peftsearch.bench": "scale"})
    ctx = SearchContext(server.url, exp, parent, name, threads=1)
    procs = max(1, min(load.procs, load.trials))
    sizes = [load.trials // procs + (k < load.trials % procs) for k in range(procs)]
    # Forked client processes start with this one's imports (the trial code pulls in torch and
    # transformers: about 20 s per process to import on a loaded 2-core machine); spawned ones
    # import them first.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    t0 = time.time() + (2.0 if method == "fork" else 20.0)
    outage: list[float] = []
    breaker = None
    out = Played()
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context(method),
                             initializer=_init_client_process, initargs=(max(sizes),)) as pool:
        futures = [pool.submit(_play_group, sum(sizes[:k]), sizes[k], rec, ctx, load, t0) for k in range(procs)]
        if outage_s:  # after the fork: the clients get no copy of this thread
            half = load.trials * rec.expected_metrics(load.evals) // 2
            breaker = threading.Thread(target=_outage, args=(server, pg.uri, parent, half, outage_s, outage))
            breaker.start()
        time.sleep(max(0.0, t0 - time.time()))  # CPU and wall time from when the trials start
        cpu0 = (_cpu_seconds(server.proc.pid), _cpu_seconds(pg.pid))
        wall0 = time.perf_counter()
        for f in futures:
            out.merge(f.result())
    if breaker:
        breaker.join()
    wall = time.perf_counter() - wall0
    cpu1 = (_cpu_seconds(server.proc.pid), _cpu_seconds(pg.pid))
    runs.finish_parent_run(c, parent, failed_trials=0, total_trials=load.trials)
    counted = count_check(pg.uri, parent, trials=load.trials, metrics_per_run=rec.expected_metrics(load.evals),
                          params_per_run=len(rec.trial.hyperparameters()))
    lat = np.array(out.latencies) if out.latencies else np.array([math.nan])
    span = (max(out.acked) - min(out.sent)) if out.sent and out.acked else math.nan
    window = (outage[0], outage[1]) if len(outage) == 2 else None
    return ScaleResult(load, len(out.sent), len(out.acked) / span if span else math.nan,
                       float(np.percentile(lat, 50)), float(np.percentile(lat, 99)),
                       # a restarted server is a new process tree: its CPU before the outage is gone
                       math.nan if outage_s else (cpu1[0] - cpu0[0]) / wall, (cpu1[1] - cpu0[1]) / wall,
                       wall, counted, out.errors,
                       load_average(), window,
                       sum(window[0] <= s <= window[1] for s in out.sent) if window else 0)


def _outage(server, db_uri: str, parent: str, rows: int, seconds: float, window: list[float]) -> None:
    """Stop the server once half the load's metric rows are in PostgreSQL; start it ``seconds`` later."""
    import sqlalchemy as sa

    sql = sa.text("SELECT count(*) FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
                  "AND t.key = 'mlflow.parentRunId' AND t.value = :p")
    engine = sa.create_engine(db_uri)
    try:
        with engine.connect() as c:
            while c.execute(sql, {"p": parent}).scalar() < rows:
                time.sleep(0.2)
    finally:
        engine.dispose()
    window.append(time.time())
    server.stop()
    time.sleep(seconds)
    window.append(time.time())
    server.start()


def run_scale(loads: list[Load], *, data_dir: str, backbone: str | None = None, server_workers: int = 2,
              outage_s: float = 0.0, gunicorn: bool = False, echo=print) -> list[ScaleResult]:
    """Start PostgreSQL and an MLflow server on loopback, record a real trial, play each load."""
    from search.bench_search import tiny_backbone
    from tracking.servers import MlflowServer, Postgres

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        echo("recording one real trial ...")
        rec = record_trial(data_dir=data_dir, backbone=backbone or tiny_backbone(Path(tmp) / "tiny"))
        pg = Postgres()
        server = None
        try:
            server = MlflowServer(pg.uri, workers=server_workers, gunicorn=gunicorn)
            results = []
            for k, load in enumerate(loads):
                echo(f"playing {load.trials} trials x {load.evals} evaluations, every {load.interval:g}s, "
                     f"{'async' if load.asynchronous else 'sync'} logging ...")
                results.append(play(load, rec, server=server, pg=pg, name=f"bench-scale-{k}", outage_s=outage_s))
                echo(row(results[-1]))
            return results
        finally:
            if server:
                server.close()
            pg.stop()


HEADER = ("| trials | logging | reports | results/s | p50 ms | p99 ms | server CPU | server CPU ms per report"
          " | PostgreSQL CPU | lost | duplicated | unfinished | wall s | load average |\n"
          "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")


def row(r: ScaleResult) -> str:
    c = r.counted
    return (f"| {r.load.trials} | {'async' if r.load.asynchronous else 'sync'} | {r.reports} | {r.per_second:.0f} "
            f"| {r.p50_s * 1e3:.0f} | {r.p99_s * 1e3:.0f} | {r.server_cores:.2f} "
            f"| {r.server_cores * r.wall_s / r.reports * 1e3 if r.reports else math.nan:.1f} | {r.postgres_cores:.2f} | {c.lost} "
            f"| {c.duplicated} | {c.unfinished} | {r.wall_s:.0f} | {' '.join(r.loadavg.split()[:3])} |")
