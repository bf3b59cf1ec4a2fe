"""The ``peftsearch`` command.

Imports stay inside the commands: ``--help`` loads click alone, ``validate`` and ``tasks`` never
load MLflow, Ray or transformers (``peftsearch bench cli`` measures it).
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from tracking.words import count

DATA_DIR_HELP = "Read GLUE/SuperGLUE from this directory (released layout) instead of the hub."


def fail(message: object) -> None:
    """One line on stderr, ``peftsearch: error: FIELD: rule, got VALUE``, and exit 2."""
    from search.spec import one_line

    click.echo(f"peftsearch: error: {one_line(message)}", err=True)
    sys.exit(2)


_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())  # click >= 8.2


def _backbone(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A command's --backbone, checked as a spec's backbone is (one line where it holds no model)."""
    from search.spec import backbone_option

    return backbone_option(value) if value else value


def _ray_address(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """run's and resume's --address: its form, and that something listens there (one line)."""
    from search.uris import check_ray_address

    return None if value is None else check_ray_address(value)


def usage_line(e: click.UsageError, ctx: click.Context | None = None) -> str:
    """click's four-line usage error as our one line: the option or argument (or the command) as
    the field, click's rule, and where the help is. ctx, the group's, names the subcommand where
    click's error carries no context of its own (an option's missing value)."""
    where = e.ctx.command_path.split()[1:] if e.ctx else []
    if not e.ctx and ctx is not None and ctx.invoked_subcommand:
        where = [*ctx.command_path.split()[1:], ctx.invoked_subcommand]
    param, option = getattr(e, "param", None), getattr(e, "option_name", None)
    rule = e.format_message() if param is None else (e.message or "")
    if param is not None:
        field = param.opts[0] if isinstance(param, click.Option) and param.opts else param.human_readable_name
    elif option and not isinstance(e, click.NoSuchOption):  # "Option '--x' requires an argument."
        field, rule = option, rule.replace(f"Option '{option}' ", "").replace(f"option '{option}' ", "")
    else:
        field = " ".join(where) or "command"
    if isinstance(e, click.MissingParameter):
        rule = "is required, got nothing"
    rule = rule.rstrip(".") or "is not valid"
    see = f" (see '{' '.join(['peftsearch', *where, '--help'])}')"
    return f"{field}: {rule[0].lower() + rule[1:]}{see}"


class _Cli(click.Group):
    """Known user errors (ValueError: SpecError, DataError, ...; NoRunsError) and click's usage
    errors become one line on stderr and exit 2, with no traceback."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as e:
            if isinstance(e, _HELP):  # a bare group: its help, as click shows it
                raise
            fail(usage_line(e))

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.UsageError as e:
            if isinstance(e, _HELP):  # a bare group: its help, as click shows it
                raise
            fail(usage_line(e, ctx))
        except ValueError as e:
            fail(e)
        except RuntimeError as e:
            from search.runner import RayStartError  # raised only once the runner is imported

            if not isinstance(e, RayStartError):
                raise
            click.echo(f"peftsearch: error: {e}", err=True)
            sys.exit(1)
        except LookupError as e:
            from tracking.store import NoRunsError

            if not isinstance(e, NoRunsError):
                raise
            fail(e)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Hyperparameter search and Expected Validation Performance for PEFT methods."""


def _spec_options(f):
    f = click.option("--max-trials", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Allow a search of up to N trials [default: 100,000].")(f)
    f = click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", help=DATA_DIR_HELP)(f)
    f = click.option("--tracking-uri", help="Override tracking.uri (sqlite:///..., postgresql://..., http://...); "
                                            "without it and without tracking.uri, MLFLOW_TRACKING_URI.")(f)
    return click.argument("spec")(f)


def _load(spec: str, data_dir: str | None, tracking_uri: str | None, max_trials: int | None = None):
    """The one validation pass (search/spec.py), with the command line's overrides."""
    from search.paths import checked_path
    from search.spec import DEFAULT_MAX_TRIALS, load_spec
    from trainers.machine import check_env_seconds

    check_env_seconds()  # PEFTSEARCH_RAY_START_TIMEOUT, PEFTSEARCH_TRACKING_RETRY_S
    overrides = {}
    if data_dir:
        overrides |= {"data.source": "local", "data.dir": str(checked_path("data.dir", data_dir).resolve())}
    if tracking_uri:
        overrides["tracking.uri"] = tracking_uri
    return load_spec(spec, overrides=overrides, max_trials=max_trials or DEFAULT_MAX_TRIALS)


@main.command()
@_spec_options
@click.option("--address", envvar="RAY_ADDRESS", callback=_ray_address,
              help="Join this Ray cluster (auto, HOST:PORT of its GCS, or ray://HOST:PORT) instead of starting a local one.")
@click.option("--out", type=click.Path(path_type=Path), help="Output directory [default: peftsearch-out/NAME].")
def run(spec: str, data_dir: str | None, tracking_uri: str | None, max_trials: int | None, address: str | None,
        out: Path | None) -> None:
    """Run the search a SPEC (a YAML path or a bundled spec name) describes.

    \b
    Exit status: 0 every trial finished; 3 completed with failed trials;
    1 every trial failed, or the driver failed; 2 a bad input; 130/143
    stopped by Ctrl-C/SIGTERM (prints the `peftsearch resume` command)."""
    s = _load(spec, data_dir, tracking_uri, max_trials)  # everything is validated before Ray or MLflow start
    out = _out_dir(out or Path("peftsearch-out") / s.name)
    from rich.console import Console

    from search.runner import check_fits, local_resources, run_search
    from search.spec import fetch_hub_config
    from search.uris import mask

    check_fits(s, local=not address, have=local_resources(s))  # a trial the local Ray cannot hold
    note = None if address else fetch_hub_config(s)  # a cluster's workers may reach the hub where we do not
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold]{s.name}[/]: {count(s.trial_count(), 'trial')} on {s.backbone} → {mask(s.tracking.uri)}")
    if note:
        console.print(note, markup=False)

    def search():
        result = run_search(s, out_dir=out, address=address, console=console)
        _tag_spec_commit(spec, s.tracking.uri, result.parent_run_id)
        return result

    _report(console, s.tracking.uri, search)


def _report(console, uri: str, search) -> None:
    """Run a search; print what it did and wrote; exit with a status that says how it ended."""
    from search.runner import DriverStopped
    from search.uris import mask
    from tracking.provenance import training_runs_path

    try:
        result = search()
    except DriverStopped as e:
        click.echo(f"peftsearch: {e}", err=True)
        sys.exit(e.exit_code)
    console.print(f"[bold]done[/] in {result.seconds:.0f}s: {result.trials - result.errors} finished, "
                  f"{result.errors} failed; search {result.search_id}")
    for f in result.outputs:
        console.print(f"  wrote {f}")
    served = uri.startswith(("http://", "https://"))  # an MLflow server: its UI is already up
    view = training_runs_path(result.experiment_id)  # MLflow 3's UI opens on GenAI otherwise, whatever the kind tag
    console.print(f"MLflow UI: {mask(uri).rstrip('/')}/{view}" if served else
                  f"MLflow UI: mlflow ui --backend-store-uri {mask(uri)}, then open http://127.0.0.1:5000/{view}")
    if result.errors:
        sys.exit(1 if result.errors == result.trials else 3)


def _out_dir(out: Path) -> Path:
    """--out, checked like a spec path: not a file, no over-long name, no unknown ~user."""
    from search.paths import writable_dir

    return writable_dir("out", str(out))


def _tag_spec_commit(spec: str, uri: str, parent_run_id: str) -> None:
    """The git commit of the spec's directory (if it is in a repository), on the parent run."""
    from tracking.provenance import spec_commit
    from tracking.runs import client

    commit = spec_commit(spec) if Path(spec).is_file() else None
    if commit:
        client(uri).set_tag(parent_run_id, "peftsearch.spec_git_commit", commit)


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--address", envvar="RAY_ADDRESS", callback=_ray_address,
              help="Join this Ray cluster (auto, HOST:PORT of its GCS, or ray://HOST:PORT) instead of starting a local one.")
