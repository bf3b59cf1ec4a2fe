"""Spec keys for random/Optuna search, pruning and retries: bad values are one line naming the
field; good ones build the Tune search domains the searchers sample from."""
from __future__ import annotations

import pytest
from ray import tune

from search.sampling import SeedSearcher, domain
from search.spec import Range, SpecError, parse_spec


def spec(data_dir, tmp_path, methods=None, **search):
    return {"name": "s", "backbone": "org/model", "data": {"source": "local", "dir": str(data_dir)},
            "tasks": ["rte"], "methods": methods or {"finetune": {"lr": {"low": 1e-5, "high": 1e-3, "log": True}}},
            "seeds": [0, 1], "search": {"algorithm": "optuna", "num_samples": 2} | search,
            "tracking": {"uri": f"sqlite:///{tmp_path / 'm.db'}"}}


RANGE = {"low": 1e-5, "high": 1e-3, "log": True}
BAD = [
    ({"algorithm": "grid", "num_samples": None}, None, "methods.finetune.lr: a range needs search.algorithm random or optuna"),
    ({"num_samples": None}, None, "search.num_samples: is required for algorithm 'optuna'"),
    ({"algorithm": "grid", "num_samples": 3}, {"finetune": {"lr": [1e-4]}}, "search.num_samples: only random and optuna sample"),
    ({"num_samples": 0}, None, "search.num_samples: Input should be greater than or equal to 1"),
    ({"max_failures": -1}, None, "search.max_failures: Input should be greater than or equal to 0"),
    ({"scheduler": {"name": "hyperband"}}, None, "search.scheduler.name: Input should be 'none', 'asha' or 'median'"),
    ({"scheduler": {"name": "asha", "reduction_factor": 1}}, None, "search.scheduler.reduction_factor: Input should be greater than 1"),
    ({}, {"finetune": {"lr": {"low": 1e-3, "high": 1e-5}}}, "methods.finetune.lr: a range is {low, high, log}; low must be < high"),
    ({}, {"finetune": {"lr": {"low": 0, "high": 1e-5, "log": True}}}, "methods.finetune.lr: a range is {low, high, log}; a log range needs low > 0"),
    ({}, {"finetune": {"lr": {"lo": 1e-5, "high": 1e-3}}}, "methods.finetune.lr: a range is {low, high, log}; low: Field required"),
    ({}, {"finetune": {"lr": {"low": -1.0, "high": 1e-3}}}, "methods.finetune.lr: must be > 0, got -1.0"),
    ({}, {"prompt_tuning": {"lr": [0.1], "prompt_length": {"low": 0, "high": 8}}}, "methods.prompt_tuning.prompt_length: must be >= 1, got 0"),
    ({}, {"prompt_tuning": {"lr": [0.1], "prompt_length": [4, "x"]}}, "methods.prompt_tuning.prompt_length: Input should be a valid integer"),
]


@pytest.mark.parametrize("search, methods, expected", BAD, ids=[b[2].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_search_keys_are_one_line(data_dir, tmp_path, search, methods, expected):
    raw = spec(data_dir, tmp_path, methods, **search)
    raw["search"] = {k: v for k, v in raw["search"].items() if v is not None}
    with pytest.raises(SpecError) as e:
        parse_spec(raw)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_ranges_and_choices_become_tune_domains():
    assert isinstance(domain([1, 2]), tune.search.sample.Categorical)
    log = domain(Range(low=1e-5, high=1e-3, log=True))
    assert isinstance(log.get_sampler(), tune.search.sample.Float._LogUniform)
    ints = domain(Range(low=2, high=10))
    assert isinstance(ints, tune.search.sample.Integer) and (ints.lower, ints.upper) == (2, 11)


def test_seed_searcher_replicates_assignments_and_reports_the_median(data_dir, tmp_path):
    """The searcher itself, driven by hand as Tune would drive it (no training needed here)."""
    s = parse_spec(spec(data_dir, tmp_path, {"finetune": {"lr": RANGE},
                                             "prompt_tuning": {"lr": [0.1, 0.3], "prompt_length": {"low": 2, "high": 9}}},
                        num_samples=2) | {"seeds": [0, 1, 2]})
    searcher = SeedSearcher(s)
    assert searcher.total_trials == 2 * 2 * 3
    configs = {f"t{i}": searcher.suggest(f"t{i}") for i in range(12)}
    assert searcher.suggest("t12") == searcher.FINISHED
    by_cid = {}
    for tid, c in configs.items():
        by_cid.setdefault(c["trial"]["config_id"], []).append((tid, c["trial"]["config"]))
    assert len(by_cid) == 4 and all(sorted(cfg["seed"] for _, cfg in v) == [0, 1, 2] for v in by_cid.values())
    lengths = {cfg["method_params"]["prompt_length"] for v in by_cid.values() for _, cfg in v
               if cfg["method"] == "prompt_tuning"}
    assert all(isinstance(n, int) and 2 <= n <= 9 for n in lengths)
    for v in by_cid.values():
        for score, (tid, _) in zip([0.9, 0.5, 0.7], v):
            searcher.on_trial_complete(tid, {"best_dev_score": score})
    for study in searcher.studies().values():
        assert [t.value for t in study.trials] == [0.7, 0.7]  # the median of 0.9, 0.5, 0.7
