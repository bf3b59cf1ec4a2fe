"""Reading, filtering and analysing trials from a tracking database MLflow wrote (conftest)."""
from __future__ import annotations

import numpy as np
import pytest

from tracking.analysis import evp_curves, iid_note, samples, summarize, with_score
from tracking.store import NoRunsError, Selection, load_trials


def sel(*experiments, **kw) -> Selection:
    return Selection(tuple(experiments), **{k: tuple(v) for k, v in kw.items()})


def test_reads_finished_active_trials_with_their_search(tracking_db):
    t = load_trials(tracking_db.uri, "exp-a")
    assert len(t) == 24  # 2 tasks × 2 methods × 2 configs × 3 seeds; the FAILED and deleted runs are out
    assert set(t["seed"]) == {0, 1, 2} and set(t["status"]) == {"FINISHED"}
    assert set(t["algorithm"]) == {"grid"} and set(t["search_run_id"]) == {tracking_db.parents["exp-a"]}
    assert t.loc[t.method == "finetune", "wall_seconds"].eq(60.0).all()
    assert t.loc[t.method == "finetune", "gpus"].eq(1.0).all()
    assert load_trials(tracking_db.uri, "exp-a", finished_only=False)["status"].eq("FAILED").sum() == 1


@pytest.mark.parametrize("selection, expected", [
    (sel("exp-a", "exp-b"), 28),
    (sel("exp-a", tasks=["rte"]), 12),
    (sel("exp-a", "exp-b", tasks=["rte"], methods=["lora", "finetune"]), 10),
    (sel("exp-a", backbones=["tiny/bert"]), 24),
    (sel("exp-a", backbones=["other"]), 0),
    (sel("exp-a", tags=[("protocol", "heldout")]), 12),
    (sel("exp-a", tags=[("peftsearch.config_id", "finetune-c1"), ("seed", "2")]), 2),
])
def test_filters(tracking_db, selection, expected):
    if expected == 0:
        with pytest.raises(NoRunsError, match="no finished trial runs matching the filters"):
            load_trials(tracking_db.uri, selection)
        return
    t = load_trials(tracking_db.uri, selection)
    assert len(t) == expected
    if selection.tasks:
        assert set(t["task"]) <= set(selection.tasks)
    if selection.methods:
        assert set(t["method"]) <= set(selection.methods)


def test_unknown_experiment_names_the_known_ones(tracking_db):
    with pytest.raises(NoRunsError, match="no experiment named 'nope' .*exp-a"):
        load_trials(tracking_db.uri, sel("exp-a", "nope"))


def test_assignment_unit_is_the_seed_median(tracking_db):
    s = samples(with_score(load_trials(tracking_db.uri, "exp-a"), "selection"), "assignment")
    row = s[(s.task == "rte") & (s.method == "finetune") & (s.config_id == "finetune-c1")].iloc[0]
    assert row["score"] == pytest.approx(0.60 + 0.05 + 0.03 + 0.01)  # median of seeds 0, 1, 2
    assert row["seconds"] == pytest.approx(3 * 60.0)  # an assignment costs all its seeds


def test_budgets_seconds_and_gpu_hours(tracking_db):
    trials = load_trials(tracking_db.uri, sel("exp-a", tasks=["mrpc"]))
    c = evp_curves(trials)
    ft, pt = c[c.method == "finetune"], c[c.method == "prompt_tuning"]
    assert list(ft.k) == [1, 2, 3, 4, 5, 6]
    assert ft.budget_seconds.tolist() == pytest.approx([60.0 * k for k in range(1, 7)])
    assert ft.budget_gpu_hours.tolist() == pytest.approx([60.0 * k / 3600 for k in range(1, 7)])
    assert pt.budget_seconds.tolist() == pytest.approx([30.0 * k for k in range(1, 7)])
    assert pt.budget_gpu_hours.isna().all()  # no GPU used: no GPU-hours
    a = evp_curves(trials, unit="assignment")
    assert a[a.method == "finetune"].budget_seconds.tolist() == pytest.approx([180.0, 360.0])


def test_evp_values_from_the_database(tracking_db):
    c = evp_curves(load_trials(tracking_db.uri, sel("exp-a", tasks=["rte"], methods=["prompt_tuning"])))
    v = np.sort([0.60 + cfg + 0.01 * s for cfg in (0.0, 0.03) for s in range(3)])
    assert c.evp.iloc[0] == pytest.approx(v.mean())
    assert c.evp.iloc[-1] == pytest.approx(sum(v[i] * ((i + 1) ** 6 - i ** 6) / 6 ** 6 for i in range(6)))
    assert set(c.score) == {"selection"}


def test_bootstrap_columns_bracket_the_curve(tracking_db):
    c = evp_curves(load_trials(tracking_db.uri, "exp-a"), bootstrap=200, seed=1)
    assert (c.ci_low <= c.ci_high).all() and (c.ci_low >= c["min"] - 1e-12).all() and (c.ci_high <= c["max"] + 1e-12).all()
    again = evp_curves(load_trials(tracking_db.uri, "exp-a"), bootstrap=200, seed=1)
    assert c[["ci_low", "ci_high"]].equals(again[["ci_low", "ci_high"]])


def test_summary_picks_the_best_seed_median(tracking_db):
    s = summarize(load_trials(tracking_db.uri, "exp-a")).set_index(["task", "method"])
    row = s.loc[("mrpc", "finetune")]
    assert row.config_id == "finetune-c1" and row["median"] == pytest.approx(0.80 + 0.05 + 0.03 + 0.01)
    assert row["std"] == pytest.approx(np.std([0.0, 0.01, 0.02])) and row.n_seeds == 3
    assert row.trainable_params == 22_700_000 and row.metric == "f1"


def test_reported_score(tracking_db):
    rte = load_trials(tracking_db.uri, sel("exp-a", tasks=["rte"]))
    s = summarize(rte, score="reported").set_index(["task", "method"])
    assert s.loc[("rte", "finetune"), "median"] == pytest.approx(0.60 + 0.05 + 0.03 + 0.01 - 0.1)
    assert set(s["score"]) == {"reported"}
    with pytest.raises(ValueError, match="'reported' needs the metric reported_score, which 12 of 24"):
        summarize(load_trials(tracking_db.uri, "exp-a"), score="reported")


def test_iid_note_only_for_adaptive_searches(tracking_db):
    assert iid_note(load_trials(tracking_db.uri, "exp-a")) is None
    note = iid_note(load_trials(tracking_db.uri, sel("exp-a", "exp-b")))
    assert "EVP assumes i.i.d. assignments" in note and "tpe" in note


def test_group_by_experiment_and_tag(tracking_db):
    t = load_trials(tracking_db.uri, sel("exp-a", "exp-b", tasks=["rte"], methods=["finetune", "lora"],
                                         group_by=["experiment"]))
    assert set(t["method"]) == {"finetune [experiment=exp-a]", "lora [experiment=exp-b]"}
    t = load_trials(tracking_db.uri, sel("exp-a", methods=["finetune"], group_by=["protocol", "seed"]))
    assert set(t["method"]) == {f"finetune [protocol={p}, seed={s}]" for p in ("heldout", "∅") for s in (0, 1, 2)}
    assert len(summarize(t)) == 2 * 3  # protocol follows the task here, so each task has 3 seed groups
