"""`peftsearch bench methods` runs end to end and prints its table (no timing asserts: the numbers
are for people to read; see trainers/bench.py)."""
import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from search.cli import main
from trainers.bench import Variant, live_bytes, transient_peak_cpu
from trainers.testing import build_tiny_backbone, glue_texts


def test_variant_parsing():
    v = Variant.parse("aot_fc:rank=16,fuse=false")
    assert (v.method, v.params, v.fuse, v.label) == ("aot_fc", {"rank": 16}, False, "aot_fc (rank=16, unfused)")


def test_bench_methods_prints_a_row_per_method_relative_to_finetune(tmp_path, data_dir):
    path = build_tiny_backbone("bert", tmp_path / "bert", glue_texts(data_dir, limit=400))
    out = CliRunner().invoke(main, ["bench", "methods", "--backbone", path, "--batch", "2", "--seq-len", "16",
                                    "--repeats", "2", "--device", "cpu", "--method", "aot_fc", "--method", "ept"])
    assert out.exit_code == 0, out.output
    rows = [line for line in out.output.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0].strip("| ") for r in rows] == ["finetune", "aot_fc", "ept"]
    assert rows[0].count("1.000x [1.000, 1.000]") == 2 and rows[0].count("1.00x") == 2  # finetune is the reference
    assert rows[2].split(" | ")[1] == "192"  # EPT: 3·d, d = 64
    assert out.output.count("load average") == 2
    peaks = [float(r.split(" | ")[c]) for r in rows for c in (4, 8)]  # inference and training MiB
    assert all(p > 0 for p in peaks)


def test_bench_methods_no_train_times_inference_only(tmp_path, data_dir):
    path = build_tiny_backbone("bert", tmp_path / "bert", glue_texts(data_dir, limit=400))
    out = CliRunner().invoke(main, ["bench", "methods", "--backbone", path, "--batch", "2", "--seq-len", "16",
                                    "--repeats", "2", "--device", "cpu", "--method", "aot_fc", "--no-train"])
    assert out.exit_code == 0, out.output
    rows = [line.split(" | ") for line in out.output.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r[0].strip("| ") for r in rows] == ["finetune", "aot_fc"]
    for r in rows:
        assert float(r[2]) > 0 and r[6:9] == ["n/a", "n/a", "n/a"]  # inference timed, training not


def test_cpu_peak_is_the_allocators_high_water_mark():
    """4 MiB alive while 8 MiB more is allocated, then both freed: the peak is 12 MiB, not the
    16 MiB allocated in all nor the 0 MiB left at the end."""
    def fn():
        a = torch.empty(2**20, dtype=torch.float32)  # 4 MiB
        b = torch.empty(2**21, dtype=torch.float32)  # 8 MiB
        del a, b
        torch.empty(2**20, dtype=torch.float32)

    assert transient_peak_cpu(fn) == 12 * 2**20


def test_live_bytes_counts_each_storage_once():
    lin = nn.Linear(256, 256)  # 256·256 + 256 floats
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.randn(1, 256)).sum().backward()
    opt.step()  # exp_avg and exp_avg_sq: twice the parameters again (and two scalar steps)
    params = (256 * 256 + 256) * 4
    assert live_bytes(lin, lin.weight, {"again": lin.bias}) == params
    assert live_bytes(lin, opt) == 3 * params + 2 * 4


def test_bench_rejects_unknown_methods_before_measuring():
    out = CliRunner().invoke(main, ["bench", "methods", "--method", "lroa"])
    assert out.exit_code == 2 and "did you mean 'lora'" in out.output


def test_bench_methods_runs_on_t5_and_a_decoder_s_lm_route(tmp_path, data_dir):
    texts = glue_texts(data_dir, limit=400)
    for arch, route in (("t5", "auto"), ("gpt2", "lm")):
        path = build_tiny_backbone(arch, tmp_path / arch, texts, vocab=400)
        out = CliRunner().invoke(main, ["bench", "methods", "--backbone", path, "--route", route, "--batch", "2",
                                        "--seq-len", "16", "--repeats", "2", "--device", "cpu",
                                        "--method", "prompt_tuning:prompt_length=10", "--method", "dept:prompt_length=2"])
        assert out.exit_code == 0, out.output
        rows = [line for line in out.output.splitlines() if line.startswith("| ") and "---" not in line][1:]
        assert [r.split(" | ")[1] for r in rows][1] == str(10 * 64)  # prompt tuning: l·d


def test_the_bench_needs_only_torch_transformers_and_peft():
    """`python -m trainers.bench` runs on a bare GPU machine: the trainers package and the bench
    import none of the search service's dependencies."""
    import subprocess
    import sys

    code = ("import sys, trainers.bench, trainers.methods, trainers.backbone, trainers.lm; "
            "print([m for m in ('pydantic', 'ray', 'mlflow', 'click', 'optuna', 'sqlalchemy') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bench_aot_precision_scores_the_same_training_with_each_table_dtype(tiny_bert, data_dir):
    from trainers.bench import fused_precision

    rows = fused_precision(method="aot_fc", task="rte", backbone=tiny_bert, data_dir=str(data_dir), train_examples=32,
                           epochs=1, lr=1e-2)
    by = {r["dtype"]: r for r in rows}
    assert set(by) == {"float32", "float16", "bfloat16"} and by["float32"]["max_logit_change"] == 0
    assert by["float16"]["table_mib"] * 2 == pytest.approx(by["float32"]["table_mib"])
    assert 0 < by["bfloat16"]["max_logit_change"] < 1  # rounded, not broken
    assert all(0 <= r["dev_score"] <= 1 and r["dev_examples"] == 277 for r in rows)  # RTE's whole dev set
