"""Every task's metric against values computed by hand on small fixtures."""
import numpy as np
import pytest

from trainers.tasks import TASKS
from trainers.tasks.metrics import f1a_em

# The METHODS.md metric table, for every registered task.
EXPECTED_METRIC = {"cola": "MCC", "mrpc": "acc/F1", "qqp": "acc/F1", "stsb": "Pearson/Spearman",
                   "cb": "acc/macro-F1", "multirc": "F1a/EM"}


def test_every_task_has_the_papers_metric():
    for name in TASKS:
        assert TASKS[name].metric_label == EXPECTED_METRIC.get(name, "acc"), name


def test_qqp_is_mean_of_accuracy_and_f1():
    preds, labels = np.array([1, 1, 0, 0, 1]), np.array([1, 0, 0, 1, 1])
    m = TASKS["qqp"].compute_metrics(preds, labels)
    # acc 3/5; tp=2 fp=1 fn=1 -> F1 = 2/3
    assert m["accuracy"] == pytest.approx(0.6) and m["f1"] == pytest.approx(2 / 3)
    assert m["score"] == pytest.approx((0.6 + 2 / 3) / 2)


def test_cb_is_mean_of_accuracy_and_macro_f1():
    # classes 0 entailment, 1 contradiction, 2 neutral
    labels = np.array([0, 0, 0, 1, 1, 2])
    preds = np.array([0, 0, 1, 1, 1, 0])
    m = TASKS["cb"].compute_metrics(preds, labels)
    # class 0: tp2 fp1 fn1 -> F1 2/3; class 1: tp2 fp1 fn0 -> 4/5; class 2: tp0 -> 0
    macro = (2 / 3 + 4 / 5 + 0) / 3
    assert m["accuracy"] == pytest.approx(4 / 6) and m["f1_macro"] == pytest.approx(macro)
    assert m["score"] == pytest.approx((4 / 6 + macro) / 2)


def test_multirc_f1a_over_all_options_and_exact_match_per_question():
    # Three questions (ids 7, 3, 9), answer options interleaved so that grouping must use the ids.
    groups = np.array([7, 7, 3, 3, 3, 9, 7, 9])
    labels = np.array([1, 0, 1, 1, 0, 0, 1, 1])
    preds = np.array([1, 0, 1, 0, 0, 0, 1, 1])
    m = TASKS["multirc"].compute_metrics(preds, labels, groups)
    # F1a over 8 options: tp=4, fp=0, fn=1 -> 8/9. EM: q7 all right, q3 one wrong, q9 all right -> 2/3.
    assert m["f1a"] == pytest.approx(8 / 9) and m["em"] == pytest.approx(2 / 3)
    assert m["score"] == pytest.approx((8 / 9 + 2 / 3) / 2)
    # Same predictions, but every option its own question: EM becomes per-option accuracy (7/8).
    assert f1a_em(preds, labels, np.arange(8))["em"] == pytest.approx(7 / 8)


def test_multirc_needs_groups():
    with pytest.raises(ValueError, match="groups"):
        TASKS["multirc"].compute_metrics(np.array([1]), np.array([1]))


@pytest.mark.parametrize("task", ["mnli", "qnli", "boolq", "copa", "wic", "wsc", "superglue_rte", "sst2"])
def test_accuracy_tasks(task):
    m = TASKS[task].compute_metrics(np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1]))
    assert m == {"accuracy": 0.75, "score": 0.75}
