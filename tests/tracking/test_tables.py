"""Table 1 layout (AoT paper): methods × tasks, median ± std, Macro, best marked, parameters."""
from __future__ import annotations

import pandas as pd
import pytest

from tracking.analysis import summarize
from tracking.store import load_trials
from tracking.tables import human_count, table1, to_csv_frame, to_latex, to_markdown


@pytest.fixture(scope="module")
def table(tracking_db):
    return table1(summarize(load_trials(tracking_db.uri, "exp-a")))


def test_markdown_layout(table):
    md = to_markdown(table).splitlines()
    assert md[0] == "| Method | # Params | MRPC (f1) | RTE (acc) | Macro |"
    rows = {line.split(" | ")[0].strip("| "): line for line in md[2:]}
    assert set(rows) == {"finetune", "prompt_tuning"}
    # finetune's best assignment: c1, seed-median = base + 0.05 + 0.03 + 0.01 (×100)
    assert "| 22.7M | **89.0** ± 0.8 | **69.0** ± 0.8 | **79.0** |" in rows["finetune"]
    assert "| 3.1K | 84.0 ± 0.8 | 64.0 ± 0.8 | 74.0 |" in rows["prompt_tuning"]


def test_best_per_column_and_macro(table):
    assert table.best.loc[("finetune", "tiny/bert")].all()
    assert not table.best.loc[("prompt_tuning", "tiny/bert")].any()
    assert table.median.loc[("prompt_tuning", "tiny/bert"), "Macro"] == pytest.approx((84.0 + 64.0) / 2)


def test_ties_are_all_marked_and_missing_tasks_have_no_macro():
    s = pd.DataFrame({"task": ["rte", "rte", "cola"], "method": ["a", "b", "a"], "backbone": "x",
                      "median": [0.7, 0.7, 0.5], "std": [0.01, 0.02, 0.0], "trainable_params": [10, 20, 10],
                      "metric": ["acc", "acc", "mcc"]})
    t = table1(s)
    assert t.best["rte"].tolist() == [True, True]
    assert pd.isna(t.median.loc[("b", "x"), "Macro"]) and t.best.loc[("a", "x"), "Macro"]
    assert "| b | 20 | – | **70.0** ± 2.0 | – |" in to_markdown(t)


def test_latex_and_csv(table):
    tex = to_latex(table, caption="selection_score 100%")
    assert r"\toprule" in tex and r"prompt\_tuning" in tex and r"\textbf{89.0} $\pm$ 0.8" in tex
    assert r"\caption{selection\_score 100\%}" in tex
    assert tex.count(r"\\") == 3  # header + 2 methods
    csv = to_csv_frame(table).set_index("method")
    assert csv.loc["finetune", "rte_median"] == pytest.approx(69.0) and csv.loc["finetune", "rte_best"]
    assert csv.loc["prompt_tuning", "Macro_median"] == pytest.approx(74.0)
    assert csv.loc["prompt_tuning", "trainable_params"] == 3072


@pytest.mark.parametrize("n, text", [(768, "768"), (3072, "3.1K"), (150_000, "0.1M"), (22_700_000, "22.7M"),
                                     (1.3e9, "1.3B")])
def test_human_count(n, text):
    assert human_count(n) == text
