"""Held-out edge cases, written after the named corpus (test_edge.py) and in its style: each
malformed spec is refused by `validate` (and a representative subset by `run` too) in a clean
directory: exit 2, one stderr line `peftsearch: error: ...`, no traceback, nothing written. The
VALID list holds inputs that must stay accepted: file encodings, BOMs and line endings YAML allows,
YAML 1.2 numbers (`3e-2` unquoted or as text in a real-valued field), boundary values.

The model directories here are config.json files (plus an empty weights file where validation
needs one): validation reads config.json only, never the weights, so nothing else is needed to
exercise the rules. Classes covered: text where numbers or booleans belong, nesting, YAML tags and
dates, ${...} interpolation, config.json contents, position limits (prompts, prefixes, RoBERTa's
offset), ranks above the width or the vocabulary, wrong types of every section, boundaries,
unknown keys at every level, paths, tracking URIs (and their passwords), search, resources."""
from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from search.cli import main
from search.loader import load_yaml
from tests.search.test_edge import DELETE, LONG, PASSWORD, Case, _with, _yaml, refused, spec_bytes

RANDOM = {"search": {"algorithm": "random", "num_samples": 2}}
RNG = {"low": 1e-5, "high": 1e-3}
BERT = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 256, "vocab_size": 1000, "type_vocab_size": 2}
GPT2 = {"model_type": "gpt2", "n_embd": 32, "n_layer": 2, "n_head": 2, "n_positions": 160, "vocab_size": 1000}
ROBERTA = BERT | {"model_type": "roberta", "max_position_embeddings": 130, "pad_token_id": 1}  # 128 tokens
DEBERTA = BERT | {"model_type": "deberta-v2", "max_position_embeddings": 64, "position_biased_input": False,
                  "relative_attention": True}
NESTED = "a: " + "[" * 40 + "]" * 40 + "\n"


def _deep_block(levels: int) -> str:
    return "deep:\n" + "".join("  " * i + "k:\n" for i in range(1, levels)) + "  " * levels + "v: 1\n"


def _replace(old: str, new: str):
    return lambda raw: _yaml(raw).replace(old.encode(), new.encode())


def _model(config) -> dict:
    return {"backbone": "{fixtures}/" + config}