@click.option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
              help="The tracking URI again, when it holds a password (search.json keeps it masked).")
def resume(out: Path, address: str | None, tracking_uri: str | None) -> None:
    """Finish the search whose output directory is OUT, after its driver died."""
    out = _out_dir(out)
    from rich.console import Console

    from search.runner import check_fits, load_state, local_resources, resume_search

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    from trainers.machine import check_env_seconds

    check_env_seconds()
    spec = load_state(out, tracking_uri)[0]  # the edge, before Ray starts
    check_fits(spec, local=not address, have=local_resources(spec))
    _report(console, spec.tracking.uri,
            lambda: resume_search(out, address=address, console=console, tracking_uri=tracking_uri))


_JOBS_ADDRESS = click.option("--address", envvar="RAY_API_SERVER_ADDRESS", required=True,
                             help="The Ray head's dashboard, e.g. http://HEAD:8265.")


@main.command()
@_spec_options
@_JOBS_ADDRESS
@click.option("--out", help="Output directory on the head node [default: ~/peftsearch-out/NAME there].")
def submit(spec: str, data_dir: str | None, tracking_uri: str | None, max_trials: int | None, address: str,
           out: str | None) -> None:
    """Submit the search SPEC to a Ray cluster as a job; prints the job id."""
    s = _load(spec, data_dir, tracking_uri, max_trials)
    from search import jobs

    jobs.check_cluster_tracking(s)  # before contacting the cluster
    click.echo(jobs.submit(s, address=address, out=out))


