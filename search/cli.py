"""The ``peftsearch`` command."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from search.spec import SpecError, load_spec

DATA_DIR_HELP = "Read GLUE/SuperGLUE from this directory (released layout) instead of the hub."


class _Cli(click.Group):
    """Known user errors become one line on stderr and exit 2, with no traceback."""

    def invoke(self, ctx):
        from trainers.tasks import DataError
        from tracking.store import NoRunsError

        try:
            return super().invoke(ctx)
        except (SpecError, DataError, NoRunsError, ValueError) as e:
            click.echo(f"peftsearch: error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Hyperparameter search and Expected Validation Performance for PEFT methods."""


def _spec_options(f):
    f = click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", type=click.Path(), help=DATA_DIR_HELP)(f)
    f = click.option("--tracking-uri", help="Override tracking.uri (sqlite:///..., postgresql://..., http://...).")(f)
    return click.argument("spec")(f)


def _load(spec: str, data_dir: str | None, tracking_uri: str | None):
    overrides = {}
    if data_dir:
        overrides |= {"data.source": "local", "data.dir": str(Path(data_dir).expanduser().resolve())}
    if tracking_uri:
        overrides["tracking.uri"] = tracking_uri
    return load_spec(spec, overrides=overrides)


@main.command()
@_spec_options
@click.option("--address", envvar="RAY_ADDRESS", help="Join this Ray cluster instead of starting a local one.")
@click.option("--out", type=click.Path(path_type=Path), help="Output directory [default: peftsearch-out/NAME].")
def run(spec: str, data_dir: str | None, tracking_uri: str | None, address: str | None, out: Path | None) -> None:
    """Run the search a SPEC (a YAML path or a bundled spec name) describes."""
    from rich.console import Console

    from search.runner import run_search
    from search.space import trial_count

    s = _load(spec, data_dir, tracking_uri)  # everything is validated before Ray or MLflow start
    out = (out or Path("peftsearch-out") / s.name).resolve()
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold]{s.name}[/]: {trial_count(s)} trials on {s.backbone} → {s.tracking.uri}")
    result = run_search(s, out_dir=out, address=address, console=console)
    console.print(f"[bold]done[/] in {result.seconds:.0f}s: {result.trials - result.errors} finished, "
                  f"{result.errors} failed; search {result.search_id}")
    for f in result.outputs:
        console.print(f"  wrote {f}")
    console.print(f"MLflow UI: mlflow ui --backend-store-uri {s.tracking.uri}")
    if result.errors == result.trials:
        sys.exit(1)


@main.command()
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--address", envvar="RAY_ADDRESS", help="Join this Ray cluster instead of starting a local one.")
def resume(out: Path, address: str | None) -> None:
    """Finish the search whose output directory is OUT, after its driver died."""
    from rich.console import Console

    from search.runner import resume_search

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    result = resume_search(out.resolve(), address=address, console=console)
    console.print(f"[bold]done[/] in {result.seconds:.0f}s: {result.trials - result.errors} finished, "
                  f"{result.errors} failed; search {result.search_id}")
    if result.errors == result.trials:
        sys.exit(1)


_JOBS_ADDRESS = click.option("--address", envvar="RAY_API_SERVER_ADDRESS", required=True,
                             help="The Ray head's dashboard, e.g. http://HEAD:8265.")


@main.command()
@_spec_options
@_JOBS_ADDRESS
@click.option("--out", help="Output directory on the head node [default: ~/peftsearch-out/NAME there].")
def submit(spec: str, data_dir: str | None, tracking_uri: str | None, address: str, out: str | None) -> None:
    """Submit the search SPEC to a Ray cluster as a job; prints the job id."""
    from search import jobs

    s = _load(spec, data_dir, tracking_uri)
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
def validate(spec: str, data_dir: str | None, tracking_uri: str | None) -> None:
    """Check a SPEC and print the trials it expands to, without running anything."""
    from search.space import expand

    s = _load(spec, data_dir, tracking_uri)
    trials = expand(s)
    click.echo(f"{s.name}: valid, {len(trials)} trials")
    for t in trials:
        click.echo(f"  {t.name}")


def _analysis_options(f):
    f = click.option("--out", type=click.Path(path_type=Path), default=Path("."), show_default=True)(f)
    f = click.option("--experiment", required=True, help="The MLflow experiment (the spec's name).")(f)
    return click.option("--tracking-uri", required=True, help="The tracking database URI.")(f)


@main.command()
@_analysis_options
@click.option("--unit", type=click.Choice(["trial", "assignment"]), default="trial", show_default=True,
              help="One EVP sample per trial, or per assignment (its seed-median).")
@click.option("--estimator", type=click.Choice(["with-replacement", "unbiased"]), default="with-replacement",
              show_default=True)
def evp(tracking_uri: str, experiment: str, out: Path, unit: str, estimator: str) -> None:
    """Expected Validation Performance curves: evp.csv and evp.png."""
    from tracking.report import write_evp

    for f in write_evp(tracking_uri, experiment, out, unit=unit, estimator=estimator):
        click.echo(f"wrote {f}")


@main.command()
@_analysis_options
def summary(tracking_uri: str, experiment: str, out: Path) -> None:
    """Seed-median ± std of each method's best assignment: summary.csv and summary.md."""
    from tracking.report import write_summary

    for f in write_summary(tracking_uri, experiment, out):
        click.echo(f"wrote {f}")


@main.command()
def tasks() -> None:
    """List the tasks: name, benchmark, metric."""
    from trainers.tasks import TASKS

    for name in TASKS:
        t = TASKS[name]
        click.echo(f"{name}\t{t.benchmark}\t{t.metric_label}")


@main.command()
def methods() -> None:
    """List the methods."""
    from trainers.methods import METHODS

    for name in METHODS:
        click.echo(f"{name}\t{METHODS[name].description}")


@main.group()
def bench() -> None:
    """Benchmarks that print tables."""


@bench.command("search")
@click.option("-n", "--trials", default=8, show_default=True, help="How many short trials.")
@click.option("--examples", default=32, show_default=True, help="Train and dev examples per trial.")
@click.option("--data-dir", envvar="PEFTSEARCH_DATA_DIR", required=True, type=click.Path(exists=True), help=DATA_DIR_HELP)
@click.option("--backbone", help="A local model directory [default: a tiny config-built BERT].")
def bench_search(trials: int, examples: int, data_dir: str, backbone: str | None) -> None:
    """Ray Tune's overhead per trial against the same trainings run one after another."""
    from search.bench_search import run_bench, table

    click.echo(table(run_bench(n=trials, data_dir=str(Path(data_dir).resolve()), backbone=backbone, examples=examples)))


if __name__ == "__main__":
    main()