HELDOUT = [
    # --- 1. text where a number belongs: refused, naming the field (YAML 1.2 decimals stay numbers)
    Case("lr-fast", "methods.finetune.lr: Input should be a valid number", {"methods.finetune.lr": ["fast"]}),
    Case("rank-quoted-8", "methods.lora.rank: must be a whole number, not text", {"methods.lora.rank": ["8"]}),
    Case("seed-quoted", "seeds[0]: must be a whole number, not text", {"seeds": ["1"]}),
    Case("lr-thousands-comma", "methods.finetune.lr: Input should be a valid number", {"methods.finetune.lr": "1,000"}),
    Case("lr-hex-text", "methods.finetune.lr: Input should be a valid number", {"methods.finetune.lr": "0x10"}),
    Case("lr-inf-word", "methods.finetune.lr: must be a finite number", {"methods.finetune.lr": ["Infinity"]}),
    Case("lr-nan-text", "methods.finetune.lr: must be", {"methods.finetune.lr": "nan"}),
    Case("lr-bare-exponent", "methods.finetune.lr: Input should be a valid number", {"methods.finetune.lr": "1e"}),
    Case("lr-leading-space", "methods.finetune.lr: must be a number; text is read as one only in YAML 1.2",
         {"methods.finetune.lr": " 3e-5"}),
    Case("lr-underscore-text", "methods.finetune.lr: must be a number; text", {"methods.finetune.lr": "1_0e-5"}),
    Case("lr-empty-text", "methods.finetune.lr: Input should be a valid number", {"methods.finetune.lr": ""}),
    Case("batch-size-quoted", "training.batch_size: must be a whole number, not text", {"training.batch_size": "16"}),
    Case("max-length-quoted", "training.max_length: must be a whole number, not text", {"training.max_length": "128"}),
    Case("patience-quoted", "training.patience: must be a whole number, not text", {"training.patience": "2"}),
    Case("num-samples-quoted", "search.num_samples: must be a whole number, not text",
         {"search": {"algorithm": "random", "num_samples": "4"}, "methods.finetune.lr": RNG}),
    Case("sampler-seed-quoted", "search.sampler_seed: must be a whole number", {"search.sampler_seed": "7"}),
    Case("max-failures-quoted", "search.max_failures: must be a whole number", {"search.max_failures": "1"}),
    Case("grace-period-quoted", "search.scheduler.grace_period: must be a whole number",
         {"search.scheduler": {"name": "asha", "grace_period": "1"}}),
    Case("prompt-length-quoted", "methods.prompt_tuning.prompt_length: must be a whole number",
         {"methods.prompt_tuning": {"lr": 0.3, "prompt_length": "20"}}),
    Case("betas-word", "training.betas", {"training.betas": [0.9, "high"]}),
    Case("warmup-percent", "training.warmup_ratio: Input should be a valid number", {"training.warmup_ratio": "6%"}),
    Case("range-bound-word", "methods.finetune.lr: a range is {low, high, log}; high must be a number, got 'big'",
         {**RANDOM, "methods.finetune.lr": {"low": 1e-5, "high": "big"}}),
    Case("peft-alpha-word", "methods.peft.lora_alpha: peft's LoraConfig takes int",
         {"methods.peft": {"lr": 1e-3, "type": "LORA", "lora_alpha": "sixteen"}}),
    Case("peft-r-quoted", "methods.peft.r: must be an integer >= 1", {"methods.peft": {"lr": 1e-3, "r": "8"}}),
    Case("peft-r-float", "methods.peft.r: must be an integer >= 1", {"methods.peft": {"lr": 1e-3, "r": 8.5}}),
    # --- text or numbers where a boolean belongs
    Case("save-model-yes-text", "training.save_model: must be true or false, got 'yes'", {"training.save_model": "yes"}),
    Case("save-model-one", "training.save_model: must be true or false, got 1", {"training.save_model": 1}),
    Case("range-log-one", "log must be true or false", {**RANDOM, "methods.finetune.lr": RNG | {"log": 1}}),
    Case("adapter-norm-text", "methods.adapter.train_layer_norm: must be true or false",
         {"methods.adapter": {"lr": 1e-3, "train_layer_norm": "false"}}),
    Case("peft-use-dora-text", "methods.peft.use_dora: peft's LoraConfig takes bool",
         {"methods.peft": {"lr": 1e-3, "use_dora": "true"}}),
    # --- 2. nesting
    Case("deep-flow-list", "nested more than 32 levels deep", text=_with(NESTED)),
    Case("deep-block-map", "nested more than 32 levels deep", text=_with(_deep_block(40))),
    Case("very-deep-flow", "nested more than 32 levels deep", text=_with("a: " + "[" * 20000 + "]" * 20000 + "\n")),
    Case("deep-under-methods", "nested more than 32 levels deep",
         text=lambda raw: _yaml(raw).replace(b"    rank:\n    - 8\n", ("    rank: " + "[" * 35 + "8" + "]" * 35 + "\n").encode())),
    Case("self-referencing-alias", "nested more than 32 levels deep", text=_with("loop: &l [*l]\n")),
    # --- 3. YAML tags and dates
    Case("binary-name", "a spec value is text, a number, a boolean, null, a list or a mapping",
         text=_replace("name: edge", "name: !!binary ZWRnZQ==")),
    Case("binary-uri", "got bytes (!!binary)", {"tracking": DELETE}, text=_with("tracking: {uri: !!binary c3FsaXRlOi8vL3guZGI=}\n")),
    Case("set-tasks", "got a set (!!set)", {"tasks": DELETE}, text=_with("tasks: !!set {rte}\n")),
    Case("timestamp-name", "got a date or time", text=_replace("name: edge", "name: !!timestamp 2024-01-01")),
    Case("date-name", "got a date or time '2024-01-01'", text=_replace("name: edge", "name: 2024-01-01")),
    Case("datetime-lr", "got a date or time", text=_replace("- 1.0e-05", "- 2001-12-14t21:59:43.10-05:00")),
    Case("omap-training", "got an ordered map (!!omap)", {"training": DELETE},
         text=_with("training: !!omap [{max_epochs: 1}, {patience: 1}]\n")),
    Case("pairs-seeds", "got pairs (!!pairs)", {"seeds": DELETE}, text=_with("seeds: !!pairs [{a: 1}]\n")),
    Case("custom-tag", "not valid YAML", text=_replace("name: edge", "name: !mytag edge")),
    Case("str-tag-rank", "methods.lora.rank: must be a whole number, not text", text=_replace("    - 8\n", "    - !!str 8\n")),
    Case("integer-key", "a key must be text (quote it), got 1 (int)", text=_with("1: one\n")),
    Case("null-key", "a key must be text", text=_with("~: nothing\n")),
    Case("boolean-key", "a key must be text (quote it), got True", text=_with("on: 1\n")),
    Case("float-key-in-training", "a key must be text", text=_replace("  patience: 1\n", "  patience: 1\n  1.5: x\n")),
    Case("merge-of-a-list", "not valid YAML", text=_with("extra: {<<: [1, 2]}\n")),
    # --- 5. ${...} interpolation
    Case("env-unclosed", "tracking.uri: ${ starts an environment variable and no } closes it", {"tracking.uri": "sqlite:///${HOME"}),
    Case("env-empty", "tracking.uri: ${} names no variable", {"tracking.uri": "sqlite:///${}.db"}),
    Case("env-bad-name", "name: ${1ABC} is not a variable name", {"name": "${1ABC}"}),
    Case("env-default-syntax", "is not a variable name", {"tracking.uri": "${MLFLOW_URI:-sqlite:///x.db}"}),
    Case("env-unset-in-list", "tasks[0]: ${PEFTSEARCH_UNSET_TASK} is not set", {"tasks": ["${PEFTSEARCH_UNSET_TASK}"]}),
    Case("env-unset-backbone", "backbone: ${PEFTSEARCH_UNSET_MODEL} is not set", {"backbone": "${PEFTSEARCH_UNSET_MODEL}/x"}),
    Case("env-unclosed-data-dir", "data.dir: ${ starts an environment variable", {"data.dir": "${DATA"}),
    Case("env-spaced-name", "is not a variable name", {"data.dir": "${ HOME }"}),
    # --- 6. the backbone's config.json
    Case("config-not-utf8", "backbone: config.json is not readable JSON (it must be UTF-8", _model("latin1-config")),
    Case("config-utf16", "backbone: config.json is not readable JSON (it must be UTF-8", _model("utf16-config")),
    Case("config-utf8-bom", "backbone: config.json is not readable JSON", _model("bom-config")),
    Case("config-a-list", "backbone: config.json must hold a JSON object, got list", _model("list-config")),
    Case("config-a-string", "backbone: config.json must hold a JSON object, got str", _model("string-config")),
    Case("config-no-model-type", "backbone: config.json names no model_type", _model("typeless-config")),
    Case("config-model-type-list", "backbone: config.json model_type must be text", _model("listtype-config")),
    Case("config-model-type-unknown", "backbone: unsupported model_type", _model("unknown-type")),
    Case("config-hidden-size-text", "backbone: config.json's hidden_size must be a whole number >= 1, got '32'",
         _model("textsize-config")),
    Case("config-positions-negative", "backbone: config.json's max_position_embeddings must be a whole number",
         _model("negative-positions")),
    Case("config-vocab-nan", "backbone: config.json's vocab_size must be a whole number", _model("nan-vocab")),
    Case("config-is-a-directory", "backbone: a model directory must hold config.json", _model("config-dir")),
    Case("config-empty-file", "backbone: config.json is not readable JSON", _model("empty-config")),
    Case("config-deep-json", "backbone: config.json is not readable JSON", _model("deep-config")),
    # --- 7. positions: max_length plus the method's prompt or prefix within the backbone's limit
    Case("prompt-tuning-over-positions", "must fit the backbone's 256 positions, got 328",
         {**_model("bert"), "methods": {"prompt_tuning": {"lr": 0.3, "prompt_length": 200}}}),
    Case("p-tuning-over-positions", "methods.p_tuning: not applicable", {**_model("bert"), "methods": {
        "p_tuning": {"lr": 1e-3, "prompt_length": 129}}}),
    Case("ept-star-over-positions", "must fit the backbone's 256 positions, got 257",
         {**_model("bert"), "methods": {"ept_star": {"lr": 1e-2, "prompt_length": 129}}}),
    Case("resprompt-over-positions", "methods.resprompt", {**_model("bert"), "methods": {
        "resprompt": {"lr": 1e-2, "prompt_length": 200}}}),
    Case("dept-over-positions", "methods.dept: not applicable", {**_model("bert"), "methods": {
        "dept": {"lr": 0.3, "prompt_length": 150, "budget_length": 200}}}),
    Case("max-length-over-positions", "must fit the backbone's 256 positions, got 512",
         {**_model("bert"), "training.max_length": 512}),
    Case("gpt2-prefix-over-positions", "must fit the backbone's 160 positions, got 168",
         {**_model("gpt2"), "methods": {"prefix_tuning": {"lr": 1e-2, "prefix_length": 40}}}),
    Case("roberta-offset-positions", "must fit the backbone's 128 positions, got 129",
         {**_model("roberta"), "methods": {"prompt_tuning": {"lr": 0.3, "prompt_length": 1}}}),
    Case("prompt-range-end-over-positions", "must fit the backbone's 256 positions",
         {**_model("bert"), **RANDOM, "methods": {"prompt_tuning": {"lr": [0.3], "prompt_length": {"low": 8, "high": 300}}}}),
    # --- 8. ranks above the width or the vocabulary
    Case("lora-rank-over-width", "methods.lora: not applicable to backbone", {**_model("bert"), "methods.lora.rank": [64]}),
    Case("lora-rank-over-width-named", "the backbone's width d=32 (B·A of a d-wide projection has rank at most d), got 33",
         {**_model("bert"), "methods.lora.rank": [8, 33]}),
    Case("dept-rank-over-width", "rank: must be <= the backbone's width d=32",
         {**_model("bert"), "methods": {"dept": {"lr": 0.3, "rank": 40}}}),
    Case("adalora-rank-over-width", "init_r: must be <= the backbone's width d=32",
         {**_model("bert"), "methods": {"peft": {"lr": 1e-3, "type": "ADALORA", "init_r": 48, "target_r": 8,
                                                 "total_step": 100}}}),
    Case("peft-lora-r-over-width", "r: must be <= the backbone's width d=32",
         {**_model("gpt2"), "methods": {"peft": {"lr": 1e-3, "type": "LORA", "r": 64}}}),
    Case("aot-fc-rank-over-vocab", "rank: must be <= the vocabulary size 1000",
         {**_model("bert"), "methods": {"aot_fc": {"lr": 1e-3, "rank": 1001}}}),
    Case("aot-kron-rank-over-vocab", "rank: must be <= the vocabulary size 1000",
         {**_model("bert"), "methods": {"aot_kron": {"lr": 1e-3, "rank": 2000}}}),
    Case("lora-rank-range-over-width", "rank: must be <= the backbone's width",
         {**_model("bert"), **RANDOM, "methods": {"lora": {"lr": [1e-4], "rank": {"low": 4, "high": 64}}}}),
    # --- wrong types, section by section
    Case("name-a-number", "name: Input should be a valid string", {"name": 42}),
    Case("name-a-list", "name: Input should be a valid string", {"name": ["edge"]}),
    Case("name-too-long", "name: String should have at most 100 characters", {"name": "n" * 101}),
    Case("name-trailing-newline", "name: String should match pattern", {"name": "edge\n"}),
    Case("name-unicode", "name: String should match pattern", {"name": "édge"}),
    Case("name-null", "name: Input should be a valid string", {"name": None}),
    Case("backbone-a-number", "backbone: Input should be a valid string", {"backbone": 7}),
    Case("backbone-a-mapping", "backbone: Input should be a valid string", {"backbone": {"id": "org/model"}}),
    Case("backbone-null", "backbone: Input should be a valid string", {"backbone": None}),
    Case("backbone-missing", "backbone: Field required", {"backbone": DELETE}),
    Case("tasks-null", "tasks: Input should be a valid list", {"tasks": None}),
    Case("tasks-a-number", "tasks.0: Input should be a valid string", {"tasks": [1]}),
    Case("tasks-a-mapping", "tasks: Input should be a valid list", {"tasks": {"rte": 1}}),
    Case("tasks-missing", "tasks: Field required", {"tasks": DELETE}),
    Case("methods-a-list", "methods: Input should be a valid dictionary", {"methods": ["finetune"]}),
    Case("methods-null", "methods: Input should be a valid dictionary", {"methods": None}),
    Case("methods-missing", "methods: Field required", {"methods": DELETE}),
    Case("method-grid-a-number", "methods.finetune: must map hyperparameter names", {"methods.finetune": 3}),
    Case("method-paper-typo", "methods.finetune: must map hyperparameter names", {"methods.finetune": "papers"}),
    Case("seeds-null", "seeds: Input should be a valid list", {"seeds": None}),
    Case("seeds-a-mapping", "seeds: Input should be a valid list", {"seeds": {"a": 1}}),
    Case("seeds-fraction", "seeds.0: Input should be a valid integer", {"seeds": [1.5]}),
    Case("seeds-empty", "seeds: List should have at least 1 item", {"seeds": []}),
    Case("training-a-list", "training: Input should be a dictionary", {"training": [1]}),
    Case("training-null", "training: Input should be a dictionary", {"training": None}),
    Case("data-a-string", "data: Input should be a dictionary", {"data": "local"}),
    Case("data-source-typo", "data.source: Input should be 'hub' or 'local'", {"data.source": "locl"}),
    Case("data-protocol-typo", "data.protocol: Input should be 'dev' or 'heldout'", {"data.protocol": "test"}),
    Case("search-a-string", "search: Input should be a valid dictionary", {"search": "grid"}),
    Case("scheduler-a-string", "search.scheduler: Input should be a valid dictionary", {"search.scheduler": "asha"}),
    Case("resources-a-number", "resources: Input should be a valid dictionary", {"resources": 1}),
    Case("tracking-a-string", "tracking: Input should be a valid dictionary", {"tracking": "sqlite:///x.db"}),
    Case("tracking-uri-null", "tracking.uri: Input should be a valid string", {"tracking.uri": None}),
    Case("tracking-uri-number", "tracking.uri: Input should be a valid string", {"tracking.uri": 5000}),
    Case("task-format-typo", "task_format: Input should be 'auto', 'head' or 'lm'", {"task_format": "text"}),
    Case("schedule-typo", "training.schedule: Input should be 'constant' or 'linear'", {"training.schedule": "cosine"}),
    Case("betas-one-number", "training.betas", {"training.betas": 0.9}),
    Case("betas-three", "training.betas", {"training.betas": [0.9, 0.99, 0.999]}),
    Case("prompt-init-typo", "methods.prompt_tuning.init: Input should be 'vocab' or 'uniform'",
         {"methods.prompt_tuning": {"lr": 0.3, "init": "random"}}),
    Case("aot-activation-typo", "methods.aot_fc.activation", {"methods.aot_fc": {"lr": 1e-3, "activation": "swish"}}),
    Case("peft-type-number", "methods.peft.type: unknown peft tuner", {"methods.peft": {"lr": 1e-3, "type": 3}}),
    Case("peft-target-modules-number", "methods.peft.target_modules: peft's LoraConfig takes",
         {"methods.peft": {"lr": 1e-3, "target_modules": [5]}}),
    Case("peft-bias-literal", "methods.peft.bias: peft's LoraConfig takes", {"methods.peft": {"lr": 1e-3, "bias": "some"}}),
    # --- boundaries: 0, negative, huge, 2^32, 2^63, 1e308, -0.0, subnormal
    Case("seed-2-to-32", "seeds.0: Input should be less than or equal to 4294967295", {"seeds": [2**32]}),
    Case("seed-2-to-63", "seeds.0: Input should be less than or equal to", {"seeds": [2**63]}),
    Case("seed-2-to-64-float", "seeds.0:", {"seeds": [1.8446744073709552e19]}),
    Case("sampler-seed-2-to-32", "search.sampler_seed: Input should be less than or equal to", {"search.sampler_seed": 2**32}),
    Case("batch-size-zero", "training.batch_size: must be >= 1, got 0", {"training.batch_size": 0}),
    Case("batch-size-2-to-63", "training.batch_size: must be <= 65,536", {"training.batch_size": 2**63}),
    Case("batch-size-1e308", "training.batch_size:", {"training.batch_size": 1e308}),
    Case("eval-batch-negative", "training.eval_batch_size: must be >= 1", {"training.eval_batch_size": -1}),
    Case("max-length-7", "training.max_length: must be >= 8, got 7", {"training.max_length": 7}),
    Case("max-epochs-huge", "training.max_epochs: must be <= 1,000,000", {"training.max_epochs": 10**7}),
    Case("eval-every-negative", "training.eval_every: must be >= 0", {"training.eval_every": -5}),
    Case("max-train-examples-zero", "training.max_train_examples: must be >= 1 or null", {"training.max_train_examples": 0}),
    Case("warmup-one", "training.warmup_ratio: must be in [0, 1)", {"training.warmup_ratio": 1.0}),
    Case("warmup-negative", "training.warmup_ratio: must be in [0, 1)", {"training.warmup_ratio": -0.01}),
    Case("adam-eps-zero", "training.adam_eps: must be in (0, 1)", {"training.adam_eps": 0.0}),
    Case("adam-eps-negative-zero", "training.adam_eps: must be in (0, 1)", {"training.adam_eps": -0.0}),
    Case("betas-one", "training.betas: must be two numbers in [0, 1)", {"training.betas": [0.9, 1.0]}),
    Case("lr-negative-zero", "methods.finetune.lr: must be > 0", {"methods.finetune.lr": [-0.0]}),
    Case("lr-1e308", "methods.finetune.lr: must be <= 1,048,576", {"methods.finetune.lr": [1e308]}),
    Case("lr-overflow-literal", "methods.finetune.lr: must be a finite number", text=_replace("- 1.0e-05", "- 1e400")),
    Case("weight-decay-negative", "methods.finetune.weight_decay: must be >= 0", {"methods.finetune.weight_decay": -1e-3}),
    Case("lora-rank-2-to-63", "methods.lora.rank: must be <= 1,048,576", {"methods.lora.rank": [2**63]}),
    Case("lora-dropout-one", "methods.lora.dropout: must be in [0, 1)", {"methods.lora.dropout": 1}),
    Case("lora-alpha-zero", "methods.lora.alpha: must be > 0", {"methods.lora.alpha": 0}),
    Case("cpu-negative", "resources.cpu: Input should be greater than 0", {"resources.cpu": -1}),
    Case("cpu-subnormal", "resources.cpu: must be 0 or at least 0.0001", {"resources.cpu": 5e-324}),
    Case("gpu-negative", "resources.gpu: Input should be greater than or equal to 0", {"resources.gpu": -0.5}),
    Case("gpu-below-ray-unit", "resources.gpu: must be 0 or at least 0.0001", {"resources.gpu": 1e-5}),
    Case("gpu-huge", "resources.gpu: must be <= 64", {"resources.gpu": 1e6}),
    Case("cpu-quoted-inf", "resources.cpu: must be a finite number", {"resources.cpu": "inf"}),
    Case("max-concurrent-zero", "search.max_concurrent: Input should be greater than or equal to 1", {"search.max_concurrent": 0}),
    Case("max-failures-huge", "search.max_failures: must be <= 1,000", {"search.max_failures": 10**6}),
    # --- empty lists and maps, repeats
    Case("grid-empty-rank", "methods.lora.rank: the grid is empty", {"methods.lora.rank": []}),
    Case("method-empty-map", "methods.lora.lr: is required", {"methods.lora": {}}),
    Case("method-null", "methods.lora.lr: is required", {"methods.lora": None}),
    Case("grid-repeated-value", "methods.finetune.lr: must not repeat values, got 1e-05 twice",
         {"methods.finetune.lr": [1e-5, 3e-5, 1e-5]}),
    Case("grid-repeated-int-float", "methods.lora.rank: must not repeat values", {"methods.lora.rank": [8, 8.0]}),
    Case("choices-repeated", "methods.lora.rank: must not repeat values",
         {**RANDOM, "methods.finetune.lr": RNG, "methods.lora.rank": [4, 4]}),
    Case("tasks-repeated-three", "tasks: must not repeat values", {"tasks": ["rte", "cb", "rte"]}),
    # --- unknown keys at every level
    Case("unknown-data-key", "data.dirs: unknown key 'dirs'; did you mean 'dir'?", {"data.dirs": "/x"}),
    Case("unknown-search-key", "search.algo: unknown key 'algo'", {"search.algo": "grid"}),
    Case("unknown-scheduler-key", "search.scheduler.grace: unknown key 'grace'", {"search.scheduler.grace": 1}),
    Case("unknown-resources-key", "resources.gpus: unknown key 'gpus'; did you mean 'gpu'?", {"resources.gpus": 1}),
    Case("unknown-tracking-key", "tracking.url: unknown key 'url'; did you mean 'uri'?", {"tracking.url": "x"}),
    Case("unknown-range-key", "methods.finetune.lr: a range is {low, high, log}; unknown key 'step'",
         {**RANDOM, "methods.finetune.lr": RNG | {"step": 1}}),
    Case("unknown-peft-key", "methods.peft: unknown hyperparameter 'rank'", {"methods.peft": {"lr": 1e-3, "rank": 8}}),
    Case("unknown-dept-key", "methods.dept: unknown hyperparameter 'lr3'", {"methods.dept": {"lr": 0.3, "lr3": 1e-4}}),
    # --- paths
    Case("backbone-empty", "backbone: must be a path, got ''", {"backbone": ""}),
    Case("backbone-a-file", "backbone: must be an existing model directory", {"backbone": "{fixtures}/notes.txt"}),
    Case("backbone-unicode-id", "backbone: must be an existing model directory or a Hugging Face id", {"backbone": "モデル/base"}),
    Case("backbone-double-dash-id", "backbone: must be an existing model directory or a Hugging Face id", {"backbone": "org/a--b"}),
    Case("backbone-id-too-long", "backbone: must be an existing model directory or a Hugging Face id", {"backbone": "org/" + "m" * 97}),
    Case("backbone-three-parts", "backbone: must be an existing model directory", {"backbone": "a/b/c"}),
    Case("backbone-path-too-long", "backbone: the path is longer than the system's limit of 4096 bytes",
         {"backbone": "/tmp/" + "/".join(["d" * 200] * 25)}),
    Case("backbone-nul", "backbone: a path must not hold NUL characters", {"backbone": "/tmp/a\x00b"}),
    Case("backbone-nouser", "backbone: ~nouser4242x names no user", {"backbone": "~nouser4242x"}),
    Case("data-dir-a-file", "data.dir: must be a directory, got a file", {"data.dir": "{fixtures}/notes.txt"}),
    Case("data-dir-empty", "data.dir: is required when source is local", {"data.dir": ""}),
    Case("data-dir-null", "data.dir: is required when source is local", {"data.dir": None}),
    Case("data-dir-a-number", "data.dir: Input should be a valid string", {"data.dir": 3}),
    Case("data-dir-nouser", "data.dir: ~nouser4242x names no user", {"data.dir": "~nouser4242x"}),
    Case("data-dir-unicode-missing", "data.dir: directory does not exist", {"data.dir": "/tmp/данные-нет-такой"}),
    Case("data-dir-component-too-long", "data.dir: a path component is longer", {"data.dir": f"/tmp/{LONG}/{LONG}"}),
    # --- tracking URIs
    Case("tracking-empty", "tracking.uri: must be a database or server URI", {"tracking.uri": ""}),
    Case("tracking-no-scheme", "tracking.uri: must be a database or server URI", {"tracking.uri": "mlflow.db"}),
    Case("tracking-databricks", "tracking.uri: unsupported scheme 'databricks'", {"tracking.uri": "databricks://profile"}),
    Case("tracking-port-zero", "tracking.uri: the port must be a number in 1-65535", {"tracking.uri": "http://127.0.0.1:0"}),
    Case("tracking-port-65536", "tracking.uri: the port must be a number in 1-65535", {"tracking.uri": "http://127.0.0.1:65536"}),
    Case("tracking-db-port-zero", "tracking.uri: the port must be a number in 1-65535",
         {"tracking.uri": f"postgresql://u:{PASSWORD}@127.0.0.1:0/db"}),
    Case("tracking-db-port-word", "tracking.uri: the port must be a number in 1-65535",
         {"tracking.uri": "mysql://u@127.0.0.1:port/db"}),
    Case("tracking-https-no-host", "tracking.uri: names no host", {"tracking.uri": "https://"}),
    Case("tracking-bad-ipv6", "tracking.uri: is not a valid URL", {"tracking.uri": "http://[::1:5000"}),
    Case("tracking-control-char", "tracking.uri: must not contain spaces or control characters", {"tracking.uri": "sqlite:///a\x07.db"}),
    Case("tracking-sqlite-two-slashes", "tracking.uri: an in-memory SQLite database", {"tracking.uri": "sqlite://"}),
    Case("tracking-sqlite-root", "tracking.uri: names a directory", {"tracking.uri": "sqlite:////"}),
    Case("tracking-sqlite-parent-a-file", "tracking.uri: the database's directory does not exist",
         {"tracking.uri": "sqlite:///{fixtures}/notes.txt/m.db"}),
    Case("tracking-sqlite-nul", "tracking.uri: must not contain spaces or control characters", {"tracking.uri": "sqlite:///a\x00.db"}),
    # --- 4. passwords with URL-encoded (or raw) special characters: masked in the line
    Case("password-raw-at", "tracking.uri: an '@' in the user or password must be URL-encoded as %40",
         {"tracking.uri": f"postgresql://u:{PASSWORD}@x@127.0.0.1:9/db"}),
    Case("password-raw-space", "tracking.uri: must not contain spaces",
         {"tracking.uri": f"postgresql://u:{PASSWORD} x@127.0.0.1:9/db"}),
    Case("password-raw-quote-unreachable", "tracking.uri: cannot reach the MLflow server",
         {"tracking.uri": f"http://u:{PASSWORD}'q@127.0.0.1:9"}),
    Case("password-encoded-specials", "tracking.uri: cannot connect to the database",
         {"tracking.uri": f"postgresql+psycopg2://u:{PASSWORD}%20%27%22%40%3A%25@127.0.0.1:9/db"}),
    Case("password-raw-slash", "tracking.uri: the port must be a number in 1-65535",
         {"tracking.uri": f"http://u:{PASSWORD}/x@127.0.0.1:9"}),
    Case("password-in-query", "tracking.uri: cannot connect to the database",
         {"tracking.uri": f"postgresql+psycopg2://u@127.0.0.1:9/db?password={PASSWORD}"}),
    Case("password-env-unset-beside", "tracking.uri: ${PEFTSEARCH_UNSET_DB} is not set",
         {"tracking.uri": f"postgresql://u:{PASSWORD}@127.0.0.1:9/${{PEFTSEARCH_UNSET_DB}}"}),
    # --- search
    Case("num-samples-negative", "search.num_samples: Input should be greater than or equal to 1",
         {"search": {"algorithm": "random", "num_samples": -3}, "methods.finetune.lr": RNG}),
    Case("num-samples-huge", "trials: at most 100,000", {"search": {"algorithm": "optuna", "num_samples": 2**40},
                                                         "methods.finetune.lr": RNG}),
    Case("num-samples-fraction", "search.num_samples: Input should be a valid integer",
         {"search": {"algorithm": "random", "num_samples": 2.5}, "methods.finetune.lr": RNG}),
    Case("range-equal-ends", "low must be < high", {**RANDOM, "methods.finetune.lr": {"low": 1e-3, "high": 1e-3}}),
    Case("range-log-negative", "a log range needs low > 0", {**RANDOM, "methods.finetune.lr": {"low": -1e-3, "high": 1e-3, "log": True}}),
    Case("range-log-zero-int", "a log range needs low > 0",
         {**RANDOM, "methods.finetune.lr": RNG, "methods.lora.rank": {"low": 0, "high": 8, "log": True}}),
    Case("range-missing-high", "high: Field required", {**RANDOM, "methods.finetune.lr": {"low": 1e-5}}),
    Case("range-empty-map", "low: Field required", {**RANDOM, "methods.finetune.lr": {}}),
    Case("range-float-ends-int-param", "methods.lora.rank: a range with a float end samples fractions",
         {**RANDOM, "methods.finetune.lr": RNG, "methods.lora.rank": {"low": 2.0, "high": 9.0}}),
    Case("range-fraction-end-int-param", "methods.lora.rank: Input should be a valid integer",
         {**RANDOM, "methods.finetune.lr": RNG, "methods.lora.rank": {"low": 2, "high": 9.5}}),
    Case("range-on-grid-rank", "a range needs search.algorithm random or optuna", {"methods.lora.rank": {"low": 2, "high": 8}}),
    Case("choices-empty", "methods.finetune.lr: the grid is empty", {**RANDOM, "methods.finetune.lr": []}),
    Case("num-samples-on-grid", "search.num_samples: only random and optuna sample", {"search.num_samples": 3}),
    Case("scheduler-grace-zero", "search.scheduler.grace_period: Input should be greater than or equal to 1",
         {"search.scheduler": {"name": "asha", "grace_period": 0}}),
    Case("scheduler-reduction-inf", "search.scheduler.reduction_factor: must be a finite number",
         {"search.scheduler": {"name": "asha", "reduction_factor": float("inf")}}),
    Case("scheduler-median-zero", "search.scheduler.min_samples_required: Input should be greater than or equal to 1",
         {"search.scheduler": {"name": "median", "min_samples_required": 0}}),
    # --- methods x backbone applicability
    Case("bitfit-on-llama", "methods.bitfit: not applicable to backbone", {**_model("llama"), "methods": {"bitfit": {"lr": 1e-3}}}),
    Case("task-format-lm-on-encoder", "task_format: 'lm' does not apply to encoder backbones",
         {**_model("bert"), "task_format": "lm"}),
    Case("dept-rows-over-max-length", "max_positions: must be <= training.max_length",
         {**_model("bert"), "methods": {"dept": {"lr": 0.3, "max_positions": 200}}}),
    Case("aot-kron-no-vocab-size", "config.json must give vocab_size",
         {**_model("novocab"), "methods": {"aot_kron": {"lr": 1e-3}}}),
    # --- the file itself
    Case("spec-too-big", "a spec is at most 1,048,576 bytes", text=lambda raw: _yaml(raw) + b"# " + b"x" * 2**20 + b"\n"),
    Case("utf16-without-bom", "must not hold NUL bytes", text=lambda raw: _yaml(raw).decode().encode("utf-16-le")),
    Case("utf16-bom-not-utf16", "the byte-order mark says UTF-16", text=lambda raw: b"\xff\xfe\x00\xd8a\x00"),
    Case("two-documents", "not valid YAML", text=lambda raw: _yaml(raw) + b"---\nname: other\n"),
    Case("a-scalar-file", "must be a YAML mapping", text=lambda raw: b"just text\n"),
    Case("only-a-comment", "must be a YAML mapping", text=lambda raw: b"# nothing here\n"),
    Case("bell-character", "must not hold control characters", text=_replace("name: edge", "name: ed\x07ge")),
    Case("lone-surrogate-escape", "name: Input should be a valid string", text=_replace("name: edge", 'name: "\\ud800"')),
    Case("lone-surrogate-key", "Input should be a valid string", text=_with('"x\\ud800": 1\n')),
    Case("lone-surrogate-task", "tasks[0]: unknown task", text=_replace("- rte", '- "rte\\udfff"')),
]

