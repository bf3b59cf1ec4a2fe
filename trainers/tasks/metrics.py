"""The papers' task metrics (METHODS.md), computed with sklearn and scipy.

Every metric function returns its components plus ``score``, the task's selection metric.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

MetricFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]


def accuracy(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    acc = float(accuracy_score(labels, preds))
    return {"accuracy": acc, "score": acc}


def matthews(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    mcc = float(matthews_corrcoef(labels, preds))
    return {"mcc": mcc, "score": mcc}


def accuracy_f1(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    acc = float(accuracy_score(labels, preds))
    f1 = float(f1_score(labels, preds, zero_division=0.0))
    return {"accuracy": acc, "f1": f1, "score": (acc + f1) / 2}


def pearson_spearman(preds: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    # A constant prediction has no correlation; scipy returns nan, which we report as 0.
    p = float(np.nan_to_num(pearsonr(preds, labels)[0])) if np.std(preds) > 0 else 0.0
    s = float(np.nan_to_num(spearmanr(preds, labels)[0])) if np.std(preds) > 0 else 0.0
    return {"pearson": p, "spearman": s, "score": (p + s) / 2}


# name -> (function, how the papers' tables label it)
METRICS: dict[str, tuple[MetricFn, str]] = {
    "accuracy": (accuracy, "acc"),
    "mcc": (matthews, "MCC"),
    "accuracy_f1": (accuracy_f1, "acc/F1"),
    "pearson_spearman": (pearson_spearman, "Pearson/Spearman"),
}
