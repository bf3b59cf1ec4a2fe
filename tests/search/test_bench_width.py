"""`peftsearch bench width` at a small width (the 64-trial run is the bench's default; it needs
about 30 GB for its trial processes): a loopback Ray cluster (a head without CPUs and two worker
nodes, separate `ray start` processes), PostgreSQL and an `mlflow server`; trials at fractional
CPUs all running at once; the driver killed with SIGKILL at half the results, then `resume`."""
from __future__ import annotations

import pytest

from search.bench_width import run_width, table

pytestmark = pytest.mark.integration


def test_a_wide_search_killed_at_half_way_resumes_to_one_finished_run_per_trial(data_dir, tiny_bert):
    r = run_width(trials=4, workers=2, data_dir=str(data_dir), backbone=tiny_bert)
    print(table(r))
    assert r["cpu_per_trial"] == 0.5  # fractional: 4 trials fit 2 one-CPU workers at once
    assert r["killed_at"]["finished"] < 4 and r["killed_at"]["results"] > 0  # really cut short, mid-search
    f = r["final"]
    assert f["runs"] == f["finished"] == f["unique_keys"] == 4
    assert r["run"]["results"] > 0 and r["run"]["driver_cpu_s"] > 0
    assert r["resume"]["snapshots"]["calls"] > 0  # Tune's experiment-state snapshots were timed
