"""The fairness audit printed with every comparison: pairs of methods compared on different
budgets or set-ups. Each finding is one line; ``--strict`` turns them into an error.

Checked per task, for each pair of arms (method × backbone): the numbers of trials, assignments
and seeds; the training budget as logged in each trial's params (max_epochs, patience,
max_train_examples, max_eval_examples, max_length, batch_size); the backbone; the split protocol
and task format tags; and the search algorithm (EVP is exact only for i.i.d. sampling).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from tracking.runs import tag
from tracking.words import count

PARAMS = ("training.max_epochs", "training.patience", "training.max_train_examples", "training.max_eval_examples",
          "training.max_length", "training.batch_size")
TAGS = ("protocol", "format")
ARM = ["method", "backbone"]


class UnfairComparison(ValueError):
    """Raised under --strict; a ValueError, so the CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class Finding:
    task: str
    a: str
    b: str
    field: str
    detail: str

    def line(self) -> str:
        return f"fairness: {self.task}: {self.a} vs {self.b}: {self.field} differ ({self.detail})"


def with_setup(uri: str, trials: pd.DataFrame) -> pd.DataFrame:
    """The trials with the params and tags the audit compares (one query each, by run id)."""
    ids = list(trials["run_uuid"])
    if uri.startswith(("http://", "https://")):
        return trials.join(_setup_rest(uri, ids), on="run_uuid")
    from tracking.db import session_scope

    keys = list(PARAMS) + [tag(t) for t in TAGS]
    with session_scope(uri) as s:
        q = sa.text("SELECT run_uuid, key, value FROM params WHERE key IN :keys AND run_uuid IN :ids "
                    "UNION ALL SELECT run_uuid, key, value FROM tags WHERE key IN :keys AND run_uuid IN :ids"
                    ).bindparams(sa.bindparam("keys", expanding=True), sa.bindparam("ids", expanding=True))
        rows = s.execute(q, {"keys": keys, "ids": ids}).all()
    wide = pd.DataFrame([tuple(r) for r in rows], columns=["run_uuid", "key", "value"])
    wide = wide.pivot_table(index="run_uuid", columns="key", values="value", aggfunc="first")
    wide = wide.reindex(columns=keys).rename(columns={tag(t): t for t in TAGS})
    return trials.join(wide, on="run_uuid")


def _setup_rest(uri: str, ids: list[str]) -> pd.DataFrame:
    from tracking.runs import client

    c = client(uri)
    rows = {}
    for run_id in ids:
        data = c.get_run(run_id).data
        rows[run_id] = {k: data.params.get(k) for k in PARAMS} | {t: data.tags.get(tag(t)) for t in TAGS}
    return pd.DataFrame.from_dict(rows, orient="index")


def _describe(values: pd.Series) -> str:
    counts = values.fillna("none").astype(str).value_counts()
    return "/".join(sorted(counts.index)) if len(counts) <= 4 else f"{len(counts)} values"


def _profile(g: pd.DataFrame) -> dict[str, str]:
    """What one arm's comparison rests on, as strings to compare."""
    p = {"trials": str(len(g)), "assignments": str(g["config_id"].nunique()),
         "seeds": ",".join(map(str, sorted(g["seed"].unique()))),
         "search algorithms": _describe(g["algorithm"]) if "algorithm" in g else "none"}
    for col in PARAMS + TAGS:
        if col in g:
            p[col.removeprefix("training.")] = _describe(g[col])
    return p


def audit(trials: pd.DataFrame, pairs: list[tuple[str, tuple, tuple]], label=None) -> list[Finding]:
    """Findings for each (task, arm A, arm B) pair; arms are (method, backbone)."""
    label = label or _label
    profiles = {key: _profile(g) for key, g in trials.groupby(["task"] + ARM)}
    out = []
    for task, a, b in pairs:
        pa, pb = profiles[(task, *a)], profiles[(task, *b)]
        found = [Finding(task, label(a), label(b), "backbones", f"{a[1]} vs {b[1]}")] if a[1] != b[1] else []
        found += [Finding(task, label(a), label(b), f, f"{pa[f]} vs {pb[f]}") for f in pa if pa[f] != pb[f]]
        adaptive = sorted(set(pa["search algorithms"].split("/")) - {"grid", "random", "none"})
        if adaptive and not any(f.field == "search algorithms" for f in found):
            found.append(Finding(task, label(a), label(b), "search algorithms",
                                 f"{'/'.join(adaptive)} is adaptive for both; EVP is exact only for i.i.d. sampling"))
        out += found
    return out


def _label(arm: tuple) -> str:
    return f"{arm[0]} ({arm[1].rstrip('/').split('/')[-1]})"


def enforce(findings: list[Finding], strict: bool) -> None:
    if strict and findings:
        raise UnfairComparison(f"--strict: {count(len(findings), 'fairness finding')}; first: {findings[0].line()}")
