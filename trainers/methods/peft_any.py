"""Any tuner of the ``peft`` library, by name, as one plugin: ``peft: {type: IA3, lr: …, …}``.

PEFT researchers compare against IA3, LoHa, LoKr, VeRA, AdaLoRA, DoRA (``type: LORA`` with
``use_dora: true``), OFT, BOFT and more; each is peft's own implementation, injected with
``peft.inject_adapter_in_model`` so the model keeps its task head and every family's posing.

The keys besides ``type`` are checked against peft's own config dataclass for that type (its
``__post_init__`` runs too), so a typo or a bad value is one line at validation. Target modules
default to peft's own per-model-type table; where peft has none for a tuner, the family table's
attention projections (LoRA's targets) are used.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import types
import typing
import warnings
from typing import Any, Literal, Union

import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import DECIMAL
from trainers.methods.base import Method, freeze_all_but_head, register_method

# peft's bookkeeping fields, not hyperparameters
_INTERNAL = {"task_type", "peft_type", "auto_mapping", "peft_version", "base_model_name_or_path", "revision",
             "inference_mode"}


def tuner_configs() -> dict[str, type]:
    """peft type name -> its config class, for the tuners injected into a model's layers (the
    prompt-learning ones are peft's forms of methods we have as plugins of our own)."""
    from peft.config import PromptLearningConfig
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    skip = {"ADAPTION_PROMPT", "XLORA", "POLY"}  # need a model of their own, or several adapters
    return {str(k.value if hasattr(k, "value") else k): v for k, v in PEFT_TYPE_TO_CONFIG_MAPPING.items()
            if not issubclass(v, PromptLearningConfig) and str(getattr(k, "value", k)) not in skip}


def config_class(kind: Any) -> type:
    configs = tuner_configs()
    name = str(kind).upper()
    if name not in configs:
        close = difflib.get_close_matches(name, list(configs), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"type: unknown peft tuner {kind!r}{hint} (valid: {', '.join(sorted(configs))})")
    return configs[name]


def option_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in _INTERNAL]


@functools.lru_cache(maxsize=None)
def option_types(cls: type) -> dict[str, Any]:
    """peft's annotation of each option (its dataclasses do not check them)."""
    try:
        return typing.get_type_hints(cls)
    except Exception:  # an annotation that does not resolve: peft's own checks are all there is
        return {}


def fits(value: Any, kind: Any) -> bool:
    """Does a spec value fit peft's annotation? Classes we do not know are left to peft."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is Any:
        return True
    if kind is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(fits(value, a) for a in args)
    if origin is Literal:
        return any(value == a and isinstance(value, bool) == isinstance(a, bool) for a in args) or (
            isinstance(value, str) and any(isinstance(a, str) and "[" in a and value.startswith(a.split("[")[0])
                                           for a in args))  # peft's 'pissa_niter_[number of iters]'
    if kind is bool:
        return isinstance(value, bool)
    if kind in (int, float):  # peft annotates lora_alpha int and takes 16.0: any finite number
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is str:
        return isinstance(value, str)
    if kind is list or origin is list:
        return isinstance(value, list) and (not args or all(fits(v, args[0]) for v in value))
    if kind is dict or origin is dict:
        return isinstance(value, dict)
    if origin is tuple:
        return isinstance(value, (list, tuple))
    return True


def _type_name(kind: Any) -> str:
    return str(kind).replace("typing.", "").replace("<class '", "").replace("'>", "")


@dataclasses.dataclass(frozen=True)
class PeftPluginConfig:
    type: str = "LORA"
    options: tuple[tuple[str, Any], ...] = ()

    def build(self, **extra):
        """peft's own config object (its __post_init__ checks the values)."""
        opts = dict(self.options) | extra
        return config_class(self.type)(**opts)


