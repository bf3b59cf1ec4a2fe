"""The shared method matrix: every registered method × every backbone family. Encoders: tiny
config-built BERT, RoBERTa and DeBERTa-v2 and the real MiniLM checkpoint; seq2seq: a tiny T5
(text-to-text, rank classification); decoders: a tiny GPT-2 and a tiny Llama, each on both routes
(a classification head on the last real token, and LM scoring of label words). Tokenizers are
trained locally on real RTE text.

Each test builds a fresh backbone (methods change the model they wrap) and runs real forward and
backward passes on real RTE sentence pairs, through the task format that poses RTE on the family
(trainers/tasks/text.py), as the training loop does."""
import copy
import dataclasses
import math

import pytest
import torch

from trainers.backbone import load_posed
from trainers.families import blocks, kv_shape
from trainers.methods import METHODS
from trainers.methods.prompt_tuning import PromptedEncoder
from trainers.tasks import TASKS
from trainers.testing import ARCHITECTURES

ENCODERS = (*ARCHITECTURES, "minilm")
# name -> (backbone, route): T5 poses tasks as text; each decoder runs both routes.
GENERATIVE = {"t5": ("t5", "lm"), "gpt2-head": ("gpt2", "head"), "gpt2-lm": ("gpt2", "lm"),
              "llama-head": ("llama", "head"), "llama-lm": ("llama", "lm"),
              "mt5": ("mt5", "lm"), "flan-t5": ("flan-t5", "lm"), "qwen2-head": ("qwen2", "head"),
              "qwen2-lm": ("qwen2", "lm"), "mistral-head": ("mistral", "head"), "mistral-lm": ("mistral", "lm")}
ARCHS = (*ENCODERS, *GENERATIVE)
# Pairs that cannot apply, and why: validation refuses them (tests/search/test_spec_backbones.py).
NOT_APPLICABLE = {("t5", "bitfit"), ("mt5", "bitfit"), ("flan-t5", "bitfit"), ("llama-head", "bitfit"),
                  ("llama-lm", "bitfit"), ("mistral-head", "bitfit"), ("mistral-lm", "bitfit"),  # no biases
                  ("gpt2-head", "pasta"), ("gpt2-lm", "pasta"),  # their tokenizers add no special token
                  ("qwen2-head", "pasta"), ("qwen2-lm", "pasta")}  # GPT-2's tokenizer adds no special token
# Special tokens PASTA finds: [CLS] A [SEP] B [SEP], RoBERTa's <s> A </s></s> B </s>; T5's one
# text ends with </s>, Llama's starts with <s>.
PAIR_SPECIALS = {"bert": 3, "roberta": 4, "deberta-v2": 3, "minilm": 3, "t5": 1, "mt5": 1, "flan-t5": 1,
                 "llama-head": 1, "llama-lm": 1, "mistral-head": 1, "mistral-lm": 1}
SMALL = {"lora": {"dropout": 0.0}, "aot_fc": {"dropout": 0.0, "rank": 8}, "aot_kron": {"dropout": 0.0, "rank": 4},
         "prefix_tuning": {"prefix_length": 5, "dropout": 0.0}, "adapter": {"bottleneck": 8}}


def pairs(archs=ARCHS, methods=None):
    return [(a, m) for a in archs for m in (methods or METHODS.names()) if (a, m) not in NOT_APPLICABLE]


_LOADED = {}


def setup(backbones, arch, method, *, task="rte", params=None, seed=0):
    """A fresh copy of the backbone posed for ``task`` (loaded once per session), the method, and
    the task's format on that backbone, seeded."""
    if (arch, task) not in _LOADED:
        torch.manual_seed(0)
        path, route = GENERATIVE.get(arch, (arch, "auto"))
        _LOADED[arch, task] = load_posed(backbones[path], TASKS[task], route=route)
    torch.manual_seed(seed)
    base, fmt = _LOADED[arch, task]
    bb = copy.deepcopy(base)
    m = METHODS[method].from_params(SMALL.get(method, {}) if params is None else params)
    return bb, m, fmt


def batch(bb, fmt, rows, *, labels=True, regression=False, side=None, max_length=48):
    if side is not None:
        bb.tokenizer.padding_side = side
    out = fmt.collate(fmt.encode(rows, bb.tokenizer, max_length=max_length), bb.tokenizer, regression=regression)
    return out if labels else {k: v for k, v in out.items() if k != "labels"}