# Inputs that must stay accepted (validate exit 0; `run` gets past the edge).
VALID = [
    Case("utf8-bom", "", text=lambda raw: b"\xef\xbb\xbf" + _yaml(raw)),
    Case("crlf-line-endings", "", text=lambda raw: _yaml(raw).replace(b"\n", b"\r\n")),
    Case("cr-line-endings", "", text=lambda raw: _yaml(raw).replace(b"\n", b"\r")),
    Case("utf16-le-bom", "", text=lambda raw: "\ufeff".encode("utf-16-le") + _yaml(raw).decode().encode("utf-16-le")),
    Case("utf16-be-bom-crlf", "", text=lambda raw: "\ufeff".encode("utf-16-be")
         + _yaml(raw).decode().replace("\n", "\r\n").encode("utf-16-be")),
    Case("utf32-bom", "", text=lambda raw: _yaml(raw).decode().encode("utf-32")),
    Case("no-final-newline", "", text=lambda raw: _yaml(raw).rstrip(b"\n")),
    Case("trailing-spaces-and-comments", "", text=lambda raw: _yaml(raw).replace(b"\n", "  # é 注释\t\n".encode())),
    Case("document-markers", "", text=lambda raw: b"%YAML 1.1\n---\n" + _yaml(raw) + b"...\n"),
    Case("merge-key", "", text=_replace("training:\n  max_epochs: 1\n", "training:\n  <<: {max_epochs: 1}\n")),
    Case("yaml12-floats-unquoted", "", text=_replace("- 1.0e-05\n    - 3.0e-05", "- 1e-5\n    - .5e-4")),
    Case("yaml12-float-text-lr", "", {"methods.finetune.lr": ["3e-2", "1e-3", "0.001", "8"]}),
    Case("yaml12-float-text-range", "", {**RANDOM, "methods.finetune.lr": {"low": "1e-5", "high": "1e-3", "log": True}}),
    Case("decimal-text-warmup", "", {"training.warmup_ratio": "0.06", "training.adam_eps": "1e-6"}),
    Case("yes-is-true", "", text=_replace("  patience: 1\n", "  patience: 1\n  save_model: yes\n")),
    Case("seed-bounds", "", {"seeds": [0, 2**32 - 1]}),
    Case("subnormal-lr", "", {"methods.finetune.lr": [5e-324]}),
    Case("lr-at-cap", "", {"methods.finetune.lr": [2.0**20]}),
    Case("integral-float-batch", "", {"training.batch_size": 16.0}),
    Case("gpu-fraction", "", {"resources": {"cpu": 0.5, "gpu": 0.0001}}),
    Case("env-interpolated", "", {"name": "${PEFTSEARCH_TEST_NAME}", "tracking.uri": "sqlite:///${PEFTSEARCH_TEST_NAME}.db"}),
    Case("sqlite-dot-slash-upper", "", {"tracking.uri": "SQLITE:///./mlflow.db?timeout=5"}),
    Case("deberta-relative-positions", "", {**_model("deberta"), "training.max_length": 128,
                                            "methods": {"prompt_tuning": {"lr": 0.3, "prompt_length": 20}}}),
    Case("roberta-exactly-fits", "", {**_model("roberta"), "methods": {"finetune": {"lr": 1e-5}}}),
    Case("gpt2-prefix-fits", "", {**_model("gpt2"), "methods": {"prefix_tuning": {"lr": 1e-2, "prefix_length": 32}}}),
    Case("lora-rank-equals-width", "", {**_model("bert"), "methods.lora.rank": [32]}),
    Case("random-int-and-log-ranges", "", {**RANDOM, "methods": {"finetune": {"lr": {"low": 1e-5, "high": 1e-3, "log": True}},
                                                                 "lora": {"lr": [1e-4], "rank": {"low": 2, "high": 16, "log": True}}}}),
    Case("optuna-with-asha", "", {"search": {"algorithm": "optuna", "num_samples": 3, "scheduler": {"name": "asha"}},
                                  "methods.finetune.lr": RNG}),
    Case("peft-decimal-dropout", "", {"methods.peft": {"lr": 1e-3, "type": "LORA", "r": 4, "lora_dropout": "0.05"}}),
]