@main.command()
@click.argument("job")
@_JOBS_ADDRESS
def status(job: str, address: str) -> None:
    """The state of a submitted search job: PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    from search import jobs

    click.echo(jobs.status(job, address=address))


@main.command()
@click.argument("job")
@_JOBS_ADDRESS
def logs(job: str, address: str) -> None:
    """The driver log of a submitted search job."""
    from search import jobs

    click.echo(jobs.logs(job, address=address), nl=False)


@main.command()
@click.argument("job")
@_JOBS_ADDRESS
def stop(job: str, address: str) -> None:
    """Stop a submitted search job."""
    from search import jobs

    click.echo("stopping" if jobs.stop(job, address=address) else "already finished")


@main.command()
@_spec_options
def validate(spec: str, data_dir: str | None, tracking_uri: str | None, max_trials: int | None) -> None:
    """Check a SPEC and print the trials it expands to (a grid) or samples (random, optuna),
    without running anything."""
    from search.space import describe

    from search.spec import fetch_hub_config

    s = _load(spec, data_dir, tracking_uri, max_trials)
    note = fetch_hub_config(s)  # a hub backbone not cached: its config.json, as `run` fetches it
    click.echo(f"{s.name}: valid, {count(s.trial_count(), 'trial')}")
    for line in describe(s):
        click.echo(f"  {line}")
    if note:
        click.echo(note, err=True)


def _analysis_options(f):
    f = click.option("--log-to-parent", is_flag=True,
                     help="Also log the files under analysis/ on each search's parent MLflow run.")(f)
    f = click.option("--score", type=click.Choice(["selection", "reported"]), default="selection", show_default=True,
                     help="selection = best_dev_score; reported = reported_score (held-out protocol).")(f)
    f = click.option("--group-by", "group_by", multiple=True, metavar="experiment|TAG",
                     help="Split each method by this (repeatable): 'experiment' or a tag key.")(f)
    f = click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
                     help="Only trials with this tag (repeatable; 'protocol' means peftsearch.protocol).")(f)
    for name in ("backbone", "method", "task"):
        f = click.option(f"--{name}", f"{name}s", multiple=True, help=f"Only these {name}s (repeatable).")(f)
    f = click.option("--out", type=click.Path(path_type=Path), default=Path("."), show_default=True,
                     callback=_analysis_out)(f)
    f = click.option("--experiment", "experiments", required=True, multiple=True,
                     help="An MLflow experiment (a spec's name); repeat to combine several.")(f)
    return click.option("--tracking-uri", required=True, callback=_analysis_uri,
                        help="The tracking database URI, or an MLflow server's http(s):// URI.")(f)


def _analysis_out(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    from search.paths import writable_dir

    return writable_dir("--out", str(value))


def _analysis_uri(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The analysis reads a store a search wrote: checked as a spec's tracking.uri is, and it must
    exist and hold MLflow's tables (one line, before anything is read or written)."""
    from search.uris import check_tracking_uri

    try:
        return check_tracking_uri(value, existing=True)
    except ValueError as e:
        raise ValueError(f"--tracking-uri: {e}") from None


