"""`peftsearch bench cli`: CPU seconds of the commands people type most, each in a fresh process
(what a user waits for): `--help`, `tasks`, and `validate` of a 10,000-trial grid."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from trainers.machine import load_average


def grid_spec(directory: Path, *, lrs: int = 100, decays: int = 10, seeds: int = 10) -> Path:
    """A grid of lrs × decays assignments × seeds trials (10,000 by default), on a hub backbone."""
    spec = {"name": "bench-cli", "backbone": "org/model", "tasks": ["rte"],
            "methods": {"finetune": {"lr": [1e-5 * (i + 1) for i in range(lrs)],
                                     "weight_decay": [0.01 * i for i in range(decays)]}},
            "seeds": list(range(seeds)), "tracking": {"uri": f"sqlite:///{directory / 'bench.db'}"}}
    path = directory / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


# The grid's hub backbone is not cached: validate would ask the hub about it (one request, network
# time, and a refusal where the hub says org/model does not exist). Offline, the edge's own work.
ENV = {"PYTHONDONTWRITEBYTECODE": "0", "HF_HUB_OFFLINE": "1"}


def cpu_seconds(args: list[str], *, repeats: int = 3) -> tuple[float, float, int]:
    """(median CPU seconds, median wall seconds, exit code) of `python -m search.cli ARGS`."""
    cpu, wall, rc = [], [], 0
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        rc = subprocess.run([sys.executable, "-m", "search.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=os.environ | ENV).returncode
        wall.append(time.monotonic() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return sorted(cpu)[len(cpu) // 2], sorted(wall)[len(wall) // 2], rc


TARGETS = {"--help": 1.0, "validate (10,000-trial grid)": 3.0}


def run_bench(*, repeats: int = 3) -> list[tuple[str, float, float, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        spec = grid_spec(Path(tmp))
        cases = {"--help": ["--help"], "tasks": ["tasks"], "validate (10,000-trial grid)": ["validate", str(spec)]}
        return [(name, *cpu_seconds(args, repeats=repeats)) for name, args in cases.items()]


def table(rows) -> str:
    lines = [f"load average {load_average()}", f"{'command':<32}{'CPU s':>8}{'wall s':>8}{'target':>9}  exit"]
    for name, cpu, wall, rc in rows:
        target = f"< {TARGETS[name]:.0f} s" if name in TARGETS else ""
        lines.append(f"{name:<32}{cpu:>8.2f}{wall:>8.2f}{target:>9}  {rc}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(run_bench()))
