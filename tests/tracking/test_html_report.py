"""report.html: self-contained (no network), written and logged on the search's parent run, and
rendered by a real headless Chromium with its tables and figures and no console errors."""
from __future__ import annotations

import html
import re

import pytest
from mlflow.tracking import MlflowClient

from tracking import browser
from tracking.html_report import write_report


@pytest.fixture(scope="module")
def report(tracking_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    (path,) = write_report(tracking_db.uri, "exp-a", out, log_to_parent=True)
    return path


def test_report_is_self_contained_and_logged(report, tracking_db):
    text = report.read_text()
    assert text.count("<svg") == 3  # EVP, P(A > B), Pareto
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=['\"]?https?:", text)  # nothing fetched
    for section in ("Summary", "Expected validation performance", "Comparisons", "Pareto view", "Fairness audit"):
        assert f">{section}" in text or section in text
    assert "finetune beats prompt_tuning on RTE" in text
    arts = MlflowClient(tracking_uri=tracking_db.uri).list_artifacts(tracking_db.parents["exp-a"], "analysis")
    assert "analysis/report.html" in {a.path for a in arts}


@pytest.mark.skipif(not browser.available(), reason="needs Debian's chromium and chromium-driver (apt)")
def test_chromium_renders_tables_and_figures_without_console_errors(report, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser.driver()
    try:
        d.get(report.as_uri())
        tables = d.find_elements(By.TAG_NAME, "table")
        svgs = d.find_elements(By.TAG_NAME, "svg")
        assert len(tables) == 2 and len(svgs) == 3
        assert all(s.size["width"] > 100 and s.size["height"] > 100 for s in svgs)  # drawn, not collapsed
        assert "finetune" in tables[0].text
        errors = [e for e in d.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
        assert errors == []
        assert d.save_screenshot(str(tmp_path / "report.png"))
        bad = tmp_path / "bad.html"  # the console check itself can fail: a page that logs an error
        bad.write_text("<html><body><script>console.error('broken')</script></body></html>")
        d.get(bad.as_uri())
        assert any("broken" in e["message"] for e in d.get_log("browser"))
    finally:
        d.quit()


def _report(uri, out, *extra):
    from click.testing import CliRunner

    from search.cli import main

    return CliRunner().invoke(main, ["report", "--tracking-uri", uri, "--experiment", "exp-lora",
                                     "--experiment", "exp-bitfit", "--out", str(out), *extra])


def test_report_budget_seconds_names_the_unit_as_compare_does(tmp_path):
    """report --budget is compare's: the same sentences (compare.json's, word for word), the
    settings in seconds, and both the EVP panels' and the P(A > B) plot's x axis in seconds."""
    import json

    from tests.tracking.test_compare import _compare, _db

    uri = _db(tmp_path, {"bitfit": 3, "lora": 3}, seconds={"bitfit": 20, "lora": 60})
    r = _report(uri, tmp_path / "seconds", "--budget", "seconds")
    assert r.exit_code == 0, r.output
    text = (tmp_path / "seconds" / "report.html").read_text()
    assert _compare(uri, tmp_path / "cmp", "--budget", "seconds", "--bootstrap", "1000", "--format", "json").exit_code == 0
    (pair,) = json.loads((tmp_path / "cmp" / "compare.json").read_text())["pairs"]
    assert "one trial costs 60 vs 20 seconds on average" in pair["sentence"]
    assert f"<li>{html.escape(pair['sentence'])}</li>" in text
    assert "Over budgets in seconds (wall seconds per trial" in text
    assert text.count("compute budget (seconds of trial wall time)") == 2  # EVP panel and P(A > B) plot
    plain = (tmp_path / "count" / "report.html")
    assert _report(uri, tmp_path / "count").exit_code == 0  # the default is unchanged: a count of trials
    default = plain.read_text()
    assert "seconds of trial wall time" not in default and "budget k (trials)" in default
    assert "hyperparameter assignments (trials)" in default and "one sample per trial, P(A &gt; B)" in default


def test_report_budget_gpu_hours_of_cpu_trials_exits_2_before_writing(tmp_path):
    from tests.tracking.test_compare import _db

    uri = _db(tmp_path, {"bitfit": 3, "lora": 3})  # tagged gpus 0
    r = _report(uri, tmp_path / "out", "--budget", "gpu-hours")
    assert r.exit_code == 2
    assert r.output.splitlines() == [r.output.strip()] and r.output.startswith(
        "peftsearch: error: budget: 'gpu-hours' needs trials that ran on GPUs")
    assert not (tmp_path / "out").exists()


def test_report_max_k_is_compares_and_stops_the_comparisons_there(tmp_path):
    """report --max-k is compare's: the same sentence as compare --max-k, word for word, which
    names the budgets it stopped at; without it the comparisons go to N (9 trials here)."""
    import json

    from tests.tracking.test_compare import _compare, _db

    uri = _db(tmp_path, {"bitfit": 3, "lora": 3})
    sentences = {}
    for k in ("4", None):
        extra = ("--max-k", k) if k else ()
        r = _report(uri, tmp_path / f"report-{k}", *extra)
        assert r.exit_code == 0, r.output
        cmp = _compare(uri, tmp_path / f"cmp-{k}", "--bootstrap", "1000", "--format", "json", *extra)
        assert cmp.exit_code == 0, cmp.output
        (pair,) = json.loads((tmp_path / f"cmp-{k}" / "compare.json").read_text())["pairs"]
        assert f"<li>{html.escape(pair['sentence'])}</li>" in (tmp_path / f"report-{k}" / "report.html").read_text()
        sentences[k] = pair["sentence"]
    assert "up to 4 trials" in sentences["4"] and "up to 9 trials" in sentences[None]


def _many_trials(uri: str, copies: int):
    """The two methods' 9 trials each, copied ``copies`` times as new assignments with their
    scores jittered: N = 9 × copies per method, without logging that many runs."""
    import numpy as np
    import pandas as pd

    from tracking.fairness import with_setup
    from tracking.store import Selection, load_trials

    t = with_setup(uri, load_trials(uri, Selection(("exp-lora", "exp-bitfit"))))
    rng = np.random.default_rng(0)
    parts = [t.assign(config_id=t["config_id"] + f"-x{i}", best_dev_score=t["best_dev_score"] + rng.normal(0, 0.01, len(t)))
             for i in range(copies)]
    return pd.concat(parts, ignore_index=True)


def test_report_max_k_stops_evp_panels_and_comparison_budgets_log_spaced(tmp_path):
    """Past 300 trials the budgets are budget_ticks': k = 1..300, then log-spaced up to max_k,
    for the EVP panels (as evp --max-k) and the P(A > B) budgets (as compare --max-k) alike."""
    import numpy as np

    from tests.tracking.test_compare import _db
    from tracking.compare import CompareOptions
    from tracking.evp import budget_ticks
    from tracking.html_report import analyses

    trials = _many_trials(_db(tmp_path, {"bitfit": 3, "lora": 3}), copies=100)  # N = 900 per method
    ticks = budget_ticks(900, 700)
    assert ticks[-1] == 700 and 300 < ticks.size < 700  # log-spaced past 300, not every k
    curves, c = analyses(trials, CompareOptions(max_k=700, resamples=50))
    for _, g in curves.groupby("method"):
        assert np.array_equal(g["k"].to_numpy(), ticks)
    assert np.array_equal(c.budgets["k"].to_numpy(), ticks) and c.pairs["k_max"].iat[0] == 700
    curves, c = analyses(trials, CompareOptions(resamples=50))  # the default: N
    assert curves["k"].max() == 900 and c.budgets["k"].max() == 900
