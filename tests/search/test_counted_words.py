"""Counted nouns outside `compare`: a one-trial spec is "1 trial", one seed "1 seed", in what
`validate` prints and what a search tags its parent run with (tracking.words.count)."""
from __future__ import annotations

import yaml
from click.testing import CliRunner

from search.cli import main


def _validate(tmp_path, raw) -> list[str]:
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


def test_one_trial_is_singular_and_more_are_plural(tmp_path, data_dir, base_spec):
    raw = base_spec(data_dir) | {"methods": {"finetune": {"lr": [1e-5]}}, "seeds": [0]}
    assert _validate(tmp_path, raw)[0] == "edge: valid, 1 trial"
    raw["seeds"] = [0, 1]
    assert _validate(tmp_path, raw)[0] == "edge: valid, 2 trials"


def test_sampled_spec_lines_count_assignments_and_seeds(tmp_path, data_dir, base_spec):
    raw = base_spec(data_dir) | {"methods": {"finetune": {"lr": {"low": 1e-5, "high": 1e-3}}}, "seeds": [0],
                                 "search": {"algorithm": "random", "num_samples": 1}}
    lines = _validate(tmp_path, raw)
    assert lines[0] == "edge: valid, 1 trial"
    assert lines[1].strip().startswith("rte-finetune: 1 random assignment × 1 seed from {")
    raw["search"]["num_samples"], raw["seeds"] = 3, [0, 1]
    assert _validate(tmp_path, raw)[1].strip().startswith("rte-finetune: 3 random assignments × 2 seeds from {")


def test_incomplete_tag_counts_trials(tmp_path):
    from mlflow.tracking import MlflowClient

    from tracking.runs import INCOMPLETE_TAG, finish_parent_run

    c = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = c.create_experiment("words")
    for failed, total, want in [(1, 1, "1 of 1 trial failed"), (1, 3, "1 of 3 trials failed"), (0, 1, "false")]:
        run = c.create_run(exp)
        finish_parent_run(c, run.info.run_id, failed_trials=failed, total_trials=total)
        assert c.get_run(run.info.run_id).data.tags[INCOMPLETE_TAG] == want
