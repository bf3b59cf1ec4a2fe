"""Files written by `peftsearch evp` / `summary` (through click, in-process), checked by opening
them: PNG pixels, SVG text, JSON, CSV, Markdown, LaTeX."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from search.cli import main


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def check_png(path, *, min_size=(600, 300)):
    import matplotlib.image as mpimg

    img = mpimg.imread(path)
    h, w = img.shape[:2]
    assert w >= min_size[0] and h >= min_size[1], (w, h)
    assert img[..., :3].std() > 0.05  # not blank: a white canvas has std 0
    return img


def test_evp_writes_every_format_and_one_panel_per_task(tracking_db, tmp_path):
    r = cli("evp", "--tracking-uri", tracking_db.uri, "--experiment", "exp-a", "--out", tmp_path,
            "--bootstrap", 100, "--seed", 3)
    assert r.exit_code == 0, r.output
    assert {f"evp.{x}" for x in ("csv", "json", "png", "svg")} <= {p.name for p in tmp_path.iterdir()}
    img = check_png(tmp_path / "evp.png")
    assert img.shape[1] > img.shape[0]  # two panels side by side
    svg = (tmp_path / "evp.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    data = json.loads((tmp_path / "evp.json").read_text())
    assert data["options"]["bootstrap"] == 100 and data["options"]["seed"] == 3 and data["note"] is None
    assert {(c["task"], c["method"]) for c in data["curves"]} == {
        (t, m) for t in ("rte", "mrpc") for m in ("finetune", "prompt_tuning")}
    ft = next(c for c in data["curves"] if (c["task"], c["method"]) == ("rte", "finetune"))
    assert ft["k"] == [1, 2, 3, 4, 5, 6] and len(ft["ci_low"]) == 6 and ft["budget_gpu_hours"][0] == pytest.approx(60 / 3600)
    pt = next(c for c in data["curves"] if c["method"] == "prompt_tuning")
    assert pt["budget_gpu_hours"] == [None] * 6  # JSON null, not NaN
    csv = pd.read_csv(tmp_path / "evp.csv")
    assert len(csv) == 24 and {"ci_low", "ci_high", "budget_seconds", "score"} <= set(csv.columns)


@pytest.mark.parametrize("budget", ["seconds", "gpu-hours"])
def test_budget_axes_plot(tracking_db, tmp_path, budget):
    r = cli("evp", "--tracking-uri", tracking_db.uri, "--experiment", "exp-a", "--method", "finetune",
            "--task", "rte", "--budget", budget, "--format", "png", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert [p.name for p in tmp_path.iterdir()] == ["evp.png"]
    check_png(tmp_path / "evp.png", min_size=(400, 300))


def test_gpu_hours_without_gpus_is_one_line(tracking_db, tmp_path):
    r = CliRunner().invoke(main, ["evp", "--tracking-uri", tracking_db.uri, "--experiment", "exp-a",
                                  "--method", "prompt_tuning", "--budget", "gpu-hours", "--out", str(tmp_path)])
    assert r.exit_code == 2
    assert "budget: 'gpu-hours' needs trials that ran on GPUs" in r.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_adaptive_search_note_is_visible_everywhere(tracking_db, tmp_path):
    args = ["--tracking-uri", tracking_db.uri, "--experiment", "exp-a", "--experiment", "exp-b", "--out", tmp_path]
    assert cli("evp", *args).exit_code == 0 and cli("summary", *args).exit_code == 0
    note = "EVP assumes i.i.d. assignments"
    assert note in json.loads((tmp_path / "evp.json").read_text())["note"]
    assert pd.read_csv(tmp_path / "evp.csv")["note"].str.contains(note).all()
    assert note in (tmp_path / "summary.md").read_text() and note in (tmp_path / "summary.tex").read_text()
    check_png(tmp_path / "evp.png")


def test_summary_formats_and_score_switch(tracking_db, tmp_path):
    r = cli("summary", "--tracking-uri", tracking_db.uri, "--experiment", "exp-a", "--task", "rte",
            "--score", "reported", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    md = (tmp_path / "summary.md").read_text()
    assert "reported score" in md and "| finetune | 22.7M | **59.0** ± 0.8 | **59.0** |" in md
    assert (tmp_path / "summary.tex").read_text().startswith(r"\begin{table}")
    assert pd.read_csv(tmp_path / "table1.csv").shape[0] == 2
    assert set(pd.read_csv(tmp_path / "summary.csv")["score"]) == {"reported"}
    bad = CliRunner().invoke(main, ["summary", "--tracking-uri", tracking_db.uri, "--experiment", "exp-a",
                                    "--score", "reported", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and bad.output.count("\n") == 1
    assert "score: 'reported' needs the metric reported_score" in bad.output


def test_bad_tag_filter_is_one_line(tracking_db, tmp_path):
    r = CliRunner().invoke(main, ["summary", "--tracking-uri", tracking_db.uri, "--experiment", "exp-a",
                                  "--tag", "protocol", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "tag: must be KEY=VALUE, got 'protocol'" in r.output


def test_plot_shows_every_method(tracking_db, tmp_path):
    """Dropping a method changes the picture: the curves are really drawn from the data."""
    import matplotlib.image as mpimg

    base = ["evp", "--tracking-uri", tracking_db.uri, "--experiment", "exp-a", "--format", "png"]
    cli(*base, "--out", tmp_path / "both")
    cli(*base, "--method", "finetune", "--out", tmp_path / "one")
    a, b = mpimg.imread(tmp_path / "both" / "evp.png"), mpimg.imread(tmp_path / "one" / "evp.png")
    assert a.shape == b.shape and np.abs(a - b).mean() > 1e-3


@pytest.mark.parametrize("command", ["evp", "compare", "report"])
@pytest.mark.parametrize("value", ["0", "-3", "2.5", "ten"])
def test_bad_max_k_is_one_line_before_anything_is_written(tracking_db, tmp_path, command, value):
    """evp, compare and report share one --max-k: a whole number of at least 1."""
    out = tmp_path / "out"
    r = CliRunner().invoke(main, [command, "--tracking-uri", tracking_db.uri, "--experiment", "exp-a",
                                  "--out", str(out), "--max-k", value])
    assert r.exit_code == 2
    assert r.output == f"peftsearch: error: --max-k: must be a whole number of at least 1, got {value}\n"
    assert not out.exists()
