"""`peftsearch bench methods` runs end to end and prints its table (no timing asserts: the numbers
are for people to read; see trainers/bench.py)."""
from click.testing import CliRunner

from search.cli import main
from trainers.bench import Variant
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
    assert rows[0].count("1.00x") >= 2 and rows[2].split(" | ")[1] == "192"  # EPT: 3·d, d = 64


def test_bench_rejects_unknown_methods_before_measuring():
    out = CliRunner().invoke(main, ["bench", "methods", "--method", "lroa"])
    assert out.exit_code == 2 and "did you mean 'lora'" in out.output
