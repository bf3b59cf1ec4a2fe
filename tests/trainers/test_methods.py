"""The shared method matrix: every registered method × BERT, RoBERTa and DeBERTa-v2 (tiny,
config-built, with tokenizers trained locally on real RTE text) and the real MiniLM checkpoint.

Each test builds a fresh backbone (methods change the model they wrap) and runs real forward and
backward passes on real RTE sentence pairs."""
import copy
import math

import pytest
import torch

from trainers.backbone import load_backbone
from trainers.methods import METHODS
from trainers.methods.layers import encoder_layers
from trainers.methods.prompt_tuning import PromptedEncoder
from trainers.testing import ARCHITECTURES

ARCHS = (*ARCHITECTURES, "minilm")
# Special tokens around a sentence pair: [CLS] A [SEP] B [SEP], and RoBERTa's <s> A </s></s> B </s>.
PAIR_SPECIALS = {"bert": 3, "roberta": 4, "deberta-v2": 3, "minilm": 3}
SMALL = {"lora": {"dropout": 0.0}, "aot_fc": {"dropout": 0.0, "rank": 8}, "aot_kron": {"dropout": 0.0, "rank": 4},
         "prefix_tuning": {"prefix_length": 5, "dropout": 0.0}, "adapter": {"bottleneck": 8}}


_LOADED = {}


def setup(backbones, arch, method, *, num_labels=2, params=None, seed=0):
    """A fresh copy of the backbone (loaded once per session) and the method, seeded."""
    if (arch, num_labels) not in _LOADED:
        torch.manual_seed(0)
        _LOADED[arch, num_labels] = load_backbone(backbones[arch], num_labels=num_labels)
    torch.manual_seed(seed)
    bb = copy.deepcopy(_LOADED[arch, num_labels])
    m = METHODS[method].from_params(SMALL.get(method, {}) if params is None else params)
    return bb, m


def batch(bb, rows, *, pair=True, labels=True):
    enc = bb.tokenizer([r.text_a for r in rows], [r.text_b for r in rows] if pair else None,
                       return_tensors="pt", padding=True, truncation=True, max_length=48)
    out = dict(enc)
    if labels:
        out["labels"] = torch.tensor([r.label for r in rows])
    return out


def dims(model):
    c = model.config
    return c.num_hidden_layers, c.hidden_size, model.get_input_embeddings().weight.size(0), c.intermediate_size


def expected_count(method, bb, m) -> int:
    L, d, V, i = dims(bb.model)
    c = m.config
    head = sum(p.numel() for n, p in bb.model.named_parameters() if n in bb.head_names)
    match method:
        case "finetune":
            return sum(p.numel() for p in bb.model.parameters()) - head
        case "prompt_tuning":
            return c.prompt_length * d
        case "p_tuning":
            h = c.encoder_hidden_size or d
            return c.prompt_length * d + (d * h + h) + (h * h + h) + (h * d + d)
        case "prefix_tuning":
            return 2 * L * c.prefix_length * d
        case "resprompt":
            h = c.hidden_size
            return c.prompt_length * d + (d * h + h) + (h * d + d) + 2 * d
        case "lora":
            return L * 2 * c.rank * (d + d)  # query and value, A (r×d) and B (d×r)
        case "bitfit":  # per layer q, k, v, o, FFN in/out and two LayerNorms; embedding LayerNorm; pooler
            pooler = d if getattr(bb.model.base_model, "pooler", None) is not None else 0
            # DeBERTa-v2's disentangled attention adds pos_key_proj and pos_query_proj per layer
            positional = 2 * d if bb.model.config.model_type == "deberta-v2" else 0
            return L * (7 * d + i + positional) + d + pooler
        case "adapter":
            return L * 2 * (2 * d * c.bottleneck + c.bottleneck + d) + L * 2 * 2 * d
        case "aot_fc":
            return L * (2 * d * c.rank + c.rank + d)
        case "aot_kron":
            return L * ((c.a + math.ceil(V / c.a)) * c.rank + c.rank ** 2 * d)
        case "ept" | "ept_star":
            return 3 * d
        case "dept":
            return c.prompt_length * d + (c.max_positions + d) * c.rank_for(d)
        case "pasta":
            return L * PAIR_SPECIALS[arch_of(bb)] * d
    raise AssertionError(f"no formula for {method}")


