"""Backbone families, described as data (as HF PEFT maps ``model_type`` to target modules).

Three families share every method:

- ``encoder`` (BERT, RoBERTa, DeBERTa-v2): a classification head on the pooled first token;
- ``seq2seq`` (T5, mT5, Flan-T5): text-to-text, scored by rank classification over label words;
- ``decoder`` (GPT-2, Llama, Qwen2, Mistral): a head on the last real token, or language-model
  scoring of label words (verbalizers).

Everything a method needs to know about an architecture is one ``Arch`` row: where the blocks
are, which of them take a token-indexed edit (AoT, PASTA), where the attention and FFN outputs
are (adapters), the norms, LoRA's targets, whether there are biases (BitFit), the positions limit.
Methods ask this table; they never name an architecture. The table reads a plain config dict
(config.json), so validation needs neither torch nor the weights.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional

Family = Literal["encoder", "seq2seq", "decoder"]
# How a task is posed: a classification head, or language-model scoring of label words.
Route = Literal["head", "lm"]
FAMILIES: tuple[str, ...] = ("encoder", "seq2seq", "decoder")


@dataclass(frozen=True)
class Arch:
    family: Family
    blocks: tuple[str, ...]  # ModuleList paths from the base model, every block of the network
    edit_blocks: str  # the blocks whose input hidden states a token-indexed edit changes (AoT, PASTA)
    attn_out: str  # per block: the attention output projection (adapter after it)
    ffn_out: str  # per block: the FFN output projection (adapter after it)
    norms: tuple[str, ...]  # per block: the norms an adapter trains with it
    lora_targets: tuple[str, ...]  # module names, HF PEFT's defaults for the model type
    has_biases: Callable[[dict], bool]  # does the config build any bias term (BitFit)
    positions: Callable[[dict], Optional[int]]  # absolute position limit, None where relative
    # LoRA's targets are Conv1D modules storing W transposed (GPT-2): peft's fan_in_fan_out.
    lora_fan_in_fan_out: bool = False
    # How prefix tuning reaches attention: spliced into the encoder's attention modules, or as a
    # cache of p earlier positions (decoders); None where it is not written.
    prefix_route: Optional[str] = None
    # Sliding-window attention (Mistral; Qwen2 when use_sliding_window): how many earlier cache
    # entries a token sees, or None. A prefix (cache entries before the text) further back than that
    # is out of sight, and left padding moves it further, so prefix + text must fit in the window.
    window: Callable[[dict], Optional[int]] = lambda c: None

    @property
    def routes(self) -> tuple[Route, ...]:
        return {"encoder": ("head",), "seq2seq": ("lm",), "decoder": ("head", "lm")}[self.family]


def _key(name: str, default=None):
    return lambda c: c.get(name, default)


_BERT = dict(family="encoder", blocks=("encoder.layer",), edit_blocks="encoder.layer",
             attn_out="attention.output.dense", ffn_out="output.dense",
             norms=("attention.output.LayerNorm", "output.LayerNorm"), lora_targets=("query", "value"),
             has_biases=lambda c: True, positions=_key("max_position_embeddings"), prefix_route="splice")
_T5 = dict(family="seq2seq", blocks=("encoder.block", "decoder.block"), edit_blocks="encoder.block",
           attn_out="layer.0.SelfAttention.o", ffn_out="layer.-1.DenseReluDense.wo",
           norms=("layer.0.layer_norm", "layer.-1.layer_norm"), lora_targets=("q", "v"),
           has_biases=lambda c: False, positions=lambda c: None,  # relative position buckets
           prefix_route="splice")
_LLAMA = dict(family="decoder", blocks=("layers",), edit_blocks="layers", attn_out="self_attn.o_proj",
              ffn_out="mlp.down_proj", norms=("input_layernorm", "post_attention_layernorm"),
              lora_targets=("q_proj", "v_proj"),
              has_biases=lambda c: bool(c.get("attention_bias") or c.get("mlp_bias")),
              positions=_key("max_position_embeddings"), prefix_route="cache")

def _window(c: dict) -> Optional[int]:
    return c.get("sliding_window") if c.get("use_sliding_window", True) else None


def _roberta_positions(c: dict) -> Optional[int]:
    """RoBERTa numbers positions from padding_idx + 1 (its 514 embeddings hold 512 tokens)."""
    limit, pad = c.get("max_position_embeddings"), c.get("pad_token_id", 1)
    return None if limit is None else limit - (pad if isinstance(pad, int) else 1) - 1


def _deberta_positions(c: dict) -> Optional[int]:
    """DeBERTa-v2/v3 without position_biased_input has relative positions only: no limit."""
    return c.get("max_position_embeddings") if c.get("position_biased_input", True) else None


def width(c: dict) -> Optional[int]:
    """The model width d (hidden size) from a config dict, whatever the family calls it."""
    return c.get("hidden_size") or c.get("d_model") or c.get("n_embd")


ARCHS: dict[str, Arch] = {
    "bert": Arch(**_BERT),
    "roberta": Arch(**_BERT | dict(positions=_roberta_positions)),
    "xlm-roberta": Arch(**_BERT | dict(positions=_roberta_positions)),
    "deberta-v2": Arch(**_BERT | dict(lora_targets=("query_proj", "value_proj"), positions=_deberta_positions)),
    "t5": Arch(**_T5),
    "mt5": Arch(**_T5),
    "gpt2": Arch(family="decoder", blocks=("h",), edit_blocks="h", attn_out="attn.c_proj", ffn_out="mlp.c_proj",
                 norms=("ln_1", "ln_2"), lora_targets=("c_attn",), lora_fan_in_fan_out=True, has_biases=lambda c: True,
                 positions=_key("n_positions"), prefix_route="cache"),
    "llama": Arch(**_LLAMA),
    "mistral": Arch(**_LLAMA | dict(window=_window)),
    # Qwen2 has biases on the q, k, v projections, and slides its window only when asked.
    "qwen2": Arch(**_LLAMA | dict(has_biases=lambda c: True, window=_window)),
}


def arch_for(config: dict) -> Arch:
    """The row for a config dict (a config.json, or ``PretrainedConfig.to_dict()``)."""
    model_type = config.get("model_type")
    if model_type not in ARCHS:
        raise ValueError(f"backbone: unsupported model_type (valid: {', '.join(sorted(ARCHS))}) (got {model_type!r})")
    return ARCHS[model_type]


def read_config(path: str | Path) -> Optional[dict]:
    """A local backbone's config.json as a dict, or None when ``path`` is not a local directory."""
    p = Path(path)
    if not p.is_dir():
        return None
    f = p / "config.json"
    if not f.is_file():
        raise ValueError(f"backbone: a model directory must hold config.json (got {str(p)!r})")
    return json.loads(f.read_text(encoding="utf-8"))


