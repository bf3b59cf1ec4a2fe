import pytest

from trainers.tasks import TASKS
from trainers.testing import (ARCHITECTURES, GENERATIVE, MORE_GENERATIVE, build_plain_tokenizer_backbone,
                              build_tiny_backbone, glue_texts)


class Recorder:
    """A trainers.loop.Reporter that keeps what the loop reports."""

    def __init__(self):
        self.info, self.evals = None, []

    def on_start(self, info):
        self.info = info

    def on_eval(self, *, step, metrics):
        self.evals.append((step, metrics))


@pytest.fixture
def recorder():
    return Recorder


@pytest.fixture(scope="session")
def backbones(tmp_path_factory, data_dir, minilm_path):
    """Tiny config-built BERT, RoBERTa, DeBERTa-v2, T5, GPT-2 and Llama with tokenizers trained on
    real GLUE text, a tokenizer with no special tokens ("plain"), and the real MiniLM: name -> path."""
    root, texts = tmp_path_factory.mktemp("tiny"), glue_texts(data_dir, limit=1000)
    paths = {arch: build_tiny_backbone(arch, root / arch, texts) for arch in ARCHITECTURES + GENERATIVE + MORE_GENERATIVE}
    paths["plain"] = build_plain_tokenizer_backbone(root / "plain", texts)
    return paths | {"minilm": minilm_path}


@pytest.fixture(scope="session")
def rte_rows(data_dir):
    return TASKS["rte"].load("train", source="local", data_dir=str(data_dir))[:4]
