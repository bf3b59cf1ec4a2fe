"""Method hyperparameters in the spec: paper defaults, paper search spaces by name, one-line errors
for bad values, and applicability checked against a locally inspectable backbone. Also the
`peftsearch methods` listing."""
import pytest
from click.testing import CliRunner

from search.cli import main
from search.spec import SpecError, parse_spec
from trainers.methods import METHODS
from trainers.testing import build_plain_tokenizer_backbone, build_tiny_backbone, glue_texts


def spec(backbone, methods) -> dict:
    return {"name": "methods-test", "backbone": backbone, "tasks": ["rte"], "methods": methods,
            "tracking": {"uri": "sqlite:///unused.db"}}


@pytest.fixture(scope="module")
def plain_backbone(tmp_path_factory, data_dir):
    return build_plain_tokenizer_backbone(tmp_path_factory.mktemp("plain"), glue_texts(data_dir, limit=400))


@pytest.fixture(scope="module")
def roberta_backbone(tmp_path_factory, data_dir):
    return build_tiny_backbone("roberta", tmp_path_factory.mktemp("roberta"), glue_texts(data_dir, limit=400))


@pytest.mark.parametrize("method", METHODS.names())
def test_every_paper_search_space_validates_by_name(method, minilm_path):
    s = parse_spec(spec(minilm_path, {method: "paper"}))
    space = METHODS[method].search_space
    assert "lr" in space
    expected = 1
    for values in space.values():
        expected *= len(values)
    assert len(s.assignments(method)) == expected


def test_defaults_are_filled_in_and_grid_keys_override(minilm_path):
    s = parse_spec(spec(minilm_path, {"dept": {"lr": 0.3, "lr2": [1e-4, 5e-4], "prompt_length": 40}}))
    (optim, a), (_, b) = s.assignments("dept")
    assert optim.lr == 0.3 and a["prompt_length"] == 40 and a["max_positions"] is None and a["alpha"] == 8.0
    assert {a["lr2"], b["lr2"]} == {1e-4, 5e-4}


@pytest.mark.parametrize("methods, message", [
    ({"lora": {"lr": 1e-3, "rank": 0}}, "methods.lora.rank: must be >= 1, got 0"),
    ({"aot_fc": {"lr": 1e-3, "dropout": 1.5}}, "methods.aot_fc.dropout: must be in [0, 1), got 1.5"),
    ({"prefix_tuning": {"lr": 1e-3, "prefix_len": 3}}, "did you mean 'prefix_length'"),
    ({"dept": {"lr": 0.3, "prompt_length": 100}}, "methods.dept.budget_length: must be > prompt_length, got 100"),
])
def test_bad_method_hyperparameters_are_one_line(minilm_path, methods, message):
    with pytest.raises(SpecError) as e:
        parse_spec(spec(minilm_path, methods))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_pasta_on_a_tokenizer_without_special_tokens_is_rejected_at_validation(plain_backbone):
    with pytest.raises(SpecError, match=r"methods\.pasta: not applicable to backbone .*tokenizer: must add special "
                                        r"tokens, where PASTA adds its vectors"):
        parse_spec(spec(plain_backbone, {"pasta": {"lr": 1e-3}, "lora": {"lr": 1e-3}}))
    parse_spec(spec(plain_backbone, {"lora": {"lr": 1e-3}}))  # other methods are fine on it


def test_aot_kron_too_small_for_the_vocabulary_is_rejected(roberta_backbone):
    with pytest.raises(SpecError, match=r"methods\.aot_kron: not applicable .*b: a·b must cover the vocabulary"):
        parse_spec(spec(roberta_backbone, {"aot_kron": {"lr": 1e-3, "a": 10, "b": 10}}))


def test_methods_command_lists_counts_on_a_backbone(roberta_backbone):
    out = CliRunner().invoke(main, ["methods", "--backbone", roberta_backbone])
    assert out.exit_code == 0, out.output
    rows = [line.split("\t") for line in out.stdout.strip().splitlines()]
    assert [r[0] for r in rows] == METHODS.names()
    counts = {r[0]: int(r[1]) for r in rows}
    d, L = 64, 2  # the tiny RoBERTa
    assert counts["ept"] == 3 * d and counts["prompt_tuning"] == 20 * d and counts["prefix_tuning"] == 2 * L * 20 * d
    assert counts["pasta"] == L * 4 * d and counts["dept"] == 100 * d
    assert all(r[2] for r in rows)


def test_methods_command_marks_inapplicable_methods(plain_backbone):
    out = CliRunner().invoke(main, ["methods", "--backbone", plain_backbone])
    assert out.exit_code == 0, out.output
    (pasta,) = [line for line in out.stdout.splitlines() if line.startswith("pasta\t")]
    assert pasta.split("\t")[1] == "n/a" and "not applicable" in pasta


def test_peft_keys_are_checked_against_peft_s_own_config(minilm_path):
    s = parse_spec(spec(minilm_path, {"peft": {"lr": 1e-3, "type": "IA3", "feedforward_modules": [["output.dense"]],
                                               "target_modules": [["query", "value", "output.dense"]]}}))
    (_, params), = s.assignments("peft")
    assert params["type"] == "IA3" and params["target_modules"] == ["query", "value", "output.dense"]
    cases = [({"type": "IA4"}, r"methods\.peft\.type: unknown peft tuner 'IA4'; did you mean 'IA3'\?"),
             ({"type": "LORA", "rnak": 8}, r"methods\.peft\.rnak: not a key of peft's LoraConfig; did you mean 'rank'|"
                                           r"methods\.peft: unknown hyperparameter 'rnak'"),
             ({"type": "LOHA", "r": 4, "rank_dropout": [2.0]}, r"methods\.peft\.rank_dropout: must be in \[0, 1\)"),
             ({"type": "LORA", "r": [0]}, r"methods\.peft\.r: must be an integer >= 1, got 0"),
             ({"type": "LORA", "use_dora": True, "lora_bias": True}, r"methods\.peft\.type: peft's LoraConfig refuses")]
    for extra, pattern in cases:
        with pytest.raises(SpecError, match=pattern):
            parse_spec(spec(minilm_path, {"peft": {"lr": 1e-3} | extra}))