def _selection(experiments, tasks, methods, backbones, tags, group_by):
    from tracking.store import Selection, parse_tag_filter

    return Selection(tuple(experiments), tuple(tasks), tuple(methods), tuple(backbones),
                     tuple(parse_tag_filter(t) for t in tags), tuple(group_by))


class _MaxK(click.ParamType):
    """--max-k: a whole number, at least 1. A bad value raises ValueError, which the group turns
    into the one-line ``peftsearch: error: --max-k: ...`` (exit 2) while the command line is still
    being parsed, before anything is read or written."""
    name = "integer"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            k = value
        else:
            try:
                k = int(str(value).strip())
            except ValueError:
                k = None
        if k is None or k < 1:
            raise ValueError(f"--max-k: must be a whole number of at least 1, got {value}")
        return k


def _max_k_option(help: str):
    """evp's, compare's and report's --max-k: one spelling, one check (_MaxK)."""
    return click.option("--max-k", type=_MaxK(), help=help)


@main.command()
@_analysis_options
@click.option("--unit", type=click.Choice(["trial", "assignment"]), default="trial", show_default=True,
              help="One EVP sample per trial, or per assignment (its seed-median).")
@click.option("--estimator", type=click.Choice(["with-replacement", "unbiased"]), default="with-replacement",
              show_default=True)
@click.option("--budget", type=click.Choice(["assignments", "seconds", "gpu-hours"]), default="assignments",
              show_default=True, help="The plot's x axis: samples, or k × the mean trial wall time.")
@click.option("--bootstrap", type=click.IntRange(min=0), default=0, show_default=True,
              help="Resamples for a bootstrap confidence interval (0: shade ± std instead).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap resampling.")
@_max_k_option("Largest budget k [default: N; unbiased: at most N]; k = 1..300, then log-spaced.")
@click.option("--format", "formats", type=click.Choice(["csv", "json", "png", "svg"]), multiple=True,
              help="Files to write (repeatable) [default: all].")
def evp(tracking_uri, experiments, out, tasks, methods, backbones, tags, group_by, score, log_to_parent,
        unit, estimator, budget, bootstrap, seed, max_k, formats) -> None:
    """Expected Validation Performance curves: evp.csv, evp.json, evp.png, evp.svg."""
    from tracking.report import EVP_FORMATS, EvpOptions, write_evp

    options = EvpOptions(unit=unit, estimator=estimator, score=score, budget=budget, bootstrap=bootstrap, seed=seed,
                         max_k=max_k)
    sel = _selection(experiments, tasks, methods, backbones, tags, group_by)
    for f in write_evp(tracking_uri, sel, out, options=options, formats=tuple(formats) or EVP_FORMATS,
                       log_to_parent=log_to_parent):
        click.echo(f"wrote {f}")
    _note_incomplete(tracking_uri, experiments)


@main.command()
@_analysis_options
@click.option("--format", "formats", type=click.Choice(["csv", "md", "tex"]), multiple=True,
              help="Files to write (repeatable) [default: all].")
def summary(tracking_uri, experiments, out, tasks, methods, backbones, tags, group_by, score, log_to_parent,
            formats) -> None:
    """Table 1: seed-median ± std of each method's best assignment per task, Macro, best in bold,
    trainable parameters: summary.csv, table1.csv, summary.md, summary.tex."""
    from tracking.report import SUMMARY_FORMATS, write_summary

    sel = _selection(experiments, tasks, methods, backbones, tags, group_by)
    for f in write_summary(tracking_uri, sel, out, score=score, formats=tuple(formats) or SUMMARY_FORMATS,
                           log_to_parent=log_to_parent):
        click.echo(f"wrote {f}")
    _note_incomplete(tracking_uri, experiments)


def _note_incomplete(uri: str, experiments) -> None:
    """One stderr line per search (parent run) that did not complete: the figures above use its
    finished trials only."""
    from tracking.runs import INCOMPLETE_TAG, client, tag

    c = client(uri)
    for name in experiments:
        exp = c.get_experiment_by_name(name)
        if exp is None:
            continue
        for r in c.search_runs([exp.experiment_id], f"tags.`{tag('role')}` = 'search'", max_results=10000):
            why = r.data.tags.get(INCOMPLETE_TAG)
            if r.info.status in ("RUNNING", "KILLED") or (why not in (None, "false")):
                click.echo(f"peftsearch: note: search {r.info.run_name} of {name} is incomplete "
                           f"({why or r.info.status}); these figures use its finished trials only", err=True)


