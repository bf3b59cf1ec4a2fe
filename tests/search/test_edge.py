"""The edge holds: a named corpus of malformed specs, one per rule, each refused by `validate` and
by `run` (and a few by `submit`) in a clean directory: exit 2, one stderr line
`peftsearch: error: ...`, no traceback, no file written. Valid random/optuna specs with ranges are
accepted (a regression: `validate` expanded every spec as a grid)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml
from click.testing import CliRunner

from search.cli import main

DELETE = object()
PASSWORD = "s3cr3t-Planted-pw"


@dataclass(frozen=True)
class Case:
    id: str
    expected: str  # what the one error line must contain
    change: dict[str, Any] = field(default_factory=dict)  # dotted key -> value (DELETE removes it)
    text: Callable[[dict], bytes] | None = None  # the whole file, from the base spec as a dict


def _yaml(raw: dict) -> bytes:
    return yaml.safe_dump(raw, sort_keys=False).encode()


def _with(extra: str) -> Callable[[dict], bytes]:
    return lambda raw: _yaml(raw) + extra.encode()


LONG = "x" * 300
BOMB = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{n}: &{n} [{', '.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi")))

CORPUS = [
    # --- the file itself
    Case("duplicate-top-level-key", "duplicate key 'seeds'", text=_with("seeds: [5]\n")),
    Case("duplicate-nested-key", "duplicate key 'patience'",
         text=lambda raw: _yaml(raw).replace(b"  patience: 1\n", b"  patience: 1\n  patience: 2\n")),
    Case("alias-bomb", "more than 20 aliases", text=lambda raw: BOMB.encode() + _yaml(raw)),
    Case("non-utf8", "must be UTF-8 text, got byte 0xff", text=lambda raw: _yaml(raw) + b"# caf\xff\n"),
    Case("latin1-file", "must be UTF-8 text", text=lambda raw: _yaml(raw).replace(b"name: edge", b"name: caf\xe9")),
    Case("nul-byte", "must not hold NUL bytes", text=lambda raw: _yaml(raw).replace(b"tasks:", b"ta\x00sks:")),
    Case("yaml-syntax", "not valid YAML", text=lambda raw: b"name: [unclosed\n"),
    Case("yaml-tab-indent", "not valid YAML", text=lambda raw: b"name: x\ntraining:\n\tpatience: 1\n"),
    Case("not-a-mapping", "must be a YAML mapping", text=lambda raw: b"- a\n- b\n"),
    Case("empty-file", "must be a YAML mapping", text=lambda raw: b""),
    Case("unhashable-key", "not valid YAML", text=lambda raw: _yaml(raw) + b"? [a, b]\n: 1\n"),
    Case("python-tag", "not valid YAML", text=lambda raw: _yaml(raw) + b"evil: !!python/object/apply:os.system [ls]\n"),
    # --- keys and names
    Case("unknown-top-key", "surprise: unknown key 'surprise'", {"surprise": 1}),
    Case("unknown-nested-key", "did you mean 'patience'?", {"training.patiense": 3}),
    Case("unknown-method", "unknown method 'lorra'", {"methods.lorra": {"lr": [1e-3]}}),
    Case("unknown-hyperparameter", "did you mean 'rank'?", {"methods.lora.rnak": [4]}),
    Case("unknown-task", "tasks[1]: unknown task 'mnli_typo'", {"tasks": ["rte", "mnli_typo"]}),
    Case("tasks-a-string", "tasks: Input should be a valid list", {"tasks": "rte"}),
    Case("tasks-empty", "tasks: List should have at least 1 item", {"tasks": []}),
    Case("tasks-repeated", "must not repeat values", {"tasks": ["rte", "rte"]}),
    Case("methods-empty", "methods: Dictionary should have at least 1 item", {"methods": {}}),
    Case("name-with-spaces", "name: String should match pattern", {"name": "has spaces"}),
    Case("name-missing", "name: Field required", {"name": DELETE}),
    Case("algorithm-typo", "search.algorithm: Input should be 'grid'", {"search.algorithm": "gird"}),
    Case("optimizer-unknown", "training.optimizer: Input should be 'adam' or 'adamw'", {"training.optimizer": "sgd"}),
    # --- numbers: type, finiteness, range
    Case("lr-inf", "methods.finetune.lr: must be a finite number, got inf", {"methods.finetune.lr": [float("inf")]}),
    Case("lr-nan", "methods.finetune.lr: must be", {"methods.finetune.lr": [float("nan")]}),
    Case("lr-inf-string", "methods.finetune.lr: must be a finite number", {"methods.finetune.lr": ["inf"]}),
    Case("weight-decay-inf", "methods.finetune.weight_decay: must be a finite number", {"methods.finetune.weight_decay": [float("inf")]}),
    Case("lora-alpha-inf", "methods.lora.alpha: must be a finite number", {"methods.lora.alpha": float("inf")}),
    Case("cpu-inf", "resources.cpu: must be a finite number", {"resources.cpu": float("inf")}),
    Case("warmup-nan", "training.warmup_ratio", {"training.warmup_ratio": float("nan")}),
    Case("lr-boolean", "methods.finetune.lr: must be a number; a boolean is not one, got True", {"methods.finetune.lr": True}),
    Case("patience-boolean", "training.patience: must be a number; a boolean is not one", {"training.patience": True}),
    Case("cpu-boolean", "resources.cpu: must be a number; a boolean is not one", {"resources.cpu": True}),
    Case("rank-boolean", "methods.lora.rank: must be a number; a boolean is not one", {"methods.lora.rank": [True]}),
    Case("seeds-booleans", "seeds[0]: must be a number; a boolean is not one", {"seeds": [True, False]}),
    Case("seed-negative", "seeds.0: Input should be greater than or equal to 0", {"seeds": [-1]}),
    Case("seed-too-big", "seeds.0: Input should be less than or equal to 4294967295", {"seeds": [2**32]}),
    Case("sampler-seed-negative", "search.sampler_seed: Input should be greater than or equal to 0", {"search.sampler_seed": -5}),
    Case("lora-rank-1e9-float", "methods.lora.rank: must be <= 1,048,576", {"methods.lora.rank": [1e9]}),
    Case("lora-rank-1e9-int", "methods.lora.rank: must be <= 1,048,576", {"methods.lora.rank": [10**9]}),
    Case("batch-size-huge", "training.batch_size: must be <= 65,536", {"training.batch_size": 10**7}),
    Case("max-length-huge", "training.max_length: must be <= 65,536", {"training.max_length": 10**9}),
    Case("lr-zero", "methods.finetune.lr: must be > 0, got 0.0", {"methods.finetune.lr": [1e-5, 0.0]}),
    Case("lr-negative", "methods.finetune.lr: must be > 0", {"methods.finetune.lr": [-3e-5]}),
    Case("lr-missing", "methods.finetune.lr: is required", {"methods.finetune": {"weight_decay": [0.0]}}),
    Case("grid-empty", "methods.finetune.lr: the grid is empty", {"methods.finetune.lr": []}),
    Case("rank-zero", "methods.lora.rank: must be >= 1, got 0", {"methods.lora.rank": [0]}),
    Case("rank-a-string", "methods.lora.rank: Input should be a valid integer", {"methods.lora.rank": ["eight"]}),
    Case("patience-zero", "training.patience: must be >= 1, got 0", {"training.patience": 0}),
    Case("max-epochs-a-string", "training.max_epochs: Input should be a valid integer", {"training.max_epochs": "many"}),
    Case("cpu-zero", "resources.cpu: Input should be greater than 0", {"resources.cpu": 0}),
    Case("malloc-unknown", "resources.malloc: Input should be 'default' or 'lean'", {"resources.malloc": "jemalloc"}),
    Case("max-failures-negative", "search.max_failures: Input should be greater than or equal to 0", {"search.max_failures": -1}),
    Case("seeds-repeated", "seeds: must not repeat values, got 0 twice", {"seeds": [0, 0]}),
    Case("seeds-a-string", "seeds: Input should be a valid list", {"seeds": "0,1"}),
    # --- sizes: counted as a product, never expanded
    Case("grid-of-1e9-trials", "trials: at most 100,000 per search (--max-trials raises the cap), got 1,000,000,000",
         {"methods": {"finetune": {"lr": [1e-5 * (i + 1) for i in range(1000)],
                                   "weight_decay": [i / 1000 for i in range(1000)]}}, "seeds": list(range(1000))}),
    Case("num-samples-1e9", "trials: at most 100,000", {"search": {"algorithm": "random", "num_samples": 1e9},
                                                          "methods.finetune.lr": {"low": 1e-5, "high": 1e-3}}),
    # --- ranges
    Case("range-infinite-bound", "methods.finetune.lr: a range is {low, high, log}; high must be a finite number",
         {"search": {"algorithm": "optuna", "num_samples": 2}, "methods.finetune.lr": {"low": 1e-5, "high": float("inf")}}),
    Case("range-boolean-bound", "low must be a number; a boolean is not one",
         {"search": {"algorithm": "random", "num_samples": 2}, "methods.finetune.lr": {"low": True, "high": 1e-3}}),
    Case("range-reversed", "low must be < high", {"search": {"algorithm": "random", "num_samples": 2},
                                                  "methods.finetune.lr": {"low": 1e-3, "high": 1e-5}}),
    Case("range-on-a-grid", "a range needs search.algorithm random or optuna", {"methods.finetune.lr": {"low": 1e-5, "high": 1e-3}}),
    Case("num-samples-missing", "search.num_samples: is required for algorithm 'random'", {"search.algorithm": "random"}),
    # --- paths
    Case("backbone-missing-dir", "backbone: must be an existing model directory", {"backbone": "./no/such/model"}),
    Case("backbone-holds-no-model", "backbone: a model directory must hold config.json", {"backbone": "{fixtures}/empty-model"}),
    Case("backbone-config-not-json", "backbone: config.json is not readable JSON", {"backbone": "{fixtures}/bad-config"}),
    Case("backbone-no-weights", "backbone: a model directory must hold its weights", {"backbone": "{fixtures}/no-weights"}),
    Case("backbone-name-too-long", "backbone: a path component is longer than the system's limit of 255 bytes",
         {"backbone": f"/tmp/{LONG}/model"}),
    Case("backbone-unknown-user", "backbone: ~nosuchuser4242 names no user of this machine", {"backbone": "~nosuchuser4242/model"}),
    Case("data-dir-missing", "data.dir: directory does not exist", {"data.dir": "/definitely/not/here"}),
    Case("data-dir-not-given", "data.dir: is required when source is local", {"data.dir": DELETE}),
    Case("data-dir-name-too-long", "data.dir: a path component is longer than the system's limit", {"data.dir": f"/tmp/{LONG}"}),
    Case("data-dir-unknown-user", "data.dir: ~nosuchuser4242 names no user", {"data.dir": "~nosuchuser4242/glue"}),
    Case("data-dir-without-task-files", "data.dir:", {"data.dir": "{fixtures}/empty-model"}),
    # --- tracking URIs
    Case("tracking-file-store", "tracking.uri: must be a database or server URI", {"tracking.uri": "file:///tmp/mlruns"}),
    Case("tracking-unknown-scheme", "tracking.uri: unsupported scheme 'mongodb'", {"tracking.uri": "mongodb://localhost/x"}),
    Case("tracking-sqlite-no-dir", "tracking.uri: the database's directory does not exist",
         {"tracking.uri": "sqlite:////no/such/dir/mlflow.db"}),
    Case("tracking-sqlite-a-directory", "tracking.uri: names a directory, not a database file", {"tracking.uri": "sqlite:///{fixtures}"}),
    Case("tracking-sqlite-not-a-database", "tracking.uri: the file exists and is not a SQLite database",
         {"tracking.uri": "sqlite:///{fixtures}/notes.txt"}),
    Case("tracking-sqlite-name-too-long", "tracking.uri: a path component is longer than the system's limit",
         {"tracking.uri": f"sqlite:////tmp/{LONG}.db"}),
    Case("tracking-sqlite-unknown-user", "tracking.uri: ~nosuchuser4242 names no user", {"tracking.uri": "sqlite:///~nosuchuser4242/m.db"}),
    Case("tracking-in-memory", "tracking.uri: an in-memory SQLite database", {"tracking.uri": "sqlite:///:memory:"}),
    Case("tracking-sqlite-unknown-parameter", "tracking.uri: a SQLite URI takes one parameter, ?timeout=SECONDS",
         {"tracking.uri": "sqlite:///m.db?journal=wal"}),
    Case("tracking-sqlite-timeout-text", "tracking.uri: ?timeout= must be a positive number of seconds",
         {"tracking.uri": "sqlite:///m.db?timeout=soon"}),
    Case("tracking-port-not-a-number", "tracking.uri: the port must be a number in 1-65535",
         {"tracking.uri": "http://127.0.0.1:fivethousand"}),
    Case("tracking-port-out-of-range", "tracking.uri: the port must be a number in 1-65535", {"tracking.uri": "http://127.0.0.1:99999"}),
    Case("tracking-no-host", "tracking.uri: names no host", {"tracking.uri": "http://:5000"}),
    Case("tracking-server-unreachable", "tracking.uri: cannot reach the MLflow server", {"tracking.uri": "http://127.0.0.1:9/"}),
    Case("tracking-password-masked", "tracking.uri: cannot connect to the database",
         {"tracking.uri": f"postgresql+psycopg2://peft:{PASSWORD}@127.0.0.1:9/db"}),
    Case("tracking-env-unset", "tracking.uri: ${PEFTSEARCH_NO_SUCH_VAR} is not set in the environment",
         {"tracking.uri": "${PEFTSEARCH_NO_SUCH_VAR}"}),
    Case("tracking-with-space", "tracking.uri: must not contain spaces", {"tracking.uri": "sqlite:///my db.db"}),
]
# Method × backbone applicability and position limits are issue 11's (check_applicability in
# search/spec.py is where they plug in); this case turns green when they land.
PENDING = [Case("prompt-longer-than-positions", "methods.prompt_tuning",
                {"backbone": "{tiny}", "methods": {"prompt_tuning": {"lr": [0.03], "prompt_length": [500]}}})]


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fixtures")
    (root / "empty-model").mkdir()
    (root / "bad-config").mkdir()
    (root / "bad-config" / "config.json").write_text("{not json")
    (root / "no-weights").mkdir()
    (root / "no-weights" / "config.json").write_text('{"model_type": "bert"}')
    (root / "notes.txt").write_text("this is not a database\n")
    return root


def spec_bytes(case: Case, base: dict, fixtures: Path, tiny: str = "") -> bytes:
    raw = json.loads(json.dumps(base))
    for dotted, value in case.change.items():
        if isinstance(value, str):
            value = value.replace("{fixtures}", str(fixtures)).replace("{tiny}", tiny)
        *parents, last = dotted.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        if value is DELETE:
            node.pop(last, None)
        else:
            node[last] = value
    return case.text(raw) if case.text else _yaml(raw)


def refused(args: list[str], cwd: Path, expected: str) -> str:
    """Run the CLI in cwd; assert the refusal; return its line."""
    before = sorted(p.name for p in cwd.iterdir())
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, args)
    finally:
        os.chdir(old)
    assert isinstance(result.exception, SystemExit), f"traceback: {result.exception!r}\n{result.output}"
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("peftsearch: error: "), result.stderr
    assert "Traceback" not in result.output and expected in lines[0], lines[0]
    assert sorted(p.name for p in cwd.iterdir()) == before  # nothing written: no mlflow.db, no output dir
    return lines[0]


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.id)
def test_corpus_case_is_refused_by_validate_and_run(case, tmp_path, data_dir, fixtures, base_spec):
    (tmp_path / "spec.yaml").write_bytes(spec_bytes(case, base_spec(data_dir), fixtures))
    for command in ("validate", "run"):
        line = refused([command, "spec.yaml"], tmp_path, case.expected)
        assert PASSWORD not in line
    if case.id == "tracking-password-masked":
        assert "peft:***@127.0.0.1" in line


@pytest.mark.parametrize("case", PENDING, ids=lambda c: c.id)
def test_position_limit_case_is_refused(case, tmp_path, data_dir, fixtures, tiny_bert, base_spec):
    (tmp_path / "spec.yaml").write_bytes(spec_bytes(case, base_spec(data_dir), fixtures, tiny_bert))
    refused(["validate", "spec.yaml"], tmp_path, case.expected)


def test_corpus_covers_every_kind():
    assert len(CORPUS) + len(PENDING) >= 60 and len({c.id for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case_id", ["duplicate-nested-key", "lr-inf", "tracking-password-masked", "grid-of-1e9-trials"])
def test_submit_and_resume_share_the_edge(case_id, tmp_path, data_dir, fixtures, base_spec):
    case = next(c for c in CORPUS if c.id == case_id)
    (tmp_path / "spec.yaml").write_bytes(spec_bytes(case, base_spec(data_dir), fixtures))
    refused(["submit", "spec.yaml", "--address", "http://127.0.0.1:9"], tmp_path, case.expected)
    state = tmp_path / "out"
    state.mkdir()
    spec = yaml.safe_load(spec_bytes(case, base_spec(data_dir), fixtures)) if case.text is None else None
    if spec is not None:  # resume re-validates the stored spec the same way
        (state / "search.json").write_text(json.dumps({"spec": spec, "ctx": {}, "storage": str(state)}))
        refused(["resume", "out"], tmp_path, case.expected.split(",")[0])


def test_the_trial_cap_can_be_raised(tmp_path, data_dir, fixtures, base_spec):
    case = Case("big", "", {"methods": {"finetune": {"lr": [1e-5 * (i + 1) for i in range(400)],
                                                     "weight_decay": [i / 1000 for i in range(300)]}}, "seeds": [0]})
    (tmp_path / "spec.yaml").write_bytes(spec_bytes(case, base_spec(data_dir), fixtures))
    refused(["validate", "spec.yaml"], tmp_path, "trials: at most 100,000 per search")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "spec.yaml"), "--max-trials", "200000"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "edge: valid, 120000 trials"


@pytest.mark.parametrize("algorithm", ["random", "optuna"])
def test_validate_accepts_sampled_specs_with_ranges(algorithm, tmp_path, data_dir, fixtures, base_spec):
    """The regression: validate expanded every spec as a grid, and refused ranges."""
    case = Case("ok", "", {"search": {"algorithm": algorithm, "num_samples": 3},
                           "methods": {"finetune": {"lr": {"low": 1e-5, "high": 1e-3, "log": True}},
                                       "lora": {"lr": [1e-4, 3e-4], "rank": {"low": 4, "high": 16}}}})
    (tmp_path / "spec.yaml").write_bytes(spec_bytes(case, base_spec(data_dir), fixtures))
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "edge: valid, 12 trials"  # 3 samples x 2 methods x 2 seeds
    assert any(line.strip().startswith(f"rte-finetune: 3 {algorithm} assignments") and "'log': True" in line
               for line in lines[1:])


def test_env_interpolation_and_mlflow_tracking_uri(tmp_path, data_dir, fixtures, monkeypatch, base_spec):
    from search.spec import load_spec

    raw = base_spec(data_dir)
    raw["tracking"] = {"uri": "sqlite:///${PEFTSEARCH_TEST_DB}"}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PEFTSEARCH_TEST_DB", str(tmp_path / "x.db"))
    assert load_spec(tmp_path / "a.yaml").tracking.uri == f"sqlite:///{tmp_path / 'x.db'}"
    del raw["tracking"]
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'env.db'}")
    assert load_spec(tmp_path / "b.yaml").tracking.uri == f"sqlite:///{tmp_path / 'env.db'}"
    # the spec's own tracking.uri wins over the environment's default
    assert load_spec(tmp_path / "a.yaml").tracking.uri.endswith("x.db")


def test_yaml_12_floats_are_floats(tmp_path, data_dir, base_spec):
    """YAML 1.1 reads 1e-5 (no dot) as a string; the loader reads it as YAML 1.2 does."""
    from search.spec import load_spec

    text = _yaml(base_spec(data_dir)).decode().replace("- 1.0e-05", "- 1e-5")
    (tmp_path / "s.yaml").write_text(text)
    assert load_spec(tmp_path / "s.yaml").methods["finetune"]["lr"][0] == 1e-5


@pytest.mark.parametrize("text,expected", [
    ("seeds: [010, 1]", "010 is octal in YAML 1.1 (8)"),
    ("training: {max_epochs: 1, patience: 01}", "01 is octal in YAML 1.1 (1)"),
    ("training: {max_epochs: 1:30}", "1:30 is a base-60 number in YAML 1.1 (90)"),
    ("training: {max_epochs: 1, warmup_ratio: 0:30.5}", "0:30.5 is a base-60 number"),
])
def test_yaml_11_integers_that_read_unlike_they_look_are_refused(text, expected, tmp_path, data_dir, base_spec):
    """PyYAML would read 010 as 8 and 1:30 as 90, silently; YAML 1.2 and a reader see 10 and text."""
    raw = {k: v for k, v in base_spec(data_dir).items() if k not in ("seeds", "training")}
    (tmp_path / "spec.yaml").write_bytes(_yaml(raw) + text.encode() + b"\n")
    for command in ("validate", "run"):
        line = refused([command, "spec.yaml"], tmp_path, expected)
        assert "spec.yaml:" in line  # the file and the line


def test_a_sqlite_timeout_is_kept_when_the_path_is_made_absolute(tmp_path, data_dir, base_spec, monkeypatch):
    from search.spec import parse_spec
    from tracking.db import engine

    monkeypatch.chdir(tmp_path)
    spec = parse_spec(base_spec(data_dir) | {"tracking": {"uri": "sqlite:///m.db?timeout=30"}})
    assert spec.tracking.uri == f"sqlite:///{tmp_path.resolve() / 'm.db'}?timeout=30"
    eng = engine(spec.tracking.uri)
    assert eng.dialect.create_connect_args(eng.url)[1]["timeout"] == 30.0  # SQLAlchemy hands it to sqlite3


def test_zero_and_other_bases_still_read_as_numbers(tmp_path, data_dir, base_spec):
    from search.spec import load_spec

    raw = {k: v for k, v in base_spec(data_dir).items() if k != "seeds"}
    (tmp_path / "s.yaml").write_bytes(_yaml(raw) + b"seeds: [00, 0x10, 1_000]\n")
    assert load_spec(tmp_path / "s.yaml").seeds[:3] == [0, 16, 1000]


def test_a_whole_value_from_the_environment_is_read_as_the_number_it_spells(tmp_path, data_dir, monkeypatch,
                                                                            base_spec):
    """The environment holds only text: rank: ${RANK} with RANK=8 is the integer 8, while text
    written in the spec itself ("8") stays refused, and text that spells no number is refused."""
    from search.space import expand
    from search.spec import load_spec

    raw = base_spec(data_dir)
    raw["methods"]["lora"] = {"lr": ["${LR}"], "rank": ["${RANK}"]}
    raw["seeds"] = ["${SEED}"]
    raw["training"]["max_epochs"] = "${EPOCHS}"
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("LR", "3e-4")
    monkeypatch.setenv("RANK", "8")
    monkeypatch.setenv("SEED", "7")
    monkeypatch.setenv("EPOCHS", "2")
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.seeds == [7] and spec.training.max_epochs == 2
    lora = [t.config for t in expand(spec) if t.config.method == "lora"][0]
    assert lora.method_params["rank"] == 8 and lora.optim.lr == 3e-4
    monkeypatch.setenv("RANK", "8.5")
    refused(["validate", "spec.yaml"], tmp_path, "methods.lora.rank")
    monkeypatch.setenv("RANK", "eight")
    refused(["validate", "spec.yaml"], tmp_path, "methods.lora.rank")
    monkeypatch.setenv("RANK", "8")
    monkeypatch.setenv("EPOCHS", "true")
    refused(["validate", "spec.yaml"], tmp_path, "training.max_epochs")
