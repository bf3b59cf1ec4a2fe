"""Ahead-of-Time P-tuning (seed 000, Section 4): before every encoder block l (the first
included), add a token-indexed bias, H'^l = H^l + P_l[x]. On T5 the blocks are its encoder's; on
a decoder, every block (trainers/families.py, ``edit_blocks``). P_l ∈ R^{|V|×d} is trained through a
reparametrization that only computes the rows of the tokens in the batch:

- FC: P = f(E·W1 + b1)·W2 + b2, E the frozen input embeddings (dropout on E), W2, b1, b2 zero;
  per layer 2·d·r + r + d parameters.
- Kronecker: P[x] = kron(W_L[x // b], W_M[x % b]) · W_R, W_R zero, dropout on P_x;
  per layer (a + b)·r + r²·d parameters, a·b >= |V|.

``fuse`` materialises every P_l for the whole vocabulary into one contiguous (L, |V|, d) table in
the backbone's dtype (or ``fused_dtype``: float16/bfloat16 halve its memory). At inference each
edited block looks its rows up in its slice of the table and adds them to its input in place
(AoTBias.forward has the measurements). The fused tables, with the head, are the whole inference artefact (saved
per layer as ``edit.fused.<l>``, the format aot_multitask reads).
"""
from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from typing import Literal, Optional

import torch
import torch.nn as nn

from trainers.backbone import Backbone
from trainers.config import check
from trainers.methods.base import Method, freeze_all_but_head, register_method
from trainers.methods.layers import LayerInputEditor, edit_blocks

FUSE_CHUNK = 4096  # vocabulary rows materialised at a time
FUSED = "edit.fused."  # the saved tables' keys: edit.fused.<layer>
FusedDtype = Literal["auto", "float32", "float16", "bfloat16"]  # auto: the backbone's dtype


def _fused_dtype_ok(value) -> bool:
    return value in ("auto", "float32", "float16", "bfloat16")


@dataclass(frozen=True)
class AoTFCConfig:
    rank: int = 64
    activation: Literal["relu", "gelu", "tanh"] = "relu"  # the paper's f is "a non-linearity"
    dropout: float = 0.1  # on E, before W1
    fused_dtype: FusedDtype = "auto"  # the fused tables' dtype at inference

    def __post_init__(self) -> None:
        check(self.rank >= 1, "rank", "must be >= 1", self.rank)
        check(self.activation in ("relu", "gelu", "tanh"), "activation", "must be relu, gelu or tanh", self.activation)
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)
        check(_fused_dtype_ok(self.fused_dtype), "fused_dtype", "must be auto, float32, float16 or bfloat16",
              self.fused_dtype)


@dataclass(frozen=True)
class AoTKronConfig:
    rank: int = 16
    a: int = 256  # rows of W_L; the paper's RoBERTa value
    b: Optional[int] = None  # rows of W_M; None = ceil(|V| / a)
    dropout: float = 0.1  # on P_x
    fused_dtype: FusedDtype = "auto"  # the fused tables' dtype at inference

    def __post_init__(self) -> None:
        check(self.rank >= 1, "rank", "must be >= 1", self.rank)
        check(self.a >= 1, "a", "must be >= 1", self.a)
        check(self.b is None or self.b >= 1, "b", "must be >= 1 or null", self.b)
        check(0 <= self.dropout < 1, "dropout", "must be in [0, 1)", self.dropout)
        check(_fused_dtype_ok(self.fused_dtype), "fused_dtype", "must be auto, float32, float16 or bfloat16",
              self.fused_dtype)

    def b_for(self, vocab: int) -> int:
        b = self.b or math.ceil(vocab / self.a)
        check(self.a * b >= vocab, "b", f"a·b must cover the vocabulary of {vocab} (a={self.a})", b)
        return b


class FCTables(nn.Module):
    """P_l[x] for all layers at once: W1 (L, d, r), b1 (L, r), W2 (L, r, d), b2 (L, d)."""

    def __init__(self, embeddings: nn.Embedding, n_layers: int, c: AoTFCConfig) -> None:
        super().__init__()
        d, r = embeddings.weight.size(1), c.rank
        self.embeddings = [embeddings]  # a list, so the frozen E is not registered as ours
        bound = 1 / math.sqrt(d)  # nn.Linear(d, r)'s default init
        self.W1 = nn.Parameter(torch.empty(n_layers, d, r).uniform_(-bound, bound))
        self.b1 = nn.Parameter(torch.zeros(n_layers, r))
        self.W2 = nn.Parameter(torch.zeros(n_layers, r, d))
        self.b2 = nn.Parameter(torch.zeros(n_layers, d))
        self.act = {"relu": nn.ReLU(), "gelu": nn.GELU(), "tanh": nn.Tanh()}[c.activation]
        self.dropout = nn.Dropout(c.dropout)

    def rows(self, layer: int, ids: torch.Tensor) -> torch.Tensor:
        e = self.dropout(self.embeddings[0](ids))
        return self.act(e @ self.W1[layer] + self.b1[layer]) @ self.W2[layer] + self.b2[layer]