def loss_of(fmt, model, b):
    return fmt.forward(model, b)[0]


def scores(fmt, model, b):
    return fmt.forward(model, {k: v for k, v in b.items() if k != "labels"})[1]


def dims(bb):
    c = bb.model.config
    d = bb.model.get_input_embeddings().weight.size(1)
    L = len(blocks(bb.model, bb.arch, "edit"))
    inner = getattr(c, "intermediate_size", None) or getattr(c, "d_ff", None) or getattr(c, "n_inner", None)
    return L, d, bb.model.get_input_embeddings().weight.size(0), inner


def _lora(bb, r: int) -> int:
    """r·(in + out) per targeted projection, from the config: T5 targets q and v in its encoder's
    self-attention and the decoder's self- and cross-attention; GPT-2 its fused c_attn (d -> 3d);
    Llama q_proj (d -> d) and v_proj (d -> kv heads · head dim)."""
    c, (L, d, _, _) = bb.model.config, dims(bb)
    match c.model_type:
        case "t5" | "mt5":
            inner = c.num_heads * c.d_kv
            return 3 * L * 2 * r * (d + inner)
        case "gpt2":
            return L * r * (d + 3 * d)
        case "llama" | "mistral" | "qwen2":
            kv = c.num_key_value_heads * (d // c.num_attention_heads)
            return L * (r * (d + d) + r * (d + kv))
    return L * 2 * r * (d + d)  # encoders: query and value, A (r×d) and B (d×r)


def _bitfit(bb) -> int:
    """Per layer the biases of q, k, v, o (GPT-2: c_attn's 3d and c_proj's d), the FFN's in/out
    and two norms; BERT-family: embedding LayerNorm and pooler; GPT-2: the final ln_f; Qwen2: q, k
    and v only."""
    c, (L, d, _, i) = bb.model.config, dims(bb)
    if c.model_type == "gpt2":
        return L * (7 * d + i) + d
    if c.model_type == "qwen2":  # only q, k and v have biases (k and v at the grouped heads' width)
        return L * (d + 2 * c.num_key_value_heads * (d // c.num_attention_heads))
    pooler = d if getattr(bb.model.base_model, "pooler", None) is not None else 0
    positional = 2 * d if c.model_type == "deberta-v2" else 0  # pos_key_proj and pos_query_proj
    return L * (7 * d + i + positional) + d + pooler


def _adapter(bb, m: int) -> int:
    """2·(2·d·m + m + d) per block (T5: encoder and decoder blocks), plus the two norms: weight
    and bias (LayerNorm), or weight only (T5's and Llama's RMS norms)."""
    d = dims(bb)[1]
    n_blocks = len(blocks(bb.model, bb.arch))
    per_norm = d if bb.arch.family != "encoder" and bb.model.config.model_type != "gpt2" else 2 * d  # RMS norms
    return n_blocks * (2 * (2 * d * m + m + d) + 2 * per_norm)


def expected_count(arch, method, bb, m) -> int:
    L, d, V, i = dims(bb)
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
        case "prefix_tuning":  # decoders: keys and values of the attention's kv width (Llama: grouped heads)
            if bb.arch.family == "decoder":
                heads, head_dim = kv_shape(bb.model.config.to_dict())
                return 2 * L * c.prefix_length * heads * head_dim
            if bb.arch.family == "seq2seq":  # every self-attention: encoder and decoder (2L), width heads·d_kv
                cfg = bb.model.config
                return 2 * (2 * L) * c.prefix_length * cfg.num_heads * cfg.d_kv
            return 2 * L * c.prefix_length * d
        case "resprompt":
            h = c.hidden_size
            return c.prompt_length * d + (d * h + h) + (h * d + d) + 2 * d
        case "lora":
            return _lora(bb, c.rank)
        case "peft":  # at its defaults, peft's own LoRA (r = 8) on peft's default targets: ours
            return _lora(bb, 8)
        case "bitfit":
            return _bitfit(bb)
        case "adapter":
            return _adapter(bb, c.bottleneck)
        case "aot_fc":
            return L * (2 * d * c.rank + c.rank + d)
        case "aot_kron":
            return L * ((c.a + math.ceil(V / c.a)) * c.rank + c.rank ** 2 * d)
        case "ept" | "ept_star":
            return 3 * d
        case "dept":
            return c.prompt_length * d + (c.rows() + d) * c.rank_for(d)
        case "pasta":
            return L * PAIR_SPECIALS[arch] * d
    raise AssertionError(f"no formula for {method}")


def n_params(params) -> int:
    return sum(p.numel() for p in params)


def test_every_method_is_in_the_matrix():
    assert set(METHODS.names()) == {
        "finetune", "prompt_tuning", "p_tuning", "prefix_tuning", "resprompt", "lora", "bitfit", "adapter",
        "aot_fc", "aot_kron", "ept", "ept_star", "dept", "pasta", "peft"}


@pytest.mark.parametrize("arch, method", pairs())
def test_trainable_parameters_match_the_papers_formulas(backbones, arch, method):
    bb, m, _ = setup(backbones, arch, method)
    model = m.apply(bb)
    own = m.method_parameters(model)
    assert n_params(own) == expected_count(arch, method, bb, m)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    head = {id(p) for n, p in bb.model.named_parameters() if n in bb.head_names}
    assert trainable == {id(p) for p in own} | head  # the method's parameters and the head, nothing else


@pytest.mark.parametrize("arch, method", sorted(NOT_APPLICABLE))
def test_a_pair_that_cannot_apply_is_refused_in_one_line(backbones, arch, method):
    bb, m, _ = setup(backbones, arch, method)
    with pytest.raises(ValueError, match=r"^(backbone|tokenizer): ") as e:
        m.apply(bb)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("arch", ARCHS)
def test_dept_matches_prompt_tuning_budget(backbones, arch):
    """m·d + (s+d)·r = l·d: DePT at its defaults (m=60, s=256) has prompt tuning's l=100 budget."""
    bb, m, _ = setup(backbones, arch, "dept")
    model = m.apply(bb)
    d = bb.model.get_input_embeddings().weight.size(1)
    assert n_params(m.method_parameters(model)) == 100 * d


@pytest.mark.parametrize("arch, method", pairs())
def test_backbone_is_bit_identical_after_training_steps(backbones, rte_rows, arch, method):
    bb, m, fmt = setup(backbones, arch, method)
    frozen = [(n, p, p.detach().clone()) for n, p in bb.model.named_parameters() if n not in bb.head_names]
    model = m.apply(bb)
    own_before = [p.detach().clone() for p in m.method_parameters(model)]
    opt = torch.optim.AdamW(m.param_groups(model, lr=1e-2, weight_decay=0.0))
    model.train()
    for _ in range(2):
        loss_of(fmt, model, batch(bb, fmt, rte_rows)).backward()
        opt.step()
        opt.zero_grad()
    changed = [n for n, p, before in frozen if not torch.equal(p, before)]
    if METHODS[method].trains_backbone:
        assert changed
    else:
        assert changed == [], changed[:3]
    assert any(not torch.equal(a, b) for a, b in zip(own_before, m.method_parameters(model)))


@pytest.mark.parametrize("arch, method", pairs(methods=["aot_fc", "aot_kron", "lora", "adapter"]))
def test_identity_at_init_gives_the_backbones_outputs(backbones, rte_rows, arch, method):
    bb, m, fmt = setup(backbones, arch, method, params={})  # the paper defaults, dropout included
    inputs = batch(bb, fmt, rte_rows, labels=False)
    bb.model.eval()
    with torch.no_grad():
        plain = scores(fmt, bb.model, inputs)
        model = m.apply(bb).eval()
        assert torch.equal(scores(fmt, model, inputs), plain)


@pytest.mark.parametrize("arch", ARCHS)
def test_dept_with_b_zero_is_prompt_tuning_with_its_prompt(backbones, rte_rows, arch):
    bb, m, fmt = setup(backbones, arch, "dept", params={})
    model = m.apply(bb).eval()
    assert torch.count_nonzero(model.update.B) == 0
    inputs = batch(bb, fmt, rte_rows, labels=False)
    with torch.no_grad():
        assert torch.equal(scores(fmt, model, inputs), scores(fmt, PromptedEncoder(bb.model, model.source).eval(), inputs))


def train_steps(m, fmt, model, bb, rows, steps=3, lr=1e-2):
    opt = torch.optim.AdamW(m.param_groups(model, lr=lr, weight_decay=0.0))
    model.train()
    for _ in range(steps):
        loss_of(fmt, model, batch(bb, fmt, rows)).backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


# Fused and unfused compute the same sums in a different order (whole-vocabulary chunks vs the
# batch's rows), so they agree to float32 rounding: logits within 1e-5 absolute + 1e-4 relative.
FUSE_TOL = dict(atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("arch, method", pairs(methods=["aot_fc", "aot_kron"])
                         + [("bert", m) for m in ("p_tuning", "resprompt", "ept_star")]
                         + [(a, "p_tuning") for a in GENERATIVE])
def test_fused_and_unfused_give_the_same_logits(backbones, rte_rows, arch, method):
    bb, m, fmt = setup(backbones, arch, method, params={})
    model = train_steps(m, fmt, m.apply(bb), bb, rte_rows)
    inputs = batch(bb, fmt, rte_rows, labels=False)
    with torch.no_grad():
        unfused = scores(fmt, model, inputs)
        m.fuse(model)
        fused = scores(fmt, model, inputs)
    torch.testing.assert_close(fused, unfused, **FUSE_TOL)
    if method.startswith("aot"):  # the tables are the trained P_l, not zeros
        assert len(model.edit.fused) == len(blocks(bb.model, bb.arch, "edit"))
        assert model.edit.fused[0].abs().max() > 0


@pytest.mark.parametrize("arch, method", pairs(methods=["aot_fc", "aot_kron"]))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_fused_tables_halve_their_memory_and_stay_close(backbones, rte_rows, arch, method, dtype):
    bb, m, fmt = setup(backbones, arch, method, params={})
    model = train_steps(m, fmt, m.apply(bb), bb, rte_rows)
    inputs = batch(bb, fmt, rte_rows, labels=False)
    with torch.no_grad():
        m.fuse(model)
        full, full_bytes = scores(fmt, model, inputs), model.edit.fused.nbytes
        half = type(m)(dataclasses.replace(m.config, fused_dtype=dtype))
        half.fuse(model)
        assert model.edit.fused.dtype == getattr(torch, dtype) and model.edit.fused.nbytes * 2 == full_bytes
        low = scores(fmt, model, inputs)
    with torch.enable_grad():  # out of place, where autograd may need the block's input
        torch.testing.assert_close(scores(fmt, model, inputs).detach(), low, atol=1e-6, rtol=0)
    assert not torch.equal(low, full)  # really rounded
    torch.testing.assert_close(low, full, atol=5e-2, rtol=0)


@pytest.mark.parametrize("arch, method", pairs(archs=(*ARCHITECTURES, *GENERATIVE)))  # MiniLM is a BERT
def test_saved_artefact_is_enough_for_inference(backbones, rte_rows, tmp_path, arch, method):
    bb, m, fmt = setup(backbones, arch, method)
    model = train_steps(m, fmt, m.apply(bb), bb, rte_rows, steps=2)
    inputs = batch(bb, fmt, rte_rows, labels=False)
    with torch.no_grad():
        m.fuse(model)
        expected = scores(fmt, model, inputs)
    torch.save(m.inference_state(model), tmp_path / "artefact.pt")
    bb2, m2, _ = setup(backbones, arch, method, seed=1)  # a different seed: nothing carries over by chance
    fresh = m2.apply(bb2)
    m2.fuse(fresh)
    m2.load_inference_state(fresh, torch.load(tmp_path / "artefact.pt", weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(scores(fmt, fresh.eval(), inputs), expected, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def stsb_rows(data_dir):
    return TASKS["stsb"].load("train", source="local", data_dir=str(data_dir))[:4]


@pytest.mark.parametrize("arch, method", pairs(archs=(*ARCHITECTURES, *GENERATIVE)))
def test_regression(backbones, stsb_rows, arch, method):
    """STS-B: a 1-output head on encoders and decoder heads; T5's 0.2-step number strings on the
    LM routes, predicted as the best-scored string."""
    bb, m, fmt = setup(backbones, arch, method, task="stsb")
    model = m.apply(bb).train()
    b = batch(bb, fmt, stsb_rows, regression=True)
    loss = loss_of(fmt, model, b)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in m.method_parameters(model) if p.requires_grad)
    with torch.no_grad():
        pred = fmt.predict(scores(fmt, model.eval(), b), regression=True)
    assert pred.shape == (4,) and bool(((pred >= -10) & (pred <= 10)).all())


# ---- padding ---------------------------------------------------------------------------------
def padding_gap(bb, fmt, model, rows, side: str, max_length: int = 200) -> float:
    """Largest change of the first example's scores between scoring it alone and in a batch with
    longer examples, which pads it (on ``side``), relative to the scores' size once they pass 1.
    Label-word scores are summed log-likelihoods (-150 on an untied T5 head), where float32's own
    spacing is 1.5e-5; in float64 those gaps are exactly 0, so anything above 1e-5 relative is not
    rounding."""
    with torch.no_grad():
        alone = scores(fmt, model, batch(bb, fmt, rows[:1], labels=False, side=side, max_length=max_length))[0]
        padded = scores(fmt, model, batch(bb, fmt, rows, labels=False, side=side, max_length=max_length))[0]
    return float((alone - padded).abs().max() / alone.abs().max().clamp(min=1))


LONG = 200  # (padding_gap's default) room for RTE's longer pairs, so the short one is padded, not everyone truncated


@pytest.fixture(scope="module")
def padded_rows(rte_rows):
    """A short example first, then longer ones: the first gets pad tokens in a batch."""
    return sorted(rte_rows, key=lambda r: len(r.text_a) + len(r.text_b or ""))


# Every family on both padding sides of its tokenizer. Encoders pool their first position ([CLS]),
# so their batches are right-padded whichever side the tokenizer asks for (formats.ENCODER_PADDING).
# Prefixes on a sliding window: the test below.
WINDOWED = ("mistral-head", "mistral-lm")
PADDING_CASES = [(a, m, side) for a, m in pairs(archs=(*ARCHITECTURES, *GENERATIVE)) for side in ("left", "right")
                 if (a, m) not in {(w, "prefix_tuning") for w in WINDOWED}]


@pytest.mark.parametrize("arch, method, side", PADDING_CASES)
def test_scores_do_not_change_when_padding_is_added(backbones, padded_rows, arch, method, side):
    bb, m, fmt = setup(backbones, arch, method)
    model = train_steps(m, fmt, m.apply(bb), bb, padded_rows, steps=2)
    padding = batch(bb, fmt, padded_rows, side=side, max_length=LONG)["attention_mask"][0].eq(0).sum()
    assert padding >= 5  # the first example really is padded
    assert padding_gap(bb, fmt, model, padded_rows, side) < 1e-5


@pytest.mark.parametrize("arch", WINDOWED)
def test_a_prefix_on_a_sliding_window_is_seen_whole_or_refused(backbones, padded_rows, arch):
    """Mistral's window is counted in cache entries: a prefix further back than the window is out of
    sight, and left padding pushes it further (a gap of 0.17 before this check). A batch that, with
    the prefix, outgrows the window is refused; one that fits is padding-invariant on both sides."""
    bb, m, fmt = setup(backbones, arch, "prefix_tuning")
    model = train_steps(m, fmt, m.apply(bb), bb, padded_rows, steps=2)
    window = bb.model.config.sliding_window
    assert window < LONG  # the tiny Mistral's window really is shorter than the long batch
    with pytest.raises(ValueError, match="sliding window"):
        padding_gap(bb, fmt, model, padded_rows, "left")
    fits = window - m.extra_keys()
    for side in ("left", "right"):
        assert batch(bb, fmt, padded_rows, side=side, max_length=fits)["attention_mask"][0].eq(0).sum() >= 5
        assert padding_gap(bb, fmt, model, padded_rows, side, max_length=fits) < 1e-5


def test_the_padding_check_catches_pooling_at_a_pad_position(backbones, padded_rows, monkeypatch):
    """Mutation check: pool the last position instead of the last real token (what HF's decoder
    classifiers do with inputs_embeds), and the padding test above must fail."""
    import trainers.lm

    bb, m, fmt = setup(backbones, "gpt2-head", "prompt_tuning")
    model = train_steps(m, fmt, m.apply(bb), bb, padded_rows, steps=2)
    assert padding_gap(bb, fmt, model, padded_rows, "right") < 1e-5
    monkeypatch.setattr(trainers.lm, "last_real", lambda mask: torch.full(mask.shape[:1], mask.size(1) - 1))
    assert padding_gap(bb, fmt, model, padded_rows, "right") > 1e-3


PEFT_TUNERS = {"IA3": {}, "LOHA": {"r": 4}, "LOKR": {"r": 4}, "VERA": {"r": 4}, "OFT": {"oft_block_size": 16}}


@pytest.mark.parametrize("arch", ["bert", "t5", "gpt2-head", "llama-lm"])
@pytest.mark.parametrize("tuner", PEFT_TUNERS)
def test_any_peft_tuner_trains_on_every_family_and_reloads(backbones, rte_rows, tmp_path, arch, tuner):
    params = {"type": tuner, **PEFT_TUNERS[tuner]}
    bb, m, fmt = setup(backbones, arch, "peft", params=params)
    if arch.startswith("gpt2") and tuner in ("LOHA", "LOKR", "OFT"):  # these peft tuners cannot wrap Conv1D
        with pytest.raises(ValueError, match=rf"^backbone: peft's {tuner} cannot be applied"):
            m.apply(bb)
        return
    frozen = [(n, p.detach().clone()) for n, p in bb.model.named_parameters() if n not in bb.head_names]
    model = train_steps(m, fmt, m.apply(bb), bb, rte_rows, steps=2)
    own = m.method_parameters(model)
    assert own and 0 < n_params(own) < sum(p.numel() for _, p in frozen)
    params_now = dict(bb.model.named_parameters())
    assert all(torch.equal(params_now[n], before) for n, before in frozen if n in params_now)
    inputs = batch(bb, fmt, rte_rows, labels=False)
    with torch.no_grad():
        expected = scores(fmt, model, inputs)
    torch.save(m.inference_state(model), tmp_path / "a.pt")
    bb2, m2, _ = setup(backbones, arch, "peft", params=params, seed=1)
    fresh = m2.apply(bb2)
    m2.load_inference_state(fresh, torch.load(tmp_path / "a.pt", weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(scores(fmt, fresh.eval(), inputs), expected, atol=1e-6, rtol=0)


def test_pasta_rejects_a_tokenizer_without_special_tokens(backbones):
    from trainers.backbone import load_backbone

    bb = load_backbone(backbones["plain"], num_labels=2)
    with pytest.raises(ValueError, match=r"^tokenizer: must add special tokens, where PASTA adds its vectors"):
        METHODS["pasta"].from_params({}).apply(bb)


@pytest.mark.parametrize("arch", [a for a in ARCHS if (a, "pasta") not in NOT_APPLICABLE])
def test_pasta_adds_vectors_only_at_special_tokens(backbones, rte_rows, arch):
    bb, m, fmt = setup(backbones, arch, "pasta")
    model = m.apply(bb)
    ids = batch(bb, fmt, rte_rows, labels=False)["input_ids"]
    hidden = torch.zeros(*ids.shape, bb.model.get_input_embeddings().weight.size(1))
    added = model.edit(0, ids, hidden)
    touched = added.abs().sum(-1) > 0
    special = torch.isin(ids, torch.tensor(bb.tokenizer.all_special_ids)) & (ids != bb.tokenizer.pad_token_id)
    assert torch.equal(touched & special, touched) and int(touched[0].sum()) == PAIR_SPECIALS[arch]


def test_dept_trains_a_and_b_at_lr2_and_the_prompt_and_head_at_lr(backbones):
    bb, m, _ = setup(backbones, "minilm", "dept", params={"lr2": 5e-4})
    model = m.apply(bb)
    groups = m.param_groups(model, lr=0.3, weight_decay=0.01)
    by_lr = {g["lr"]: {id(p) for p in g["params"]} for g in groups}
    assert by_lr[5e-4] == {id(model.update.A), id(model.update.B)}
    head = {id(p) for n, p in bb.model.named_parameters() if n in bb.head_names}
    assert head and head | {id(p) for p in model.source.parameters()} == by_lr[0.3]
    assert sum(len(g["params"]) for g in groups) == sum(1 for p in model.parameters() if p.requires_grad)


def test_dept_rows_follow_max_length_and_a_larger_s_is_refused():
    from trainers.config import TrainingConfig

    t = TrainingConfig(max_length=64)
    assert METHODS["dept"].from_params({}, training=t).config.rows() == 64
    with pytest.raises(ValueError, match=r"^max_positions: must be <= training.max_length \(64\)"):
        METHODS["dept"].from_params({"max_positions": 128}, training=t)


def test_a_method_missing_a_required_hook_cannot_be_built():
    from trainers.methods.base import Method

    class Incomplete(Method):  # no method_parameters
        name, description = "incomplete", "lacks a hook"

        def apply(self, backbone):
            return backbone.model

    with pytest.raises(TypeError, match="abstract method method_parameters"):
        Incomplete.from_params({})
