"""A real `mlflow server` over the test database: the REST reader gives the same trials as the
SQL reader, and files logged with --log-to-parent are listed and served by the REST API."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
from click.testing import CliRunner

from search.cli import main
from tracking.store import Selection, load_trials

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tracking_db, tmp_path_factory):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
    proc = subprocess.Popen([mlflow, "server", "--backend-store-uri", tracking_db.uri, "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a shared 2-core machine can be slow to start it
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within 300s")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("selection", [
    Selection(("exp-a", "exp-b")),
    Selection(("exp-a", "exp-b"), tasks=("rte",), methods=("lora", "finetune")),
    Selection(("exp-a",), backbones=("tiny/bert",), tags=(("protocol", "heldout"),)),
])
def test_rest_reader_matches_the_sql_reader(tracking_db, server, selection):
    rest, sql = load_trials(server, selection), load_trials(tracking_db.uri, selection)
    assert len(rest) > 0
    pd.testing.assert_frame_equal(rest[sql.columns], sql, check_dtype=False)


def test_unknown_experiment_over_rest(server):
    from tracking.store import NoRunsError

    with pytest.raises(NoRunsError, match="no experiment named 'nope'"):
        load_trials(server, "nope")


def test_logged_files_are_visible_through_the_rest_api(tracking_db, server, tmp_path):
    for cmd in ("evp", "summary"):
        r = CliRunner().invoke(main, [cmd, "--tracking-uri", server, "--experiment", "exp-a",
                                      "--out", str(tmp_path), "--log-to-parent"], catch_exceptions=False)
        assert r.exit_code == 0, r.output
    parent = tracking_db.parents["exp-a"]
    listed = requests.get(f"{server}/api/2.0/mlflow/artifacts/list", timeout=10,
                          params={"run_id": parent, "path": "analysis"}).json()
    names = {f["path"] for f in listed["files"]}
    expected = {"evp.csv", "evp.json", "evp.png", "evp.svg", "summary.csv", "table1.csv", "summary.md", "summary.tex"}
    assert {f"analysis/{n}" for n in expected} <= names
    png = requests.get(f"{server}/get-artifact", timeout=10, params={"path": "analysis/evp.png", "run_uuid": parent})
    assert png.status_code == 200 and png.content == (tmp_path / "evp.png").read_bytes()
    import matplotlib.image as mpimg

    assert mpimg.imread(io.BytesIO(png.content), format="png")[..., :3].std() > 0.05
    md = requests.get(f"{server}/get-artifact", timeout=10, params={"path": "analysis/summary.md", "run_uuid": parent})
    assert "| Method | # Params |" in md.text
    # the other search's parent run got nothing
    other = requests.get(f"{server}/api/2.0/mlflow/artifacts/list", timeout=10,
                         params={"run_id": tracking_db.parents["exp-b"], "path": "analysis"}).json()
    assert not other.get("files")