@register_method
class PeftAny(Method):
    name = "peft"
    description = "any tuner of the peft library by name (IA3, LoHa, LoKr, VeRA, AdaLoRA, OFT, DoRA via LORA ...)"
    Config = PeftPluginConfig
    search_space = {"lr": [1e-4, 3e-4, 1e-3, 3e-3], "type": ["IA3"]}

    @classmethod
    def hyperparameter_names(cls, grid: dict[str, Any]) -> tuple[str, ...]:
        kinds = grid.get("type", ["LORA"])
        kinds = kinds if isinstance(kinds, list) else [kinds]
        names = {"type"}
        for k in kinds:
            names |= set(option_names(config_class(k)))
        return tuple(sorted(names))

    @classmethod
    def validate_params(cls, values: dict[str, Any]) -> dict[str, Any]:
        kind = values.get("type", "LORA")
        config_cls = config_class(kind)
        options = {k: v for k, v in values.items() if k != "type"}
        valid = option_names(config_cls)
        for key in options:
            if key not in valid:
                close = difflib.get_close_matches(key, valid, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{key}: not a key of peft's {config_cls.__name__}{hint} (got {options[key]!r})")
        kinds = option_types(config_cls)
        for key, v in list(options.items()):  # what peft leaves unchecked: types, ranks, dropout rates
            annotation = kinds.get(key, Any)
            rank = key in ("r", "init_r", "target_r")
            if isinstance(v, str) and DECIMAL.fullmatch(v) and not rank and fits(0.5, annotation) and not fits(v, annotation):
                options[key] = v = float(v)  # "1e-3" as YAML 1.1 leaves it, for a real-valued option
            bad_number = isinstance(v, bool) or not isinstance(v, (int, float))
            if rank and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{key}: must be an integer >= 1 (got {v!r})")
            if key.endswith("dropout") and (bad_number or not 0 <= v < 1):
                raise ValueError(f"{key}: must be in [0, 1) (got {v!r})")
            if not fits(v, annotation):
                raise ValueError(f"{key}: peft's {config_cls.__name__} takes {_type_name(annotation)} (got {v!r})")
        try:
            config_cls(**options)
        except (TypeError, ValueError) as e:
            raise ValueError(f"type: peft's {config_cls.__name__} refuses these options: "
                             f"{str(e).splitlines()[0]} (got {options})") from None
        return {"type": str(kind).upper(), **options}

    @classmethod
    def from_params(cls, params: dict[str, Any], *, training: Any = None) -> "PeftAny":
        params = dict(params)
        kind = params.pop("type", "LORA")
        return cls(PeftPluginConfig(str(kind).upper(), tuple(sorted(params.items()))))

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        """Whether peft's tuner can wrap this backbone's modules (LoHa and LoKr cannot wrap GPT-2's
        Conv1D): tried on the model built from its config on the meta device, with no weights."""
        import torch
        from transformers import AutoConfig, AutoModel

        from trainers.families import arch_for

        from trainers.methods.lora import check_rank

        d = model_config if isinstance(model_config, dict) else model_config.to_dict()
        if config.type in ("LORA", "ADALORA"):  # low-rank updates of d-wide projections
            for name, rank in config.options:
                if name in ("r", "init_r", "target_r"):
                    check_rank(rank, name, d)
        key = repr(config) + json.dumps(d, sort_keys=True, default=str)
        if key not in _CHECKED:
            options = {k: v for k, v in d.items() if k != "model_type"}
            with torch.device("meta"), warnings.catch_warnings():  # peft's notes belong to the trial's log
                warnings.simplefilter("ignore")
                model = AutoModel.from_config(AutoConfig.for_model(d["model_type"], **options))
                try:
                    _wrap(config, model, arch_for(d))
                except (RuntimeError, NotImplementedError):  # a tuner that reads values at init (BOFT)
                    pass  # cannot be tried without weights: ``apply`` checks it when the trial starts
            _CHECKED.add(key)

    def apply(self, backbone: Backbone) -> nn.Module:
        """peft's tuner model wraps the backbone (its forward is the backbone's); keeping the tuner
        keeps the state some tuners share across layers (VeRA's projections)."""
        before = {id(p) for p in backbone.model.parameters()}
        model = _wrap(self.config, backbone.model, backbone.arch)
        # what peft made trainable (VeRA's shared projections stay frozen, as peft has them)
        own = [p for p in model.parameters() if id(p) not in before and p.requires_grad]
        freeze_all_but_head(backbone)
        for p in own:
            p.requires_grad_(True)
        self._own = {id(p) for p in own}
        return model

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return [p for p in model.parameters() if id(p) in self._own]

    def after_step(self, model: nn.Module, step: int) -> None:
        """AdaLoRA reallocates its ranks from the gradients after every optimizer step (peft's
        ``update_and_allocate``); without the call it would silently stay a fixed-rank LoRA."""
        if hasattr(model, "update_and_allocate"):
            model.update_and_allocate(step)


_CHECKED: set = set()  # (plugin config, backbone config) pairs already found to apply


def _wrap(config: PeftPluginConfig, model: nn.Module, arch) -> nn.Module:
    """peft's tuner model around ``model``, at peft's default targets or, where peft has none for
    this tuner and model type, the family's attention projections; ValueError("backbone: ...")
    where the tuner cannot wrap it."""
    try:
        try:
            return _tuner(config.build(), model)
        except ValueError as e:
            if "target_modules" not in str(e) or "target_modules" in dict(config.options):
                raise
            return _tuner(config.build(target_modules=list(arch.lora_targets)), model)
    except (TypeError, ValueError) as e:  # e.g. LoHa and LoKr cannot wrap GPT-2's Conv1D
        raise ValueError(f"backbone: peft's {config.type} cannot be applied to this "
                         f"{arch.family} backbone: {str(e).splitlines()[0]}") from None


def _tuner(config, model: nn.Module) -> nn.Module:
    from peft.mapping import PEFT_TYPE_TO_TUNER_MAPPING

    return PEFT_TYPE_TO_TUNER_MAPPING[config.peft_type](model, config, adapter_name="default")