def arch_of(bb) -> str:
    t = bb.model.config.model_type
    return "minilm" if t == "bert" and bb.model.config.hidden_size == 384 else t


def n_params(params) -> int:
    return sum(p.numel() for p in params)


def test_every_method_is_in_the_matrix():
    assert set(METHODS.names()) == {
        "finetune", "prompt_tuning", "p_tuning", "prefix_tuning", "resprompt", "lora", "bitfit", "adapter",
        "aot_fc", "aot_kron", "ept", "ept_star", "dept", "pasta"}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS.names())
def test_trainable_parameters_match_the_papers_formulas(backbones, arch, method):
    bb, m = setup(backbones, arch, method)
    model = m.apply(bb)
    own = m.method_parameters(model)
    assert n_params(own) == expected_count(method, bb, m)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for n, p in bb.model.named_parameters() if n in bb.head_names}
    assert trainable == {id(p) for p in own} | head  # the method's parameters and the head, nothing else


@pytest.mark.parametrize("arch", ARCHS)
def test_dept_matches_prompt_tuning_budget(backbones, arch):
    """m·d + (s+d)·r = l·d: DePT at its defaults (m=60, s=256) has prompt tuning's l=100 budget."""
    bb, m = setup(backbones, arch, "dept")
    model = m.apply(bb)
    d = bb.model.config.hidden_size
    assert n_params(m.method_parameters(model)) == 100 * d


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS.names())
def test_backbone_is_bit_identical_after_training_steps(backbones, rte_rows, arch, method):
    bb, m = setup(backbones, arch, method)
    frozen = [(n, p, p.detach().clone()) for n, p in bb.model.named_parameters() if n not in bb.head_names]
    model = m.apply(bb)
    own_before = [p.detach().clone() for p in m.method_parameters(model)]
    opt = torch.optim.AdamW(m.param_groups(model, lr=1e-2, weight_decay=0.0))
    model.train()
    for _ in range(2):
        model(**batch(bb, rte_rows)).loss.backward()
        opt.step()
        opt.zero_grad()
    changed = [n for n, p, before in frozen if not torch.equal(p, before)]
    if METHODS[method].trains_backbone:
        assert changed
    else:
        assert changed == [], changed[:3]
    assert any(not torch.equal(a, b) for a, b in zip(own_before, m.method_parameters(model)))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", ["aot_fc", "aot_kron", "lora", "adapter"])
def test_identity_at_init_gives_the_backbones_outputs(backbones, rte_rows, arch, method):
    bb, m = setup(backbones, arch, method, params={})  # the paper defaults, dropout included
    inputs = batch(bb, rte_rows, labels=False)
    bb.model.eval()
    with torch.no_grad():
        plain = bb.model(**inputs).logits
        model = m.apply(bb).eval()
        assert torch.equal(model(**inputs).logits, plain)


@pytest.mark.parametrize("arch", ARCHS)
def test_dept_with_b_zero_is_prompt_tuning_with_its_prompt(backbones, rte_rows, arch):
    bb, m = setup(backbones, arch, "dept", params={})
    model = m.apply(bb).eval()
    assert torch.count_nonzero(model.update.B) == 0
    inputs = batch(bb, rte_rows, labels=False)
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, PromptedEncoder(bb.model, model.source).eval()(**inputs).logits)


def train_steps(m, model, bb, rows, steps=3, lr=1e-2):
    opt = torch.optim.AdamW(m.param_groups(model, lr=lr, weight_decay=0.0))
    model.train()
    for _ in range(steps):
        model(**batch(bb, rows)).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


# Fused and unfused compute the same sums in a different order (whole-vocabulary chunks vs the
# batch's rows), so they agree to float32 rounding: logits within 1e-5 absolute + 1e-4 relative.
FUSE_TOL = dict(atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch, method", [(a, m) for a in ARCHS for m in ("aot_fc", "aot_kron")]
                         + [("bert", m) for m in ("p_tuning", "resprompt", "ept_star")])