def kv_shape(config: dict) -> tuple[int, int]:
    """(key/value heads, head dim) of a decoder's attention (Llama's grouped-query heads)."""
    heads = config.get("num_attention_heads") or config.get("n_head")
    d = config.get("hidden_size") or config.get("n_embd")
    head_dim = config.get("head_dim") or d // heads
    return config.get("num_key_value_heads") or heads, head_dim


def resolve_route(arch: Arch, route: str) -> Route:
    """``auto`` is the family's natural posing: a head on encoders and decoders, text on seq2seq."""
    if route == "auto":
        return arch.routes[0]
    if route not in arch.routes:
        raise ValueError(f"task_format: {route!r} does not apply to {arch.family} backbones "
                         f"(valid: auto, {', '.join(arch.routes)}) (got {route!r})")
    return route  # type: ignore[return-value]


def format_name(arch: Arch, route: str) -> str:
    """The task format recorded with every run: ``encoder-head``, ``seq2seq-lm``, ``decoder-lm``..."""
    return f"{arch.family}-{resolve_route(arch, route)}"


# ---- module lookups on a loaded model -------------------------------------------------------
def submodule(root, path: str):
    """``a.b.-1.c``-style paths (negative indexes count from the end of a ModuleList)."""
    m = root
    for part in path.split("."):
        m = m[int(part)] if part.lstrip("-").isdigit() else getattr(m, part)
    return m


def blocks(model, arch: Arch, which: str = "all") -> list:
    """Every block (``all``) or the blocks that take a token-indexed edit (``edit``)."""
    base = model.base_model
    paths = arch.blocks if which == "all" else (arch.edit_blocks,)
    return [b for p in paths for b in submodule(base, p)]
