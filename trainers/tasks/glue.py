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
