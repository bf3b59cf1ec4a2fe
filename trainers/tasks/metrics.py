"""The papers' task metrics (METHODS.md), computed with sklearn and scipy.

Every metric function takes (preds, labels, groups) and returns its components plus ``score``,
the task's selection metric. ``groups`` (one id per example) is only read by metrics that score
groups of examples together (MultiRC's exact match per question).
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

MetricFn = Callable[[np.ndarray, np.ndarray, Optional[np.ndarray]], dict[str, float]]


def accuracy(preds: np.ndarray, labels: np.ndarray, groups=None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score

    acc = float(accuracy_score(labels, preds))
    return {"accuracy": acc, "score": acc}


def matthews(preds: np.ndarray, labels: np.ndarray, groups=None) -> dict[str, float]:
    from sklearn.metrics import matthews_corrcoef

    mcc = float(matthews_corrcoef(labels, preds))
    return {"mcc": mcc, "score": mcc}


def accuracy_f1(preds: np.ndarray, labels: np.ndarray, groups=None) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score

    acc = float(accuracy_score(labels, preds))
    f1 = float(f1_score(labels, preds, zero_division=0.0))
    return {"accuracy": acc, "f1": f1, "score": (acc + f1) / 2}


def accuracy_macro_f1(preds: np.ndarray, labels: np.ndarray, groups=None) -> dict[str, float]:
    """CB: macro-F1 over the classes present in labels or predictions (SuperGLUE's jiant/sklearn)."""
    from sklearn.metrics import accuracy_score, f1_score

    acc = float(accuracy_score(labels, preds))
    f1 = float(f1_score(labels, preds, average="macro", zero_division=0.0))
    return {"accuracy": acc, "f1_macro": f1, "score": (acc + f1) / 2}


def f1a_em(preds: np.ndarray, labels: np.ndarray, groups: np.ndarray | None = None) -> dict[str, float]:
    """MultiRC (SuperGLUE): F1a is binary F1 over every answer option; EM is the share of
    questions whose answer options are all predicted right."""
    from sklearn.metrics import f1_score

    if groups is None:
        raise ValueError("MultiRC's exact match needs the question of every answer option (groups)")
    f1a = float(f1_score(labels, preds, zero_division=0.0))
    right = np.asarray(preds) == np.asarray(labels)
    _, question = np.unique(groups, return_inverse=True)
    em = float(np.mean(np.bincount(question, weights=~right) == 0))
    return {"f1a": f1a, "em": em, "score": (f1a + em) / 2}


def pearson_spearman(preds: np.ndarray, labels: np.ndarray, groups=None) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr

    # A constant prediction has no correlation; scipy returns nan, which we report as 0.
    p = float(np.nan_to_num(pearsonr(preds, labels)[0])) if np.std(preds) > 0 else 0.0
    s = float(np.nan_to_num(spearmanr(preds, labels)[0])) if np.std(preds) > 0 else 0.0
    return {"pearson": p, "spearman": s, "score": (p + s) / 2}


# name -> (function, how the papers' tables label it)
METRICS: dict[str, tuple[MetricFn, str]] = {
    "accuracy": (accuracy, "acc"),
    "mcc": (matthews, "MCC"),
    "accuracy_f1": (accuracy_f1, "acc/F1"),
    "accuracy_macro_f1": (accuracy_macro_f1, "acc/macro-F1"),
    "f1a_em": (f1a_em, "F1a/EM"),
    "pearson_spearman": (pearson_spearman, "Pearson/Spearman"),
}
