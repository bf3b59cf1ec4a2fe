"""Fuzz the edge (hypothesis): mutate a valid spec (wrong types, non-finite and extreme numbers,
unknown keys, deleted required keys, random bytes) and run `validate` and `run` on it in a clean
directory. Either both refuse it (exit 2, one line, no traceback, no file) or `validate` accepts
it and `run` gets past the edge to start the search. Starting Ray for every example would take
hours, so `run_search` is replaced by a recorder here; the configs a trial would receive are
rebuilt the way a trial rebuilds them (TrialConfig.from_dict), so "accepted" means "runnable"."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from search.cli import main
from search.space import expand
from trainers.config import TrialConfig

EXAMPLES = 150
PATHS = [("name",), ("backbone",), ("tasks",), ("tasks", 0), ("methods",), ("methods", "finetune"),
         ("methods", "finetune", "lr"), ("methods", "finetune", "lr", 0), ("methods", "lora", "rank"),
         ("methods", "lora", "rank", 0), ("seeds",), ("seeds", 0), ("training",), ("training", "patience"),
         ("training", "batch_size"), ("training", "warmup_ratio"), ("training", "max_epochs"), ("data",),
         ("data", "dir"), ("data", "source"), ("search",), ("search", "algorithm"), ("search", "num_samples"),
         ("search", "max_failures"), ("resources",), ("resources", "cpu"), ("tracking",), ("tracking", "uri"),
         ("training", "max_length"), ("training", "betas"), ("training", "save_model"), ("training", "adam_eps"),
         ("methods", "lora", "alpha"), ("methods", "lora", "dropout"), ("search", "sampler_seed"),
         ("search", "scheduler"), ("resources", "gpu"), ("data", "protocol"), ("task_format",)]
NUMBERS = st.one_of(st.integers(), st.integers(min_value=-2**70, max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0, -1, 2**32, 1e308, -0.0, 1e-320]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12),
                    st.sampled_from(["inf", "nan", "1e9", "~nosuchuser/x", "x" * 300, "sqlite:///", "${NOPE}",
                                     "3e-2", "8", "1,000", "0x10", " 3", "1e", "${", "${}", "yes", "\ud800",
                                     "postgresql://u:p%40w@127.0.0.1:0/db", "http://[::1"]),
                    st.binary(max_size=4), st.sets(st.integers(), max_size=2), st.dates())  # YAML tags
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)
MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PATHS), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("unknown"), st.sampled_from([p for p in PATHS if len(p) <= 2]), st.text(min_size=1, max_size=8)),
    st.tuples(st.just("bytes"), st.integers(min_value=0, max_value=10**6), st.binary(min_size=1, max_size=8)),
)


def mutate(raw: dict, mutation) -> bytes:
    kind, where, what = mutation
    if kind == "bytes":  # random bytes spliced into the file
        text = yaml.safe_dump(raw).encode()
        at = where % (len(text) + 1)
        return text[:at] + what + text[at:]
    node = raw
    for key in where[:-1]:
        node = node[key]
    last = where[-1]
    if kind == "set":
        node[last] = what
    elif kind == "delete":
        node.pop(last) if isinstance(node, dict) else node.pop(last)
    elif isinstance(node.get(last) if isinstance(node, dict) else None, dict):
        node[last][what] = 1
    else:
        raw[what] = 1
    return yaml.safe_dump(raw, allow_unicode=True).encode()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_fuzzed_specs_are_refused_in_one_line_or_run(mutations, data_dir, base_spec, monkeypatch_module):
    started = monkeypatch_module
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        raw = json.loads(json.dumps(base_spec(data_dir)))
        data = b""
        for m in mutations:
            try:
                data = mutate(raw, m)
            except (KeyError, IndexError, TypeError, AttributeError):
                continue  # the path no longer exists after an earlier mutation
            if m[0] == "bytes":
                break
        (cwd / "spec.yaml").write_bytes(data or yaml.safe_dump(raw).encode())
        results = {}
        for command in ("validate", "run"):
            started.clear()
            old = Path.cwd()
            os.chdir(cwd)
            try:
                results[command] = r = CliRunner().invoke(main, [command, "spec.yaml", "--out", "out"]
                                                          if command == "run" else [command, "spec.yaml"])
            finally:
                os.chdir(old)
            assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
        v, run = results["validate"], results["run"]
        event("accepted" if v.exit_code == 0 else "refused")
        if v.exit_code == 0:
            assert run.exit_code == 0 and len(started) == 1, run.output
            spec = started[0]
            if spec.search.algorithm == "grid":
                for t in expand(spec):
                    TrialConfig.from_dict(json.loads(json.dumps(t.config.to_dict())))
        else:
            for r in (v, run):
                lines = r.stderr.splitlines()
                assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("peftsearch: error: "), r.output
            assert v.stderr == run.stderr
            assert sorted(p.name for p in cwd.iterdir()) == ["spec.yaml"]


class _Outcome:
    seconds, trials, errors, search_id, outputs, incomplete = 0.0, 1, 0, "fuzz", [], False
    parent_run_id, experiment_id = "fuzz-parent", "0"


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def monkeypatch_module():
    """run_search replaced by a recorder for the whole module (see the module's docstring)."""
    import search.runner

    started = []

    def record(spec, **kw):
        started.append(spec)
        return _Outcome()

    mp = pytest.MonkeyPatch()
    mp.setattr(search.runner, "run_search", record)
    yield started
    mp.undo()