def _budget_option(f):
    """compare's and report's --budget."""
    return click.option("--budget", type=click.Choice(["assignments", "seconds", "gpu-hours"]), default="assignments",
                        show_default=True, help="Budget axis: a count of samples (trials; compare: per --unit), or compute, where each "
                        "method gets the draws its own mean cost per sample buys (wall seconds, as evp --budget).")(f)


@main.command()
@_analysis_options
@click.option("--baseline", help="Compare every method against this one [default: every pair].")
@click.option("--unit", type=click.Choice(["trial", "assignment"]), default="trial", show_default=True,
              help="Budget unit: one EVP sample per trial, or per assignment (its seed-median).")
@click.option("--estimator", type=click.Choice(["with-replacement", "unbiased"]), default="with-replacement",
              show_default=True)
@_budget_option
@_max_k_option("Largest budget compared [default: the smaller N; under a compute budget, where one method has "
               "max_k draws, default N / 4].")
@click.option("--bootstrap", type=click.IntRange(min=10), default=1000, show_default=True,
              help="Bootstrap resamples for P(A > B) at each budget.")
@click.option("--level", type=click.FloatRange(0.5, 1, min_open=True, max_open=True), default=0.95, show_default=True,
              help="P(A > B) needed to call a winner at a budget; ASO's confidence.")
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05, show_default=True,
              help="Family-wise level of the median tests (Holm) and of a compute budget's winner calls.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--strict", is_flag=True, help="Refuse (exit 2) when the fairness audit finds anything.")
@click.option("--format", "formats", type=click.Choice(["md", "tex", "csv", "json", "png", "svg"]), multiple=True,
              help="Files to write (repeatable) [default: all].")
def compare(tracking_uri, experiments, out, tasks, methods, backbones, tags, group_by, score, log_to_parent,
            baseline, unit, estimator, budget, max_k, bootstrap, level, alpha, seed, strict, formats) -> None:
    """Which method wins, at which budget, how sure we are, and whether it was fair:
    compare.md, compare.tex, compare.csv, compare.json, compare_p.png/.svg."""
    from tracking.compare import CompareOptions
    from tracking.compare_report import COMPARE_FORMATS, run_compare

    options = CompareOptions(unit=unit, estimator=estimator, score=score, baseline=baseline, max_k=max_k,
                             resamples=bootstrap, level=level, alpha=alpha, seed=seed, budget=budget)
    sel = _selection(experiments, tasks, methods, backbones, tags, group_by)
    result, files = run_compare(tracking_uri, sel, out, options=options, strict=strict,
                                formats=tuple(formats) or COMPARE_FORMATS, log_to_parent=log_to_parent,
                                echo=lambda line: click.echo(line, err=True))
    for s in result.sentences:
        click.echo(s)
    for f in files:
        click.echo(f"wrote {f}")


@main.command()
@_analysis_options
@click.option("--baseline", help="Compare every method against this one [default: every pair].")
@_budget_option
@_max_k_option("Largest budget of the EVP panels (as evp --max-k) and of the comparisons (as compare --max-k) "
               "[default: N, and compare's default]; k = 1..300, then log-spaced.")
def report(tracking_uri, experiments, out, tasks, methods, backbones, tags, group_by, score, log_to_parent,
           baseline, budget, max_k) -> None:
    """report.html (self-contained: summary, EVP, comparisons, Pareto view, fairness audit), with
    pareto.csv/.png/.svg beside it. --budget and --max-k are compare's: the comparisons' budget and
    the EVP panels' x axis, and where both stop."""
    from tracking.compare import CompareOptions
    from tracking.html_report import write_report
    from tracking.pareto import pareto_points, write_pareto
    from tracking.store import load_trials

    sel = _selection(experiments, tasks, methods, backbones, tags, group_by)
    options = CompareOptions(score=score, baseline=baseline, budget=budget, max_k=max_k)
    files = write_report(tracking_uri, sel, out, score=score, compare_options=options, log_to_parent=log_to_parent)
    files += write_pareto(pareto_points(load_trials(tracking_uri, sel), score=score), out)
    for f in files:
        click.echo(f"wrote {f}")


