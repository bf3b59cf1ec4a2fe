"""Malformed specs: each fails with one line naming the field, exits non-zero, and writes
nothing to the tracking database. Every bundled spec validates (the torchtune rule)."""
import hashlib
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from search.cli import main
from search.space import expand
from search.spec import BUNDLED, load_spec, parse_spec


def good_spec(data_dir, db) -> dict:
    return {
        "name": "bad-spec-test",
        "backbone": "sentence-transformers/all-MiniLM-L6-v2",
        "data": {"source": "local", "dir": str(data_dir)},
        "tasks": ["rte"],
        "methods": {"finetune": {"lr": [1.0e-5]}, "prompt_tuning": {"lr": [3.0e-2], "prompt_length": [10, 20]}},
        "seeds": [0, 1],
        "training": {"max_epochs": 1, "patience": 1},
        "tracking": {"uri": f"sqlite:///{db}"},
    }


def _set(d, dotted, value):
    *parents, last = dotted.split(".")
    for p in parents:
        d = d.setdefault(p, {})
    if value is DELETE:
        del d[last]
    else:
        d[last] = value


DELETE = object()

# (dotted key to change, new value, what the error line must contain)
MALFORMED = [
    ("surprise", 1, "surprise: unknown key 'surprise'"),
    ("training.patiense", 3, "training.patiense: unknown key 'patiense'; did you mean 'patience'?"),
    ("methods.lorra", {"lr": [1e-3]}, "methods: unknown method 'lorra'"),
    ("tasks", ["rte", "mnli_typo"], "tasks[1]: unknown task 'mnli_typo'"),
    ("tasks", [], "tasks: List should have at least 1 item"),
    ("methods", {}, "methods: Dictionary should have at least 1 item"),
    ("methods.finetune.lr", [], "methods.finetune.lr: the grid is empty"),
    ("methods.finetune.lr", [1e-5, 0.0], "methods.finetune.lr: must be > 0, got 0.0"),
    ("methods.finetune.lr", [-3e-5], "methods.finetune.lr: must be > 0, got -3e-05"),
    ("methods.finetune", {"weight_decay": [0.0]}, "methods.finetune.lr: is required"),
    ("methods.prompt_tuning.prompt_length", [10, "twenty"], "methods.prompt_tuning.prompt_length: Input should be a valid integer"),
    ("methods.prompt_tuning.prompt_length", [0], "methods.prompt_tuning.prompt_length: must be >= 1, got 0"),
    ("methods.prompt_tuning.prompt_lenght", [5], "did you mean 'prompt_length'?"),
    ("methods.prompt_tuning", [1, 2], "methods.prompt_tuning: must map hyperparameter names to lists of values"),
    ("training.patience", 0, "training.patience: must be >= 1, got 0"),
    ("training.max_epochs", "many", "training.max_epochs: Input should be a valid integer"),
    ("training.optimizer", "sgd", "training.optimizer: Input should be 'adam' or 'adamw'"),
    ("seeds", [0, 0], "seeds: must not repeat values, got 0 twice"),
    ("seeds", "0,1", "seeds: Input should be a valid list"),
    ("data.dir", "/definitely/not/here", "data.dir: directory does not exist, got '/definitely/not/here'"),
    ("data.dir", DELETE, "data.dir: is required when source is local"),
    ("tracking.uri", "file:///tmp/mlruns", "tracking.uri: must be a database or server URI"),
    ("tracking.uri", "sqlite:////no/such/dir/mlflow.db", "tracking.uri: the database's directory does not exist"),
    ("tracking.uri", "mongodb://localhost/x", "tracking.uri: unsupported scheme 'mongodb'"),
    ("tracking.uri", "http://127.0.0.1:9/", "tracking.uri: cannot reach the MLflow server"),
    ("resources.cpu", 0, "resources.cpu: Input should be greater than 0, got 0"),
    ("name", "has spaces", "name: String should match pattern"),
    ("backbone", "./no/such/model", "backbone: must be an existing model directory or a Hugging Face id"),
    ("search.algorithm", "gird", "search.algorithm: Input should be 'grid'"),
]


@pytest.fixture(scope="module")
def existing_db(tmp_path_factory):
    """A tracking database that already holds an experiment: bad specs must not touch it."""
    from mlflow.tracking import MlflowClient

    db = tmp_path_factory.mktemp("db") / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").create_experiment("bad-spec-test")
    return db


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("key, value, expected", MALFORMED, ids=[m[0] + ":" + str(i) for i, m in enumerate(MALFORMED)])
def test_malformed_spec_is_one_clear_line_and_writes_nothing(tmp_path, data_dir, existing_db, key, value, expected):
    raw = good_spec(data_dir, existing_db)
    _set(raw, key, value)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    before = digest(existing_db)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(spec), "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("peftsearch: error: "), result.stderr
    assert expected in lines[0]
    assert digest(existing_db) == before and not out.exists()


def test_a_fresh_database_is_not_even_created(tmp_path, data_dir):
    raw = good_spec(data_dir, tmp_path / "new.db")
    raw["training"]["patience"] = 0
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(main, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2 and not (tmp_path / "new.db").exists()


def test_invalid_yaml_and_missing_spec(tmp_path):
    (tmp_path / "spec.yaml").write_text("name: [unclosed\n")
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "spec.yaml")])
    assert r.exit_code == 2 and "spec.yaml:2: not valid YAML" in r.stderr
    r = CliRunner().invoke(main, ["validate", "no-such-spec"])
    assert r.exit_code == 2 and "no bundled spec of that name" in r.stderr


def test_good_spec_expands_to_the_full_grid(tmp_path, data_dir):
    spec = parse_spec(good_spec(data_dir, tmp_path / "m.db"))
    trials = expand(spec)
    assert len(trials) == (1 + 2) * 2  # (finetune 1 + prompt_tuning 2 assignments) x 2 seeds
    ids = {}
    for t in trials:
        ids.setdefault(t.config_id, set()).add(t.config.seed)
    assert all(seeds == {0, 1} for seeds in ids.values()) and len(ids) == 3
    assert spec.tracking.uri == f"sqlite:///{(tmp_path / 'm.db').resolve()}"
    # YAML 1.1 reads 3e-2 (no dot) as a string: the spec still gives a float.
    raw = good_spec(data_dir, tmp_path / "m.db") | {"methods": {"finetune": {"lr": "3e-2"}}}
    assert expand(parse_spec(raw))[0].config.optim.lr == 0.03
    json.dumps([t.config.to_dict() for t in trials])  # the param space is plain data


@pytest.mark.parametrize("path", sorted(BUNDLED.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_bundled_spec_validates(path, data_dir, tmp_path):
    spec = load_spec(path, overrides={"data.source": "local", "data.dir": str(data_dir),
                                      "tracking.uri": f"sqlite:///{tmp_path / 'x.db'}"})
    assert expand(spec)
