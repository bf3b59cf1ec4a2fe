"""Random and Optuna (TPE) search, per method × task, with every sampled assignment replicated
over the spec's seeds.

One Optuna searcher per (task, method) pair, since their spaces differ; `random` is Optuna's
RandomSampler, so both algorithms share one code path. `SeedSearcher` sits between Ray Tune and
those searchers: it asks one of them for an assignment, hands out one trial per seed, and when
every seed's trial has ended it reports the seed-median of `best_dev_score` back to the searcher
that proposed it. The searchers therefore learn from seed-medians, never from a lucky seed.
"""
from __future__ import annotations

import dataclasses
import pickle
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.search import Searcher

from search.space import config_id
from search.spec import Range, Spec
from trainers.config import TrialConfig

MEDIAN = "seed_median"  # what the inner searchers optimise
SCORE = "best_dev_score"  # each seed's score, from the trial's last result


def _sampler(name: str, seed: int):
    import optuna

    samplers = {"random": optuna.samplers.RandomSampler, "optuna": optuna.samplers.TPESampler}
    return samplers[name](seed=seed)


def domain(values: Range | list) -> Any:
    """A spec hyperparameter as a Ray Tune search domain (which OptunaSearch translates)."""
    if isinstance(values, list):
        return tune.choice(values)
    if values.is_int:  # integer endpoints: sample integers, both ends included
        return (tune.lograndint if values.log else tune.randint)(values.low, values.high + 1)
    return (tune.loguniform if values.log else tune.uniform)(values.low, values.high)


@dataclass
class Group:
    """One (task, method) pair: its own searcher and how many assignments it may still propose."""

    task: str
    method: str
    searcher: Any
    remaining: int
    proposed: int = 0


@dataclass
class Assignment:
    group: int
    open_seeds: int
    scores: list[float] = field(default_factory=list)
    median: float | None = None


class SeedSearcher(Searcher):
    def __init__(self, spec: Spec, *, studies_dir: Path | None = None) -> None:
        from ray.tune.search.optuna import OptunaSearch

        super().__init__(metric=SCORE, mode="max")
        self.spec, self.studies_dir = spec, studies_dir
        self.groups = []
        for i, (task, method) in enumerate((t, m) for t in spec.tasks for m in spec.methods):
            space = {k: domain(v) for k, v in spec.methods[method].items()}
            inner = OptunaSearch(space, metric=MEDIAN, mode="max", study_name=f"{task}-{method}",
                                 sampler=_sampler(spec.search.algorithm, spec.search.sampler_seed + i))
            self.groups.append(Group(task, method, inner, spec.search.num_samples))
        self.pending: list[tuple[str, dict]] = []  # (assignment key, trial config) not yet handed out
        self.assignments: dict[str, Assignment] = {}
        self.trials: dict[str, str] = {}  # Tune trial id -> assignment key

    @property
    def total_trials(self) -> int:
        return sum(g.remaining for g in self.groups) * len(self.spec.seeds)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # the seed searcher always ranks by best_dev_score; Tune's metric drives schedulers

    def suggest(self, trial_id: str) -> dict | None:
        if not self.pending and not self._propose():
            return Searcher.FINISHED if all(g.remaining == 0 for g in self.groups) else None
        key, config = self.pending.pop(0)
        self.trials[trial_id] = key
        return config

    def _propose(self) -> bool:
        """Ask the next group with samples left for one assignment; queue one trial per seed."""
        for i, g in sorted(enumerate(self.groups), key=lambda ig: ig[1].proposed):
            if g.remaining == 0:
                continue
            key = f"{g.task}-{g.method}-{g.proposed}"
            point = g.searcher.suggest(key)
            if point is None or point == Searcher.FINISHED:
                continue
            g.remaining, g.proposed = g.remaining - 1, g.proposed + 1
            optim, params = self.spec.build_point(g.method, point)
            cid = config_id(g.task, g.method, self.spec.backbone, dataclasses.asdict(optim), params)
            self.assignments[key] = Assignment(i, open_seeds=len(self.spec.seeds))
            for seed in self.spec.seeds:
                cfg = TrialConfig(task=g.task, method=g.method, backbone=self.spec.backbone, seed=seed, optim=optim,
                                  method_params=params, training=self.spec.training, data=self.spec.data,
                                  task_format=self.spec.task_format)
                self.pending.append((key, {"trial": {"config": cfg.to_dict(), "config_id": cid}}))
            return True
        return False

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        key = self.trials.pop(trial_id, None)
        if key is None:
            return
        a = self.assignments[key]
        a.open_seeds -= 1
        if not error and result and result.get(SCORE) is not None:
            a.scores.append(float(result[SCORE]))
        if a.open_seeds == 0:
            inner = self.groups[a.group].searcher
            if a.scores:
                a.median = statistics.median(a.scores)
                inner.on_trial_complete(key, {MEDIAN: a.median})
            else:  # every seed failed: the searcher learns nothing from this assignment
                inner.on_trial_complete(key, error=True)
            if self.studies_dir:
                self.write_studies(self.studies_dir)

    def studies(self) -> dict[str, Any]:
        """(task-method) -> its Optuna study, whose trial values are the reported seed-medians."""
        return {f"{g.task}-{g.method}": g.searcher._ot_study for g in self.groups}

    def write_studies(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for name, study in self.studies().items():
            path = out_dir / f"study-{name}.csv"
            study.trials_dataframe().to_csv(path, index=False)
            files.append(path)
        return files

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
