"""Split protocols (dev / heldout) on real and synthetic examples, and what the loop reports
under each: the selection score, the reported score at the best selection, the extra dev sets."""
import math

import pytest

from trainers.config import DataConfig, OptimConfig, TrainingConfig, TrialConfig
from trainers.loop import train
from trainers.splits import split_sets
from trainers.tasks import TASKS, Example


def synthetic(n, tag):
    return [Example(f"{tag}{i}", None, i % 2) for i in range(n)]


def test_dev_protocol_selects_and_reports_on_dev():
    tr, dv = synthetic(50, "t"), synthetic(10, "d")
    assert split_sets("dev", tr, dv) == (tr, dv, None)


def test_heldout_small_task_halves_dev_the_same_way_every_time():
    tr, dv = synthetic(9_999, "t"), synthetic(11, "d")
    new_train, select, report = split_sets("heldout", tr, dv)
    assert new_train == tr and (len(select), len(report)) == (5, 6)
    assert sorted(e.text_a for e in select + report) == sorted(e.text_a for e in dv)
    assert split_sets("heldout", tr, dv) == (new_train, select, report)
    assert [e.text_a for e in select] != [f"d{i}" for i in range(5)]  # shuffled, not the first half


def test_heldout_dev_halves_keep_multirc_questions_whole(data_dir):
    t = TASKS["multirc"]
    tr, dv = (t.load(s, source="local", data_dir=data_dir) for s in ("train", "dev"))
    _, select, report = split_sets("heldout", tr, dv)  # 5131 training questions: under 10k
    a, b = {e.group for e in select}, {e.group for e in report}
    assert not a & b and len(a) == 953 // 2 and len(a | b) == 953 and len(select) + len(report) == len(dv)


@pytest.mark.parametrize("n_train, held", [(10_000, 1_000), (100_000, 1_000), (100_001, 10_000)])
def test_heldout_large_task_holds_out_training_examples(n_train, held):
    tr, dv = synthetic(n_train, "t"), synthetic(20, "d")
    new_train, select, report = split_sets("heldout", tr, dv)
    assert len(select) == held and len(new_train) == n_train - held and report == dv
    assert not {e.text_a for e in select} & {e.text_a for e in new_train}


def trial(backbone, data_dir, task, *, protocol="dev", **training):
    t = dict(batch_size=8, max_length=64, max_train_examples=16, max_eval_examples=16) | training
    return TrialConfig(task=task, method="finetune", backbone=backbone, seed=0, optim=OptimConfig(lr=1e-3),
                       training=TrainingConfig(**t), data=DataConfig(source="local", dir=str(data_dir), protocol=protocol))


def test_heldout_reports_the_other_half_at_the_best_selection(tiny_bert, data_dir, recorder):
    rec = recorder()
    result = train(trial(tiny_bert, data_dir, "cb", protocol="heldout", max_epochs=3, max_eval_examples=None), reporter=rec)
    assert rec.info["dev_examples"] == 28 and rec.info["report_examples"] == 28  # CB dev: 56 in halves
    assert {"dev_score", "dev_f1_macro", "report_score", "report_accuracy", "reported_score"} <= set(rec.evals[0][1])
    best = next(m for s, m in rec.evals if s == result.best_step)
    assert result.best_dev_score == best["dev_score"] == max(m["dev_score"] for _, m in rec.evals)
    assert result.reported_score == best["report_score"] == rec.evals[-1][1]["reported_score"]
    assert result.protocol == "heldout" and result.reported_metrics == {"reported_score": result.reported_score}


def test_null_epochs_and_patience_take_the_task_defaults_and_multirc_trains(tiny_bert, data_dir, recorder):
    rec = recorder()
    result = train(trial(tiny_bert, data_dir, "multirc", max_train_examples=2, max_eval_examples=4), reporter=rec)
    assert (rec.info["max_epochs"], rec.info["patience"]) == (10, 1)  # MultiRC in the AoT table
    assert 2 <= result.evaluations <= 10 and math.isfinite(result.best_dev_score)
    assert {"dev_f1a", "dev_em", "dev_score"} <= set(rec.evals[0][1]) and "report_score" not in rec.evals[0][1]
    assert result.reported_score == result.best_dev_score  # protocol dev: reported on dev itself
    explicit = train(trial(tiny_bert, data_dir, "multirc", max_train_examples=2, max_eval_examples=4,
                           max_epochs=1, patience=5))
    assert explicit.evaluations == 1


def test_copa_trains_with_per_choice_scoring(tiny_bert, data_dir, recorder):
    rec = recorder()
    result = train(trial(tiny_bert, data_dir, "copa", max_epochs=2), reporter=rec)
    assert len(rec.evals) == 2 and all(math.isfinite(m["train_loss"]) for _, m in rec.evals)
    assert 0 <= result.best_dev_score <= 1 and set(rec.evals[0][1]) >= {"dev_accuracy", "dev_score"}


def test_mnli_reports_mismatched_dev_alongside(tiny_bert, tmp_path, recorder):
    head = ["index", "promptID", "pairID", "genre", "b1", "b2", "p1", "p2", "sentence1", "sentence2"]
    gold = ["entailment", "neutral", "contradiction"]
    d = tmp_path / "glue" / "MNLI"
    d.mkdir(parents=True)
    for name, extra in (("train.tsv", 1), ("dev_matched.tsv", 5), ("dev_mismatched.tsv", 5)):
        rows = [[str(i), "1", "2", "g", "x", "y", "x", "y", f"{name} premise {i}", f"hypothesis {i % 4}",
                 *[gold[i % 3]] * extra, gold[i % 3]] for i in range(12)]
        labels = [f"label{k}" for k in range(1, extra + 1)]
        (d / name).write_text("\n".join("\t".join(r) for r in [head + labels + ["gold_label"], *rows]) + "\n")
    rec = recorder()
    result = train(trial(tiny_bert, tmp_path, "mnli", max_epochs=2, patience=2), reporter=rec)
    assert {"dev_score", "dev_mismatched_score", "dev_mismatched_accuracy"} <= set(rec.evals[0][1])
    best = next(m for s, m in rec.evals if s == result.best_step)
    assert result.reported_metrics == {"reported_score": best["dev_score"],
                                       "reported_dev_mismatched_score": best["dev_mismatched_score"]}
