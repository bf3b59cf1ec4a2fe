"""Method × backbone applicability at the edge: `peftsearch validate` reads a local backbone's
config.json (trainers/families.py) and refuses, in one line naming the method and the backbone,
every pair that cannot apply or would train nothing, before anything runs. Real tiny T5, mT5,
Flan-T5, GPT-2, Llama, Qwen2 and Mistral directories, built from configs with tokenizers trained on
real RTE text."""
import pytest
import yaml
from click.testing import CliRunner

from search.cli import main
from trainers.testing import GENERATIVE, MORE_GENERATIVE, build_tiny_backbone, glue_texts

FAMILIES = GENERATIVE + MORE_GENERATIVE


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data_dir):
    root, texts = tmp_path_factory.mktemp("gen"), glue_texts(data_dir, limit=400)
    return {a: build_tiny_backbone(a, root / a, texts, vocab=400) for a in FAMILIES}


def validate(tmp_path, backbone, methods, **extra):
    spec = {"name": "backbones-test", "backbone": backbone, "tasks": ["rte"], "methods": methods,
            "tracking": {"uri": f"sqlite:///{tmp_path}/unused.db"}} | extra
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert not (tmp_path / "unused.db").exists()
    return r


REFUSED = [
    ("t5", "bitfit", "must have bias terms"),
    ("llama", "bitfit", "must have bias terms"),
    ("gpt2", "pasta", "must add special tokens"),
    ("mt5", "bitfit", "must have bias terms"),
    ("flan-t5", "bitfit", "must have bias terms"),
    ("mistral", "bitfit", "must have bias terms"),
    ("qwen2", "pasta", "must add special tokens"),
]


@pytest.mark.parametrize("arch, method, reason", REFUSED)
def test_a_pair_that_cannot_apply_fails_validate_in_one_line(tmp_path, tiny, arch, method, reason):
    r = validate(tmp_path, tiny[arch], {method: {"lr": 1e-3}})
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.stderr
    assert f"methods.{method}: not applicable to backbone" in lines[0] and reason in lines[0]
    assert arch.removeprefix("flan-") in lines[0]  # the backbone's model type is named (Flan-T5's is t5)


@pytest.mark.parametrize("arch", FAMILIES)
@pytest.mark.parametrize("method", ["finetune", "prompt_tuning", "ept", "dept", "lora", "aot_fc", "adapter", "peft",
                                    "prefix_tuning"])
def test_the_methods_that_apply_are_valid(tmp_path, tiny, arch, method):
    short = {"training": {"max_length": 64}} if arch == "mistral" else {}  # prefix + text fit its 96-token window
    r = validate(tmp_path, tiny[arch], {method: {"lr": 1e-3}}, **short)
    assert r.exit_code == 0, r.stderr


def test_a_prompt_longer_than_the_positions_is_refused(tmp_path, tiny):
    # the tiny GPT-2 has 320 positions: 300 tokens plus a 50-token prompt do not fit
    r = validate(tmp_path, tiny["gpt2"], {"prompt_tuning": {"lr": 0.3, "prompt_length": 50}},
                 training={"max_length": 300})
    assert r.exit_code == 2 and "must fit the backbone's 320 positions, got 350" in r.stderr
    # T5's positions are relative: no limit
    assert validate(tmp_path, tiny["t5"], {"prompt_tuning": {"lr": 0.3, "prompt_length": 50}},
                    training={"max_length": 300}).exit_code == 0


@pytest.mark.parametrize("tuner", ["LOHA", "LOKR", "OFT"])
def test_a_peft_tuner_that_cannot_wrap_the_backbone_is_refused(tmp_path, tiny, tuner):
    """peft's tuner is tried on the model built from config.json on the meta device (no weights):
    LoHa, LoKr and OFT cannot wrap GPT-2's Conv1D projections, which `apply` would find only when a
    trial starts. IA3 and LoRA wrap them, and the same tuners wrap Llama's Linear layers."""
    r = validate(tmp_path, tiny["gpt2"], {"peft": {"type": tuner, "lr": 1e-3}})
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1, r.stderr
    assert "methods.peft: not applicable to backbone" in lines[0] and f"peft's {tuner} cannot be applied" in lines[0]
    assert "Conv1D" in lines[0]
    assert validate(tmp_path, tiny["llama"], {"peft": {"type": tuner, "lr": 1e-3}}).exit_code == 0
    for ok in ("IA3", "LORA"):
        r = validate(tmp_path, tiny["gpt2"], {"peft": {"type": ok, "lr": 1e-3}})
        assert r.exit_code == 0 and not r.stderr, r.stderr  # and peft's own warnings are not printed