class KronTables(nn.Module):
    def __init__(self, vocab: int, d: int, n_layers: int, c: AoTKronConfig) -> None:
        super().__init__()
        self.b, r = c.b_for(vocab), c.rank
        self.WL = nn.Parameter(torch.randn(n_layers, c.a, r) / math.sqrt(r))
        self.WM = nn.Parameter(torch.randn(n_layers, self.b, r) / math.sqrt(r))
        self.WR = nn.Parameter(torch.zeros(n_layers, r * r, d))
        self.dropout = nn.Dropout(c.dropout)

    def rows(self, layer: int, ids: torch.Tensor) -> torch.Tensor:
        left, mid = self.WL[layer][ids // self.b], self.WM[layer][ids % self.b]  # (..., r)
        kron = (left.unsqueeze(-1) * mid.unsqueeze(-2)).flatten(-2)  # kron of two vectors: (..., r²)
        return self.dropout(kron @ self.WR[layer])


class RowAdder:
    """``hidden += table[ids]`` at inference, gathering into one buffer kept between calls.

    A fresh (B, T, d) tensor per edited block is a fresh allocation of B·T·d values: past glibc's
    mmap threshold (megabytes: batch 256 × length 128 × d 384 is 50 MB) every call maps and
    zero-fills new pages, and that, not the gather itself, was most of AoT's overhead. Measured
    on CPU (MiniLM's |V| × d table, batch 256, length 128, 15 interleaved rounds, load 1.7): the
    gather and add take 140 ms per block with a new tensor (``hidden.add_(embedding(ids, t))``) and
    27.5 ms into the kept buffer. The buffer grows to the largest batch seen and is reused by
    every block of every forward (each block's rows are added before the next block runs), so it
    costs one batch of hidden states, not one per layer. With autograd on (training) the rows are
    added out of place, as the backward needs.
    """

    def __init__(self) -> None:
        self._buffers: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}

    def __call__(self, table: torch.Tensor, ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            rows = nn.functional.embedding(ids, table)
            return hidden + (rows if rows.dtype == hidden.dtype else rows.to(hidden.dtype))
        flat = ids.reshape(-1)
        rows = self._buffer(flat.numel() * table.size(-1), table)[:flat.numel() * table.size(-1)]
        rows = rows.view(flat.numel(), table.size(-1))
        torch.index_select(table, 0, flat, out=rows)
        return hidden.add_(rows.view(*ids.shape, table.size(-1)))  # a half table adds into float hidden

    def _buffer(self, numel: int, table: torch.Tensor) -> torch.Tensor:
        key = (table.dtype, table.device)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < numel:
            with torch.inference_mode(False):  # a plain tensor: usable under no_grad and inference_mode alike
                buf = torch.empty(numel, dtype=table.dtype, device=table.device)
            self._buffers[key] = buf
        return buf

    def clear(self) -> None:
        self._buffers.clear()


class AoTBias(nn.Module):
    """The per-layer edit: add P_l[x], from the reparametrization or, once fused, from the table."""

    def __init__(self, tables: nn.Module, vocab: int) -> None:
        super().__init__()
        self.tables = tables
        self.vocab = vocab
        self.register_buffer("fused", None, persistent=False)  # (L, |V|, d) once fused; saved per layer
        self.add_rows = RowAdder()

    def forward(self, layer: int, ids: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        if self.fused is None:
            return hidden + self.tables.rows(layer, ids)
        # Without autograd (inference) the block's input is edited in place, through RowAdder's
        # kept buffer. Measured before it on CPU (MiniLM, batch 32, length 128, 8 interleaved
        # rounds): 1.018x finetune in place, against 1.066x out of place and 1.043x with one
        # gather of every layer's rows for the batch (an (L, B, T, d) tensor, beyond the caches).
        return self.add_rows(self.fused[layer], ids, hidden)

    @torch.no_grad()
    def fuse(self, n_layers: int, dtype: Optional[torch.dtype] = None) -> None:
        was = self.tables.training
        self.tables.eval()  # no dropout in the materialised tables
        first = next(self.tables.parameters())
        all_ids = torch.arange(self.vocab, device=first.device)
        d = self.tables.rows(0, all_ids[:1]).size(-1)
        table = torch.empty(n_layers, self.vocab, d, dtype=dtype or first.dtype, device=first.device)
        for l in range(n_layers):
            for c in all_ids.split(FUSE_CHUNK):
                table[l, c[0]:c[-1] + 1] = self.tables.rows(l, c)
        self.set_fused(table)
        self.tables.train(was)

    def set_fused(self, table: torch.Tensor) -> None:
        self.fused = table
        self.add_rows.clear()  # a buffer of the old table's dtype or device is not needed again


class AoTMethod(Method):
    search_space = {"lr": [1e-4, 5e-4, 1e-3, 5e-3, 1e-2], "rank": [16, 64, 256, 512]}

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        """P is a |V| x d table per layer: a reparametrization rank above |V| adds nothing."""
        d = model_config if isinstance(model_config, dict) else model_config.to_dict()
        vocab = d.get("vocab_size")
        check(vocab is None or config.rank <= vocab, "rank", f"must be <= the vocabulary size {vocab} "
              "(P_l is a |V| x d table)", config.rank)

    @abstractmethod
    def build_tables(self, emb: nn.Embedding, n_layers: int) -> nn.Module:
        """The reparametrization that computes P_l[x] for every layer (FC or Kronecker)."""

    def apply(self, backbone: Backbone) -> nn.Module:
        freeze_all_but_head(backbone)
        layers = edit_blocks(backbone)
        emb = backbone.model.get_input_embeddings()
        bias = AoTBias(self.build_tables(emb, len(layers)), emb.weight.size(0))
        return LayerInputEditor(backbone.model, bias, layers)

    def method_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        return list(model.edit.tables.parameters())

    def fused_dtype(self, model: nn.Module) -> torch.dtype:
        name = getattr(self.config, "fused_dtype", "auto")
        return model.backbone.get_input_embeddings().weight.dtype if name == "auto" else getattr(torch, name)

    def fuse(self, model: nn.Module) -> None:
        model.edit.fuse(model.n_layers, self.fused_dtype(model))

    def inference_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The fused tables (one per layer, ``edit.fused.<l>``) and the head: the
        reparametrization is not needed any more."""
        if model.edit.fused is None:
            self.fuse(model)
        state = {n: p.detach().clone() for n, p in model.named_parameters()
                 if p.requires_grad and not n.startswith("edit.tables.")}
        return state | {f"{FUSED}{l}": t.clone() for l, t in enumerate(model.edit.fused)}

    def load_inference_state(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        keys = [f"{FUSED}{l}" for l in range(model.n_layers)]
        missing = [k for k in keys if k not in state]
        if missing:
            raise KeyError(f"state: AoT's fused tables {missing[:3]} are missing")
        device = model.edit.fused.device if model.edit.fused is not None else "cpu"
        model.edit.set_fused(torch.stack([state[k] for k in keys]).to(device, self.fused_dtype(model)))
        super().load_inference_state(model, {k: v for k, v in state.items() if not k.startswith(FUSED)})


@register_method
class AoTFC(AoTMethod):
    name = "aot_fc"
    description = "AoT P-tuning: per-layer token bias P_l[x], FC reparametrization f(E·W1+b1)·W2+b2"
    Config = AoTFCConfig

    def build_tables(self, emb: nn.Embedding, n_layers: int) -> nn.Module:
        return FCTables(emb, n_layers, self.config)


@register_method
class AoTKron(AoTMethod):
    name = "aot_kron"
    description = "AoT P-tuning: per-layer token bias P_l[x], Kronecker reparametrization (W_L⊗W_M)·W_R"
    Config = AoTKronConfig
    # r² · d parameters per layer: the paper's Kronecker ranks are small (r = 5 to 20)
    search_space = {"lr": [1e-4, 5e-4, 1e-3, 5e-3, 1e-2], "rank": [5, 10, 20]}

    @classmethod
    def check_backbone(cls, config, *, model_config, tokenizer) -> None:
        super().check_backbone(config, model_config=model_config, tokenizer=tokenizer)
        d = model_config if isinstance(model_config, dict) else model_config.to_dict()
        check(d.get("vocab_size") is not None, "backbone", "config.json must give vocab_size for AoT's tables",
              None)
        config.b_for(d["vocab_size"])

    def build_tables(self, emb: nn.Embedding, n_layers: int) -> nn.Module:
        return KronTables(emb.weight.size(0), emb.weight.size(1), n_layers, self.config)