RUN_TOO = {"lr-fast", "rank-quoted-8", "seed-quoted", "deep-flow-list", "self-referencing-alias", "binary-name",
           "date-name", "env-unclosed", "env-empty", "config-not-utf8", "config-no-model-type",
           "prompt-tuning-over-positions", "lora-rank-over-width", "aot-fc-rank-over-vocab", "name-a-number",
           "seed-2-to-63", "cpu-subnormal", "grid-repeated-value", "unknown-range-key", "data-dir-a-file",
           "tracking-db-port-zero", "password-raw-at", "password-raw-space", "password-encoded-specials",
           "password-raw-slash", "password-in-query", "range-float-ends-int-param", "utf16-bom-not-utf16",
           "peft-alpha-word", "integer-key"}


def _write(root: Path, name: str, config: dict | None = None, raw: bytes | None = None, weights: bool = True) -> None:
    d = root / name
    d.mkdir()
    (d / "config.json").write_bytes(raw if raw is not None else json.dumps(config).encode())
    if weights:
        (d / "model.safetensors").write_bytes(b"")  # validation never reads the weights


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("heldout")
    (root / "notes.txt").write_text("this is not a database\n")
    for name, config in [("bert", BERT), ("gpt2", GPT2), ("roberta", ROBERTA), ("deberta", DEBERTA),
                         ("llama", {"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 2,
                                    "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 1000,
                                    "max_position_embeddings": 512}),
                         ("unknown-type", {"model_type": "frobnicator"}),
                         ("novocab", {k: v for k, v in BERT.items() if k != "vocab_size"}),
                         ("textsize-config", BERT | {"hidden_size": "32"}),
                         ("negative-positions", BERT | {"max_position_embeddings": -1}),
                         ("listtype-config", {"model_type": ["bert"]}), ("typeless-config", {"hidden_size": 32}),
                         ("list-config", [BERT]), ("string-config", "bert")]:
        _write(root, name, config)
    _write(root, "nan-vocab", raw=b'{"model_type": "bert", "vocab_size": NaN}')
    _write(root, "latin1-config", raw='{"model_type": "bert", "name": "caf\u00e9"}'.encode("latin-1"))
    _write(root, "utf16-config", raw=json.dumps(BERT).encode("utf-16"))
    _write(root, "bom-config", raw=b"\xef\xbb\xbf" + json.dumps(BERT).encode())
    _write(root, "empty-config", raw=b"")
    _write(root, "deep-config", raw=b"[" * 100_000 + b"]" * 100_000)
    (root / "config-dir").mkdir()
    (root / "config-dir" / "config.json").mkdir()
    return root


