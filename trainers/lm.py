"""The model a method wraps, for the families whose Hugging Face classes do not fit as they are.

Every model here has the interface the methods and task formats rely on:
``forward(input_ids=None, attention_mask=None, inputs_embeds=None, labels=None)`` returning
``.loss`` and ``.logits``, plus ``get_input_embeddings()``, ``config`` and ``base_model``.

- ``DecoderClassifier``: a head on the **last real token**, found from the attention mask, so it
  stays right under either padding side and when prompts arrive as ``inputs_embeds`` (HF's own
  ``*ForSequenceClassification`` falls back to the last position then, a pad under right padding).
- ``CausalScorer`` and ``Seq2SeqScorer``: language-model scoring. ``labels`` are target token ids
  (-100 elsewhere); ``.logits`` is each row's summed log-likelihood of its target, ``.loss`` the
  token-mean negative log-likelihood (the usual teacher-forced loss).

Decoders get their position ids from the attention mask (``cumsum - 1``), so left padding and
prepended prompts leave every real token at the position it has without padding.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Output:
    """``.loss`` and ``.logits``, as Hugging Face's model outputs give them."""
    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None


def mask_positions(attention_mask: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Each real token's index among the real tokens of its row (pads get 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0) + offset


def last_real(attention_mask: torch.Tensor) -> torch.Tensor:
    """The index of each row's last attended position, whatever the padding side."""
    idx = torch.arange(attention_mask.size(1), device=attention_mask.device)
    return (idx * attention_mask.long()).argmax(-1)


def run_decoder(base: nn.Module, input_ids, attention_mask, inputs_embeds, prefix=None):
    """A decoder's hidden states with positions from the mask. ``prefix``: per-layer trained
    (key, value) pairs, (batch, kv heads, p, head dim), seen by every token as a cache of p
    earlier positions (prefix tuning, P-Tuning v2 style); they carry no position of their own."""
    kwargs = {}
    if prefix is not None:
        from transformers import DynamicCache

        cache = DynamicCache()
        for layer, (k, v) in enumerate(prefix):
            cache.update(k, v, layer)
        p = prefix[0][0].size(2)
        window = getattr(base.config, "sliding_window", None)
        if window is not None and p + attention_mask.size(1) > window:
            raise ValueError(f"prefix_length: plus the batch's {attention_mask.size(1)} tokens must fit the backbone's "
                             f"sliding window of {window}: tokens past it would lose sight of the prefix, and "
                             f"padding would change which do (got {p})")
        attention_mask = torch.cat([attention_mask.new_ones(attention_mask.size(0), p), attention_mask], dim=1)
        positions = mask_positions(attention_mask)[:, p:]
        kwargs = {"cache": cache, "use_cache": True}
    else:
        positions = mask_positions(attention_mask)
        kwargs = {"use_cache": False}
    return base(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                position_ids=positions, **kwargs).last_hidden_state


def align_right(labels: torch.Tensor, length: int) -> torch.Tensor:
    """Labels for the last positions of a sequence that prompts have lengthened at the front."""
    extra = length - labels.size(1)
    return labels if extra <= 0 else F.pad(labels, (extra, 0), value=-100)


class _Wrapped(nn.Module):
    inner_name = "model"

    @property
    def inner(self) -> nn.Module:
        return getattr(self, self.inner_name)

    @property
    def config(self):
        return self.inner.config

    @property
    def base_model(self) -> nn.Module:
        return self.inner.base_model

    def get_input_embeddings(self) -> nn.Module:
        return self.inner.get_input_embeddings()


class DecoderClassifier(_Wrapped):
    inner_name = "transformer"

    def __init__(self, base: nn.Module, num_labels: int) -> None:
        super().__init__()
        self.transformer = base  # AutoModel: the decoder without its LM head
        d = base.get_input_embeddings().weight.size(1)
        self.score = nn.Linear(d, num_labels, bias=False)
        nn.init.normal_(self.score.weight, std=getattr(base.config, "initializer_range", 0.02))
        self.num_labels = num_labels

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, token_type_ids=None,
                prefix=None):
        hidden = run_decoder(self.transformer, input_ids, attention_mask, inputs_embeds, prefix)
        pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last_real(attention_mask)]
        logits = self.score(pooled)
        loss = None
        if labels is not None:
            loss = (F.mse_loss(logits.squeeze(-1), labels.float()) if self.num_labels == 1
                    else F.cross_entropy(logits, labels))
        return Output(loss=loss, logits=logits)


def _score(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-row summed log-likelihood of the labelled tokens, token-mean NLL); logits (B, T, V)."""
    keep = labels != -100
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    logp = logp * keep
    return logp.sum(-1), -logp.sum() / keep.sum().clamp(min=1)


class CausalScorer(_Wrapped):
    """A causal LM scoring each row's target tokens (label words after the input)."""

    inner_name = "lm"

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm  # AutoModelForCausalLM

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, token_type_ids=None,
                prefix=None):
        hidden = run_decoder(self.lm.base_model, input_ids, attention_mask, inputs_embeds, prefix)
        if labels is None:
            raise ValueError("labels: a causal scorer needs the target tokens to score")
        targets = align_right(labels, hidden.size(1))[:, 1:]  # position t predicts token t + 1
        rows, cols = torch.nonzero(targets != -100, as_tuple=True)
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][rows, cols])  # only where a target is
        logp = torch.log_softmax(logits.float(), -1).gather(-1, targets[rows, cols].unsqueeze(-1)).squeeze(-1)
        row_scores = torch.zeros(targets.size(0), device=logp.device).index_add(0, rows, logp)
        return Output(loss=-logp.mean(), logits=row_scores)


class Seq2SeqScorer(_Wrapped):
    """An encoder-decoder (T5) scoring each row's target sequence given its input."""

    inner_name = "model"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model  # AutoModelForSeq2SeqLM

    @property
    def base_model(self) -> nn.Module:
        return self.model  # T5ForConditionalGeneration holds encoder and decoder itself

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, token_type_ids=None):
        if labels is None:
            raise ValueError("labels: a seq2seq scorer needs the target tokens to score")
        out = self.model(input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                         labels=labels, use_cache=False)
        score, loss = _score(out.logits, labels)
        return Output(loss=loss, logits=score)
