import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr

from trainers.tasks import TASKS, DataError

# Official counts (../shared/data/README.md): train / dev examples. MultiRC counts answer options.
OFFICIAL = {"rte": (2490, 277), "mrpc": (3668, 408), "cola": (8551, 1043), "stsb": (5749, 1500), "sst2": (67349, 872),
            "cb": (250, 56), "copa": (400, 100), "wsc": (554, 104), "wic": (5428, 638),
            "multirc": (27243, 4848), "superglue_rte": (2490, 277)}
# Every task has local files here, or is tested on written files in test_task_files.py.
NOT_LOCAL = {"qnli", "qqp", "mnli"}


@pytest.mark.parametrize("task", sorted(OFFICIAL))
def test_local_layout_has_official_counts(task, data_dir):
    t = TASKS[task]
    train, dev = (t.load(s, source="local", data_dir=data_dir) for s in ("train", "dev"))
    assert (len(train), len(dev)) == OFFICIAL[task]
    labels = {e.label for e in train}
    if t.is_regression:
        assert min(labels) >= 0 and max(labels) <= 5 and all(isinstance(x, float) for x in labels)
    else:
        assert labels == set(range(t.num_labels))
    assert all(e.text_a for e in dev)
    if t.format.head_size(2) == 1:  # per-choice scoring: every example has all its choices
        assert all(e.text_b is None and len(e.choices) == t.num_labels for e in dev)
    else:
        assert len({e.text_b is None for e in dev}) == 1


def test_every_registered_task_is_covered():
    assert set(TASKS.names()) == set(OFFICIAL) | NOT_LOCAL | {"boolq"}


def test_multirc_counts_questions_and_boolq_dev(data_dir):
    for split, questions in (("train", 5131), ("dev", 953)):
        ex = TASKS["multirc"].load(split, source="local", data_dir=data_dir)
        assert len({e.group for e in ex}) == questions
    assert len(TASKS["boolq"].load("dev", source="local", data_dir=data_dir)) == 3270


def test_cli_lists_one_line_per_task():
    from click.testing import CliRunner

    from search.cli import main

    lines = CliRunner().invoke(main, ["tasks"]).output.strip().splitlines()
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in lines}
    assert len(lines) == len(rows) == len(TASKS.names()) == 15  # 8 GLUE + 7 SuperGLUE
    assert rows["multirc"] == ["superglue", "F1a/EM"] and rows["cb"] == ["superglue", "acc/macro-F1"]
    assert rows["qqp"] == ["glue", "acc/F1"] and rows["superglue_rte"] == ["superglue", "acc"]
    assert rows["rte"] == ["glue", "acc"]


def test_task_defaults_follow_the_aot_table():
    table = {"rte": (200, 20), "superglue_rte": (200, 20), "mnli": (5, 2), "qqp": (5, 2), "qnli": (10, 2),
             "cola": (100, 10), "sst2": (100, 10), "mrpc": (100, 10), "stsb": (100, 10), "wic": (500, 20),
             "cb": (500, 100), "copa": (500, 100), "wsc": (500, 100), "multirc": (10, 1), "boolq": (100, 10)}
    assert {n: (TASKS[n].max_epochs, TASKS[n].patience) for n in TASKS} == table


def test_local_dir_may_point_at_the_benchmark_folder(data_dir):
    assert len(TASKS["rte"].load("dev", source="local", data_dir=data_dir / "glue")) == 277


def test_metrics_match_hand_computed_values():
    preds, labels = np.array([1, 0, 1, 1, 0, 0]), np.array([1, 0, 0, 1, 1, 0])
    assert TASKS["rte"].compute_metrics(preds, labels)["score"] == pytest.approx(4 / 6)
    # MRPC: tp=2 fp=1 fn=1 -> F1 = 2/3; score = mean(acc, F1)
    m = TASKS["mrpc"].compute_metrics(preds, labels)
    assert m["f1"] == pytest.approx(2 / 3) and m["score"] == pytest.approx((4 / 6 + 2 / 3) / 2)
    # CoLA: MCC = (tp*tn - fp*fn) / sqrt(...) = (2*2 - 1*1) / sqrt(3*3*3*3) = 1/3
    assert TASKS["cola"].compute_metrics(preds, labels)["mcc"] == pytest.approx(1 / 3)
    x, y = np.array([0.1, 2.0, 3.5, 4.0, 1.0]), np.array([0.0, 3.0, 2.5, 5.0, 2.0])
    s = TASKS["stsb"].compute_metrics(x, y)
    assert s["score"] == pytest.approx((pearsonr(x, y)[0] + spearmanr(x, y)[0]) / 2)
    assert s["spearman"] == pytest.approx(0.9)  # ranks differ by one swap: 1 - 6*2/(5*24)


def test_constant_regression_prediction_scores_zero():
    assert TASKS["stsb"].compute_metrics(np.ones(4), np.arange(4.0))["score"] == 0.0


def _write_rte(root, rows):
    d = root / "glue" / "RTE"
    d.mkdir(parents=True)
    (d / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n" + "".join(r + "\n" for r in rows))
    (d / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    return d / "train.tsv"


@pytest.mark.parametrize("rows, message", [
    (["0\ta\tb\tentailment", "1\ta\tb"], r"train.tsv:3: expected at least 4 tab-separated columns, got 3"),
    (["0\ta\tb\tentailment", "1\ta\tb\tmaybe"], r"train.tsv:3: label: not a valid label .* \(got 'maybe'\)"),
    ([], r"rte: the train split is empty"),
])
def test_malformed_files_name_file_line_and_field(tmp_path, rows, message):
    _write_rte(tmp_path, rows)
    with pytest.raises(DataError, match=message):
        TASKS["rte"].load("train", source="local", data_dir=tmp_path)


def test_missing_file_names_what_was_expected(tmp_path):
    with pytest.raises(DataError, match=r"rte: no train file \(train.tsv\)"):
        TASKS["rte"].load("train", source="local", data_dir=tmp_path)