def _case_file(tmp_path: Path, case: Case, base: dict, fixtures: Path) -> None:
    (tmp_path / "spec.yaml").write_bytes(spec_bytes(case, base, fixtures))


@pytest.mark.parametrize("case", HELDOUT, ids=lambda c: c.id)
def test_heldout_case_is_refused_in_one_line(case, tmp_path, data_dir, fixtures, base_spec):
    _case_file(tmp_path, case, base_spec(data_dir), fixtures)
    for command in ("validate", "run") if case.id in RUN_TOO else ("validate",):
        line = refused([command, "spec.yaml"], tmp_path, case.expected)
        assert PASSWORD not in line, line
        assert "Traceback" not in line


@pytest.fixture
def recorded_runs(monkeypatch):
    """`run_search` replaced by a recorder: these cases check that `run` gets past the edge and
    starts the search; starting Ray for each would take minutes (test_edge_fuzz.py does the same)."""
    import search.runner

    from tests.search.test_edge_fuzz import _Outcome

    started = []
    monkeypatch.setattr(search.runner, "run_search", lambda spec, **kw: started.append(spec) or _Outcome())
    return started


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize("case", VALID, ids=lambda c: c.id)
def test_valid_input_is_accepted_and_started(case, tmp_path, data_dir, fixtures, base_spec, monkeypatch, recorded_runs):
    monkeypatch.setenv("PEFTSEARCH_TEST_NAME", "edge-env")
    _case_file(tmp_path, case, base_spec(data_dir), fixtures)
    head = socket.create_server(("127.0.0.1", 0))  # a cluster's head: run checks that --address answers
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        v = CliRunner().invoke(main, ["validate", "spec.yaml"])
        assert v.exit_code == 0, v.output
        # a trial that asks for a GPU this machine lacks is refused locally (test_local_ray.py): a cluster's
        # address stands in, as the run itself is recorded, not started
        gpu = (load_yaml(tmp_path / "spec.yaml").get("resources") or {}).get("gpu", 0)
        where = ["--address", f"127.0.0.1:{head.getsockname()[1]}"] if gpu and not _has_gpu() else []
        r = CliRunner().invoke(main, ["run", "spec.yaml", "--out", "out", *where])
    finally:
        head.close()
        os.chdir(old)
    assert r.exit_code == 0 and len(recorded_runs) == 1, r.output