@main.group()
def bench() -> None:
    """Benchmarks that print tables."""


@bench.command()
@click.option("--runs", type=click.IntRange(min=1), default=100_000, show_default=True)
@click.option("--client-runs", type=click.IntRange(min=1), multiple=True,
              help="Sizes at which to time the MlflowClient path [default: --runs itself].")
@click.option("--workdir", type=click.Path(path_type=Path), help="Where the database goes [default: a temp dir].")
@click.option("--scaling", is_flag=True, help="Time and peak memory of EVP alone: one RUNS-trial group, and RUNS "
              "trials in --groups uneven groups (no database).")
@click.option("--groups", type=click.IntRange(min=1), default=1000, show_default=True)
def analytics(runs: int, client_runs: tuple[int, ...], workdir: Path | None, scaling: bool, groups: int) -> None:
    """Time evp + summary on a RUNS-run MLflow database: our SQL reader vs MlflowClient.search_runs."""
    import tempfile

    if scaling:
        from tracking.bench_evp import run_scaling, scaling_table

        click.echo(scaling_table(run_scaling(runs, groups, echo=click.echo)))
        return

    from tracking.bench import run_bench, table, verdict

    with tempfile.TemporaryDirectory() as tmp:
        work = workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        timings = run_bench(work, runs=runs, client_runs=client_runs or (runs,), echo=click.echo)
    click.echo(table(timings))
    for line in verdict(timings, runs):
        click.echo(line)


@main.command()
def tasks() -> None:
    """List the tasks: name, benchmark, metric."""
    from trainers.tasks import TASKS

    for name in TASKS:
        t = TASKS[name]
        click.echo(f"{name}\t{t.benchmark}\t{t.metric_label}")


@main.command()
@click.option("--backbone", callback=_backbone, default="sentence-transformers/all-MiniLM-L6-v2", show_default=True,
              help="Count trainable parameters on this backbone (hub id or local directory).")
def methods(backbone: str) -> None:
    """List the methods: name, trainable parameters on BACKBONE (head excluded), description."""
    from trainers.methods.catalogue import method_lines

    for line in method_lines(backbone):
        click.echo(line)


@bench.command("methods")
@click.option("--backbone", callback=_backbone, default="sentence-transformers/all-MiniLM-L6-v2", show_default=True,
              help="A hub id or model directory of any family (`python -m trainers.bench make-backbone` builds "
                   "paper-sized ones with random weights).")
@click.option("--route", default="auto", show_default=True, type=click.Choice(["auto", "head", "lm"]),
              help="Decoders: a classification head, or LM scoring of label words.")
@click.option("--batch", default=8, show_default=True)
@click.option("--seq-len", default=128, show_default=True)
@click.option("--repeats", default=5, show_default=True, help="Interleaved timing rounds (medians are shown).")
@click.option("--warmup", default=1, show_default=True)
@click.option("--method", "only", multiple=True, help="METHOD or METHOD:key=value,... (repeatable) [default: all + paper variants]")
@click.option("--device", default=None, help="cpu or cuda [default: cuda when available]")
@click.option("--no-train", is_flag=True, help="Time inference only (a CPU training step at batch 256 takes minutes).")
def bench_methods_cmd(backbone, route, batch, seq_len, repeats, warmup, only, device, no_train) -> None:
    """Every method's time and memory relative to finetune, measured interleaved in one process."""
    import torch

    from trainers.bench import print_methods_table

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    print_methods_table(only, backbone=backbone, route=route, batch=batch, seq_len=seq_len, repeats=repeats,
                        warmup=warmup, device=device, echo=click.echo, train_rounds=not no_train)


