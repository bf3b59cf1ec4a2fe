"""report.html: self-contained (no network), written and logged on the search's parent run, and
rendered by a real headless Chromium with its tables and figures and no console errors."""
from __future__ import annotations

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