def test_the_heldout_corpus_is_large_and_named_once():
    ids = [c.id for c in HELDOUT + VALID]
    assert len(HELDOUT) >= 150 and len(ids) == len(set(ids))
    from tests.search.test_edge import CORPUS

    assert not set(ids) & {c.id for c in CORPUS}


def test_a_password_with_special_characters_is_masked_everywhere_it_is_shown(tmp_path):
    """The masking rules themselves, over passwords holding URL-encoded and raw specials."""
    from search.uris import mask, redact, remember_secrets

    for password in ("p%20w%27%22%40%3A%25x", "p:w:x", "p'w", 'p"w', "p/w", "p%zz", "p\\w"):
        uri = f"postgresql://user:{password}@db.example:5432/mlflow"
        assert mask(uri) == "postgresql://user:***@db.example:5432/mlflow", (password, mask(uri))
        for line in (f"cannot connect to {uri!r}", f"got {uri}", f"({uri})"):
            assert password not in redact(line), (password, redact(line))
    remember_secrets("postgresql://user:Sp%20ecial%27Pw%40@h/db")
    assert redact("driver said: password \"Sp ecial'Pw@\" was refused") == "driver said: password \"***\" was refused"
    assert mask("postgresql://u@h/db?sslmode=require&password=Qw3rty") == "postgresql://u@h/db?sslmode=require&password=***"
    assert mask("sqlite:////a:b@c/x.db") == "sqlite:////a:b@c/x.db" and mask("http://h:5000") == "http://h:5000"


