"""GLUE tasks in ../shared/data's released layout (glue_data TSVs) and on the hub (nyu-mll/glue).

Epoch and patience defaults follow the AoT paper's protocol table (METHODS.md).
"""
from trainers.tasks.base import Task, TsvLayout, register_task

_PAIR_LABELS = {"entailment": 0, "not_entailment": 1}

register_task(Task(
    name="rte", benchmark="glue", metric="accuracy", num_labels=2,
    hub_path="nyu-mll/glue", hub_name="rte", hub_columns=("sentence1", "sentence2"),
    layout=TsvLayout("RTE", {"train": ("train.tsv",), "dev": ("dev.tsv",)},
                     text_a=1, text_b=2, label=3, labels=_PAIR_LABELS),
    max_epochs=200, patience=20, description="textual entailment",
))
register_task(Task(
    name="mrpc", benchmark="glue", metric="accuracy_f1", num_labels=2,
    hub_path="nyu-mll/glue", hub_name="mrpc", hub_columns=("sentence1", "sentence2"),
    layout=TsvLayout("MRPC", {"train": ("train.tsv",), "dev": ("dev.tsv",)},
                     text_a=3, text_b=4, label=0),
    max_epochs=100, patience=10, description="paraphrase detection",
))
register_task(Task(
    name="cola", benchmark="glue", metric="mcc", num_labels=2,
    hub_path="nyu-mll/glue", hub_name="cola", hub_columns=("sentence", None),
    # GLUE's train.tsv, or the authors' in_domain_train.tsv (same rows, same four columns).
    layout=TsvLayout("CoLA", {"train": ("train.tsv", "in_domain_train.tsv"), "dev": ("dev.tsv",)},
                     text_a=3, text_b=None, label=1, header=False),
    max_epochs=100, patience=10, description="linguistic acceptability",
))
register_task(Task(
    name="stsb", benchmark="glue", metric="pearson_spearman", num_labels=1,
    hub_path="nyu-mll/glue", hub_name="stsb", hub_columns=("sentence1", "sentence2"),
    layout=TsvLayout("STS-B", {"train": ("train.tsv",), "dev": ("dev.tsv",)},
                     text_a=7, text_b=8, label=-1),
    max_epochs=100, patience=10, description="semantic similarity (regression)",
))
register_task(Task(
    name="sst2", benchmark="glue", metric="accuracy", num_labels=2,
    hub_path="nyu-mll/glue", hub_name="sst2", hub_columns=("sentence", None),
    layout=TsvLayout("SST-2", {"train": ("train.tsv",), "dev": ("dev.tsv",)},
                     text_a=0, text_b=None, label=1),
    max_epochs=100, patience=10, description="sentiment",
))
# QQP, MNLI and QNLI ship no local copy in ../shared/data (too large); their layouts follow
# glue_data as released, and the tests check them on small files written in that format.
register_task(Task(
    name="qqp", benchmark="glue", metric="accuracy_f1", num_labels=2,
    hub_path="nyu-mll/glue", hub_name="qqp", hub_columns=("question1", "question2"),
    # id qid1 qid2 question1 question2 is_duplicate
    layout=TsvLayout("QQP", {"train": ("train.tsv",), "dev": ("dev.tsv",)}, text_a=3, text_b=4, label=5),
    max_epochs=5, patience=2, description="question paraphrase detection",
))
register_task(Task(
    name="mnli", benchmark="glue", metric="accuracy", num_labels=3,
    hub_path="nyu-mll/glue", hub_name="mnli", hub_columns=("premise", "hypothesis"),
    # index promptID pairID genre 4 parses sentence1 sentence2 label1[..label5] gold_label
    layout=TsvLayout("MNLI", {"train": ("train.tsv",), "dev": ("dev_matched.tsv",),
                              "dev_mismatched": ("dev_mismatched.tsv",)},
                     text_a=8, text_b=9, label=-1, labels={"entailment": 0, "neutral": 1, "contradiction": 2}),
    hub_splits={"train": "train", "dev": "validation_matched", "dev_mismatched": "validation_mismatched"},
    # Selection uses matched dev; mismatched dev is evaluated and logged alongside.
    extra_eval_splits=("dev_mismatched",),
    max_epochs=5, patience=2, description="natural language inference (matched; mismatched also reported)",
))
register_task(Task(
    name="qnli", benchmark="glue", metric="accuracy", num_labels=2,
    hub_path="nyu-mll/glue", hub_name="qnli", hub_columns=("question", "sentence"),
    layout=TsvLayout("QNLI", {"train": ("train.tsv",), "dev": ("dev.tsv",)},
                     text_a=1, text_b=2, label=3, labels=_PAIR_LABELS),
    max_epochs=10, patience=2, description="question-answering inference",
))