def test_a_prefix_beyond_a_sliding_window_is_refused(tmp_path, tiny):
    # the tiny Mistral slides a 96-token window: 16 prefix entries and 128 tokens do not fit in it
    r = validate(tmp_path, tiny["mistral"], {"prefix_tuning": {"lr": 1e-2, "prefix_length": 16}},
                 training={"max_length": 128})
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and "sliding window of 96 tokens" in lines[0], r.stderr
    assert "methods.prefix_tuning: not applicable to backbone" in lines[0] and "got 144" in lines[0]
    assert validate(tmp_path, tiny["mistral"], {"prefix_tuning": {"lr": 1e-2, "prefix_length": 16}},
                    training={"max_length": 64}).exit_code == 0
    # prompts are text the window slides over like any other; Qwen2's window is off by default
    assert validate(tmp_path, tiny["mistral"], {"prompt_tuning": {"lr": 0.3, "prompt_length": 16}},
                    training={"max_length": 128}).exit_code == 0
    assert validate(tmp_path, tiny["qwen2"], {"prefix_tuning": {"lr": 1e-2, "prefix_length": 16}},
                    training={"max_length": 256}).exit_code == 0


def test_dept_rows_beyond_max_length_are_refused(tmp_path, tiny):
    r = validate(tmp_path, tiny["t5"], {"dept": {"lr": 0.3, "max_positions": 256}}, training={"max_length": 128})
    assert r.exit_code == 2 and "max_positions: must be <= training.max_length (128)" in r.stderr


def test_a_task_format_the_family_lacks_is_refused(tmp_path, tiny, minilm_path):
    r = validate(tmp_path, minilm_path, {"finetune": {"lr": 1e-5}}, task_format="lm")
    assert r.exit_code == 2 and "task_format: 'lm' does not apply to encoder backbones" in r.stderr
    r = validate(tmp_path, tiny["t5"], {"finetune": {"lr": 1e-5}}, task_format="head")
    assert r.exit_code == 2 and "does not apply to seq2seq backbones" in r.stderr
    assert validate(tmp_path, tiny["gpt2"], {"finetune": {"lr": 1e-5}}, task_format="lm").exit_code == 0


def test_a_directory_without_a_model_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    r = validate(tmp_path, str(tmp_path / "empty"), {"finetune": {"lr": 1e-5}})
    assert r.exit_code == 2 and "a model directory must hold config.json" in r.stderr


def test_the_paper_optimizer_settings_validate(tmp_path, tiny):
    r = validate(tmp_path, tiny["t5"], {"dept": "paper"}, training={"adam_eps": 1e-6, "betas": [0.9, 0.98],
                                                                    "max_length": 256})
    assert r.exit_code == 0, r.stderr
    r = validate(tmp_path, tiny["t5"], {"dept": "paper"}, training={"betas": [0.9, 1.5]})
    assert r.exit_code == 2 and "betas" in r.stderr


def test_a_hub_id_already_in_the_hugging_face_cache_is_checked_like_a_directory(tmp_path, tiny, monkeypatch):
    """huggingface_hub's own cache lookup (no network) finds config.json for a hub id downloaded
    before; the cache here is laid out as the hub writes it (refs/main -> snapshots/<commit>/)."""
    import shutil

    cache, commit = tmp_path / "hub", "0" * 40
    snapshot = cache / "models--someone--tiny-llama" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    shutil.copy(f"{tiny['llama']}/config.json", snapshot / "config.json")
    (cache / "models--someone--tiny-llama" / "refs").mkdir()
    (cache / "models--someone--tiny-llama" / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    r = validate(tmp_path, "someone/tiny-llama", {"bitfit": {"lr": 1e-3}})
    assert r.exit_code == 2 and "must have bias terms" in r.stderr and "llama" in r.stderr, r.stderr
    r = validate(tmp_path, "someone/not-downloaded", {"bitfit": {"lr": 1e-3}})
    assert r.exit_code == 0 and "checked when a trial loads it" in r.stderr