def test_a_search_json_nested_too_deep_is_one_line(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "search.json").write_text('{"spec": ' + "[" * 100_000 + "]" * 100_000 + ', "ctx": {}}')
    refused(["resume", "out"], tmp_path, "out: search.json is not a search's state")
    (tmp_path / "out" / "search.json").write_text(json.dumps({"spec": {"tracking": "x"}, "ctx": {}}))
    refused(["resume", "out"], tmp_path, "")


def test_the_readme_example_specs_still_validate(data_dir, tmp_path, base_spec):
    """Every YAML example of the README, as a whole spec or (the random/optuna one) merged into the
    base spec; a local backbone path (./models/t5-base) stands in as its hub id."""
    from search.spec import parse_spec

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = [b.split("```", 1)[0] for b in readme.split("```yaml\n")[1:]]
    specs = [yaml.safe_load(b) for b in blocks]
    assert len([s for s in specs if "methods" in s]) >= 4
    for raw in (s for s in specs if "methods" in s):
        raw = raw if "name" in raw else base_spec(data_dir) | raw
        if raw["backbone"].startswith("./"):
            raw["backbone"] = Path(raw["backbone"]).name
        raw |= {"data": {**raw.get("data", {}), "source": "local", "dir": str(data_dir)},
                "tracking": {"uri": f"sqlite:///{tmp_path / 'readme.db'}"}}
        assert parse_spec(raw).trial_count() >= 1
    assert not (tmp_path / "readme.db").exists()