@bench.command("aot-precision")
@click.option("--method", default="aot_fc", show_default=True, type=click.Choice(["aot_fc", "aot_kron"]))
@click.option("--task", default="rte", show_default=True)
@click.option("--backbone", callback=_backbone, default="sentence-transformers/all-MiniLM-L6-v2", show_default=True)
@click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", required=True, type=click.Path(exists=True), help=DATA_DIR_HELP)
@click.option("--train-examples", default=512, show_default=True)
@click.option("--epochs", default=3, show_default=True)
@click.option("--lr", default=1e-3, show_default=True)
def bench_aot_precision(method, task, backbone, data_dir, train_examples, epochs, lr) -> None:
    """AoT trained once; the whole dev set scored with its fused tables in float32, float16, bfloat16."""
    from trainers.bench import fused_precision, load_line

    click.echo(f"{method} on {task}, {backbone}, {count(train_examples, 'training example')} x {count(epochs, 'epoch')}; {load_line()}")
    rows = fused_precision(method=method, task=task, backbone=backbone, data_dir=str(Path(data_dir).resolve()),
                           train_examples=train_examples, epochs=epochs, lr=lr)
    click.echo("| tables | dev score | max logit change vs float32 | tables MiB | dev examples |\n| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        click.echo(f"| {r['dtype']} | {r['dev_score']:.4f} | {r['max_logit_change']:.2e} | {r['table_mib']:.0f} "
                   f"| {r['dev_examples']} |")


@bench.command("convergence")
@click.option("--task", default="sst2", show_default=True)
@click.option("--backbone", callback=_backbone, default="sentence-transformers/all-MiniLM-L6-v2", show_default=True)
@click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", required=True, type=click.Path(exists=True), help=DATA_DIR_HELP)
@click.option("--train-examples", default=640, show_default=True)
@click.option("--eval-examples", default=200, show_default=True)
@click.option("--epochs", default=3, show_default=True)
@click.option("--eval-every", default=20, show_default=True, help="Optimizer steps between evaluations.")
@click.option("--method", "only", multiple=True,
              help="METHOD or METHOD:lr=...,key=value,... (repeatable) [default: all, each at its bench lr]")
def bench_convergence_cmd(task, backbone, data_dir, train_examples, eval_examples, epochs, eval_every, only) -> None:
    """A short real training run per method: does the loss fall, does dev beat the majority class?"""
    from trainers.bench import CONVERGENCE_HEADER, Variant, convergence, format_convergence_row
    from trainers.methods import METHODS
    from trainers.registry import unknown_name_message

    variants = [Variant.parse(n) for n in (only or METHODS.names())]
    for v in variants:  # bad input fails here, before any training
        if v.method not in METHODS:
            raise ValueError(f"--method: {unknown_name_message('method', v.method, METHODS.names())}")
        METHODS[v.method].Config(**{k: x for k, x in v.params.items() if k != "lr"})
    click.echo(CONVERGENCE_HEADER)
    for row in convergence(variants, task=task, backbone=backbone, data_dir=str(Path(data_dir).resolve()),
                           train_examples=train_examples, eval_examples=eval_examples, epochs=epochs,
                           eval_every=eval_every):
        click.echo(format_convergence_row(row))


@bench.command("cli")
@click.option("--repeats", default=3, show_default=True, help="Runs per command (the median is shown).")
def bench_cli_cmd(repeats: int) -> None:
    """CPU seconds of `--help`, `tasks` and `validate` on a 10,000-trial grid, each a fresh process."""
    from search.bench_cli import run_bench, table

    click.echo(table(run_bench(repeats=repeats)))


@bench.command("memory")
@click.argument("spec", default="rte-minilm-quick")
@click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", required=True, type=click.Path(exists=True), help=DATA_DIR_HELP)
@click.option("--max-epochs", type=click.IntRange(min=1), help="Override the spec's training.max_epochs.")
@click.option("--malloc", type=click.Choice(["default", "lean"]), help="Override the spec's resources.malloc.")
def bench_memory(spec: str, data_dir: str, max_epochs: int | None, malloc: str | None) -> None:
    """Peak resident (and GPU) memory of every trial of a real search of SPEC [default: the demo]."""
    from rich.console import Console

    from search.bench_memory import run_bench, table

    rows = run_bench(spec, data_dir=data_dir, max_epochs=max_epochs, malloc=malloc, echo=lambda s: click.echo(s, err=True),
                     console=Console(stderr=True, highlight=False, soft_wrap=True))
    click.echo(table(rows))


@bench.command("search")
@click.option("-n", "--trials", default=8, show_default=True, type=click.IntRange(min=2),
              help="Short trials per search.")