def test_fused_and_unfused_give_the_same_logits(backbones, rte_rows, arch, method):
    bb, m = setup(backbones, arch, method, params={})
    model = train_steps(m, m.apply(bb), bb, rte_rows)
    inputs = batch(bb, rte_rows, labels=False)
    with torch.no_grad():
        unfused = model(**inputs).logits
        m.fuse(model)
        fused = model(**inputs).logits
    torch.testing.assert_close(fused, unfused, **FUSE_TOL)
    if method.startswith("aot"):  # the tables are the trained P_l, not zeros
        assert len(model.edit.fused) == len(encoder_layers(bb.model))
        assert model.edit.fused[0].abs().max() > 0


@pytest.mark.parametrize("arch", ARCHITECTURES)  # the tiny three; MiniLM is a BERT
@pytest.mark.parametrize("method", METHODS.names())
def test_saved_artefact_is_enough_for_inference(backbones, rte_rows, tmp_path, arch, method):
    bb, m = setup(backbones, arch, method)
    model = train_steps(m, m.apply(bb), bb, rte_rows, steps=2)
    inputs = batch(bb, rte_rows, labels=False)
    with torch.no_grad():
        m.fuse(model)
        expected = model(**inputs).logits
    torch.save(m.inference_state(model), tmp_path / "artefact.pt")
    bb2, m2 = setup(backbones, arch, method, seed=1)  # a different seed: nothing carries over by chance
    fresh = m2.apply(bb2)
    m2.fuse(fresh)
    m2.load_inference_state(fresh, torch.load(tmp_path / "artefact.pt"))
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(**inputs).logits, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("method", METHODS.names())
def test_single_sentence_regression(backbones, rte_rows, arch, method):
    bb, m = setup(backbones, arch, method, num_labels=1)
    model = m.apply(bb).train()
    inputs = batch(bb, rte_rows, pair=False, labels=False) | {"labels": torch.tensor([0.5, 1.0, 2.5, 4.0])}
    out = model(**inputs)
    # DeBERTa-v2's head returns (batch,) for one label, the others (batch, 1); the loop squeezes both
    assert out.logits.squeeze(-1).shape == (4,) and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(p.grad is not None for p in m.method_parameters(model) if p.requires_grad)


def test_pasta_rejects_a_tokenizer_without_special_tokens(backbones):
    bb = load_backbone(backbones["plain"], num_labels=2)
    with pytest.raises(ValueError, match=r"^tokenizer: must add special tokens, where PASTA adds its vectors"):
        METHODS["pasta"].from_params({}).apply(bb)


@pytest.mark.parametrize("arch", ARCHS)
def test_pasta_adds_vectors_only_at_special_tokens(backbones, rte_rows, arch):
    bb, m = setup(backbones, arch, "pasta")
    model = m.apply(bb)
    inputs = batch(bb, rte_rows, labels=False)
    hidden = torch.zeros(*inputs["input_ids"].shape, bb.model.config.hidden_size)
    added = model.edit(0, inputs["input_ids"], hidden)
    touched = added.abs().sum(-1) > 0
    framing = torch.tensor([bb.tokenizer.cls_token_id, bb.tokenizer.sep_token_id])  # <s>, </s> for RoBERTa
    special = torch.isin(inputs["input_ids"], framing)
    assert torch.equal(touched, special)
    assert int(touched[0].sum()) == PAIR_SPECIALS[arch]


def test_dept_trains_a_and_b_at_lr2_and_the_prompt_and_head_at_lr(backbones):
    bb, m = setup(backbones, "minilm", "dept", params={"lr2": 5e-4})
    model = m.apply(bb)
    groups = m.param_groups(model, lr=0.3, weight_decay=0.01)
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    assert by_lr[5e-4] == {id(model.update.A), id(model.update.B)}
    head = {id(p) for n, p in bb.model.named_parameters() if n in bb.head_names}
    assert head and head | {id(p) for p in model.source.parameters()} == by_lr[0.3]
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_a_method_missing_a_required_hook_cannot_be_built():
    from trainers.methods.base import Method

    class Incomplete(Method):  # no method_parameters
        name, description = "incomplete", "lacks a hook"

        def apply(self, backbone):
            return backbone.model

    with pytest.raises(TypeError, match="abstract method method_parameters"):
        Incomplete.from_params({})
