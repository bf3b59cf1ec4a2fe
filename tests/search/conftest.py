"""Fixtures of the search tests."""
from __future__ import annotations

from pathlib import Path

import pytest


def edge_base_spec(data_dir: Path) -> dict:
    """A valid spec that the edge tests mutate: a hub-id backbone (nothing to load), local data."""
    return {"name": "edge", "backbone": "org/model", "data": {"source": "local", "dir": str(data_dir)},
            "tasks": ["rte"], "methods": {"finetune": {"lr": [1e-5, 3e-5]}, "lora": {"lr": [1e-4], "rank": [8]}},
            "seeds": [0, 1], "training": {"max_epochs": 1, "patience": 1}, "tracking": {"uri": "sqlite:///mlflow.db"}}


@pytest.fixture(scope="session")
def base_spec():
    return edge_base_spec
