"""Local means local: the embedded Ray listens on loopback only, and a Ray that will not start
is one clear line after a configurable wait."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from search import runner

LIST_SOCKETS = r"""
import json, os, psutil, ray
from search.runner import _init_ray
_init_ray(None)
session = ray._private.worker._global_node.get_session_dir_path()
found = []
for p in psutil.process_iter(["pid", "cmdline"]):
    try:
        if p.pid == os.getpid() or session in " ".join(p.info["cmdline"] or []):
            found += [[p.name(), c.laddr.ip, c.laddr.port] for c in p.net_connections(kind="inet")
                      if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        pass
print(json.dumps(found))
ray.shutdown()
"""
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.mark.integration
def test_the_embedded_ray_listens_on_loopback_only():
    proc = subprocess.run([sys.executable, "-c", LIST_SOCKETS], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sockets = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # the listing found Ray's own servers
    assert [s for s in sockets if s[1] not in LOOPBACK] == []


def test_a_ray_that_will_not_start_is_one_line_after_the_wait(monkeypatch):
    """Ray's own start-up is stood in for by a function that fails, as Ray's does under load."""
    attempts = []

    def start():
        attempts.append(1)
        raise Exception("The current node timed out during startup. This could happen because ...\nmore")

    monkeypatch.setenv(runner.RAY_START_TIMEOUT_ENV, "0.3")
    monkeypatch.setattr(runner.time, "sleep", lambda s: None)
    with pytest.raises(runner.RayStartError) as e:
        runner._start_with_patience(start)
    line = str(e.value)
    assert "\n" not in line and "did not start within 0 s" in line and "PEFTSEARCH_RAY_START_TIMEOUT" in line
    assert "timed out during startup" in line and len(attempts) >= 1
    calls = iter([Exception("slow"), None])

    def flaky():
        err = next(calls)
        if err:
            raise err

    monkeypatch.setenv(runner.RAY_START_TIMEOUT_ENV, "60")
    runner._start_with_patience(flaky)  # a second attempt that succeeds is a start


def test_a_bad_wait_setting_is_refused(monkeypatch):
    monkeypatch.setenv(runner.RAY_START_TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="PEFTSEARCH_RAY_START_TIMEOUT: must be a finite number of seconds"):
        runner._start_with_patience(lambda: None)


@pytest.mark.integration
@pytest.mark.parametrize("field,value", [("cpu", "cpus + 1"), ("gpu", "1")])
def test_a_trial_larger_than_the_local_ray_is_refused_before_anything_is_written(field, value, tmp_path, data_dir,
                                                                                 base_spec):
    """Tune would queue such a trial forever, silently; the real embedded Ray is started and asked."""
    import os

    import yaml

    if field == "gpu":
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    asked = eval(value, {"cpus": os.cpu_count()})
    spec = base_spec(data_dir) | {"resources": {"cpu": asked if field == "cpu" else 1, "gpu": asked if field == "gpu" else 0}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "search.cli", "run", "spec.yaml"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=400, env=os.environ | {"PYTHONPATH": str(Path(runner.__file__).parents[1])})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith(f"peftsearch: error: resources.{field}: a trial asks for"), lines
    assert "Traceback" not in proc.stderr and f"got {asked:g}" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]  # no mlflow.db, no output directory
