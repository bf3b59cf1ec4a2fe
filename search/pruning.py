"""Pruning: Ray Tune schedulers chosen by name in the spec, and how pruned trials are recorded.

A pruned trial's MLflow run ends KILLED with the tag ``peftsearch.pruned = true``: not FAILED
(nothing went wrong) and not FINISHED (it did not train to its end). Its metrics up to the prune
stay, so EVP can still count it at the score it had reached.
"""
from __future__ import annotations

from ray import tune

from search.spec import SchedulerConfig
from tracking import runs

TIME_ATTR = "training_iteration"  # one per evaluation the trial reported


def _asha(c: SchedulerConfig):
    return tune.schedulers.ASHAScheduler(time_attr=TIME_ATTR, grace_period=c.grace_period,
                                         reduction_factor=c.reduction_factor, max_t=10**6)


def _median(c: SchedulerConfig):
    return tune.schedulers.MedianStoppingRule(time_attr=TIME_ATTR, grace_period=c.grace_period,
                                              min_samples_required=c.min_samples_required)


SCHEDULERS = {"none": lambda c: None, "asha": _asha, "median": _median}


def scheduler(c: SchedulerConfig):
    return SCHEDULERS[c.name](c)


_URIS: dict[str, str] = {}  # masked tracking URI -> the real one, in this driver process only


def remember_uri(uri: str) -> str:
    """Tune pickles callbacks into OUT/ray/.../tuner.pkl: they keep the masked URI, and look the
    real one up here (`resume` remembers it again before restoring)."""
    from search.uris import mask

    _URIS[mask(uri)] = uri
    return mask(uri)


class PrunedRuns(tune.Callback):
    """On the driver: a trial that completed without its trainable returning (its last result is
    not ``done``) was stopped by the scheduler. Mark its run pruned, in case the trial's thread
    was ended before it could do so itself."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str) -> None:
        self.uri, self.experiment_id, self.parent = remember_uri(tracking_uri), experiment_id, parent_run_id
        self.pruned: list[str] = []

    def on_trial_complete(self, iteration, trials, trial, **info):
        if (trial.last_result or {}).get("done"):
            return
        self.pruned.append(trial.trial_id)
        runs.mark_pruned(runs.client(_URIS.get(self.uri, self.uri)), self.experiment_id, self.parent, trial.trial_id)