@click.option("--rounds", default=5, show_default=True, type=click.IntRange(min=2),
              help="Rounds of sequential / Ray / Ray+MLflow, in a shuffled order each.")
@click.option("--examples", default=32, show_default=True, help="Train and dev examples per trial.")
@click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", required=True, type=click.Path(exists=True), help=DATA_DIR_HELP)
@click.option("--backbone", callback=_backbone, help="A local model directory [default: a tiny config-built BERT].")
def bench_search(trials: int, rounds: int, examples: int, data_dir: str, backbone: str | None) -> None:
    """Ray Tune's and MLflow's cost per trial, against the same trainings run one after another."""
    from search.bench_search import run_bench, table

    click.echo(table(run_bench(n=trials, rounds=rounds, data_dir=str(Path(data_dir).resolve()), backbone=backbone,
                               examples=examples, echo=lambda s: click.echo(s, err=True))))


@bench.command("scale")
@click.option("-n", "--trials", "sizes", type=click.IntRange(min=1), multiple=True,
              help="Simulated concurrent trials (repeatable) [default: 100, 300, 1000].")
@click.option("--evals", default=10, show_default=True, type=click.IntRange(min=1), help="Evaluations per trial.")
@click.option("--interval", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between one trial's evaluations.")
@click.option("--procs", default=4, show_default=True, type=click.IntRange(min=1), help="Client processes.")
@click.option("--logging", "modes", type=click.Choice(["async", "sync"]), multiple=True,
              help="Logging path (repeatable) [default: sync, then async].")
@click.option("--server-workers", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--server", "sgi", default="uvicorn", show_default=True, type=click.Choice(["uvicorn", "gunicorn"]),
              help="How mlflow server serves: its FastAPI app under uvicorn (MLflow 3's default), or its Flask "
                   "app under gunicorn (--gunicorn-opts).")
@click.option("--outage-s", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="Stop the MLflow server this long, half-way through each load.")
@click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", required=True, type=click.Path(exists=True), help=DATA_DIR_HELP)
@click.option("--backbone", callback=_backbone, help="A local model directory for the recorded trial [default: a tiny config-built BERT].")
def bench_scale(sizes, evals, interval, procs, modes, server_workers, sgi, outage_s, data_dir, backbone) -> None:
    """N simulated trials logging at once to an MLflow server on PostgreSQL, counted in PostgreSQL."""
    from search.bench_scale import HEADER, Load, row, run_scale

    loads = [Load(n, evals, interval, procs, mode == "async") for n in sizes or (100, 300, 1000)
             for mode in modes or ("sync", "async")]
    results = run_scale(loads, data_dir=str(Path(data_dir).resolve()), backbone=backbone,
                        server_workers=server_workers, outage_s=outage_s, gunicorn=sgi == "gunicorn",
                        echo=lambda s: click.echo(s, err=True))
    click.echo(HEADER)
    for r in results:
        click.echo(row(r))
    for r in results:
        for line in r.counted.problems[:10] + r.errors[:10]:
            click.echo(f"  {count(r.load.trials, 'trial')}: {line}")
    if not all(r.counted.ok for r in results):
        sys.exit(1)


@bench.command("width")
@click.option("-n", "--trials", default=64, show_default=True, type=click.IntRange(min=2),
              help="Short trials, all running at once.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=1), help="Ray worker nodes.")
@click.option("--checkpoint-s", default="auto", show_default=True, help="TUNE_GLOBAL_CHECKPOINT_S for the driver.")
@click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", required=True, type=click.Path(exists=True), help=DATA_DIR_HELP)
@click.option("--backbone", callback=_backbone, help="A local model directory [default: a tiny config-built BERT].")
def bench_width(trials, workers, checkpoint_s, data_dir, backbone) -> None:
    """A wide search on a loopback cluster: driver CPU per result, Tune's snapshots, kill -9 and resume."""
    from search.bench_width import run_width, table

    r = run_width(trials=trials, workers=workers, data_dir=str(Path(data_dir).resolve()), backbone=backbone,
                  checkpoint_s=checkpoint_s, echo=lambda s: click.echo(s, err=True))
    click.echo(table(r))
    f = r["final"]
    if not (f["runs"] == f["finished"] == f["unique_keys"] == trials):
        sys.exit(1)


if __name__ == "__main__":
    main()
