"""Tiny config-built backbones with locally trained tokenizers, for tests and benchmarks.

Nothing here touches the hub: each builder trains a small tokenizer of the architecture's kind
(BERT WordPiece, RoBERTa and GPT-2 byte-level BPE, DeBERTa-v2 and T5 Unigram with Metaspace, a
Llama-style BPE that adds <s>) on the given texts,
builds a randomly initialised model from a config, and saves both to a directory that
``trainers.backbone.load_backbone`` loads like any checkpoint.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch

ARCHITECTURES = ("bert", "roberta", "deberta-v2")  # the encoders
GENERATIVE = ("t5", "gpt2", "llama")  # a seq2seq and two decoders
# The rest of each family's rows in trainers/families.py: mT5, a Flan-T5 (gated-GELU, untied head),
# Qwen2 (biases on q, k, v) and Mistral (sliding-window attention).
MORE_GENERATIVE = ("mt5", "flan-t5", "qwen2", "mistral")
SIZES = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
             max_position_embeddings=320)


def _bert_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=specials))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok, dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]",
                     model_input_names=["input_ids", "token_type_ids", "attention_mask"])


def _roberta_tokenizer(texts: list[str], vocab: int, *, special: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    if not special:  # GPT-2 style: the tokenizer adds nothing around the text
        return tok, dict(pad_token="<pad>", unk_token="<unk>", eos_token="</s>")
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
    return tok, dict(bos_token="<s>", eos_token="</s>", cls_token="<s>", sep_token="</s>", pad_token="<pad>",
                     unk_token="<unk>", mask_token="<mask>")


def _deberta_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab, special_tokens=specials, unk_token="[UNK]"))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return tok, dict(cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]")


def _t5_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=vocab, special_tokens=["<pad>", "</s>", "<unk>"],
                                                           unk_token="<unk>"))
    eos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", eos)])
    return tok, dict(eos_token="</s>", pad_token="<pad>", unk_token="<unk>")


def _gpt2_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return tok, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")  # no pad


def _llama_tokenizer(texts: list[str], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<unk>", "<s>", "</s>"]))
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(  # Llama adds <s> in front, nothing after
        single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", bos)])
    return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")  # no pad, as Llama ships


def _qwen2_tokenizer(texts: list[str], vocab: int):
    tok, special = _gpt2_tokenizer(texts, vocab)  # byte-level BPE that adds nothing; Qwen2 ships a pad
    return tok, dict(eos_token=special["eos_token"], pad_token="<|endoftext|>", unk_token=special["unk_token"])


def _generative_model(arch: str, vocab: int, sizes: dict):
    from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                              MistralForCausalLM, MT5Config, MT5ForConditionalGeneration, Qwen2Config,
                              Qwen2ForCausalLM, T5Config, T5ForConditionalGeneration)

    d, L, heads, ff = (sizes[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"))
    if arch in ("t5", "mt5", "flan-t5"):
        t5 = dict(vocab_size=vocab, d_model=d, d_kv=d // heads, d_ff=ff, num_layers=L, num_decoder_layers=L,
                  num_heads=heads, relative_attention_num_buckets=32, pad_token_id=0, eos_token_id=1,
                  decoder_start_token_id=0)
        if arch == "t5":
            return T5ForConditionalGeneration(T5Config(**t5))
        gated = dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False)  # T5 v1.1, mT5, Flan-T5
        return (MT5ForConditionalGeneration(MT5Config(**t5, **gated)) if arch == "mt5"
                else T5ForConditionalGeneration(T5Config(**t5, **gated)))
    if arch == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=d, n_layer=L, n_head=heads, n_inner=ff,
                                          n_positions=sizes["max_position_embeddings"], bos_token_id=0, eos_token_id=0))
    decoder = dict(vocab_size=vocab, hidden_size=d, intermediate_size=ff, num_hidden_layers=L, num_attention_heads=heads,
                   num_key_value_heads=max(1, heads // 2), max_position_embeddings=sizes["max_position_embeddings"],
                   tie_word_embeddings=False)
    if arch == "qwen2":
        return Qwen2ForCausalLM(Qwen2Config(**decoder, bos_token_id=None, eos_token_id=0))
    if arch == "mistral":  # a window shorter than the longest batch, so it really slides
        return MistralForCausalLM(MistralConfig(**decoder, sliding_window=96, bos_token_id=1, eos_token_id=2))
    return LlamaForCausalLM(LlamaConfig(**decoder, bos_token_id=1, eos_token_id=2))


def _model(arch: str, vocab: int, sizes: dict | None = None):
    from transformers import (BertConfig, BertModel, DebertaV2Config, DebertaV2Model, RobertaConfig,
                              RobertaModel)

    sizes = sizes or SIZES
    if arch == "bert":
        return BertModel(BertConfig(vocab_size=vocab, **sizes))
    if arch == "roberta":
        return RobertaModel(RobertaConfig(vocab_size=vocab, pad_token_id=1, bos_token_id=0, eos_token_id=2, **sizes))
    if arch == "deberta-v2":
        return DebertaV2Model(DebertaV2Config(vocab_size=vocab, pad_token_id=0, relative_attention=True,
                                              pos_att_type=["p2c", "c2p"], position_buckets=32, **sizes))
    raise ValueError(f"arch: must be one of {', '.join(ARCHITECTURES)} (got {arch!r})")


def build_tiny_backbone(arch: str, out: Path, texts: Iterable[str], *, vocab: int = 1000, seed: int = 0,
                        sizes: dict | None = None, model_vocab: int | None = None) -> str:
    """Train a tokenizer on ``texts``, build a tiny ``arch`` model, save both under ``out``.
    ``sizes`` overrides the dimensions (T5 and the decoders read the same keys); ``model_vocab``
    gives the model a real checkpoint's vocabulary size (benchmarks), beyond the tokenizer's."""
    from transformers import PreTrainedTokenizerFast

    texts = list(texts)
    builders = {"bert": _bert_tokenizer, "roberta": _roberta_tokenizer, "deberta-v2": _deberta_tokenizer,
                "t5": _t5_tokenizer, "mt5": _t5_tokenizer, "flan-t5": _t5_tokenizer, "gpt2": _gpt2_tokenizer,
                "qwen2": _qwen2_tokenizer, "llama": _llama_tokenizer, "mistral": _llama_tokenizer}
    if arch not in builders:
        raise ValueError(f"arch: must be one of {', '.join(builders)} (got {arch!r})")
    tok, special = builders[arch](texts, vocab)
    sizes = SIZES | (sizes or {})
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=sizes["max_position_embeddings"], **special)
    torch.manual_seed(seed)
    n_vocab = max(model_vocab or 0, tok.get_vocab_size())
    model = _model(arch, n_vocab, sizes) if arch in ARCHITECTURES else _generative_model(arch, n_vocab, sizes)
    out = Path(out)
    model.save_pretrained(out)  # the backbone only: loading for classification adds a new head
    tokenizer.save_pretrained(out)
    return str(out)


def build_plain_tokenizer_backbone(out: Path, texts: Iterable[str], *, vocab: int = 1000) -> str:
    """A tiny RoBERTa whose tokenizer adds no special tokens (as GPT-2's), for rejection tests."""
    from transformers import PreTrainedTokenizerFast

    tok, special = _roberta_tokenizer(list(texts), vocab, special=False)
    PreTrainedTokenizerFast(tokenizer_object=tok, **special).save_pretrained(out)
    _model("roberta", tok.get_vocab_size()).save_pretrained(out)
    return str(out)


# The papers' backbone sizes, with random weights, for benchmarks: (architecture, sizes, vocabulary).
PRESETS = {
    "t5-small": ("t5", dict(hidden_size=512, num_hidden_layers=6, num_attention_heads=8, intermediate_size=2048), 32128),
    "t5-base": ("t5", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072), 32128),
    "roberta-large": ("roberta", dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096, max_position_embeddings=514), 50265),
    "gpt2": ("gpt2", dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                          max_position_embeddings=1024), 50257),
}


def build_preset(preset: str, out: str | Path, *, data_dir: str | Path | None = None) -> str:
    """A paper-sized backbone with random weights (``PRESETS``), its tokenizer trained on GLUE text
    when ``data_dir`` is given, else on a few generated sentences."""
    if preset not in PRESETS:
        raise ValueError(f"preset: must be one of {', '.join(PRESETS)} (got {preset!r})")
    arch, sizes, vocab = PRESETS[preset]
    texts = (glue_texts(Path(data_dir)) if data_dir else
             [f"sentence {i} with words {i % 7} and {i % 11} of {i % 13}" for i in range(2000)])
    return build_tiny_backbone(arch, Path(out), texts, vocab=1000, sizes=SIZES | sizes, model_vocab=vocab)


def glue_texts(data_dir: Path, task: str = "RTE", limit: int = 2000) -> list[str]:
    """Sentences from a local GLUE task, to train the tiny tokenizers on real text."""
    import csv

    texts = []
    with open(Path(data_dir) / "glue" / task / "train.tsv", newline="", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            texts.extend(cell for cell in row[1:3])
            if len(texts) >= limit:
                break
    return texts
