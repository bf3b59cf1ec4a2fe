"""The lean CPU training attention (trainers/attention.py) against the math it replaces, on real
tiny models built from configs, and the memory it saves."""
from __future__ import annotations

import pytest
import torch

from trainers.attention import NAME, DropoutAttention, lean_attention_forward, use_lean_attention


def _reference(q, k, v, mask, p, scale, keep):
    s = q @ k.transpose(-1, -2) * scale
    if mask is not None:
        s = s.masked_fill(~mask, torch.finfo(s.dtype).min) if mask.dtype == torch.bool else s + mask
    return (torch.softmax(s, -1) * keep / (1 - p)) @ v


@pytest.mark.parametrize("mask_kind", [None, "additive", "bool"])
def test_values_and_gradients_match_the_math_path_for_the_same_mask(mask_kind):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=g).requires_grad_() for _ in range(3))
    pad = torch.ones(2, 1, 5, 5, dtype=torch.bool)
    pad[0, ..., 3:] = False  # the first example's last two keys are padding
    mask = {None: None, "bool": pad,
            "additive": torch.zeros(2, 1, 5, 5, dtype=torch.float64).masked_fill(~pad, torch.finfo(torch.float64).min)
            }[mask_kind]
    torch.manual_seed(1)
    out = DropoutAttention.apply(q, k, v, mask, 0.3, 0.5)
    torch.manual_seed(1)  # the same keep-mask: bernoulli_ of the same shape from the same state
    keep = torch.empty(2, 3, 5, 5, dtype=torch.bool).bernoulli_(0.7)
    ref = _reference(q, k, v, mask, 0.3, 0.5, keep)
    assert torch.allclose(out, ref, atol=1e-12)
    grad = torch.randn(out.shape, dtype=torch.float64, generator=g)
    for a, b in zip(torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), torch.autograd.grad(ref, (q, k, v), grad)):
        assert torch.allclose(a, b, atol=1e-12)
    if mask is not None:  # padding keys get no attention, so no gradient
        assert torch.count_nonzero(torch.autograd.grad(out, k, grad)[0][0, :, 3:]) == 0


def test_dropout_rate_is_the_one_asked():
    q = k = v = torch.ones(4, 2, 64, 8, requires_grad=True)
    torch.manual_seed(0)
    out = DropoutAttention.apply(q, k, v, None, 0.25, 1.0)
    # uniform attention over 64 keys of value 1: each output is (kept keys / 64) / 0.75
    kept = out.detach()[..., 0] * 0.75 * 64
    assert abs(kept.mean().item() / 64 - 0.75) < 0.01


def _tiny_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, attn_implementation="sdpa")
    return BertForSequenceClassification(cfg)


def _saved_bytes(fn) -> int:
    sizes = {}

    def pack(t):
        sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(sizes.values())


def test_a_model_switched_to_it_saves_less_and_infers_the_same():
    ids = torch.randint(0, 50, (8, 48), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[:3, 30:] = 0
    model = _tiny_bert()
    model.eval()
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).logits
    model.train()
    sdpa_saved = _saved_bytes(lambda: model(input_ids=ids, attention_mask=mask).logits.sum())
    assert use_lean_attention(model) and model.config._attn_implementation == NAME
    lean_saved = _saved_bytes(lambda: model(input_ids=ids, attention_mask=mask).logits.sum().backward())
    # per layer the math path keeps 3 float (B, H, T, T) tensors; this keeps 1 boolean one
    tt = 8 * 4 * 48 * 48
    assert sdpa_saved - lean_saved >= 2 * (3 * 4 * tt - tt) * 0.9
    attn = model.bert.encoder.layer[0].attention.self
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in (attn.query, attn.key, attn.value))
    model.eval()
    with torch.no_grad():  # inference goes to sdpa unchanged
        assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, before)


def test_it_hands_everything_else_to_sdpa(monkeypatch):
    """transformers' sdpa is replaced by a recorder here (a stand-in, to count which calls reach it)."""
    import transformers.integrations.sdpa_attention as sdpa

    calls = []
    monkeypatch.setattr(sdpa, "sdpa_attention_forward", lambda *a, **kw: calls.append(kw) or ("sdpa", None))
    q = torch.randn(1, 2, 4, 8, requires_grad=True)

    class Module(torch.nn.Module):
        is_causal = False

    module, causal = Module(), Module()
    causal.is_causal = True
    cases = [dict(dropout=0.0), dict(dropout=0.1, position_bias=torch.zeros(1, 2, 4, 4)),
             dict(dropout=0.1, softcap=30.0)]
    for kw in cases:
        assert lean_attention_forward(module, q, q, q, None, **kw)[0] == "sdpa"
    assert lean_attention_forward(causal, q, q, q, None, dropout=0.1)[0] == "sdpa"  # causal without a mask
    with torch.no_grad():
        assert lean_attention_forward(module, q, q, q, None, dropout=0.1)[0] == "sdpa"
    assert len(calls) == 5
    out, _ = lean_attention_forward(module, q, q, q, None, dropout=0.1)
    assert out.shape == (1, 4, 2, 8) and len(calls) == 5
