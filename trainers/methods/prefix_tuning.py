"""Prefix tuning as P-Tuning v2 (Liu et al. 2021a): every layer's self-attention gets trainable
prefixes P_K, P_V ∈ R^{p×d} concatenated to its keys and values (2·L·p·d parameters). As in the
reference code, the prefixes are one Embedding(p, 2·L·d), optionally reparametrized by
Embedding -> Linear -> Tanh -> Linear (``projection_hidden_size``), with dropout on the prefixes.

HF's ``past_key_values`` route does not exist for DeBERTa-v2 encoders, so the prefixes are spliced
into the attention modules directly (layers.py-style hooks; see ``_splice_*``). The prefix keys
carry no position: DeBERTa's relative-position terms are computed for the real keys only.

Decoders (GPT-2, Llama, ...) take the prefixes as a cache of p earlier positions, the route of
P-Tuning v2's and HF PEFT's code for causal LMs (trainers/lm.py, ``run_decoder``): every token
attends to them, their keys carry no rotary position, and the real tokens' positions start after
them. Llama's grouped-query attention gets prefixes of its key/value width (2·L·p·kv_dim).
On T5 every self-attention, of the encoder and of the decoder, gets its prefixes (2·2L·p·inner,
inner = heads·d_kv), spliced as for DeBERTa: the prefix keys get no relative-position bias.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import Method, freeze_all_but_head, register_method
from trainers.config import check as _check
from trainers.families import arch_for, blocks, kv_shape
from trainers.methods.layers import edit_blocks, hidden_size


@dataclass(frozen=True)
class PrefixTuningConfig:
    prefix_length: int = 20
    projection_hidden_size: Optional[int] = None  # None: no reparametrization (the reference default)
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check(self.prefix_length >= 1, "prefix_length", "must be >= 1", self.prefix_length)
        h = self.projection_hidden_size
        check(h is None or h >= 1, "projection_hidden_size", "must be >= 1 or null", h)
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)


class Prefixes(nn.Module):
    def __init__(self, p: int, n_layers: int, d: int, c: PrefixTuningConfig) -> None:
        super().__init__()
        self.shape = (p, n_layers, 2, d)
        h = c.projection_hidden_size
        self.embedding = nn.Embedding(p, d if h else 2 * n_layers * d)
        self.projection = nn.Sequential(nn.Linear(d, h), nn.Tanh(), nn.Linear(h, 2 * n_layers * d)) if h else None
        self.dropout = nn.Dropout(c.dropout)
        self.current: Optional[torch.Tensor] = None  # (L, 2, p, d) for the running forward

    def compute(self) -> torch.Tensor:
        x = self.embedding.weight
        if self.projection is not None:
            x = self.projection(x)
        return self.dropout(x.view(*self.shape)).permute(1, 2, 0, 3)

    def kv(self, layer: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.current[layer]
        return k.unsqueeze(0).expand(batch, -1, -1), v.unsqueeze(0).expand(batch, -1, -1)


def _extend_mask(mask: Optional[torch.Tensor], batch: int, n: int, p: int, device) -> torch.Tensor:
    """Let every query attend to the p prefix keys appended after the n real keys."""
    if mask is None:
        return torch.ones(batch, 1, n, n + p, dtype=torch.bool, device=device)
    pad = (torch.ones if mask.dtype == torch.bool else torch.zeros)(
        *mask.shape[:-1], p, dtype=mask.dtype, device=mask.device)
    return torch.cat([mask, pad], dim=-1)


def _splice_bert(attn: nn.Module, prefixes: Prefixes, layer: int) -> None:
    """BertSelfAttention / RobertaSelfAttention: recompute attention with the prefixes appended."""
    def forward(hidden_states, attention_mask=None, *args, **kwargs):
        b, n, _ = hidden_states.shape
        pk, pv = prefixes.kv(layer, b)
        heads = lambda x: x.view(b, x.size(1), -1, attn.attention_head_size).transpose(1, 2)  # noqa: E731
        q = heads(attn.query(hidden_states))
        k = heads(torch.cat([attn.key(hidden_states), pk], 1))
        v = heads(torch.cat([attn.value(hidden_states), pv], 1))
        mask = _extend_mask(attention_mask, b, n, pk.size(1), hidden_states.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=attn.scaling,
                                             dropout_p=attn.dropout.p if attn.training else 0.0)
        return out.transpose(1, 2).reshape(b, n, -1), None
    attn.forward = forward


def _splice_deberta(attn: nn.Module, prefixes: Prefixes, layer: int) -> None:
    """DisentangledSelfAttention: append prefixes to the key/value projections' outputs, widen the
    mask, and compute the relative-position bias for the real keys only (zero for the prefixes)."""
    def append(module, args, out):
        return torch.cat([out, prefixes.kv(layer, out.size(0))[0 if module is attn.key_proj else 1]], 1)
    attn.key_proj.register_forward_hook(append)
    attn.value_proj.register_forward_hook(append)

    def widen(module, args, kwargs):
        hidden, mask = args[0], args[1]
        p = prefixes.shape[0]
        return (hidden, _extend_mask(mask.bool(), hidden.size(0), hidden.size(1), p, hidden.device), *args[2:]), kwargs
    attn.register_forward_pre_hook(widen, with_kwargs=True)

    bias = attn.disentangled_attention_bias
    def positional_bias(query_layer, key_layer, relative_pos, rel_embeddings, scale_factor):
        p = prefixes.shape[0]
        rel = bias(query_layer, key_layer[:, :-p], relative_pos, rel_embeddings, scale_factor)
        return F.pad(rel, (0, p))
    attn.disentangled_attention_bias = positional_bias


def _splice_t5(attn: nn.Module, prefixes: Prefixes, layer: int) -> None:
    """T5Attention (self-attention of the encoder and of the decoder): hand the prefixes over as a
    cache of p earlier keys and values (T5 views k/v by the input's length, so they cannot be
    appended to the projections), widen the mask at the front, and give the prefix keys no
    relative-position bias (in the layer that computes the bias)."""
    p, heads = prefixes.shape[0], attn.n_heads

    def with_prefix(module, args, kwargs):
        from transformers import DynamicCache

        if prefixes.current is None:
            return args, kwargs
        hidden = args[0] if args else kwargs["hidden_states"]
        k, v = (t.view(t.size(0), p, heads, -1).transpose(1, 2) for t in prefixes.kv(layer, hidden.size(0)))
        cache = DynamicCache()
        for i in range(attn.layer_idx + 1):  # only this layer's entry is read
            cache.update(k, v, i)
        kwargs["cache"] = cache
        mask = kwargs.get("mask")
        if mask is not None:
            fill = torch.ones if mask.dtype == torch.bool else torch.zeros
            kwargs["mask"] = torch.cat([fill(*mask.shape[:-1], p, dtype=mask.dtype, device=mask.device), mask], -1)
        return args, kwargs
    attn.register_forward_pre_hook(with_prefix, with_kwargs=True)

    if attn.has_relative_attention_bias:
        bias = attn.compute_bias

        def positional_bias(query_length, key_length, device=None, past_seen_tokens=0, **kw):
            if prefixes.current is None:
                return bias(query_length, key_length, device=device, past_seen_tokens=past_seen_tokens, **kw)
            return F.pad(bias(query_length, key_length - p, device=device, **kw), (p, 0))
        attn.compute_bias = positional_bias


def splice(layers: list[nn.Module], prefixes: Prefixes) -> None:
    for i, layer in enumerate(layers):
        if hasattr(layer, "layer") and hasattr(layer.layer[0], "SelfAttention"):  # a T5 block
            _splice_t5(layer.layer[0].SelfAttention, prefixes, i)
            continue
        attn = layer.attention.self
        if hasattr(attn, "key_proj"):
            _splice_deberta(attn, prefixes, i)
        elif hasattr(attn, "key") and hasattr(attn, "attention_head_size"):
            _splice_bert(attn, prefixes, i)
        else:
            raise ValueError(f"backbone: prefix tuning does not know attention {type(attn).__name__}")


class PrefixModel(nn.Module):
    def __init__(self, model: nn.Module, prefixes: Prefixes, layers: list[nn.Module]) -> None:
        super().__init__()
        self.backbone, self.prefixes = model, prefixes
        splice(layers, prefixes)

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        self.prefixes.current = self.prefixes.compute()  # once per forward, shared by the layers
        try:
            kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        finally:
            self.prefixes.current = None


class CachePrefixModel(nn.Module):
    """A decoder with the prefixes handed over as the cache of p earlier positions."""

    def __init__(self, model: nn.Module, prefixes: Prefixes, heads: int, head_dim: int) -> None:
        super().__init__()
        self.backbone, self.prefixes, self.heads, self.head_dim = model, prefixes, heads, head_dim

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        current, b = self.prefixes.compute(), input_ids.size(0)  # (L, 2, p, kv_dim)
        split = lambda t: t.view(t.size(0), self.heads, self.head_dim).transpose(0, 1).unsqueeze(0).expand(  # noqa: E731
            b, -1, -1, -1)
        prefix = [(split(layer[0]), split(layer[1])) for layer in current]
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask, labels=labels, prefix=prefix)


@register_method
class PrefixTuning(Method):
    name = "prefix_tuning"
    description = "trainable key/value prefixes in every layer's self-attention (P-Tuning v2)"
    Config = PrefixTuningConfig
    search_space = {"lr": [1e-3, 5e-3, 1e-2, 5e-2], "prefix_length": [4, 8, 16, 32, 64, 128]}

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        d = model_config if isinstance(model_config, dict) else model_config.to_dict()
        arch = arch_for(d)
        _check(arch.prefix_route is not None, "backbone", "prefix tuning does not know this backbone's attention",
               f"a {arch.family} backbone ({d.get('model_type')})")

    def apply(self, backbone: Backbone) -> nn.Module:
        config = backbone.model.config.to_dict()
        self.check_backbone(self.config, model_config=config, tokenizer=None)
        freeze_all_but_head(backbone)
        m, layers, p = backbone.model, edit_blocks(backbone), self.config.prefix_length
        if backbone.arch.prefix_route == "cache":
            heads, head_dim = kv_shape(config)
            return CachePrefixModel(m, Prefixes(p, len(layers), heads * head_dim, self.config), heads, head_dim)
        if backbone.arch.family == "seq2seq":  # every block's self-attention, encoder and decoder
            layers = blocks(m, backbone.arch)
            inner = config["num_heads"] * config["d_kv"]
            return PrefixModel(m, Prefixes(p, len(layers), inner, self.config), layers)
        return PrefixModel(m, Prefixes(p, len(layers), hidden_size(m), self.config), layers)

    def extra_keys(self) -> int:
        return self.config.prefix_length

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.prefixes.parameters())
